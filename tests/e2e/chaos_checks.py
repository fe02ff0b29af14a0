"""The chaos suite's checks: once the service is at rest, read nothing but Redis data and
report every broken promise (lost, doubled, wrong state, wrong network) with evidence,
rather than raising at the first."""

from __future__ import annotations

import contextlib
import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from redis.exceptions import RedisError

from runstream.client import Client
from runstream.contracts import commands as cmd
from runstream.contracts import events as ev
from runstream.domain.run import RunState, apply, summarize
from runstream.domain.scenarios import Context
from runstream.keys import Fields
from runstream.scenarios.synthetic import SCENARIO as SYNTHETIC
from runstream.scenarios.synthetic import SyntheticParams
from runstream.store import replies

from .chaos_fleet import EXIT_SLACK_S, SHUTDOWN_GRACE_S, Failover, Fleet, text
from .chaos_load import Ledger

ACTIVE_STATES = ("queued", "running", "reverting")

# Event each command type leads to when it is accepted (DeleteRun --revert starts a revert).
ACCEPTED_EVENT: dict[str, tuple[str, ...]] = {
    "StartRun": ("RunQueued",),
    "StopRun": ("RunStopped",),
    "ContinueRun": ("RunContinued",),
    "CancelRun": ("RunCancelled",),
    "RevertRun": ("RevertStarted",),
    "DeleteRun": ("RunDeleted", "RevertStarted"),
}


# =========================================================================== quiescence
def _id_tuple(entry_id: Any) -> tuple[int, int]:
    ms, _, seq = text(entry_id).partition("-")
    return int(ms), int(seq or 0)


async def quiet_status(client: Client) -> list[str]:
    """What still moves: undelivered or unacked commands, active runs, runnable runs."""
    redis, keys = client.redis, client.keys
    busy: list[str] = []
    for shard in range(keys.shards):
        stream = keys.commands(shard)
        info = await redis.xinfo_stream(stream)
        groups = await redis.xinfo_groups(stream)
        group = next((g for g in groups if text(g["name"]) == keys.group), None)
        if group is None:
            busy.append(f"shard {shard}: no '{keys.group}' group")
            continue
        last = _id_tuple(info["last-generated-id"])
        if group["pending"]:
            busy.append(f"shard {shard}: {group['pending']} pending")
        if _id_tuple(group["last-delivered-id"]) < last:
            busy.append(
                f"shard {shard}: undelivered (last-delivered {text(group['last-delivered-id'])}, "
                f"last entry {text(info['last-generated-id'])}, lag {group.get('lag')})"
            )
        runnable = await redis.zrange(keys.runnable(shard), 0, -1)
        if runnable:
            busy.append(f"shard {shard}: runnable {[text(r) for r in runnable]}")
    active = [r for r in await client.list_runs() if r.state in ACTIVE_STATES]
    if active:
        busy.append(f"active runs: {[(r.id, r.state) for r in active]}")
    return busy


async def stuck_evidence(client: Client, busy: list[str]) -> str:
    """Why the service did not come to rest: pending entries and the active runs' tails."""
    redis, keys = client.redis, client.keys
    lines = ["still busy: " + "; ".join(busy)]
    for shard in range(keys.shards):
        with contextlib.suppress(RedisError):
            pending = await redis.xpending_range(
                keys.commands(shard), keys.group, min="-", max="+", count=20
            )
            for p in pending:
                lines.append(f"  shard {shard} pending {p}")
    for run in await client.list_runs():
        if run.state not in ACTIVE_STATES:
            continue
        lease = await redis.get(keys.lease(run.id))
        ttl = await redis.pttl(keys.lease(run.id))
        lines.append(f"  run {run.id} {run.state} lease={lease!r} pttl={ttl}")
        for eid, event in (await client.store.history(run.id))[-6:]:
            lines.append(f"    {eid} {_event_line(event)}")
    return "\n".join(lines)


def _event_line(event: ev.Event) -> str:
    data = msgspec.to_builtins(ev.slim(event))
    data.pop("at", None)
    return json.dumps(data, sort_keys=True)[:300]


# =========================================================================== the data
@dataclass
class FeedEvent:
    entry_id: str
    shard: int
    run_id: str
    version: int
    event: ev.Event


