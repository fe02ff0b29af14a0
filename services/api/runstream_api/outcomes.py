"""What became of a command: found in the run's history (a retry, a poll) or awaited on
the shard's feed. The API never applies a command; it only watches what the workers did."""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import Literal

import msgspec

from runstream import multi_read
from runstream.client import TARGETS, Client
from runstream.contracts import commands as cmd
from runstream.contracts import events as ev
from runstream.domain.run import RunSummary
from runstream.keys import Fields
from runstream.store import replies

Status = Literal["pending", "accepted", "done", "rejected"]
# How far back a poll looks on the feed for a rejection of a run that has no history.
FEED_LOOKBACK = 5000


class CommandStatus(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A command as the API saw it: ``pending`` (no worker took it yet), ``accepted``
    (taken, not yet taken effect), ``done`` (it took effect) or ``rejected`` (``reason``)."""

    run_id: str
    command_id: str
    command: str
    status: Status
    reason: str = ""
    # The event that settled it: the acceptance, the effect (done), or the rejection.
    event: ev.Event | None = None
    # The run as it is now (absent once deleted, or when a start was rejected).
    run: RunSummary | None = None


def targets_of(command: cmd.Command) -> frozenset[str]:
    return TARGETS[type(command)]


class Tracker:
    """Accumulates the events of one command: acceptance or rejection, then a target."""

    def __init__(self, command: cmd.Command) -> None:
        self.command = command
        self.targets: Collection[str] = targets_of(command)
        self.status: Status = "pending"
        self.reason = ""
        self.event: ev.Event | None = None

    @property
    def settled(self) -> bool:
        return self.status in ("done", "rejected")

    def see(self, event: ev.Event) -> None:
        if self.settled:
            return
        if event.command_id == self.command.command_id:
            if isinstance(event, ev.CommandRejected):
                self.status, self.reason, self.event = "rejected", event.reason, event
                return
            if self.status == "pending":
                self.status, self.event = "accepted", event
        if self.status == "accepted" and ev.event_type(event) in self.targets:
            self.status, self.event = "done", event

    def result(self, run: RunSummary | None) -> CommandStatus:
        return CommandStatus(
            run_id=self.command.run_id,
            command_id=self.command.command_id,
            command=cmd.command_type(self.command),
            status=self.status,
            reason=self.reason,
            event=self.event,
            run=run,
        )


async def from_history(client: Client, tracker: Tracker) -> None:
    """Feed the tracker what is already on record: the run's events, its tombstone (a
    delete that took effect), or a rejection of a command for a run without history."""
    run_id = tracker.command.run_id
    command_id = tracker.command.command_id
    for _, event in await client.store.history(run_id):
        tracker.see(event)
        if tracker.settled:
            return
    if tracker.status != "pending":
        return
    tomb = await client.store.tombstone(run_id)
    if tomb is not None and tomb.command_id == command_id:
        tracker.status = "done"
        tracker.event = ev.RunDeleted(
            at=tomb.deleted_at,
            command_id=command_id,
            actor=tomb.actor,
            effects_left=tomb.effects_left,
            irreversible=tomb.irreversible,
        )
        return
    if await client.redis.exists(client.keys.rejected(run_id, command_id)):
        tracker.status = "rejected"
        tracker.reason = "rejected (the reason is no longer on the feed)"
        feed = client.keys.feed(client.keys.shard_of(run_id))
        entries = replies.entries(await client.redis.xrevrange(feed, count=FEED_LOOKBACK))
        for _, fields in entries:
            if fields[Fields.RUN].decode() != run_id:
                continue
            event = ev.decode_event(fields[Fields.EVENT])
            if isinstance(event, ev.CommandRejected) and event.command_id == command_id:
                tracker.reason, tracker.event = event.reason, event
                return


async def follow(
    client: Client, tracker: Tracker, since: str, timeout: float, until: Status
) -> None:  # until: "accepted" or "done"
    """Read the run's shard feed from ``since`` until the tracker reaches ``until``
    (accepted: accepted or rejected; done: done or rejected) or ``timeout`` passes."""
    run_id = tracker.command.run_id
    feed = client.keys.feed(client.keys.shard_of(run_id))
    deadline = time.monotonic() + timeout

    def reached() -> bool:
        return tracker.settled or (until == "accepted" and tracker.status == "accepted")

    while not reached():
        left = deadline - time.monotonic()
        if left <= 0:
            return
        block = max(1, int(min(left, 1.0) * 1000))
        reply = replies.streams(
            await multi_read.xread(client.redis, {feed: since}, count=500, block=block)
        )
        for _, entries in reply:
            for entry_id, fields in entries:
                since = entry_id.decode()
                if fields[Fields.RUN].decode() == run_id:
                    tracker.see(ev.decode_event(fields[Fields.EVENT]))
                    if reached():
                        return
