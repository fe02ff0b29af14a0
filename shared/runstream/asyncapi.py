"""The message interface as an AsyncAPI 3.0 document, generated from the contracts.

faststream lays out the document (servers, channels, operations, Redis stream bindings)
from a broker declared here the way the worker and the feed use the streams; the payload
schemas are msgspec's own JSON Schema of the contracts (``runstream.contracts``), which
faststream's pydantic-based generator cannot read. The API serves it at ``/asyncapi``;
``make asyncapi`` writes docs/asyncapi.json, which a test keeps up to date.
"""

from __future__ import annotations

import json
import re
from typing import Any, cast

import msgspec
from faststream.redis import RedisBroker, StreamSub
from faststream.specification import AsyncAPI

from runstream.contracts import commands as cmd
from runstream.contracts import events as ev
from runstream.keys import Fields, Keys

TITLE = "runstream message interface"
DEFAULT_PREFIX = "rs"
_REF = "#/components/schemas/{name}"

COMMANDS_DOC = (
    "Commands for runs, one per stream entry, field `c` holding the command as JSON. "
    "There is one stream per shard n: `{prefix}:{{{prefix}:sN}}:commands`; a command goes to "
    "the shard of its run (crc32(run_id) mod the shard count). Every command carries a "
    "`command_id` (idempotency key: a command is applied once), the `run_id` and the "
    "`actor`. Workers read them in the consumer group `workers`."
)
FEED_DOC = (
    "Every event the workers record, one per stream entry: `r` the run id, `v` the run's "
    "version after the event (0 for a rejection of a run without history), `e` the event "
    "as JSON (slim: a chunk's effect list, log and results stay in the run's history). One "
    "stream per shard n: `{prefix}:{{{prefix}:sN}}:feed`, bounded to about 10,000 entries. "
    "Subscribe with XREAD from an entry id (the HTTP API's /events does this)."
)


def _declared(keys: Keys) -> RedisBroker:
    """A broker (never connected) declaring shard 0's streams as the service uses them."""
    broker = RedisBroker("redis://localhost:6379")
    reader = broker.subscriber(
        stream=StreamSub(keys.commands(0), group=keys.group, consumer="WORKER_NAME"),
        title="commands",
        description=COMMANDS_DOC.format(prefix=keys.prefix),
    )

    @reader
    async def apply(entry: dict[str, Any]) -> None:  # documentation only
        del entry

    broker.publisher(
        stream=keys.feed(0),
        title="feed",
        description=FEED_DOC.format(prefix=keys.prefix),
        schema=dict[str, Any],
    )
    return broker


def _entry(fields: dict[str, dict[str, Any]], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": fields, "required": required}


def document(prefix: str = DEFAULT_PREFIX, version: str = "1") -> dict[str, Any]:
    keys = Keys(prefix, 1)
    spec = AsyncAPI(_declared(keys), title=TITLE, version=version, schema_version="3.0.0")
    doc: dict[str, Any] = json.loads(spec.to_specification().to_json())
    (command_ref, event_ref), schemas = msgspec.json.schema_components(
        [cmd.Command, ev.Event], ref_template=_REF
    )
    doc["components"]["schemas"] = {
        "commands:Message:Payload": _entry(
            {Fields.COMMAND.decode(): {**command_ref, "contentMediaType": "application/json"}},
            [Fields.COMMAND.decode()],
        ),
        "feed:Message:Payload": _entry(
            {
                Fields.RUN.decode(): {"type": "string", "description": "the run id"},
                Fields.VERSION.decode(): {"type": "string", "description": "an integer"},
                Fields.EVENT.decode(): {**event_ref, "contentMediaType": "application/json"},
            },
            [Fields.RUN.decode(), Fields.VERSION.decode(), Fields.EVENT.decode()],
        ),
        **schemas,
    }
    doc["servers"]["development"]["description"] = "Any Redis 7 (or Redis Cluster) runstream uses"
    for name in ("commands", "feed"):
        _parameterise(doc["channels"][name], keys)
    return _valid_component_keys(doc)


SHARD_PARAMETER = "shardTag"


def _parameterise(channel: dict[str, Any], keys: Keys) -> None:
    """A channel address for every shard: braces in an AsyncAPI address are a parameter,
    so shard 0's key (``rs:{rs:s0}:commands``, its hash tag in braces) was read as an
    undeclared parameter ``rs:s0``; the hash tag is the parameter ``shardTag`` now."""
    tag = "{" + f"{keys.prefix}:s0" + "}"
    address: str = channel["address"]
    channel["address"] = address.replace(tag, "{" + SHARD_PARAMETER + "}")
    channel["parameters"] = {
        SHARD_PARAMETER: {
            "description": (
                f"The shard's hash tag, braces included: `{{{keys.prefix}:sN}}` for shard N, "
                "0 to the shard count - 1 (a run's shard: crc32(run_id) mod the count). "
                "It keeps a shard's keys in one Redis Cluster slot."
            ),
            "examples": [tag, "{" + f"{keys.prefix}:s1" + "}"],
        }
    }


_COMPONENT_KEY = re.compile(r"[^A-Za-z0-9.\-_]")


def _valid_component_keys(doc: dict[str, Any]) -> dict[str, Any]:
    """faststream names components ``commands:Message:Payload``; AsyncAPI 3 allows only
    letters, digits, ``.``, ``-`` and ``_`` in a component's key: ``:`` becomes ``.``,
    in the keys and in every reference to them."""
    renamed: dict[str, str] = {}
    for kind, components in doc["components"].items():
        for key in list(components):
            valid = _COMPONENT_KEY.sub(".", key)
            if valid != key:
                components[valid] = components.pop(key)
                renamed[f"#/components/{kind}/{key}"] = f"#/components/{kind}/{valid}"
    return cast(dict[str, Any], _rewrite_refs(doc, renamed))


def _rewrite_refs(value: Any, renamed: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {
            k: renamed.get(v, v) if k == "$ref" else _rewrite_refs(v, renamed)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_rewrite_refs(v, renamed) for v in value]
    return value


def text(prefix: str = DEFAULT_PREFIX) -> str:
    """The document as the checked-in docs/asyncapi.json has it."""
    return json.dumps(document(prefix), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    print(text(), end="")
