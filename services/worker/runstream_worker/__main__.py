"""``python -m runstream_worker``: run one worker process."""

from __future__ import annotations

import asyncio
import sys

import structlog

from runstream.settings import load_settings
from runstream.shards import ShardCountMismatch
from runstream_worker.app import Worker


def main() -> None:
    try:
        settings = load_settings()
    except ValueError as exc:
        print(f"runstream-worker: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        asyncio.run(Worker(settings).run())
    except ShardCountMismatch as exc:
        structlog.get_logger("runstream.worker").error("shard_count_mismatch", error=str(exc))
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
