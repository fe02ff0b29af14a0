"""A small client for other services and for runctl: publish commands, wait, read runs.

Usage (inside a coroutine)::

    from runstream.client import Client
    async with Client.connect("redis://127.0.0.1:6390/0") as client:
        run_id = await client.start("synthetic", {"items": 10})  # accepted, or StartRejected
        outcome = await client.wait(run_id)   # until it succeeds, fails, stops...
"""

from __future__ import annotations

import asyncio
import io
import tarfile
import time
from collections.abc import AsyncIterator, Callable, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any, cast

import msgspec
import redis.asyncio as aredis

from runstream import catalog, multi_read, query, revert
from runstream.catalog import PublishedScenario
from runstream.connect import open_redis
from runstream.contracts import commands as cmd
from runstream.contracts import events as ev
from runstream.domain.run import ACTIVE, WAITING_BAND, RunSummary
from runstream.ids import is_run_id, new_id
from runstream.keys import Fields, Keys
from runstream.query import Query
from runstream.redis_url import check_redis_url
from runstream.settings import Settings, load_settings
from runstream.shards import ensure_partition_count, ensure_shard_count
from runstream.store import dlq, index, outputs, replies
from runstream.store.events import EventStore, Tombstone
from runstream.store.network import NetworkStore
from runstream.store.outputs import LogLine, ResultFile
from runstream.store.search import MarkerNotFound, Searcher

_summary_decoder = msgspec.json.Decoder(RunSummary)

# The event that shows a command took effect as asked (start: the run succeeded).
SUCCESS: dict[type[cmd.Command], str] = {
    cmd.StartRun: "RunSucceeded",
    cmd.StopRun: "RunStopped",
    cmd.ContinueRun: "RunContinued",
    cmd.CancelRun: "RunCancelled",
    cmd.RevertRun: "RunReverted",
    cmd.DeleteRun: "RunDeleted",
    cmd.PinRun: "RunPinned",
    cmd.TrackRun: "RunTracked",
}
# What each command leads to: --wait returns when one of these events arrives (the run
# may also end otherwise first: it fails, or someone else stops or cancels it).
_ENDS = frozenset({"RunSucceeded", "RunFailed", "RunCancelled", "RunStopped"})
TARGETS: dict[type[cmd.Command], frozenset[str]] = {
    cmd.StartRun: _ENDS,
    cmd.StopRun: _ENDS,
    cmd.ContinueRun: frozenset({"RunContinued"}),
    cmd.CancelRun: _ENDS,
    cmd.RevertRun: frozenset({"RunReverted"}),
    cmd.DeleteRun: frozenset({"RunDeleted"}),
    cmd.PinRun: frozenset({"RunPinned"}),
    cmd.TrackRun: frozenset({"RunTracked"}),
}


class RunNotFound(LookupError):
    pass


class ResultNotFound(LookupError):
    pass


def checked_run_id(run_id: str) -> str:
    """The id itself, or BadCommand naming it: an id with a stray newline or space must not
    read as (or create) a second run that prints like the first."""
    if not isinstance(run_id, str) or not is_run_id(run_id):
        raise cmd.BadCommand(
            f"malformed run id {run_id!r}: expected 26 characters of Crockford base32"
        )
    return run_id


class WaitTimeout(TimeoutError):
    """The wait ran out; ``accepted``: a worker took the command, and it goes on."""

    def __init__(self, message: str, accepted: bool = True) -> None:
        super().__init__(message)
        self.accepted = accepted


class NoWorker(WaitTimeout):
    """No worker handled the command, and none is running: it waits in its stream."""


class StartRejected(Exception):
    """A worker refused to start the run; the message is its reason. ``bad_input``: the
    scenario is unknown or the arguments are bad (else the run id was taken)."""

    def __init__(self, run_id: str, reason: str, bad_input: bool = False) -> None:
        super().__init__(reason)
        self.run_id = run_id
        self.reason = reason
        self.bad_input = bad_input