@dataclass
class Data:
    """Everything the checks read, taken from Redis once the service is at rest."""

    feed: list[FeedEvent]
    dlq: list[tuple[int, str, dict[bytes, bytes]]]
    tombs: dict[str, dict[str, Any]]
    audit_runs: list[str]
    index: dict[str, Any]  # run_id -> RunSummary
    histories: dict[str, list[tuple[str, ev.Event]]]
    loaded: dict[str, RunState]
    summaries: dict[str, Any]
    values: dict[str, str]
    stamps: dict[str, str]
    outbox: list[dict[str, str]]
    leftover_events: dict[str, int]  # run_id -> events stream length for deleted runs
    reservations: dict[str, str]  # element -> token of the chunk reserving it


async def collect(client: Client) -> Data:
    redis, keys = client.redis, client.keys
    feed: list[FeedEvent] = []
    dlq: list[tuple[int, str, dict[bytes, bytes]]] = []
    tombs: dict[str, dict[str, Any]] = {}
    audit_runs: list[str] = []
    for shard in range(keys.shards):
        for entry_id, f in replies.entries(await redis.xrange(keys.feed(shard))):
            feed.append(
                FeedEvent(
                    text(entry_id),
                    shard,
                    f[Fields.RUN].decode(),
                    int(f[Fields.VERSION]),
                    ev.decode_event(f[Fields.EVENT]),
                )
            )
        for entry_id, f in replies.entries(await redis.xrange(keys.dlq(shard))):
            dlq.append((shard, text(entry_id), f))
        for run_id, raw in (await redis.hgetall(keys.tombs(shard))).items():
            tombs[text(run_id)] = json.loads(raw)
        for _, f in replies.entries(await redis.xrange(keys.audit(shard))):
            audit_runs.append(f[Fields.RUN_ID].decode())
    index = {r.id: r for r in await client.list_runs()}
    histories: dict[str, list[tuple[str, ev.Event]]] = {}
    loaded: dict[str, RunState] = {}
    summaries: dict[str, Any] = {}
    for run_id in index:
        histories[run_id] = await client.store.history(run_id)
        loaded[run_id] = (await client.store.load(run_id)).state
        summaries[run_id] = await client.get(run_id)
    leftover = {}
    for run_id in tombs:
        n = await redis.xlen(keys.events(run_id))
        if n:
            leftover[run_id] = n
    values = await client.network.elements()
    stamps = await client.network.all_stamps()
    outbox = [
        {"id": text(i), **{text(k): text(v) for k, v in f.items()}}
        for i, f in replies.entries(await redis.xrange(keys.outbox))
    ]
    reservations = await client.network.reservations()
    return Data(
        feed, dlq, tombs, audit_runs, index, histories, loaded, summaries, values, stamps,
        outbox, leftover, reservations,
    )  # fmt: skip


# =========================================================================== checks
@dataclass
class Findings:
    """Problems by category; ``lost`` and ``doubled`` are the headline figures."""

    lost: list[str] = field(default_factory=list)
    doubled: list[str] = field(default_factory=list)
    dlq: list[str] = field(default_factory=list)
    state: list[str] = field(default_factory=list)
    network: list[str] = field(default_factory=list)
    outbox: list[str] = field(default_factory=list)
    workers: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # observations, not failures
    # On a cluster: findings about nothing but what was acknowledged before the last
    # failover, which asynchronous replication may lose (README, Durability).
    exposed: list[str] = field(default_factory=list)
    checked: Counter[str] = field(default_factory=Counter)  # what the checks covered

    def failures(self) -> dict[str, list[str]]:
        return {
            name: items
            for name, items in (
                ("lost", self.lost),
                ("doubled", self.doubled),
                ("dead letters", self.dlq),
                ("run state", self.state),
                ("network", self.network),
                ("outbox", self.outbox),
                ("workers", self.workers),
            )
            if items
        }


def _by_command(feed: list[FeedEvent]) -> dict[str, list[FeedEvent]]:
    out: dict[str, list[FeedEvent]] = defaultdict(list)
    for fe in feed:
        if fe.event.command_id:
            out[fe.event.command_id].append(fe)
    return out


