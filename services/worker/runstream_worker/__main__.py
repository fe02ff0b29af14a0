"""``python -m runstream_worker``: run one worker process."""

from __future__ import annotations

import asyncio
import sys

from runstream.settings import load_settings
from runstream_worker.app import Worker


def main() -> None:
    try:
        settings = load_settings()
    except ValueError as exc:
        print(f"runstream-worker: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    asyncio.run(Worker(settings).run())


if __name__ == "__main__":
    main()
