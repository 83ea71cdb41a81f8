"""Brokers named in a document: a :class:`~sagakit.asyncapi.model.Server`
from each configured URL.

Only what a reader of the document may see is kept: the protocol (from the
URL's scheme: AMQP, Redis Streams or NATS JetStream, the first two also
through Celery's wire format), the host and port, and the path; the user, password
and query string are dropped (``authenticated`` says whether there were
credentials). An unsupported scheme or a URL without a host raises
``DefinitionError`` when the document is declared, not when it is rendered.
Separate from :mod:`sagakit.asyncapi.build` so that both the declaration
(which checks the URLs) and the builder (which lists the servers) use it.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from sagakit.asyncapi.model import Server
from sagakit.errors import DefinitionError

_PROTOCOLS = {
    "amqp": "amqp",
    "amqps": "amqps",
    "redis": "redis",
    "rediss": "rediss",
    "nats": "nats",
}
_CLUSTER_PROTOCOLS = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


def parse_server(name: str, url: str) -> Server:
    """A server from a broker URL, without user, password or query string."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    celery = scheme.startswith("celery+")
    protocol = _CLUSTER_PROTOCOLS.get(scheme) or _PROTOCOLS.get(
        scheme.removeprefix("celery+")
    )
    if protocol is None or (celery and protocol == "nats"):
        raise DefinitionError(
            f"server {name!r}: unsupported URL scheme {parts.scheme!r}: use amqp://, "
            "amqps://, redis://, rediss://, redis+cluster://, rediss+cluster://, "
            "nats://, celery+amqp:// or celery+redis://"
        )
    try:
        port = parts.port
    except ValueError:
        raise DefinitionError(f"server {name!r}: the URL has an invalid port") from None
    if not parts.hostname:
        raise DefinitionError(f"server {name!r}: the URL names no host")
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    if port is not None:
        host = f"{host}:{port}"
    path = parts.path if parts.path not in ("", "/") else None
    if protocol.startswith("amqp"):
        what = "RabbitMQ, Celery's wire format" if celery else "RabbitMQ"
    elif protocol == "nats":
        what = "NATS JetStream"
    else:
        what = "Redis Streams"
    return Server(
        name=name,
        protocol=protocol,
        host=host,
        pathname=path,
        authenticated=bool(parts.username or parts.password),
        description=what,
    )