def _feed_line(fe: FeedEvent) -> str:
    return f"{fe.entry_id} run={fe.run_id} v={fe.version} {_event_line(fe.event)}"


def check_commands(ledger: Ledger, data: Data, found: Findings) -> None:
    """1 and 2: every accepted command has exactly one outcome (or only rejections)."""
    by_cid = _by_command(data.feed)
    for cid, sent in ledger.sent.items():
        if not sent.entries:
            continue
        found.checked["commands: outcome checked"] += 1
        outcomes = by_cid.get(cid, [])
        if not outcomes:
            found.lost.append(
                f"{sent.kind} {cid} for run {sent.command.run_id} (stream entries "
                f"{sent.entries}, failed XADDs {sent.failed_xadds}): no event on the feed"
            )
            continue
        applied = [o for o in outcomes if not isinstance(o.event, ev.CommandRejected)]
        rejected = [o for o in outcomes if isinstance(o.event, ev.CommandRejected)]
        if len(applied) > 1:
            found.doubled.append(
                f"{sent.kind} {cid} applied {len(applied)} times:\n    "
                + "\n    ".join(_feed_line(o) for o in applied)
            )
        for o in applied:
            want = ACCEPTED_EVENT[sent.kind]
            if ev.event_type(o.event) not in want or o.run_id != sent.command.run_id:
                found.state.append(
                    f"{sent.kind} {cid} led to {ev.event_type(o.event)} for run {o.run_id}; "
                    f"expected one of {want} for {sent.command.run_id}"
                )
        for o in rejected:
            assert isinstance(o.event, ev.CommandRejected)
            if not o.event.reason or o.event.command_type != sent.kind:
                found.state.append(f"rejection of {cid} is malformed: {_feed_line(o)}")
        if sent.note == "expect-reject" and applied:
            found.state.append(
                f"{sent.kind} {cid} for run {sent.command.run_id} should have been rejected, "
                f"was applied: {_feed_line(applied[0])}"
            )
        if sent.note == "restart" and applied:
            found.notes.append(
                f"StartRun {cid} for existing run {sent.command.run_id} overtook the run's "
                "first StartRun (commands for one run, handled by two workers, in either order)"
            )
        if applied and rejected:
            first_rejected = min(r.entry_id for r in rejected)
            if _id_tuple(first_rejected) < _id_tuple(applied[0].entry_id) and all(
                "deleted" not in r.event.reason  # type: ignore[union-attr]
                for r in rejected
            ):
                found.notes.append(
                    f"{sent.kind} {cid} was first rejected, then applied by a re-published "
                    f"copy: {_feed_line(rejected[0])} / {_feed_line(applied[0])}"
                )
    # Garbage that looks like a command must never act.
    for g in ledger.garbage:
        if g.command_id and g.command_id in by_cid:
            found.doubled.append(
                f"garbage ({g.kind}) with command_id {g.command_id} produced events: "
                + "; ".join(_feed_line(o) for o in by_cid[g.command_id])
            )
    # Nothing on the feed names a command no one sent.
    known = set(ledger.sent)
    for cid, outcomes in by_cid.items():
        if cid not in known:
            found.doubled.append(
                f"events for a command_id no one sent ({cid}): {_feed_line(outcomes[0])}"
            )
    # Within each surviving run's history a command_id appears at most once.
    for run_id, history in data.histories.items():
        counts = Counter(e.command_id for _, e in history if e.command_id)
        for cid, n in counts.items():
            if n > 1:
                found.doubled.append(
                    f"command {cid} appears {n} times in the history of run {run_id}:\n    "
                    + "\n    ".join(
                        f"{i} {_event_line(e)}" for i, e in history if e.command_id == cid
                    )
                )


