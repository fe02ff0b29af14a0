"""``python -m runstream_worker``: run one worker process."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any

import structlog

from runstream.settings import load_settings
from runstream.shards import ShardCountMismatch
from runstream_worker.app import Worker

# After the worker stopped: how long leftover tasks get to end once cancelled.
LEFTOVER_WAIT_S = 0.2


def main() -> None:
    try:
        settings = load_settings()
    except ValueError as exc:
        print(f"runstream-worker: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        run_until_stopped(Worker(settings).run())
    except ShardCountMismatch as exc:
        structlog.get_logger("runstream.worker").error("shard_count_mismatch", error=str(exc))
        raise SystemExit(2) from None


def run_until_stopped(main: Coroutine[Any, Any, None]) -> None:
    """Like ``asyncio.run``, but tasks still running at the end get a bounded moment to
    end once cancelled: ``asyncio.run`` awaits them without limit, and a task that
    swallowed its cancellation would keep the process alive for ever."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(main)
    finally:
        try:
            left = asyncio.all_tasks(loop)
            for task in left:
                task.cancel()
            if left:
                loop.run_until_complete(asyncio.wait(left, timeout=LEFTOVER_WAIT_S))
            for task in left:
                if task.done():
                    task.cancelled() or task.exception()
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


if __name__ == "__main__":
    main()
