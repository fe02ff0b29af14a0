"""The executor's chunk threads: daemon threads, reused, never waiting on a stuck one."""

from __future__ import annotations

import asyncio
import threading

import pytest

from runstream_worker.daemon_threads import DaemonThreads


def whoami() -> tuple[threading.Thread, bool]:
    """The thread object itself: kept by the caller, it can't be mistaken for a later one
    (a finished thread's ident can be handed to a new thread)."""
    current = threading.current_thread()
    return current, current.daemon


def test_a_finished_thread_takes_the_next_job() -> None:
    async def main() -> list[tuple[threading.Thread, bool]]:
        threads = DaemonThreads()
        seen = []
        for _ in range(5):
            seen.append(await threads.run(whoami))
            await asyncio.sleep(0.01)  # the thread puts itself back after settling the future
        return seen

    seen = asyncio.run(main())
    assert all(daemon for _, daemon in seen)
    assert all(thread is not threading.current_thread() for thread, _ in seen)
    assert len({id(thread) for thread, _ in seen}) == 1, "a new thread for every job"


def test_an_error_reaches_the_caller_and_the_thread_serves_on() -> None:
    def fail() -> None:
        raise SystemExit("a step may raise anything")

    async def main() -> tuple[threading.Thread, bool]:
        threads = DaemonThreads()
        with pytest.raises(SystemExit, match="a step may raise anything"):
            await threads.run(fail)
        return await threads.run(whoami)

    thread, daemon = asyncio.run(main())
    assert daemon and thread is not threading.current_thread()


def test_a_stuck_job_does_not_hold_up_the_next() -> None:
    release = threading.Event()

    def wait_for_release() -> threading.Thread:
        release.wait(5)
        return threading.current_thread()

    async def main() -> tuple[threading.Thread, threading.Thread]:
        threads = DaemonThreads()
        stuck = threads.run(wait_for_release)
        other, _ = await asyncio.wait_for(threads.run(whoami), timeout=2)
        release.set()
        return await stuck, other

    stuck_thread, other_thread = asyncio.run(main())
    assert stuck_thread is not other_thread
