"""Render the neutral model as an AsyncAPI 3.0.0 document (a dict, JSON or YAML).

Layout: ``channels`` (one per queue, each listing its messages), ``operations``
(``<actor>.send.<command>``, ``<actor>.receive.replies``, ...; tagged with the
actor), ``components.messages`` (one per message type, its payload the whole
sagakit envelope with the body's schema at ``payload``),
``components.schemas`` (the pydantic models), and one correlation id, the
envelope's ``correlation_id``.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from pydantic.json_schema import models_json_schema

from sagakit.asyncapi.model import ApiModel, Channel, JsonSchema, Message, Operation
from sagakit.messaging.envelope import Envelope

ASYNCAPI_VERSION = "3.0.0"
CORRELATION_ID = "correlation_id"
ERROR_SCHEMA = "SagakitError"
SECURITY = "userPassword"
_AMQP_BINDING = "0.3.0"
_YAML_HINT = "YAML output needs PyYAML: pip install 'sagakit[asyncapi]'"


def document(model: ApiModel) -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document of ``model``, as JSON-able dicts and lists."""
    schemas, body_refs = _schemas(model)
    info: dict[str, Any] = {"title": model.title, "version": model.version}
    if model.description:
        info["description"] = model.description
    doc: dict[str, Any] = {
        "asyncapi": ASYNCAPI_VERSION,
        "info": info,
        "defaultContentType": "application/json",
    }
    if model.servers:
        doc["servers"] = {s.name: _server(s) for s in model.servers}
    doc["channels"] = {c.id: _channel(model, c) for c in model.channels.values()}
    doc["operations"] = {o.id: _operation(model, o) for o in model.operations.values()}
    components: dict[str, Any] = {"schemas": schemas}
    if model.messages:
        components["messages"] = {
            m.id: _message(m, body_refs) for m in model.messages.values()
        }
    components["correlationIds"] = {
        CORRELATION_ID: {
            "description": "Ties a reply to its command "
            "(<saga_id>:<step>:<attempt>), or events to one business transaction.",
            "location": "$message.payload#/correlation_id",
        }
    }
    if any(s.authenticated for s in model.servers):
        components["securitySchemes"] = {
            SECURITY: {
                "type": "userPassword",
                "description": "User and password in the broker URL "
                "(not part of this document).",
            }
        }
    doc["components"] = components
    return doc


def to_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def to_yaml(doc: dict[str, Any]) -> str:
    """YAML text; ``ImportError`` with an install hint without PyYAML."""
    try:
        import yaml  # noqa: PLC0415 - optional: the asyncapi extra
    except ImportError as exc:
        raise ImportError(_YAML_HINT) from exc

    class Dumper(yaml.SafeDumper):
        """Multi-line strings as ``|`` blocks, the rest as usual."""

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    out: str = yaml.dump(
        doc,
        Dumper=Dumper,
        sort_keys=False,
        allow_unicode=True,
        width=88,
        default_flow_style=False,
    )
    return out


# -- parts ---------------------------------------------------------------------


def _server(server: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"host": server.host, "protocol": server.protocol}
    if server.pathname:
        out["pathname"] = server.pathname
    if server.description:
        out["description"] = server.description
    if server.authenticated:
        out["security"] = [{"$ref": f"#/components/securitySchemes/{SECURITY}"}]
    return out


def _channel(model: ApiModel, channel: Channel) -> dict[str, Any]:
    out: dict[str, Any] = {"address": channel.address}
    if channel.description:
        out["description"] = channel.description
    out["messages"] = {
        m: {"$ref": f"#/components/messages/{m}"} for m in channel.messages
    }
    protocols = {s.protocol for s in model.servers}
    if channel.address is not None and protocols & {"amqp", "amqps"}:
        prefix = model.broker_prefix
        name = f"{prefix}.{channel.address}" if prefix else channel.address
        out["bindings"] = {
            "amqp": {
                "is": "queue",
                "queue": {
                    "name": name,
                    "durable": True,
                    "exclusive": False,
                    "autoDelete": False,
                },
                "bindingVersion": _AMQP_BINDING,
            }
        }
    if channel.address is not None and protocols & {"redis", "rediss"}:
        # RedisTransport.stream_key: the queue is a hash tag (Redis Cluster)
        prefix = model.broker_prefix
        tagged = f"{{{channel.address}}}"
        stream = f"{prefix}:{tagged}" if prefix else tagged
        out["x-sagakit-redis-stream"] = stream
    return out