def set_aside_failover_losses(
    ledger: Ledger, failovers: Sequence[Failover], found: Findings
) -> int:
    """After master failovers (a cluster), move to ``found.exposed`` the findings that
    name only commands acknowledged, and runs started, before the last failover's
    replica was promoted: a master's last writes may not have reached its replica, and a
    command or event lost there leaves a command without outcome, one applied again, or a
    run whose history is shorter than its feed or its network. A finding that names
    anything acknowledged after the promotion, or names nothing we sent, stays a failure;
    so do worker failures. Returns how many commands were acknowledged after it."""
    if not failovers:
        return len(ledger.sent)
    settled = max(f.promoted_at for f in failovers)
    before: set[str] = set()
    after: set[str] = set()
    for cid, sent in ledger.sent.items():
        if not sent.entries:
            continue
        exposed = sent.acked_at <= settled
        (before if exposed else after).add(cid)
        if isinstance(sent.command, cmd.StartRun) and sent.command.run_id in ledger.started:
            (before if exposed else after).add(sent.command.run_id)
    after -= before  # a run started before stays exposed, whatever came after
    for name in ("lost", "doubled", "dlq", "state", "network", "outbox"):
        items: list[str] = getattr(found, name)
        kept = []
        for item in items:
            names_before = any(i in item for i in before)
            names_after = any(i in item for i in after)
            if names_before and not names_after:
                found.exposed.append(f"{name}: {item}")
            else:
                kept.append(item)
        items[:] = kept
    return sum(1 for i in after if i in ledger.sent)


def check_dead_letters(ledger: Ledger, data: Data, found: Findings) -> None:
    """The DLQ holds exactly the garbage we sent, each with a reason; no valid command.

    Entries are told apart by shard and id: two shards' streams can hand out the same id.
    """
    by_source: dict[tuple[int, str], list[tuple[str, dict[bytes, bytes]]]] = defaultdict(list)
    for shard, letter_id, f in data.dlq:
        by_source[shard, f.get(Fields.SOURCE_ID, b"").decode()].append((letter_id, f))
    garbage_entries = {(g.stream_shard, e): g for g in ledger.garbage for e in g.entries}
    valid_entries = {(s.shard, e): s for s in ledger.sent.values() for e in s.entries}

    def reason(f: dict[bytes, bytes]) -> str:
        return f.get(Fields.REASON, b"").decode(errors="replace")

    for (shard, source), letters in by_source.items():
        where = f"shard {shard} entry {source}"
        for letter_id, f in letters:
            if not reason(f):
                found.dlq.append(f"dead letter {letter_id} ({where}) has no reason")
        if (shard, source) in valid_entries:
            s = valid_entries[shard, source]
            found.lost.append(
                f"valid {s.kind} {s.command.command_id} ({where}) was dead-lettered: "
                f"{reason(letters[0][1])}"
            )
        elif (shard, source) in garbage_entries:
            g = garbage_entries[shard, source]
            payload = letters[0][1].get(Fields.COMMAND, b"")
            if g.nonce not in payload and g.fields.get(Fields.COMMAND) != payload:
                found.dlq.append(f"dead letter for {where} ({g.kind}) lost its payload")
            if len(letters) > 1:
                found.dlq.append(
                    f"garbage {g.kind} ({where}) dead-lettered {len(letters)} times: "
                    + ", ".join(f"{lid} ({reason(f)[:80]})" for lid, f in letters)
                )
        else:
            # An entry we did not see accepted: a retried XADD whose first try landed.
            payload = letters[0][1].get(Fields.COMMAND, b"")
            g2 = next((g for g in ledger.garbage if g.nonce in payload), None)
            if g2 is None or not g2.failed_xadds:
                found.dlq.append(f"dead letter for unknown {where}: {reason(letters[0][1])[:200]}")
    for (shard, entry), g in garbage_entries.items():
        found.checked["garbage: dead letter checked"] += 1
        if (shard, entry) not in by_source:
            found.dlq.append(f"garbage {g.kind} (shard {shard} entry {entry}) is not in the DLQ")


def _fold(run_id: str, history: list[tuple[str, ev.Event]]) -> RunState:
    state = RunState(run_id=run_id)
    for _, event in history:
        apply(state, event)
    return state


def _diff(a: Any, b: Any) -> str:
    da, db = msgspec.to_builtins(a), msgspec.to_builtins(b)
    keys = sorted(set(da) | set(db))
    return ", ".join(f"{k}: {da.get(k)!r} != {db.get(k)!r}" for k in keys if da.get(k) != db.get(k))


