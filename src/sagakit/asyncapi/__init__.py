"""AsyncAPI documents from saga definitions, participants and event sources.

``describe(...)`` declares what a document covers; ``document(app.model())``
renders it as AsyncAPI 3.0.0; ``mermaid(saga)`` draws a saga as a flowchart.
"""

from __future__ import annotations

from sagakit.asyncapi.build import (
    DEFAULT_REPLY_QUEUE,
    AsyncAPIApp,
    describe,
    from_target,
    parse_server,
)
from sagakit.asyncapi.diagram import mermaid
from sagakit.asyncapi.model import (
    ApiModel,
    Channel,
    EventSource,
    EventSpec,
    Message,
    Operation,
    Reply,
    Server,
    Usage,
)
from sagakit.asyncapi.render_v3 import document, to_json, to_yaml

__all__ = [
    "DEFAULT_REPLY_QUEUE",
    "ApiModel",
    "AsyncAPIApp",
    "Channel",
    "EventSource",
    "EventSpec",
    "Message",
    "Operation",
    "Reply",
    "Server",
    "Usage",
    "describe",
    "document",
    "from_target",
    "mermaid",
    "parse_server",
    "to_json",
    "to_yaml",
]