def _operation(model: ApiModel, op: Operation) -> dict[str, Any]:
    out: dict[str, Any] = {
        "action": op.action,
        "channel": {"$ref": f"#/channels/{op.channel}"},
    }
    if op.summary:
        out["summary"] = op.summary
    out["messages"] = [
        {"$ref": f"#/channels/{op.channel}/messages/{m}"} for m in op.messages
    ]
    out["tags"] = [{"name": f"{op.actor_kind}:{op.actor}"}]
    if op.reply is not None:
        reply: dict[str, Any] = {}
        target = model.channels[op.reply.channel]
        if target.address is None:  # named by the command: reply_to
            reply["address"] = {
                "description": "The queue the command's reply_to names.",
                "location": "$message.payload#/reply_to",
            }
        reply["channel"] = {"$ref": f"#/channels/{op.reply.channel}"}
        reply["messages"] = [
            {"$ref": f"#/channels/{op.reply.channel}/messages/{m}"}
            for m in op.reply.messages
        ]
        out["reply"] = reply
    return out


def _message(message: Message, body_refs: dict[type[Any], JsonSchema]) -> Any:
    body = body_refs.get(message.body) if message.body is not None else None
    out: dict[str, Any] = {"name": message.type}
    title = {"command": "Command", "reply": "Reply to", "event": "Event"}
    out["title"] = f"{title[message.kind]} {message.type}"
    if message.summary:
        out["summary"] = message.summary
    out["contentType"] = "application/json"
    out["correlationId"] = {"$ref": f"#/components/correlationIds/{CORRELATION_ID}"}
    out["payload"] = _envelope(message, body)
    out["tags"] = [{"name": message.kind}]
    if message.usages:
        out["x-sagakit-usages"] = [
            {
                k: v
                for k, v in (("actor", u.actor), ("role", u.role), ("step", u.step))
                if v is not None
            }
            for u in message.usages
        ]
    return out


_ENVELOPE: JsonSchema = Envelope.model_json_schema()


def _envelope(message: Message, body: JsonSchema | None) -> JsonSchema:
    """The envelope's schema with this message's kind, type and body fixed."""
    schema = copy.deepcopy(_ENVELOPE)
    schema["title"] = f"Envelope of {message.type}"
    schema["description"] = (
        "The sagakit envelope (JSON, version 1); the message body is `payload`."
    )
    props: dict[str, Any] = schema["properties"]
    props["kind"] = {"const": message.kind, "type": "string"}
    props["type"] = {"const": message.type, "type": "string"}
    content = copy.deepcopy(body) if body is not None else {"type": "object"}
    if message.kind == "reply":
        props["payload"] = {
            "description": "The result when ok; {} after a failure.",
            "anyOf": [content, {"type": "object", "maxProperties": 0}],
        }
        props["ok"] = {"type": "boolean"}
        props["error"] = {
            "description": "Why the command failed, when not ok.",
            "anyOf": [
                {"$ref": f"#/components/schemas/{ERROR_SCHEMA}"},
                {"type": "null"},
            ],
        }
        schema["required"] = [*schema["required"], "ok"]
    else:
        props["payload"] = content
        if message.kind == "command":
            props["reply_to"]["description"] = "The queue the reply goes to."
    return schema


def _schemas(model: ApiModel) -> tuple[dict[str, Any], dict[type[Any], JsonSchema]]:
    bodies = model.bodies
    refs: dict[type[Any], JsonSchema] = {}
    defs: dict[str, Any] = {}
    if bodies:
        mapping, top = models_json_schema(
            [(b, "validation") for b in bodies],
            ref_template="#/components/schemas/{model}",
        )
        defs = _asyncapi_schema(top.get("$defs", {}))
        refs = {b: mapping[(b, "validation")] for b in bodies}
    defs.setdefault(
        ERROR_SCHEMA,
        {
            "type": "object",
            "description": "A failed command: the exception type and message, "
            "and whether the orchestrator may retry.",
            "properties": {
                "type": {"type": "string"},
                "message": {"type": "string"},
                "retryable": {"type": "boolean"},
            },
            "required": ["type", "message", "retryable"],
        },
    )
    return defs, refs


def _asyncapi_schema(value: Any) -> Any:
    """JSON Schema from pydantic, adjusted to the AsyncAPI Schema Object:
    ``discriminator`` is a property name there, not an OpenAPI object."""
    if isinstance(value, dict):
        out = {k: _asyncapi_schema(v) for k, v in value.items()}
        disc = out.get("discriminator")
        if isinstance(disc, dict):
            name = disc.get("propertyName")
            if isinstance(name, str):
                out["discriminator"] = name
            else:
                del out["discriminator"]
        return out
    if isinstance(value, list):
        return [_asyncapi_schema(v) for v in value]
    return value
