"""Command handling: load the run, apply one command, save; one handler per command type.

A batch of messages from one shard's command stream is decoded, grouped by run and
handled in stream order within a run. The first command of every run in the batch goes
together: the runs loaded in one pipelined round trip, decided, and saved in another. The
rest (a run's later commands in the batch, an append that met a newer version) follow one
by one, runs concurrently. Each command's events are appended together with the ack of
its message (see ``EventStore.save``): a command is acknowledged exactly when its outcome
is stored.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import msgspec
import structlog

from runstream.contracts import commands as cmd
from runstream.contracts import events as ev
from runstream.domain.run import Rejected, Run
from runstream.domain.scenarios import BadArguments, Registry
from runstream.keys import Fields
from runstream.redis_trouble import REDIS_TROUBLE, is_redis_trouble
from runstream.settings import Settings
from runstream.store import dlq, outputs
from runstream.store.events import Ack, AppendResult, EventStore, Save
from runstream_worker import metrics

log = structlog.get_logger("runstream.handlers")

# Attempts at one command when its run keeps changing under it (optimistic concurrency).
MAX_ATTEMPTS = 20

Decide = Callable[[Run, Any, float], Awaitable[None]]
C = TypeVar("C", bound=cmd.Command)
Items = list[tuple[str, cmd.Command]]


@dataclass(frozen=True, slots=True)
class Decision:
    """What a command did to its run: the save to make (the run's new events, or the
    rejection recorded in its history), or, for a run without history, a rejection that
    only goes on the feed (``save`` None)."""

    save: Save | None
    rejected: str | None = None
    bad_input: bool = False


class _Stale:
    """The append met a newer version: decide again on the fresh run."""


STALE = _Stale()


def _decided_by(
    method: Callable[[Run, C, float], None],
) -> Callable[[Run, C, float], Awaitable[None]]:
    """A handler that is just the aggregate's method for the command."""

    async def decide(run: Run, command: C, now: float) -> None:
        method(run, command, now)

    return decide


class Handlers:
    """The registered handler of each command type; registering one twice is an error."""

    def __init__(self) -> None:
        self._by_type: dict[type[Any], Decide] = {}

    def register(self, command_type: type[Any], handler: Decide) -> None:
        if command_type in self._by_type:
            raise RuntimeError(f"a handler for {command_type.__name__} is already registered")
        self._by_type[command_type] = handler

    def for_command(self, command: cmd.Command) -> Decide:
        return self._by_type[type(command)]

    def check_complete(self) -> None:
        missing = [t.__name__ for t in cmd.COMMAND_TYPES if t not in self._by_type]
        if missing:
            raise RuntimeError(f"no handler registered for {', '.join(missing)}")


class RunSlots(Protocol):
    """The executor's run slots, as command handling sees them."""

    @property
    def free_slots(self) -> int: ...

    def wake(self, run_id: str, *, at_once: bool = False) -> None: ...