@dataclass(frozen=True)
class Outcome:
    """How a command ended: ``rejected`` with a reason, or the event it led to."""

    run_id: str
    command_id: str
    rejected: bool
    reason: str
    event: ev.Event | None
    # The event that means it took effect as asked (set when waited for).
    expected: str = ""

    @property
    def succeeded(self) -> bool:
        """Accepted and, if waited for, took effect as asked: not a run that failed, or
        that someone else stopped or cancelled first."""
        if self.rejected:
            return False
        if self.event is None or not self.expected:
            return True
        kind = ev.event_type(self.event)
        return kind == self.expected or kind not in _ENDS

    @property
    def bad_input(self) -> bool:
        """Rejected for the command's own input (unknown scenario, bad arguments)."""
        return isinstance(self.event, ev.CommandRejected) and self.event.bad_input


class Client:
    def __init__(self, redis: aredis.Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self.keys = Keys.of(settings)
        self.store = EventStore(redis, self.keys, settings)
        self.network = NetworkStore(redis, self.keys)
        self.searcher = Searcher(redis, self.keys)
        self._shards_checked = False

    @classmethod
    @asynccontextmanager
    async def connect(
        cls, redis_url: str | None = None, settings: Settings | None = None
    ) -> AsyncIterator[Client]:
        settings = settings or load_settings()
        if redis_url:
            settings = msgspec.structs.replace(settings, redis_url=check_redis_url(redis_url))
        # hiredis packing and task-free write timeouts, as the worker (POST /runs +19%)
        redis = open_redis(settings, hiredis_packing=True)
        try:
            yield cls(redis, settings)
        finally:
            await redis.aclose()

    async def check_shards(self) -> None:
        """Once per client, before the first command or index read: the configured shard
        count must be the deployment's (ShardCountMismatch), else commands are stranded."""
        if not self._shards_checked:
            await ensure_shard_count(self.redis, self.keys)
            await ensure_partition_count(self.redis, self.keys)
            self._shards_checked = True

    # ------------------------------------------------------------------ commands
    async def send(
        self,
        command: cmd.Command,
        before: Callable[[Any], object] | None = None,
        *,
        checked: bytes | None = None,
    ) -> str:
        """Publish a command on its run's shard; returns the stream entry id. A command the
        service would refuse as malformed raises BadCommand and is not sent. ``before``
        queues writes on a pipeline that goes in the same round trip, ahead of the command
        (the API's record of a request: one round trip less per request). ``checked``: the
        command's bytes as ``cmd.checked_bytes`` returned them (not checked twice)."""
        data = checked or cmd.checked_bytes(command, self.settings.max_command_bytes)
        await self.check_shards()
        stream = self.keys.commands(self.keys.shard_of(command.run_id))
        if before is None:
            entry = await self.redis.xadd(stream, {Fields.COMMAND: data})
        else:
            async with self.redis.pipeline(transaction=False) as pipe:
                before(pipe)
                pipe.xadd(stream, {Fields.COMMAND: data})
                entry = (await pipe.execute())[-1]
        return entry.decode() if isinstance(entry, bytes) else str(entry)

    async def feed_position(self, run_id: str) -> str:
        """The newest entry of the run's shard feed: wait for events after it."""
        feed = self.keys.feed(self.keys.shard_of(checked_run_id(run_id)))
        last = replies.entries(await self.redis.xrevrange(feed, count=1))
        return last[0][0].decode() if last else "0-0"

    async def start(
        self,
        scenario: str,
        args: dict[str, Any] | None = None,
        *,
        name: str = "",
        description: str = "",
        actor: str = "client",
        run_id: str | None = None,
        timeout: float = 15.0,
        priority: int = cmd.DEFAULT_PRIORITY,
        no_queue: bool = False,
    ) -> str:
        """Start a run and return its id once a worker accepted it; StartRejected (with
        the reason: unknown scenario, bad arguments...) if it was refused; WaitTimeout if
        no worker answered within ``timeout`` seconds (the command stays published).
        ``priority`` 1 (highest) to 9 orders the runs waiting for a slot; ``no_queue``:
        start at once or be rejected."""
        command = self._start_command(
            scenario, args, name, description, actor, run_id, priority, no_queue
        )
        outcome = await self.execute(command, wait=False, timeout=timeout)
        if outcome.rejected:
            raise StartRejected(command.run_id, outcome.reason, outcome.bad_input)
        return command.run_id

    async def start_nowait(
        self,
        scenario: str,
        args: dict[str, Any] | None = None,
        *,
        name: str = "",
        description: str = "",
        actor: str = "client",
        run_id: str | None = None,
        priority: int = cmd.DEFAULT_PRIORITY,
        no_queue: bool = False,
    ) -> str:
        """Publish a start and return the run's id at once (fire and forget): whether it
        was accepted shows on the feed, or as the run appearing (``find``, ``wait``)."""
        command = self._start_command(
            scenario, args, name, description, actor, run_id, priority, no_queue
        )
        await self.send(command)
        return command.run_id

    @staticmethod
    def _start_command(
        scenario: str,
        args: dict[str, Any] | None,
        name: str,
        description: str,
        actor: str,
        run_id: str | None,
        priority: int = cmd.DEFAULT_PRIORITY,
        no_queue: bool = False,
    ) -> cmd.StartRun:
        return cmd.StartRun(
            run_id=checked_run_id(run_id) if run_id is not None else new_id(),
            actor=actor,
            scenario=scenario,
            args=args or {},
            name=name,
            description=description,
            priority=priority,
            no_queue=no_queue,
        )

    async def rerun_command(
        self,
        source_run_id: str,
        overrides: dict[str, Any] | None = None,
        *,
        actor: str = "client",
        name: str | None = None,
        description: str | None = None,
        priority: int = cmd.DEFAULT_PRIORITY,
        no_queue: bool = False,
    ) -> cmd.StartRun:
        """A StartRun repeating an earlier run: its scenario, version (the worker rejects it
        if the scenario changed version since) and arguments, with ``overrides`` on top."""
        source = await self.get(source_run_id)
        if source.tracked:
            raise cmd.BadCommand(
                f"run {source_run_id} was tracked (executed elsewhere); it cannot be re-run here"
            )
        return cmd.StartRun(
            run_id=new_id(),
            actor=actor,
            scenario=source.scenario,
            scenario_version=source.scenario_version,
            args={**source.args, **(overrides or {})},
            name=source.name if name is None else name,
            description=source.description if description is None else description,
            priority=priority,
            no_queue=no_queue,
            source_run_id=source_run_id,
        )

    async def rerun(
        self,
        source_run_id: str,
        overrides: dict[str, Any] | None = None,
        *,
        actor: str = "client",
        timeout: float = 15.0,
    ) -> str:
        """Start a run like an earlier one (see ``rerun_command``); returns its id once a
        worker accepted it (StartRejected with the reason if it was refused)."""
        command = await self.rerun_command(source_run_id, overrides, actor=actor)
        outcome = await self.execute(command, wait=False, timeout=timeout)
        if outcome.rejected:
            raise StartRejected(command.run_id, outcome.reason)
        return command.run_id

    async def track(
        self,
        scenario: str,
        status: cmd.TrackedStatus,
        input: str,
        output: str,
        *,
        duration_ms: int | None = None,
        error: str = "",
        log: list[str] | None = None,
        name: str = "",
        description: str = "",
        actor: str = "client",
    ) -> Outcome:
        """Record a run executed elsewhere; ``input``/``output`` are JSON text. The outcome
        says whether it was recorded (a new run, ``outcome.run_id``) or rejected and why."""
        command = cmd.TrackRun(
            run_id=new_id(),
            actor=actor,
            scenario=scenario,
            status=status,
            input=input,
            output=output,
            duration_ms=duration_ms,
            error=error,
            log=log or [],
            name=name,
            description=description,
        )
        return await self.execute(command, wait=False)

    async def execute(
        self,
        command: cmd.Command,
        *,
        wait: bool = True,
        timeout: float = 60.0,
        on_event: Callable[[ev.Event], None] | None = None,
    ) -> Outcome:
        """Publish and return once the command was accepted or rejected; with ``wait``,
        once it took effect (the run reached the state the command leads to, or ended
        otherwise: ``Outcome.succeeded`` tells). ``on_event`` sees the run's events as
        they arrive (progress)."""
        cmd.checked_bytes(command, self.settings.max_command_bytes)  # before any I/O
        since = await self.feed_position(command.run_id)
        await self.send(command)
        targets = TARGETS[type(command)] if wait else frozenset()
        outcome = await self.wait_for(
            command.run_id,
            command.command_id,
            targets,
            since,
            timeout,
            min(timeout, 15.0),
            on_event=on_event,
        )
        return replace(outcome, expected=SUCCESS[type(command)]) if wait else outcome

    async def wait_for(
        self,
        run_id: str,
        command_id: str,
        targets: Collection[str],
        since: str,
        timeout: float,
        accept_timeout: float | None = None,
        on_event: Callable[[ev.Event], None] | None = None,
    ) -> Outcome:
        """Follow the shard feed from ``since`` until the command is rejected, or accepted
        and then a target event for the run arrives (no targets: accepted is enough).
        WaitTimeout says whether the command was accepted (it goes on); NoWorker, that no
        worker took it and none is running."""
        feed = self.keys.feed(self.keys.shard_of(run_id))
        started = time.monotonic()
        deadline = started + timeout
        accepted = False
        while True:
            left = deadline - time.monotonic()
            if not accepted and accept_timeout and time.monotonic() - started > accept_timeout:
                await self._not_handled(run_id, command_id, accept_timeout)
            if left <= 0:
                if not accepted:
                    await self._not_handled(run_id, command_id, timeout)
                raise WaitTimeout(
                    f"command {command_id} for run {run_id} was accepted and goes on, but had "
                    f"not taken effect after {timeout:g}s"
                )
            block = int(min(left, 1) * 1000)
            reply = replies.streams(
                await multi_read.xread(self.redis, {feed: since}, count=500, block=block)
            )
            for _, entries in reply:
                for entry_id, fields in entries:
                    since = entry_id.decode()
                    if fields[Fields.RUN].decode() != run_id:
                        continue
                    event = ev.decode_event(fields[Fields.EVENT])
                    if on_event is not None:
                        on_event(event)
                    if event.command_id == command_id:
                        if isinstance(event, ev.CommandRejected):
                            return Outcome(run_id, command_id, True, event.reason, event)
                        accepted = True
                        if not targets:
                            return Outcome(run_id, command_id, False, "", event)
                    if accepted and ev.event_type(event) in targets:
                        return Outcome(run_id, command_id, False, "", event)

    async def _not_handled(self, run_id: str, command_id: str, after: float) -> None:
        if not await self.workers_alive():
            raise NoWorker(
                f"no worker is running: command {command_id} for run {run_id} waits in its "
                "stream and is applied when one starts ('make run' starts one)",
                accepted=False,
            )
        raise WaitTimeout(
            f"command {command_id} for run {run_id} was published but no worker handled it "
            f"within {after:g}s (workers are running: busy, or stuck?)",
            accepted=False,
        )

    async def workers_alive(self) -> int:
        """How many workers have a live heartbeat."""
        count = 0
        async for _ in self.redis.scan_iter(match=self.keys.worker_alive("*"), count=1000):
            count += 1
        return count

    async def wait(self, run_id: str, timeout: float = 60.0, poll: float = 0.2) -> RunSummary:
        """Until the run exists and is no longer queued, running or reverting."""
        checked_run_id(run_id)
        deadline = time.monotonic() + timeout
        state = "not yet created"
        while True:
            summary = await self.find(run_id)
            if summary is not None:
                if summary.state not in ACTIVE:
                    return summary
                state = summary.state
            if time.monotonic() > deadline:
                raise WaitTimeout(f"run {run_id} still {state} after {timeout:g}s")
            await asyncio.sleep(poll)

    async def find(self, run_id: str) -> RunSummary | None:
        checked_run_id(run_id)
        await self.check_shards()
        raw = await self.redis.hget(self.keys.index(self.keys.shard_of(run_id)), run_id)
        return _summary_decoder.decode(raw) if raw is not None else None

    # ------------------------------------------------------------------ reading
    async def scenarios(self) -> list[PublishedScenario]:
        """The scenarios the workers published (empty: no worker has, yet)."""
        return await catalog.read(self.redis, self.keys)

    async def get(self, run_id: str) -> RunSummary:
        found = await self.find(run_id)
        if found is None:
            tomb = await self.store.tombstone(run_id)
            if tomb is not None:
                raise RunNotFound(f"run {run_id} was deleted")
            raise RunNotFound(f"run {run_id} does not exist")
        return found

    async def list_runs(
        self, state: str | None = None, scenario: str | None = None
    ) -> list[RunSummary]:
        await self.check_shards()
        async with self.redis.pipeline(transaction=False) as pipe:
            for shard in range(self.keys.shards):
                pipe.hvals(self.keys.index(shard))
            pages = await pipe.execute()
        runs = [_summary_decoder.decode(raw) for page in pages for raw in page]
        runs = [
            r
            for r in runs
            if (state is None or r.state == state) and (scenario is None or r.scenario == scenario)
        ]
        return sorted(runs, key=lambda r: (r.created_at, r.id))

    async def search(self, q: Query | None = None) -> list[RunSummary]:
        """A page of runs matching a query, in its order (``runstream.query.build`` makes
        one from texts such as ``state=in:running,stopped``); the next page starts after
        the last run's id: ``Query(..., marker=page[-1].id)``. Raises MarkerNotFound,
        BadQuery (runstream.query) for a query that cannot be used."""
        return await self.searcher.search(q or Query())

    async def count(self, q: Query | None = None) -> int:
        """How many runs match the query's filters."""
        return await self.searcher.count(q or Query())

    async def queue(self) -> list[RunSummary]:
        """The runs waiting for a slot, in the order they will start: by priority (1
        first), then oldest first."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for shard in range(self.keys.shards):
                pipe.zrangebyscore(self.keys.runnable(shard), WAITING_BAND, "+inf")
            pages = cast(list[list[bytes]], await pipe.execute())
        waiting = []
        for raw in (raw for page in pages for raw in page):
            summary = await self.find(raw.decode())
            if summary is not None and summary.state == "queued" and not summary.started_at:
                waiting.append(summary)
        return sorted(waiting, key=lambda r: (r.priority, r.created_at, r.id))

    async def history(self, run_id: str) -> list[tuple[str, ev.Event]]:
        await self.get(run_id)
        return await self.store.history(run_id)

    async def search_deleted(self, q: Query | None = None) -> list[Tombstone]:
        """A page of the tombstones of deleted runs matching a query built over
        ``runstream.query.TOMBSTONES`` (id, scenario, actor, deleted_at, effects_left,
        irreversible), in its order; the next page starts after the last one's run id.
        Raises MarkerNotFound when the marker is no deleted run's id."""
        q = q or Query(sort=query.TOMBSTONES.default_sort)
        try:
            return query.page(await self.tombstones(), q, _tomb_id, query.TOMBSTONES)
        except LookupError:
            raise MarkerNotFound(f"marker run {q.marker} is not a deleted run") from None

    async def count_deleted(self, q: Query | None = None) -> int:
        """How many tombstones match the query's filters."""
        filters = q.filters if q else ()
        return sum(
            1 for t in await self.tombstones() if query.matches(t, filters, query.TOMBSTONES)
        )

    async def tombstones(self) -> list[Tombstone]:
        """Every deleted run's tombstone, oldest first."""
        out: list[Tombstone] = []
        for shard in range(self.keys.shards):
            for _, fields in replies.entries(await self.redis.xrange(self.keys.audit(shard))):
                out.append(msgspec.json.decode(fields[Fields.TOMBSTONE], type=Tombstone))
        return sorted(out, key=lambda t: (t.deleted_at, t.run_id))

    # ------------------------------------------------------------------ logs and results
    async def logs(
        self, run_id: str, *, since: float | None = None, after: str = "", count: int = 1_000_000
    ) -> tuple[int, list[LogLine]]:
        """How many of the run's oldest lines were dropped (its log is bounded), and up to
        ``count`` lines kept after entry ``after``, logged at or after ``since``."""
        await self.get(run_id)
        dropped = await outputs.log_dropped(self.redis, self.keys, run_id)
        lines = await outputs.read_log(
            self.redis, self.keys, run_id, after=after, since=since, count=count
        )
        return dropped, lines

    async def follow_logs(
        self,
        run_id: str,
        *,
        since: float | None = None,
        after: str | None = None,
        poll: float = 1.0,
    ) -> AsyncIterator[LogLine]:
        """The run's lines as they are logged (after the entry id ``after``, when given),
        until it no longer runs (then the rest)."""
        await self.get(run_id)
        after = after or outputs.log_position(since)
        key = self.keys.logs(run_id)
        while True:
            summary = await self.find(run_id)  # checked before reading: no line is missed
            lines = await outputs.read_log(self.redis, self.keys, run_id, after=after, count=1000)
            for line in lines:
                if since is None or line.at >= since:
                    yield line
            if lines:
                after = lines[-1].id
                continue
            if summary is None or summary.state not in ACTIVE:
                return
            await multi_read.xread(self.redis, {key: after}, count=1, block=int(poll * 1000))

    async def results(self, run_id: str) -> list[ResultFile]:
        """The run's result files: name, size in bytes, media type."""
        await self.get(run_id)
        return await outputs.list_results(self.redis, self.keys, run_id)

    async def result(self, run_id: str, name: str) -> bytes:
        """One result file's content; LookupError naming the files there are."""
        await self.get(run_id)
        content = await outputs.fetch_result(self.redis, self.keys, run_id, name)
        if content is None:
            files = await outputs.list_results(self.redis, self.keys, run_id)
            known = ", ".join(f.name for f in files) or "none"
            raise ResultNotFound(f"run {run_id} has no result {name!r} (it has: {known})")
        return content

    async def results_archive(self, run_id: str) -> bytes:
        """All the run's result files as one tar.gz (flowserv's result archive)."""
        files = {f.name: f for f in await self.results(run_id)}
        contents = await outputs.fetch_results(self.redis, self.keys, run_id)
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
            for name, content in contents.items():
                info = tarfile.TarInfo(name)
                info.size = len(content)
                info.mtime = int(files[name].at) if name in files else 0
                info.mode = 0o644
                archive.addfile(info, io.BytesIO(content))
        return buffer.getvalue()

    # ------------------------------------------------------------------ revert plans
    async def revert_plan(self, run_id: str, force: bool = False) -> revert.Plan:
        """What ``revert`` would do now, changing nothing. Raises RunNotFound, or Rejected
        when the service would refuse the revert (with its reason)."""
        await self.get(run_id)
        run = await self.store.load(run_id)
        state = msgspec.structs.replace(run.state)  # as stored: the check below records
        run.handle(cmd.RevertRun(run_id=run_id, force=force), 0.0)
        return await revert.plan(self.store, self.network, state, force)

    # ------------------------------------------------------------------ the network
    async def network_export(self) -> dict[str, Any]:
        """The whole network, in a stable order."""
        return await self.network.export()

    async def network_stats(self) -> dict[str, int]:
        return await self.network.stats()

    async def outbox(self, count: int = 100) -> list[dict[str, str]]:
        """Notifications runs have sent (irreversible effects), newest first."""
        return await self.network.outbox(count)

    # ------------------------------------------------------------------ upkeep by hand
    async def dead_letters(self) -> list[dlq.DeadLetter]:
        return await dlq.list_letters(self.redis, self.keys)

    async def dead_letter(self, letter_id: str) -> dlq.DeadLetter | None:
        return await dlq.find(self.redis, self.keys, letter_id)

    async def retry_dead_letter(self, letter: dlq.DeadLetter) -> str:
        """Publish the letter's command again; its new entry id. Raises dlq.NotRetryable."""
        return await dlq.retry(self.redis, self.keys, letter)

    async def drop_dead_letter(self, letter: dlq.DeadLetter) -> None:
        await dlq.drop(self.redis, self.keys, letter)

    async def rebuild_index(self) -> index.Rebuilt:
        """Rebuild the run index and query read models from the runs' events."""
        return await index.rebuild(self.redis, self.keys, self.store)


def _tomb_id(t: Tombstone) -> str:
    return t.run_id
