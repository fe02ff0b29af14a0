"""``runctl dev --api-port`` starts the HTTP API beside the workers, says where in its
banner, and stops it with everything else."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

import httpx

from runstream.embedded import free_port, port_in_use
from runstream.settings import Settings

from .support import RUNCTL_CMD, service_env


def test_runctl_dev_serves_the_api_and_stops_it(tmp_path: Path, settings: Settings) -> None:
    redis_port, api_port = free_port(), free_port()
    out = tmp_path / "dev.out"
    argv = [*RUNCTL_CMD, "dev", "--port", str(redis_port), "--data-dir", str(tmp_path / "data")]
    argv += ["--workers", "1", "--api-port", str(api_port)]
    with open(out, "wb") as sink:
        proc = subprocess.Popen(argv, env=service_env(settings), stdout=sink, stderr=sink)
    try:
        deadline = time.monotonic() + 60
        api = f"http://127.0.0.1:{api_port}"
        while True:
            assert proc.poll() is None, out.read_text()
            assert time.monotonic() < deadline, out.read_text()
            try:
                if httpx.get(f"{api}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        banner = out.read_text()
        assert api in banner and f"{api}/schema" in banner, banner
        token = re.search(r"rst_dev_[A-Za-z0-9_-]+", banner)
        assert token is not None, banner
        started = httpx.post(
            f"{api}/runs",
            params={"wait": "true"},
            json={"scenario": "synthetic", "args": {"items": 3}},
            timeout=60,
            headers={"Authorization": f"Bearer {token[0]}"},
        )
        assert started.status_code == 200, started.text
        assert started.json()["run"]["state"] == "succeeded"
        # The banner says where the admin UI is; the same token signs in there.
        assert f"{api}/ui" in banner, banner
        signed_in = httpx.post(f"{api}/ui/login", data={"token": token[0]}, timeout=10)
        assert signed_in.status_code == 303, signed_in.text
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out.read_text()
    assert not port_in_use(api_port), "the API outlived runctl dev"
