"""``python -m runstream.probe URL [TIMEOUT_S]``: exit 0 if URL answers 2xx, else 1 with
why on stderr. The container healthcheck of the worker (/health on its status port) and
the API (/health): the image has Python but no curl."""

from __future__ import annotations

import sys
import urllib.error
import urllib.request


def probe(url: str, timeout: float = 3.0) -> str | None:
    """None if ``url`` answered 2xx within ``timeout`` s, else what went wrong."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        body = exc.read(500).decode(errors="replace").strip()
        return f"{url}: HTTP {exc.code} {body}".rstrip()
    except (OSError, ValueError) as exc:
        return f"{url}: {exc}"
    return None if 200 <= status < 300 else f"{url}: HTTP {status}"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not 1 <= len(args) <= 2:
        print("usage: python -m runstream.probe URL [TIMEOUT_S]", file=sys.stderr)
        return 2
    try:
        timeout = float(args[1]) if len(args) == 2 else 3.0
    except ValueError:
        print(f"probe: TIMEOUT_S must be a number of seconds, not {args[1]!r}", file=sys.stderr)
        return 2
    problem = probe(args[0], timeout)
    if problem is not None:
        print(f"probe: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
