"""The README's client snippet runs as written, against a real worker."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

from runstream.settings import Settings

from .support import fast, service_env, worker_running

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_client_snippet() -> str:
    """The python code block of the README's "From another service" section."""
    section = README.read_text(encoding="utf-8").split("### From another service", 1)[1]
    found = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert found, "the README has no python block under 'From another service'"
    return found.group(1)


def test_the_readme_client_snippet_runs_as_written(settings: Settings, tmp_path: Path) -> None:
    script = tmp_path / "snippet.py"
    script.write_text(readme_client_snippet(), encoding="utf-8")
    s = fast(settings)

    async def body() -> tuple[int, str, str]:
        async with worker_running(s):
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                str(script),
                env=service_env(s),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
            return proc.returncode or 0, out.decode(), err.decode()

    code, out, err = asyncio.run(body())

    assert code == 0, err
    run_line, stop_line, start_line = out.splitlines()
    assert re.fullmatch(r"[0-9A-Z]{26} succeeded", run_line)
    assert stop_line == "stop: cannot stop a run that is succeeded"
    assert start_line.startswith("start rejected: unknown scenario 'no-such-scenario'")