@dataclass
class Replay:
    """A surviving run's confirmed chunks, replayed from its history."""

    values: dict[str, str]
    stamps: dict[str, str]
    notifications: list[str]
    items: int


def replay_history(run_id: str, history: list[tuple[str, ev.Event]], found: Findings) -> Replay:
    """Chunks in order: ranges contiguous from 0, effects numbered without overlap, each
    effect's recorded before-state the one the previous effects left."""
    prepared: dict[int, ev.ChunkPrepared] = {}
    resolved: set[int] = set()
    checkpoint = 0
    next_effect = 1
    values: dict[str, str] = {}
    stamps: dict[str, str] = {}
    notes: list[str] = []

    def bad(msg: str) -> None:
        tail = "\n    ".join(f"{i} {_event_line(e)}" for i, e in history[-8:])
        found.state.append(f"run {run_id}: {msg}\n    history tail:\n    {tail}")

    for entry_id, event in history:
        if isinstance(event, ev.ChunkPrepared):
            if event.chunk in prepared:
                bad(f"chunk {event.chunk} prepared twice ({entry_id})")
            if prepared and any(c not in resolved for c in prepared):
                bad(f"chunk {event.chunk} prepared while another is unresolved ({entry_id})")
            if event.items_from != checkpoint:
                bad(
                    f"chunk {event.chunk} starts at item {event.items_from}, "
                    f"checkpoint {checkpoint}"
                )
            if event.first_effect != next_effect:
                bad(
                    f"chunk {event.chunk} first effect {event.first_effect}, expected {next_effect}"
                )
            next_effect = event.first_effect + len(event.effects)
            prepared[event.chunk] = event
        elif isinstance(event, ev.ItemsProcessed | ev.ChunkVoided):
            p = prepared.get(event.chunk)
            if p is None or event.chunk in resolved:
                bad(
                    f"{ev.event_type(event)} of chunk {event.chunk} without a pending chunk "
                    f"({entry_id})"
                )
                continue
            resolved.add(event.chunk)
            if isinstance(event, ev.ChunkVoided):
                continue
            if (event.items_to, event.effects, event.irreversible) != (
                p.items_to, len(p.effects), len(p.notifications)
            ):  # fmt: skip
                bad(f"ItemsProcessed of chunk {event.chunk} does not match its ChunkPrepared")
            checkpoint = p.items_to
            for j, rec in enumerate(p.effects):
                stamp = ev.stamp_of(run_id, p.first_effect + j)
                if (values.get(rec.element, ""), stamps.get(rec.element, "")) != (
                    rec.before, rec.before_stamp
                ):  # fmt: skip
                    bad(
                        f"effect {p.first_effect + j} on {rec.element} records before "
                        f"{rec.before!r}/{rec.before_stamp!r}, but the run's own effects left "
                        f"{values.get(rec.element, '')!r}/{stamps.get(rec.element, '')!r}"
                    )
                if rec.after:
                    values[rec.element] = rec.after
                else:
                    values.pop(rec.element, None)
                stamps[rec.element] = stamp
            notes.extend(p.notifications)
    return Replay(values, stamps, notes, checkpoint)


def synthetic_network(
    run_id: str, args: dict[str, Any], items: int
) -> tuple[dict[str, str], list[str]]:
    """What ``items`` items of a synthetic run write, computed afresh (no Redis)."""
    params = msgspec.convert(args, SyntheticParams)
    params = msgspec.structs.replace(params, delay_ms=0, fail_at=-1)
    ctx = Context(run_id, lambda _element: None)
    for i in range(items):
        SYNTHETIC.step(ctx, params, i)
    values: dict[str, str] = {}
    for element, after in ctx.network.changes:
        if after:
            values[element] = after
        else:
            values.pop(element, None)
    return values, ctx.notifications


def namespace_of(element: str) -> str | None:
    """The run id an element belongs to: ``n:<R>:<i>`` / ``e:<R>:<i>|<R>:<j>``."""
    if element[:2] not in ("n:", "e:"):
        return None
    head = element[2:].split("|", 1)[0]
    run_id, sep, _ = head.partition(":")
    return run_id if sep else None


