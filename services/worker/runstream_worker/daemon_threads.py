"""Scenario steps run in daemon threads, kept for reuse.

A step stuck in user code must not keep the process alive past its shutdown grace (its
chunk is simply not recorded, and is redone by whoever takes the run over): so daemon
threads, not a ThreadPoolExecutor (whose threads are joined at exit). Starting a thread
per chunk cost about as much as a short chunk itself: a thread that finished its job
waits for the next one instead, up to ``MAX_IDLE`` of them; a stuck one is simply never
handed another job, and new threads are started as needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

# Idle threads kept; more than the worker's run slots are rarely busy at once.
MAX_IDLE = 32

_Job = tuple[Callable[..., Any], tuple[Any, ...], asyncio.AbstractEventLoop, asyncio.Future[Any]]


class _Thread:
    def __init__(self, idle: list[_Thread]) -> None:
        self._idle = idle
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        threading.Thread(target=self._serve, name="runstream-chunk", daemon=True).start()

    def give(self, job: _Job) -> None:
        self._jobs.put(job)

    def _serve(self) -> None:
        while True:
            fn, args, loop, future = self._jobs.get()
            try:
                result, error = fn(*args), None
            except BaseException as exc:
                result, error = None, exc
            with contextlib.suppress(RuntimeError):  # the loop is gone: the process is exiting
                loop.call_soon_threadsafe(_settle, future, result, error)
            del fn, args, loop, future, result, error  # nothing kept alive while idle
            if len(self._idle) >= MAX_IDLE:
                return
            self._idle.append(self)  # list.append/pop are atomic: no lock needed


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class DaemonThreads:
    """Runs functions in daemon threads, reusing the ones that finished."""

    def __init__(self) -> None:
        self._idle: list[_Thread] = []

    def run(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """``fn(*args)`` in a daemon thread; its result (or exception) as a future of the
        running loop."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        try:
            thread = self._idle.pop()
        except IndexError:
            thread = _Thread(self._idle)
        thread.give((fn, args, loop, future))
        return future