class CommandProcessor:
    def __init__(
        self,
        store: EventStore,
        settings: Settings,
        registry: Registry,
        slots: RunSlots,
    ) -> None:
        self.store = store
        self.redis = store.redis
        self.keys = store.keys
        self.settings = settings
        self.registry = registry
        self.slots = slots
        self._parallel = asyncio.Semaphore(settings.max_parallel_commands)
        self.handlers = Handlers()
        self.handlers.register(cmd.StartRun, self._start)
        self.handlers.register(cmd.TrackRun, self._track)
        self.handlers.register(cmd.StopRun, _decided_by(Run.stop))
        self.handlers.register(cmd.ContinueRun, _decided_by(Run.continue_))
        self.handlers.register(cmd.CancelRun, _decided_by(Run.cancel))
        self.handlers.register(cmd.RevertRun, _decided_by(Run.revert))
        self.handlers.register(cmd.DeleteRun, _decided_by(Run.delete))
        self.handlers.register(cmd.PinRun, _decided_by(Run.pin))
        self.handlers.check_complete()

    # ------------------------------------------------------------------ handlers
    async def _start(self, run: Run, command: cmd.StartRun, now: float) -> None:
        if command.no_queue and self.slots.free_slots <= 0:
            raise Rejected(
                f"no free run slot: the worker runs {self.settings.max_parallel_runs} runs at "
                "once (RUNSTREAM_MAX_PARALLEL_RUNS); start it without --no-queue to wait queued"
            )
        scenario = self.registry.get(command.scenario)
        if command.scenario_version and command.scenario_version != scenario.version:
            raise BadArguments(
                f"scenario {scenario.name!r} is at version {scenario.version} now, not "
                f"{command.scenario_version}"
            )
        params = scenario.validate(command.args)
        args = msgspec.to_builtins(params)
        run.start(
            command,
            now,
            scenario_version=scenario.version,
            args=args,
            items_total=scenario.count(params),
            input_bytes=len(msgspec.json.encode(args)),
        )

    async def _track(self, run: Run, command: cmd.TrackRun, now: float) -> None:
        # A tracked run ran elsewhere: its scenario need not be registered here.
        try:
            version = self.registry.get(command.scenario).version
        except BadArguments:
            version = ""
        run.track(command, now, scenario_version=version)

    # ------------------------------------------------------------------ batches
    async def handle_batch(self, shard: int, entries: list[tuple[str, dict[bytes, bytes]]]) -> None:
        by_run: dict[str, Items] = {}
        for entry_id, fields in entries:
            command = await self._decode(shard, entry_id, fields)
            if command is not None:
                by_run.setdefault(command.run_id, []).append((entry_id, command))
        if not by_run:
            return
        try:
            rest = await self._first_commands_together(shard, by_run)
        except REDIS_TROUBLE as exc:
            # Nothing is lost: what was stored is acked, the rest is handled one by one
            # (the command_id dedupe answers for an append that went through unseen).
            log.warning("batch_failed", error=str(exc))
            rest = {r: (items, _blank_if_new(r, items)) for r, items in by_run.items()}
        if rest:
            await asyncio.gather(
                *(
                    self._handle_run_bounded(shard, run_id, items, run)
                    for run_id, (items, run) in rest.items()
                    if items
                )
            )

    async def _first_commands_together(
        self, shard: int, by_run: dict[str, Items]
    ) -> dict[str, tuple[Items, Run | None]]:
        """The first command of each run: loads in one round trip, saves in another. What
        is left of each run's commands, with the run to go on with (None: load it)."""
        loaded: dict[str, Run] = {}
        to_load: list[str] = []
        for run_id, items in by_run.items():
            if not isinstance(items[0][1], cmd.StartRun):
                kept = self.store.recent(run_id)
                if kept is None:
                    to_load.append(run_id)
                else:
                    loaded[run_id] = kept
        if to_load:
            loaded.update(zip(to_load, await self.store.load_many(to_load), strict=True))
        rest: dict[str, tuple[Items, Run | None]] = {}
        decided: list[tuple[str, Items, Decision]] = []
        now = time.time()
        for run_id, items in by_run.items():
            entry_id, command = items[0]
            run = loaded[run_id] if run_id in loaded else Run.blank(run_id)
            with structlog.contextvars.bound_contextvars(
                run_id=run_id, command_id=command.command_id
            ):
                try:
                    decision = await self._decide(run, command, now, Ack(shard, entry_id))
                    if decision.save is None:
                        await self._reject_without_run(
                            command,
                            decision.rejected or "",
                            now,
                            Ack(shard, entry_id),
                            bad_input=decision.bad_input,
                        )
                        rest[run_id] = (items[1:], run)
                        continue
                except Exception as exc:
                    _log_failure(exc)
                    continue  # left unacked with the run's later commands: redelivered
            decided.append((run_id, items, decision))
        results = await self.store.save_many([d.save for _, _, d in decided if d.save])
        for (run_id, items, decision), result in zip(decided, results, strict=True):
            entry_id, command = items[0]
            with structlog.contextvars.bound_contextvars(
                run_id=run_id, command_id=command.command_id
            ):
                if isinstance(result, Exception):
                    _log_failure(result)
                    continue
                try:
                    outcome = await self._settle(
                        command, decision, result, now, Ack(shard, entry_id)
                    )
                except Exception as exc:
                    _log_failure(exc)
                    continue
            if isinstance(outcome, _Stale):
                rest[run_id] = (items, None)
            else:
                rest[run_id] = (items[1:], outcome)
        return rest

    async def _handle_run_bounded(
        self, shard: int, run_id: str, items: Items, run: Run | None
    ) -> None:
        # Runs are handled concurrently, but no more at once than the connection pool serves.
        async with self._parallel:
            await self._handle_run(shard, run_id, items, run)

    async def handle_claimed(
        self, shard: int, entries: list[tuple[str, dict[bytes, bytes]]]
    ) -> None:
        """Commands another consumer read but never acked (it died, or handling failed)."""
        retry: list[tuple[str, dict[bytes, bytes]]] = []
        stream = self.keys.commands(shard)
        for entry_id, fields in entries:
            pending = await self.redis.xpending_range(
                stream, self.keys.group, min=entry_id, max=entry_id, count=1
            )
            delivered = int(pending[0]["times_delivered"]) if pending else 1
            log.info("command_claimed", entry_id=entry_id, deliveries=delivered)
            if delivered > self.settings.max_deliveries:
                await self.dead_letter(
                    shard, entry_id, fields or {}, f"handling failed {delivered - 1} times"
                )
            elif fields is None:
                # The entry was deleted from the stream (XAUTOCLAIM reports it so): nothing
                # to handle, but it must not stay pending.
                await self.redis.xack(stream, self.keys.group, entry_id)
            else:
                retry.append((entry_id, fields))
        await self.handle_batch(shard, retry)

    async def _decode(
        self, shard: int, entry_id: str, fields: dict[bytes, bytes]
    ) -> cmd.Command | None:
        raw = fields.get(Fields.COMMAND)
        try:
            if raw is None:
                raise cmd.BadCommand("message has no 'c' field holding the command")
            command = cmd.decode_command(raw, self.settings.max_command_bytes)
        except cmd.BadCommand as exc:
            await self.dead_letter(shard, entry_id, fields, str(exc))
            return None
        if self.keys.shard_of(command.run_id) != shard:
            await self.dead_letter(
                shard,
                entry_id,
                fields,
                f"run {command.run_id} belongs to shard {self.keys.shard_of(command.run_id)}",
            )
            return None
        return command

    async def dead_letter(
        self, shard: int, entry_id: str, fields: dict[bytes, bytes], reason: str
    ) -> None:
        """Park a message that can't be handled, with why; ack it so nothing waits on it."""
        if await dlq.park(self.redis, self.keys, self.settings, shard, entry_id, fields, reason):
            log.warning("dead_lettered", entry_id=entry_id, reason=reason)
            metrics.dead_lettered()
        else:
            # Claimed and handled by another worker while this one held it (paused, slow).
            log.info("dead_letter_already_handled", entry_id=entry_id)

    async def _handle_run(self, shard: int, run_id: str, items: Items, run: Run | None) -> None:
        """The run's commands one by one, in order; ``run``: as it stands (None: load it)."""
        for entry_id, command in items:
            structlog.contextvars.bind_contextvars(run_id=run_id, command_id=command.command_id)
            try:
                run = await self._handle_one(shard, run, entry_id, command)
            except Exception as exc:
                # Left unacked, with the run's later commands of this batch: the claim
                # subscriber redelivers them in order (and dead-letters one that keeps
                # failing), so a later command never overtakes a failed earlier one.
                _log_failure(exc)
                return
            finally:
                structlog.contextvars.unbind_contextvars("run_id", "command_id")

    async def _handle_one(
        self, shard: int, run: Run | None, entry_id: str, command: cmd.Command
    ) -> Run | None:
        ack = Ack(shard, entry_id)
        for attempt in range(MAX_ATTEMPTS):
            if run is None:
                # As this worker last saved it, if it did: the append checks the version.
                kept = self.store.recent(command.run_id) if attempt == 0 else None
                run = kept or await self.store.load(command.run_id)
            now = time.time()
            decision = await self._decide(run, command, now, ack)
            if decision.save is None:
                await self._reject_without_run(
                    command, decision.rejected or "", now, ack, bad_input=decision.bad_input
                )
                return run
            result = await self.store.save_one(decision.save)
            outcome = await self._settle(command, decision, result, now, ack)
            if not isinstance(outcome, _Stale):
                return outcome
            run = None  # stale: reload and decide again on the fresh state
        raise RuntimeError(
            f"run {command.run_id} kept changing; {cmd.command_type(command)} not applied"
        )

    async def _decide(self, run: Run, command: cmd.Command, now: float, ack: Ack) -> Decision:
        """The command applied to the run, or its rejection recorded: what to save."""
        rejected: str | None = None
        try:
            await self.handlers.for_command(command)(run, command, now)
        except (Rejected, BadArguments) as exc:
            run.take_events()
            if not run.exists:
                return Decision(None, str(exc), bad_input=isinstance(exc, BadArguments))
            rejected = str(exc)
            run.reject(command, rejected, now)
        tracked = [e for e in run.new_events if isinstance(e, ev.RunTracked)]
        output = outputs.of_tracked(tracked[0]) if tracked else None
        return Decision(Save(run, command.command_id, ack=ack, output=output), rejected)

    async def _settle(
        self,
        command: cmd.Command,
        decision: Decision,
        result: AppendResult,
        now: float,
        ack: Ack,
    ) -> Run | _Stale | None:
        """After the append: the run to go on with (None: load it first), or STALE."""
        assert decision.save is not None
        run = decision.save.run
        kind = cmd.command_type(command)
        if result.status == "ok":
            # Logged once the outcome is stored, and as what it was: a rejection
            # records an event too, but nothing was applied.
            if decision.rejected is not None:
                log.info("command_rejected", command=kind, reason=decision.rejected)
            else:
                log.info("command_applied", command=kind, state=run.state.state)
            outcome = "applied" if decision.rejected is None else "rejected"
            metrics.command_handled(kind, outcome, command.issued_at)
            if run.state.needs_executor:
                at_once = isinstance(command, cmd.StartRun) and command.no_queue
                self.slots.wake(command.run_id, at_once=at_once)
            return run
        if result.status == "dup":
            log.info("command_duplicate", command=kind)
            metrics.command_handled(kind, "duplicate", command.issued_at)
            return None
        if result.status == "deleted":
            await self._reject_without_run(command, f"run {command.run_id} was deleted", now, ack)
            return None
        return STALE

    async def _reject_without_run(
        self,
        command: cmd.Command,
        reason: str,
        now: float,
        ack: Ack | None,
        *,
        bad_input: bool = False,
    ) -> None:
        """A rejection for a run that has no history (never created, or deleted): it goes
        on the feed for the caller to see; nothing is stored."""
        event = ev.CommandRejected(
            at=now,
            command_id=command.command_id,
            command_type=cmd.command_type(command),
            reason=reason,
            actor=command.actor,
            bad_input=bad_input,
        )
        await self.store.reject_unknown(command.run_id, event, ack)
        log.info("command_rejected", command=event.command_type, reason=reason)
        metrics.command_handled(event.command_type, "rejected", command.issued_at)


def _blank_if_new(run_id: str, items: Items) -> Run | None:
    """A new run needs no load: its first append expects version 0, and fails if it exists."""
    return Run.blank(run_id) if isinstance(items[0][1], cmd.StartRun) else None


def _log_failure(exc: BaseException) -> None:
    if is_redis_trouble(exc):
        log.warning("command_failed", error=str(exc))
    else:
        log.exception("command_crashed", exc_info=exc)