def check_runs(ledger: Ledger, data: Data, found: Findings) -> None:
    """3 and 4: every run's state is what its history says, and the network and outbox are
    exactly what its confirmed chunks wrote (or nothing, once reverted)."""
    feed_by_run: dict[str, list[FeedEvent]] = defaultdict(list)
    for fe in data.feed:
        if fe.version > 0:
            feed_by_run[fe.run_id].append(fe)
    queued = {
        r for r, evs in feed_by_run.items() if any(isinstance(f.event, ev.RunQueued) for f in evs)
    }

    # Every run that was queued is either still there or has a tombstone; nothing else is.
    for run_id in sorted(queued):
        if run_id not in data.index and run_id not in data.tombs:
            found.lost.append(f"run {run_id} was queued but is neither listed nor tombstoned")
    for run_id in data.index:
        if run_id not in queued:
            found.state.append(f"run {run_id} is listed but was never queued on the feed")
        if run_id in data.tombs:
            found.state.append(f"run {run_id} is both listed and tombstoned")
    for run_id in data.tombs:
        if run_id not in queued:
            found.state.append(f"tombstone for run {run_id} that was never queued")
        if not any(isinstance(f.event, ev.RunDeleted) for f in feed_by_run.get(run_id, [])):
            found.state.append(f"run {run_id} is tombstoned but RunDeleted is not on the feed")
    for run_id, n in data.leftover_events.items():
        found.state.append(f"deleted run {run_id} still has {n} events stored")
    for run_id, n in Counter(data.audit_runs).items():
        if n > 1:
            found.doubled.append(f"run {run_id} has {n} tombstones in the audit stream")
    for run_id in ledger.never_started:
        if run_id in queued:
            found.state.append(f"run {run_id} was started by a command that should be rejected")

    for run_id, evs in feed_by_run.items():
        n = sum(1 for f in evs if isinstance(f.event, ev.RunQueued))
        if n > 1:
            found.doubled.append(f"run {run_id} was queued {n} times")

    # The feed carries each version of each run exactly once, in order.
    for run_id, evs in feed_by_run.items():
        versions = [f.version for f in evs]
        if versions != list(range(1, len(versions) + 1)):
            counts = Counter(versions)
            dup = sorted(v for v, c in counts.items() if c > 1)
            gaps = sorted(set(range(1, max(versions) + 1)) - set(versions))
            found.doubled.append(
                f"run {run_id}: feed versions not 1..n (duplicated {dup[:10]}, missing {gaps[:10]})"
            )

    net_by_run: dict[str | None, set[str]] = defaultdict(set)
    for element in set(data.values) | set(data.stamps):
        net_by_run[namespace_of(element)].add(element)
    for owner, elements in net_by_run.items():
        if owner is None or owner not in queued:
            found.network.append(
                f"{len(elements)} network elements belong to run {owner!r}, which was never "
                f"started: {sorted(elements)[:5]}"
            )
    # At rest every chunk is settled: a reservation left would block other writers.
    for element, token in sorted(data.reservations.items()):
        found.network.append(f"{element} is still reserved at rest by chunk {token}")
    found.checked["reservations at rest"] += 1
    outbox_by_run: dict[str, list[str]] = defaultdict(list)
    for note in data.outbox:
        outbox_by_run[note.get("run_id", "")].append(note.get("message", ""))
    for run_id in outbox_by_run:
        if run_id not in queued:
            found.outbox.append(
                f"{len(outbox_by_run[run_id])} notifications for run {run_id!r}, never started"
            )

    for run_id in sorted(queued):
        evs = feed_by_run[run_id]
        queued_event = next(f.event for f in evs if isinstance(f.event, ev.RunQueued))
        assert isinstance(queued_event, ev.RunQueued)
        reverted = any(isinstance(f.event, ev.RunReverted) for f in evs)
        processed = max(
            (f.event.items_to for f in evs if isinstance(f.event, ev.ItemsProcessed)), default=0
        )
        irreversible = sum(
            f.event.irreversible for f in evs if isinstance(f.event, ev.ItemsProcessed)
        )
        want_values, want_notes = synthetic_network(run_id, queued_event.args, processed)
        have_values = {e: data.values[e] for e in net_by_run.get(run_id, ()) if e in data.values}
        have_stamps = {e: data.stamps[e] for e in net_by_run.get(run_id, ()) if e in data.stamps}
        where = "deleted" if run_id in data.tombs else data.index[run_id].state
        context = f"run {run_id} ({where}, {processed} items processed, reverted={reverted})"

        # Notifications: sent once per confirmed chunk's notifications, reverted or not.
        if outbox_by_run.get(run_id, []) != want_notes or irreversible != len(want_notes):
            found.outbox.append(
                f"{context}: outbox holds {len(outbox_by_run.get(run_id, []))} notifications, "
                f"confirmed chunks sent {irreversible}, {processed} items make {len(want_notes)}"
            )

        if reverted:
            done = next(f for f in evs if isinstance(f.event, ev.RunReverted))
            assert isinstance(done.event, ev.RunReverted)
            if done.event.skipped and run_id in data.tombs:
                # (A surviving run's skips are reported below, with their history.)
                found.state.append(
                    f"{context}: its revert skipped {done.event.skipped} effects as conflicts, "
                    f"in a namespace no one else writes ({_feed_line(done)})"
                )
            if have_values or have_stamps:
                found.network.append(
                    f"{context}: reverted, yet {len(have_values)} values / {len(have_stamps)} "
                    f"stamps remain in its namespace, e.g. {sorted(have_stamps.items())[:3]}"
                )
        elif have_values != want_values:
            missing = sorted(set(want_values) - set(have_values))
            extra = sorted(set(have_values) - set(want_values))
            differ = sorted(
                e for e in set(want_values) & set(have_values) if want_values[e] != have_values[e]
            )
            found.network.append(
                f"{context}: network differs from its {processed} items: missing {len(missing)} "
                f"{missing[:3]}, extra {len(extra)} {extra[:3]}, "
                f"different {len(differ)} {differ[:3]}"
            )
        elif set(have_stamps) != set(have_values) or any(
            not s.startswith(run_id + "/") for s in have_stamps.values()
        ):
            found.network.append(f"{context}: stamps do not match its elements")

        found.checked["runs: network vs items"] += 1
        if run_id in data.tombs:
            tomb = data.tombs[run_id]
            if tomb.get("effects_left", 0) == 0 and have_values:
                found.network.append(
                    f"{context}: tombstone says no effects left, yet {len(have_values)} "
                    "elements remain in its namespace"
                )
            continue

        # ---- a surviving run: history, state, summary, network stamps.
        history = data.histories[run_id]
        folded = _fold(run_id, history)
        loaded = data.loaded[run_id]
        if msgspec.to_builtins(folded) != msgspec.to_builtins(loaded):
            found.state.append(
                f"{context}: EventStore.load differs from the fold of its history: "
                f"{_diff(folded, loaded)}"
            )
        summary = data.summaries[run_id]
        if msgspec.to_builtins(summarize(folded)) != msgspec.to_builtins(summary):
            found.state.append(
                f"{context}: its summary differs from its history: "
                f"{_diff(summarize(folded), summary)}"
            )
        if folded.state in ACTIVE_STATES or folded.pending is not None:
            found.state.append(f"{context}: still {folded.state}, pending chunk {folded.pending}")
        if folded.state == "succeeded" and folded.items_processed != folded.items_total:
            found.state.append(
                f"{context}: succeeded after {folded.items_processed} of {folded.items_total} items"
            )
        if [f.version for f in evs][-1:] != [folded.version]:
            found.state.append(
                f"{context}: feed ends at a version other than its history's ({folded.version})"
            )
        for (eid, hist_event), fe in zip(history, evs, strict=False):
            if msgspec.to_builtins(ev.slim(hist_event)) != msgspec.to_builtins(fe.event):
                found.state.append(f"{context}: history {eid} and feed {fe.entry_id} differ")
                break
        found.checked["runs: history folded and replayed"] += 1
        found.checked["chunks replayed"] += sum(
            1 for _, e in history if isinstance(e, ev.ItemsProcessed)
        )
        found.checked["chunks voided"] += sum(
            1 for _, e in history if isinstance(e, ev.ChunkVoided)
        )
        replay = replay_history(run_id, history, found)
        if replay.items != folded.items_processed:
            found.state.append(
                f"{context}: chunks cover {replay.items} items, state says {folded.items_processed}"
            )
        if replay.notifications != want_notes:
            found.outbox.append(
                f"{context}: its chunks' notifications are not its items' notifications"
            )
        if folded.state == "reverted":
            if folded.compensated != folded.applied or folded.skipped:
                skipped = [
                    k for _, e in history if isinstance(e, ev.EffectsCompensated) for k in e.skipped
                ]
                stories = "\n".join(
                    element_story(run_id, history, k.element, data) for k in skipped[:3]
                )
                found.state.append(
                    f"{context}: reverted with {folded.compensated} of {folded.applied} effects "
                    f"compensated and {folded.skipped} skipped (its namespace is private); "
                    f"skipped: {[(k.effect_no, k.element) for k in skipped[:10]]}\n{stories}"
                )
            continue
        if replay.values != have_values or replay.stamps != have_stamps:
            bad_stamps = sorted(
                e
                for e in set(replay.stamps) | set(have_stamps)
                if replay.stamps.get(e) != have_stamps.get(e)
            )
            found.network.append(
                f"{context}: network is not the replay of its confirmed effects; stamps differ "
                f"on {len(bad_stamps)} elements, e.g. "
                + ", ".join(
                    f"{e}: {replay.stamps.get(e)!r} vs {have_stamps.get(e)!r}"
                    for e in bad_stamps[:3]
                )
            )
        if replay.values != want_values:
            found.network.append(f"{context}: its recorded effects are not what its items write")


