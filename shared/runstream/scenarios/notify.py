"""notify: sends notifications only. Irreversible: revert reports them, never takes them back."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

import msgspec

from runstream.domain.scenarios import Context, Scenario


class NotifyParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    message: Annotated[str, msgspec.Meta(min_length=1, max_length=2000)] = "hello"
    count: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 1


def _inputs(p: NotifyParams, start: int) -> Iterator[int]:
    return iter(range(start, p.count))


def _step(ctx: Context, p: NotifyParams, i: int) -> None:
    text = p.message if p.count == 1 else f"{p.message} ({i + 1}/{p.count})"
    ctx.notify(text)
    ctx.log(f"sent: {text}")


SCENARIO = Scenario(
    name="notify",
    version="1",
    description="Sends notifications (to the outbox stream); they cannot be reverted.",
    params=NotifyParams,
    inputs=_inputs,
    step=_step,
    count=lambda p: p.count,
)
