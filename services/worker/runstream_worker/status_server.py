"""A worker's HTTP status port (RUNSTREAM_METRICS_PORT): what probes and Prometheus ask.

- ``/livez``: 200 when the worker's event loop runs a no-op within ``LOOP_TIMEOUT_S`` (a
  loop blocked or dead is the one thing a restart cures); Redis is not asked.
- ``/health``: 200 when, besides, the worker consumes commands and Redis answers a PING
  through the worker's own connection pool; 503 naming what is wrong otherwise.
- ``/metrics``: Prometheus text, the shard gauges read from Redis just before.

It is served from a thread (the standard library's WSGI server), so a scrape never waits
behind the worker's loop; the checks themselves run on the loop, bounded in time, so they
say whether the loop answers.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import TimeoutError as FutureTimeout
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import structlog
from prometheus_client import make_wsgi_app

log = structlog.get_logger("runstream.status")

# How long the loop gets to answer a probe; and a scrape, to read the gauges from Redis.
LOOP_TIMEOUT_S = 2.0
REFRESH_TIMEOUT_S = 3.0

# None when ready, else why not.
ReadyCheck = Callable[[], Awaitable[str | None]]
Refresh = Callable[[], Awaitable[None]]
StartResponse = Callable[..., Any]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No line per request: probes come every few seconds."""


class StatusServer:
    def __init__(
        self,
        host: str,
        port: int,
        loop: asyncio.AbstractEventLoop,
        ready: ReadyCheck,
        refresh: Refresh,
    ) -> None:
        self.loop = loop
        self.ready = ready
        self.refresh = refresh
        self._metrics = make_wsgi_app()
        self._server = make_server(host, port, self._app, _Server, handler_class=_QuietHandler)
        self.port = self._server.server_port
        # A short poll, so stop() (on the worker's loop, at exit) returns at once.
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="runstream-status", daemon=True
        )

    def start(self) -> StatusServer:
        self._thread.start()
        log.info("status_server_started", port=self.port)
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _on_loop(self, make: Callable[[], Awaitable[Any]], timeout: float) -> Any:
        """Run ``make()`` on the worker's loop and wait for it; TimeoutError if slower."""

        async def call() -> Any:
            return await make()

        future = asyncio.run_coroutine_threadsafe(call(), self.loop)
        try:
            return future.result(timeout)
        except FutureTimeout:
            future.cancel()
            raise TimeoutError(
                f"the worker's event loop did not answer within {timeout:g}s"
            ) from None

    def _app(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            try:
                self._on_loop(self.refresh, REFRESH_TIMEOUT_S)
            except Exception as exc:  # the counters are still worth serving
                log.warning("metrics_refresh_failed", error=str(exc))
            result: Iterable[bytes] = self._metrics(environ, start_response)
            return result
        if path == "/livez":
            return self._answer(start_response, self._problem(lambda: asyncio.sleep(0)))
        if path == "/health":
            return self._answer(start_response, self._problem(self.ready))
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found: try /health, /livez or /metrics\n"]

    def _problem(self, check: Callable[[], Awaitable[str | None]]) -> str | None:
        try:
            problem: str | None = self._on_loop(check, LOOP_TIMEOUT_S)
            return problem
        except RuntimeError as exc:  # the loop is closed: the worker is exiting
            return f"the worker's event loop is not running ({exc})"
        except Exception as exc:
            return str(exc)

    @staticmethod
    def _answer(start_response: StartResponse, problem: str | None) -> list[bytes]:
        status = "200 OK" if problem is None else "503 Service Unavailable"
        start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
        return [f"{problem or 'ok'}\n".encode()]
