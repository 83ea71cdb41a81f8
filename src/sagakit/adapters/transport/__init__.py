"""Transport adapters: in-process (default), RabbitMQ, Redis Streams, Celery."""
