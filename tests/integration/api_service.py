"""The HTTP API as a real process (``python -m runstream_api``) beside real worker
processes, on the test's Redis and key prefix; requests go through httpx."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from runstream import processes
from runstream.connect import open_redis
from runstream.embedded import free_port
from runstream.keys import Keys
from runstream.processes import WorkerProcess
from runstream.settings import Settings
from runstream.tokens import Role, TokenStore

from .support import WorkerPool, fast, service_env, worker_pool


async def _create_token(settings: Settings, subject: str, role: Role, project: str) -> str:
    client = open_redis(settings)
    try:
        store = TokenStore(client, Keys.of(settings))
        text, _ = await store.create(subject, role, project)
        return text
    finally:
        await client.aclose()


def create_token(settings: Settings, subject: str, role: Role, project: str = "*") -> str:
    return asyncio.run(_create_token(settings, subject, role, project))


@dataclass
class ApiService:
    url: str
    # Sends an admin token of subject "tester".
    http: httpx.Client
    proc: WorkerProcess
    workers: WorkerPool
    settings: Settings

    def client_as(self, subject: str, role: Role, project: str = "*") -> httpx.Client:
        """A client with a new token of ``role`` for ``project`` ("*": all)."""
        token = create_token(self.settings, subject, role, project)
        return httpx.Client(
            base_url=self.url, timeout=60.0, headers={"Authorization": f"Bearer {token}"}
        )

    def wait_state(self, run_id: str, *states: str, timeout: float = 30.0) -> dict[str, Any]:
        """Poll GET /runs/{id} until the run is in one of ``states``."""
        deadline = time.monotonic() + timeout
        body: dict[str, Any] = {}
        while time.monotonic() < deadline:
            response = self.http.get(f"/runs/{run_id}")
            if response.status_code == 200:
                body = response.json()
                if body["state"] in states:
                    return body
            time.sleep(0.05)
        raise AssertionError(f"run {run_id} not in {states} after {timeout:g}s: {body}")

    def log(self) -> str:
        return self.proc.log_tail(4000)


@contextlib.contextmanager
def api_service(
    settings: Settings, directory: Path, workers: int = 1, **env: str
) -> Iterator[ApiService]:
    """Workers (ready) and the API (answering) on the test's settings; all stopped after."""
    snappy = fast(settings)
    with worker_pool(snappy, directory) as pool:
        for i in range(workers):
            pool.start(f"w{i}")
        port = free_port()
        proc = processes.start_api(service_env(snappy, **env), port, directory / "api.log")
        try:
            url = f"http://127.0.0.1:{port}"
            processes.wait_http(proc, f"{url}/health")
            for worker in pool.procs:
                worker.wait_ready()
            token = create_token(snappy, "tester", "admin")
            headers = {"Authorization": f"Bearer {token}"}
            with httpx.Client(base_url=url, timeout=60.0, headers=headers) as http:
                yield ApiService(url, http, proc, pool, snappy)
        finally:
            processes.stop_all([proc], grace=5)
            proc.close()
