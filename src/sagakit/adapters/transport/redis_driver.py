"""What both Redis transports (Streams, and Celery as kombu stores it) need
from redis-py: the client on a blocking pool, the errors it raises turned
into :class:`~sagakit.errors.TransportError`, and how a URL is named in
messages."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from urllib.parse import urlsplit

from sagakit._extras import needs_extra
from sagakit.adapters.transport.base import driver_errors as wrap_errors
from sagakit.errors import TransportError

with needs_extra("the Redis transports need redis", "redis"):
    from redis.asyncio import BlockingConnectionPool, Redis
    from redis.asyncio.client import Pipeline
    from redis.asyncio.cluster import RedisCluster
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import RedisClusterException, RedisError

__all__ = [
    "CLUSTER_SCHEMES",
    "DRIVER_ERRORS",
    "UNREACHABLE",
    "Pipeline",
    "Redis",
    "RedisCluster",
    "RedisClusterException",
    "RedisConnectionError",
    "driver_errors",
    "pooled_client",
    "where",
]

DRIVER_ERRORS = (RedisError, RedisClusterException, OSError)
"""What redis-py raises; ``OSError`` covers sockets and ``TimeoutError``, and
the cluster client's own errors (a missed slot, a cross-slot transaction) do
not derive from ``RedisError``."""

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
"""URL schemes naming a Redis Cluster, and what redis-py is given instead."""
UNREACHABLE = "Please provide at least one reachable node: "
"""What redis-py's cluster client puts before the reason it cannot connect."""


@contextlib.contextmanager
def driver_errors(action: str) -> Iterator[None]:
    """redis-py's errors as ``TransportError("Redis: <action> failed: ...")``."""
    with wrap_errors("Redis", action, DRIVER_ERRORS):
        yield


def pooled_client(
    url: str, *, max_connections: int, pool_timeout: float, connect_timeout: float
) -> Redis:
    """A client on a pool of ``max_connections``, where a command finding none
    free waits up to ``pool_timeout`` seconds (no I/O yet)."""
    try:
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=pool_timeout,
            socket_connect_timeout=connect_timeout,
        )
    except ValueError as exc:
        raise TransportError(f"invalid Redis URL for {where(url)}") from exc
    return Redis.from_pool(pool)


def where(url: str) -> str:
    """``host:port`` (or the socket path) of a Redis URL, for messages."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    try:
        port = parts.port or 6379
    except ValueError:
        port = 6379
    return f"{parts.hostname or 'localhost'}:{port}"
