"""Transport adapters: in-process (default), RabbitMQ, Redis Streams, NATS
JetStream, Celery.

``open_transport(url)`` picks one from a URL:

- ``memory://``: :class:`InProcessTransport` (this process)
- ``amqp://user:pw@host/vhost``: :class:`RabbitTransport`
- ``redis://host:6379/0``: :class:`RedisTransport` (Redis Streams; also
  ``rediss://``)
- ``redis+cluster://host:6379``: :class:`RedisTransport` on Redis Cluster,
  through any one node (also ``rediss+cluster://``)
- ``nats://host:4222``: :class:`NatsTransport` (NATS JetStream; also
  ``tls://``… as ``nats+tls://``)
- ``celery+amqp://…``: :class:`CeleryTransport` (Celery's wire format on
  RabbitMQ)
- ``celery+redis://host:6379/0``: :class:`CeleryRedisTransport` (Celery's
  wire format on a Redis broker, as kombu stores it; also
  ``celery+rediss://``)
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from sagakit.errors import TransportError

if TYPE_CHECKING:  # the port speaks pydantic envelopes: not needed to pick one
    from sagakit.ports.transport import Transport

ENV_VAR = "SAGAKIT_TRANSPORT_URL"
DEFAULT_TRANSPORT = "memory://"


def transport_url(url: str | None = None) -> str:
    """The explicit URL, else ``$SAGAKIT_TRANSPORT_URL``, else ``memory://``."""
    return url or os.environ.get(ENV_VAR) or DEFAULT_TRANSPORT


async def open_transport(url: str | None = None) -> Transport:
    """Connect the transport a URL names (drivers are imported only when used)."""
    url = transport_url(url)
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    # drivers load lazily: only the adapter that is asked for imports its driver
    if scheme == "memory":
        from sagakit.adapters.transport.inprocess import (  # noqa: PLC0415
            InProcessTransport,
        )

        return InProcessTransport()
    if scheme in ("amqp", "amqps"):
        from sagakit.adapters.transport.rabbitmq import RabbitTransport  # noqa: PLC0415

        return await RabbitTransport.connect(url)
    if scheme in ("redis", "rediss", "redis+cluster", "rediss+cluster"):
        from sagakit.adapters.transport.redis import RedisTransport  # noqa: PLC0415

        return await RedisTransport.connect(url)
    if scheme in ("nats", "nats+tls"):
        from sagakit.adapters.transport.nats import NatsTransport  # noqa: PLC0415

        if scheme == "nats+tls":
            url = "tls://" + url.split("://", 1)[1]
        return await NatsTransport.connect(url)
    if scheme in ("celery+redis", "celery+rediss"):
        from sagakit.adapters.transport.celery_redis import (  # noqa: PLC0415
            CeleryRedisTransport,
        )

        return await CeleryRedisTransport.connect(url[len("celery+") :])
    if scheme.startswith("celery+"):
        from sagakit.adapters.transport.celery import CeleryTransport  # noqa: PLC0415

        return await CeleryTransport.connect(url[len("celery+") :])
    shown = url.split("@")[-1]
    raise TransportError(
        f"unsupported transport URL {shown!r}: use memory://, amqp://, redis://, "
        "redis+cluster://, nats://, celery+amqp:// or celery+redis://"
    )
