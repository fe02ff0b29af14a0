"""Recording a computed chunk: its effects in the run's history, then on the network.

A chunk is written in two phases (see ``runstream.store.network``): ``prepare`` records
its effects (``ChunkPrepared``), ``write`` applies them to the network in one script and
records ``ItemsProcessed``. A chunk left between the two (its worker died) is settled by
``resolve_pending``. A chunk meeting another chunk's reservations (with several network
partitions) waits for that chunk to be settled: see ``write_waiting``. The executor
drives every chunk through this; ``append`` and ``load`` are how it saves and reloads a
run (under its lease). The chunk's log lines and result files are shown with the append
that confirms it (``ItemsProcessed``), so a voided chunk's never are.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, Protocol

import structlog

from runstream.contracts import events as ev
from runstream.domain.run import Run
from runstream.store import outputs
from runstream.store.network import (
    ApplyOutcome,
    ChunkProtocolBroken,
    ElementReserved,
    NetworkStore,
)
from runstream_worker import metrics
from runstream_worker.chunk import ChunkResult
from runstream_worker.effects import record_effects
from runstream_worker.lease import LostLease

log = structlog.get_logger("runstream.chunk")


class Append(Protocol):
    """Append the run's new events (and make ``output`` visible with them): False if the
    run changed meanwhile (nothing was written)."""

    def __call__(self, run: Run, output: outputs.RunOutput | None = None) -> Awaitable[bool]: ...


Load = Callable[[str], Awaitable[Run]]
HistoryBefore = Callable[[str, str, int], Awaitable[list[tuple[str, ev.Event]]]]
RenewLease = Callable[[str], Awaitable[bool]]
# Asked to settle the chunk named by a token (whose reservations a chunk waits on) if its
# worker is gone: Executor.settle_holder.
Settle = Callable[[str], Awaitable[None]]

# Backoff between tries of a chunk that meets reservations: first, then doubled up to.
RESERVED_FIRST_WAIT_S = 0.02
RESERVED_MAX_WAIT_S = 0.5


def chunk_token(run_id: str, chunk: int) -> str:
    """Names a prepared chunk on the network (its applied / voided mark)."""
    return f"{run_id}:{chunk}"


@dataclass(frozen=True)
class Prepared:
    """A chunk recorded in the history (on ``run`` as stored), not yet on the network."""

    run: Run
    event: ev.ChunkPrepared
    result: ChunkResult


@dataclass
class ChunkProtocol:
    network: NetworkStore
    append: Append
    load: Load
    # The run's events from an entry id backwards ("+": the newest): EventStore.chunks_before.
    history_before: HistoryBefore
    # Leases.renew: only the run's lease holder may resolve its pending chunk (None: the
    # caller holds it for certain, as in tests that drive the protocol alone).
    renew_lease: RenewLease | None = None
    # How long a chunk waits for reservations to go before they count as a conflict, and
    # who is asked to settle their holder meanwhile (None: only wait).
    reservation_wait_s: float = 10.0
    settle: Settle | None = None

    async def record(self, run: Run, result: ChunkResult) -> tuple[Run, bool]:
        """Record one computed chunk through both phases. Returns the run to go on with,
        and whether the chunk met a conflict (an element changed under it: it is voided
        and computed again)."""
        if result.items_to == result.items_from and not result.error:
            if result.exhausted:
                run.succeed(time.time())
            return await self._save(run), False
        prepared = await self.prepare(run, result)
        if isinstance(prepared, Run):
            return prepared, False
        return await self.write(prepared)

    async def prepare(self, run: Run, result: ChunkResult) -> Prepared | Run:
        """Phase one: the chunk's effects, with their befores, in the run's history. A
        chunk with nothing for the network is confirmed at once. Returns what to write
        next, or the run to go on with (done, or changed meanwhile)."""
        s = run.state
        run_id = s.run_id
        effects = await record_effects(
            self.network, run_id, s.next_effect, result.changes, result.reads
        )

        def prepare_on(on: Run) -> ev.ChunkPrepared:
            return on.prepare_chunk(
                time.time(),
                items_to=result.items_to,
                effects=effects,
                notifications=result.notifications,
                log=result.log,
                results=result.results,
                result_types=result.result_types,
            )

        event = prepare_on(run)
        if not effects and not result.notifications:
            return await self._save(finish(run, result), outputs.of_chunk(event))
        checkpoint = (s.items_processed, s.next_effect)
        while not await self.append(run):
            # The run changed meanwhile; nothing reached the network yet. If it is still
            # running from the same checkpoint (a rejected command, a pin), the computed
            # chunk still holds: record it on the fresh version instead of redoing it, so
            # frequent commands can't starve the run.
            run = await self.load(run_id)
            fresh = run.state
            if (
                fresh.state != "running"
                or fresh.pending is not None
                or (fresh.items_processed, fresh.next_effect) != checkpoint
            ):
                return run
            event = prepare_on(run)
        return Prepared(run, event, result)

    async def write(self, prepared: Prepared) -> tuple[Run, bool]:
        """Phase two: the prepared chunk onto the network, then confirmed in the history."""
        run = prepared.run
        event = prepared.event
        run_id = run.state.run_id
        token = chunk_token(run_id, event.chunk)
        outcome, element = await self.write_waiting(token, run_id, event)
        if outcome in ("conflict", "reserved"):
            # The element changed between the step's read and this write (or stayed
            # reserved past the wait): void, redo; counted as a conflict.
            log.info("chunk_conflict", chunk=event.chunk, element=element)
            await self.network.resolve_chunk(
                token, run_id, event.first_effect, event.effects, event.notifications
            )
            how = "changed" if outcome == "conflict" else "stayed reserved by another chunk"
            run.void_chunk(time.time(), f"{element} {how} while the chunk was being applied")
            return await self._save(run), True
        if outcome == "voided":
            # Only a later lease holder resolves (voids) our pending chunk: the run is
            # no longer ours.
            raise LostLease(run_id)
        finish(run, prepared.result)
        if not await self.append(run, outputs.of_chunk(event)):
            return await self.load(run_id), False  # the pending chunk is resolved next
        metrics.effects_applied(len(event.effects))
        # The outcome is recorded: the marker's removal need not hold the run up.
        self.network.forget_chunk_soon(token, event.effects, event.notifications)
        return run, False

    async def write_waiting(
        self, token: str, run_id: str, event: ev.ChunkPrepared
    ) -> tuple[ApplyOutcome | Literal["reserved"], str]:
        """``apply_chunk``, tried again while another chunk reserves an element, until that
        chunk is settled. Waiting, not voiding, is what keeps an innocent run from failing
        when a worker dies between prepare and commit: its reservations last until whoever
        takes over that worker's lease settles its chunk (``settle`` asks for that at once),
        and a run redoing its chunk at once would meet them again, 5 times in
        milliseconds. Why waiting is safe: ``runstream.store.network`` ("Waiting for a
        reservation"); our chunk stays recorded and pending, and if this worker dies or
        loses the lease meanwhile, the next holder resolves it like any other. Bounded: a
        reservation still there after ``reservation_wait_s`` (several leases: its holder
        is not being settled) is answered "reserved", and counts as a conflict, so the run
        is not held for ever; nor past a stop or cancel: once the wait is long, the run is
        looked at each time, and a run no longer running ends it the same way (its chunk is
        voided and redone on continue)."""
        deadline = time.monotonic() + self.reservation_wait_s
        pause = RESERVED_FIRST_WAIT_S
        waited_on = ""
        while True:
            try:
                return await self.network.apply_chunk(
                    token, run_id, event.first_effect, event.effects, event.notifications
                )
            except ElementReserved as exc:
                if time.monotonic() >= deadline:
                    log.warning("chunk_reservation_timeout", element=exc.element, holder=exc.holder)
                    return "reserved", exc.element
                if exc.holder != waited_on:
                    waited_on = exc.holder
                    log.info(
                        "chunk_waits", chunk=event.chunk, element=exc.element, holder=exc.holder
                    )
                if self.settle is not None and exc.holder:
                    await self.settle(exc.holder)
                await asyncio.sleep(pause)
                if pause >= RESERVED_MAX_WAIT_S and not await self._still_running(run_id):
                    return "reserved", exc.element
                pause = min(pause * 2, RESERVED_MAX_WAIT_S)

    async def _still_running(self, run_id: str) -> bool:
        return (await self.load(run_id)).state.state == "running"

    async def resolve_pending(self, run: Run) -> Run:
        """A chunk recorded but not confirmed (its worker died, or we lost a race): ask the
        network whether it was applied, and record that; if not, it never will be."""
        assert run.state.pending is not None
        chunk = run.state.pending.chunk
        token = chunk_token(run.state.run_id, chunk)
        # Resolving marks an unapplied chunk void for good: only the lease holder may. A
        # worker resumed after a pause may hold a stale view in which the chunk is still
        # pending, though the new holder has confirmed it (and forgotten its marker).
        if self.renew_lease is not None and not await self.renew_lease(run.state.run_id):
            raise LostLease(run.state.run_id)
        # With one network partition the mark alone answers; with several, the chunk's
        # effects say where it was written (and let a commit begun be finished).
        prepared = (
            await self._prepared_event(run.state.run_id, chunk)
            if self.network.partitioned
            else None
        )
        if prepared is None:
            if self.network.partitioned:
                raise ChunkProtocolBroken(f"chunk {token}: no ChunkPrepared in the history")
            outcome = await self.network.resolve_chunk(token)
        else:
            outcome = await self.network.resolve_chunk(
                token,
                run.state.run_id,
                prepared.first_effect,
                prepared.effects,
                prepared.notifications,
            )
        output = None
        effects = run.state.pending.effects
        if outcome == "applied":
            if prepared is None:
                prepared = await self._prepared_event(run.state.run_id, chunk)
            output = outputs.of_chunk(prepared) if prepared is not None else None
            run.confirm_chunk(time.time())
        else:
            run.void_chunk(time.time(), "its worker stopped before it reached the network")
        if not await self.append(run, output):
            return await self.load(run.state.run_id)
        # Logged once recorded: an outcome that did not make it into the history is none.
        log.info("chunk_resolved", chunk=chunk, outcome=outcome)
        if outcome == "applied":
            metrics.effects_applied(effects)
            # As after a chunk confirmed in one go.
            if prepared is not None:
                await self.network.forget_chunk(token, prepared.effects, prepared.notifications)
            else:
                await self.network.forget_chunk(token)
        return run

    async def _prepared_event(self, run_id: str, chunk: int) -> ev.ChunkPrepared | None:
        """A prepared chunk's record (effects, log lines, result files), from the run's
        history."""
        cursor = "+"
        while True:
            page = await self.history_before(run_id, cursor, 50)
            for _, event in page:
                if isinstance(event, ev.ChunkPrepared) and event.chunk == chunk:
                    return event
            if len(page) < 50:
                return None
            cursor = f"({page[-1][0]}"

    async def _save(self, run: Run, output: outputs.RunOutput | None = None) -> Run:
        """Append the run's new events; on a stale version, the fresh run to retry on."""
        return run if await self.append(run, output) else await self.load(run.state.run_id)


def finish(run: Run, result: ChunkResult) -> Run:
    """Confirm the pending chunk, then end the run if the chunk ended it."""
    now = time.time()
    run.confirm_chunk(now)
    if result.error:
        run.fail(now, result.error)
    elif result.exhausted:
        run.succeed(now)
    return run