def element_story(
    run_id: str, history: list[tuple[str, ev.Event]], element: str, data: Data
) -> str:
    """Every effect of the run on one element, with its chunk's fate, and the element now."""
    fate: dict[int, str] = {}
    for entry_id, e in history:
        if isinstance(e, ev.ItemsProcessed):
            fate[e.chunk] = f"confirmed {entry_id}"
        elif isinstance(e, ev.ChunkVoided):
            fate[e.chunk] = f"voided {entry_id} ({e.reason})"
    lines = [f"    element {element}:"]
    for entry_id, e in history:
        if isinstance(e, ev.ChunkPrepared):
            for j, rec in enumerate(e.effects):
                if rec.element == element:
                    lines.append(
                        f"      effect {e.first_effect + j} (chunk {e.chunk} prepared {entry_id}, "
                        f"{fate.get(e.chunk, 'unresolved')}): before_stamp {rec.before_stamp!r} "
                        f"before {rec.before!r} after {rec.after!r}"
                    )
        elif isinstance(e, ev.EffectsCompensated):
            for k in e.skipped:
                if k.element == element:
                    lines.append(f"      skipped effect {k.effect_no} at {entry_id}: {k.reason}")
    lines.append(
        f"      now: stamp {data.stamps.get(element)!r} value {data.values.get(element)!r}"
    )
    return "\n".join(lines)


def dump_data(data: Data, path: Path) -> None:
    """The collected Redis data as JSON, for the evidence folder."""
    body = {
        "feed": [msgspec.to_builtins(f) for f in data.feed],
        "histories": {
            r: [[i, msgspec.to_builtins(e)] for i, e in h] for r, h in data.histories.items()
        },
        "tombs": data.tombs,
        "dlq": [
            [shard, lid, {k.decode(): v.decode(errors="replace") for k, v in f.items()}]
            for shard, lid, f in data.dlq
        ],
        "stamps": data.stamps,
        "outbox": data.outbox,
        "reservations": data.reservations,
    }
    path.write_bytes(msgspec.json.encode(body))


def check_workers(
    fleet: Fleet, exits: dict[str, tuple[int | None, float]], found: Findings
) -> None:
    found.workers.extend(fleet.unexpected)
    for name, (code, took) in exits.items():
        if code != 0 or took > SHUTDOWN_GRACE_S + EXIT_SLACK_S:
            w = next(w for w in fleet.procs if w.name == name)
            found.workers.append(
                f"worker {name} on SIGTERM: exit {code} after {took:.2f}s (grace "
                f"{SHUTDOWN_GRACE_S:g}s); log tail:\n{w.log_tail(2000)}"
            )
