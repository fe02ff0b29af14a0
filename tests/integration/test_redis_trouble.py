"""What a user meets when Redis is not quite there: a wrong password, something that is not
Redis, a malformed URL, Redis refusing commands (out of memory, read-only, no permission),
and TLS. runctl answers each with one line and its documented exit status, workers log it
as JSON, and a password never appears in any output."""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import quote

import msgspec
import pytest
import redis

from runstream.processes import WorkerProcess
from runstream.settings import Settings

from .redis_servers import redis_server, self_signed
from .support import (
    CliResult,
    fast,
    logs_of,
    runctl,
    worker_pool,
)

PASSWORD = "hunter2-Sekrit-9f3a"
RIGHT_PASSWORD = "right-pw-7c1e"
RUN_ID = "01ARZ3NDEKTSV4RRFFQ69G5FAV"
BAD_INPUT, UNREACHABLE, REDIS_REFUSED = 2, 4, 7


def at(settings: Settings, url: str) -> Settings:
    return msgspec.structs.replace(settings, redis_url=url)


def assert_no_password(*texts: str, password: str = PASSWORD) -> None:
    for text in texts:
        assert password not in text, text
        assert quote(password, safe="") not in text, text


def one_line(result: CliResult, code: int) -> str:
    assert result.code == code, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("runctl: "), result
    assert "Traceback" not in result.stdout + result.stderr, result
    return lines[0]


def json_lines(text: str) -> list[dict[str, object]]:
    """Every line of a worker's output is one JSON object (no colour codes, no tracebacks)."""
    out = []
    for line in text.splitlines():
        assert "\x1b[" not in line, line
        try:
            out.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not a JSON log line: {line!r}\n--- whole output\n{text}")
    return out


def wait_for_log(worker: WorkerProcess, mark: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text = worker.log()
        if mark in text:
            return text
        assert worker.alive(), f"worker exited {worker.proc.poll()}:\n{text}"
        assert time.monotonic() < deadline, f"no {mark!r} in the worker's log:\n{text}"
        time.sleep(0.1)


# --------------------------------------------------------------------------- passwords
def test_a_wrong_password_is_never_shown_by_runctl(tmp_path: Path, settings: Settings) -> None:
    with redis_server(
        tmp_path / "redis", "--requirepass", RIGHT_PASSWORD, client={"password": RIGHT_PASSWORD}
    ) as server:
        base = f"127.0.0.1:{server.port}/0"
        for url in (
            f"redis://:{PASSWORD}@{base}",
            f"redis://app:{PASSWORD}@{base}",
            f"redis://{base}?password={PASSWORD}",
        ):
            for argv in (["list"], ["show", RUN_ID], ["stop", RUN_ID], ["dlq", "list"]):
                result = runctl(at(settings, url), *argv)
                line = one_line(result, UNREACHABLE)
                assert "refused the login" in line, result
                assert "***" in line, result
                assert_no_password(result.stdout, result.stderr)
        # The right password, as a password or an ACL user's, works.
        admin = redis.Redis(port=server.port, password=RIGHT_PASSWORD)
        admin.acl_setuser(
            "app",
            enabled=True,
            passwords=[f"+{PASSWORD}"],
            keys=["*"],
            channels=["*"],
            commands=["+@all"],
        )
        admin.close()
        for url in (f"redis://:{RIGHT_PASSWORD}@{base}", f"redis://app:{PASSWORD}@{base}"):
            result = runctl(at(settings, url), "list", "--json")
            assert result.code == 0, result
            assert json.loads(result.stdout) == []


def test_settings_errors_never_show_the_password(settings: Settings) -> None:
    for url, env in (
        (f"redis://:{PASSWORD}@127.0.0.1:notaport/0", {}),
        (f"redis://:{PASSWORD}@127.0.0.1:6390/zero", {}),
        (f"http://:{PASSWORD}@127.0.0.1:6390/0", {}),
        (f"redis://:{PASSWORD}@127.0.0.1:6390/0", {"RUNSTREAM_SHARDS": "many"}),
    ):
        result = runctl(at(settings, url), "list", env=env)
        line = one_line(result, BAD_INPUT)
        assert "REDIS_URL" in line or "RUNSTREAM_SHARDS" in line, result
        assert_no_password(result.stdout, result.stderr)


def test_worker_logs_never_show_the_password(tmp_path: Path, settings: Settings) -> None:
    with redis_server(
        tmp_path / "redis", "--requirepass", RIGHT_PASSWORD, client={"password": RIGHT_PASSWORD}
    ) as server:
        url = f"redis://app:{PASSWORD}@127.0.0.1:{server.port}/0"
        with worker_pool(fast(at(settings, url)), tmp_path) as pool:
            worker = pool.start("w-auth")
            wait_for_log(worker, "waiting_for_redis")
            worker.terminate()
            worker.proc.wait(30)
            text = worker.log()
    assert_no_password(text)
    assert any(line["event"] == "waiting_for_redis" for line in json_lines(text))


def test_a_worker_with_a_bad_url_exits_with_a_clear_line(
    tmp_path: Path, settings: Settings
) -> None:
    for url in ("notaurl", f"redis://:{PASSWORD}@127.0.0.1:notaport/0"):
        with worker_pool(at(settings, url), tmp_path) as pool:
            worker = pool.start("w-bad-url")
            assert worker.proc.wait(30) == BAD_INPUT
            text = worker.log()
        assert "REDIS_URL" in text and "Traceback" not in text, text
        assert_no_password(text)


# --------------------------------------------------------------------------- not Redis
def test_not_a_url_is_bad_input(settings: Settings) -> None:
    for url in ("notaurl", "http://127.0.0.1:6390/0", "redis://127.0.0.1:6390/db"):
        line = one_line(runctl(at(settings, url), "list"), BAD_INPUT)
        assert "REDIS_URL" in line


def test_something_that_is_not_redis_is_unreachable(settings: Settings) -> None:
    from .redis_servers import not_redis

    with not_redis() as port:
        url = f"redis://:{PASSWORD}@127.0.0.1:{port}/0"
        for argv in (["list"], ["stop", RUN_ID], ["dlq", "retry", "1-0"]):
            result = runctl(at(settings, url), *argv)
            line = one_line(result, UNREACHABLE)
            assert "not Redis" in line, result
            assert_no_password(result.stdout, result.stderr)


def test_a_cluster_nobody_answers_for_is_unreachable(settings: Settings) -> None:
    from runstream.embedded import free_port

    url = f"redis+cluster://:{PASSWORD}@127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
    result = runctl(at(settings, url), "list")
    line = one_line(result, UNREACHABLE)
    assert "cannot reach the Redis Cluster" in line, result
    assert_no_password(result.stdout, result.stderr)
    bad = one_line(runctl(at(settings, "redis+cluster://127.0.0.1:7000/2"), "list"), BAD_INPUT)
    assert "only database 0" in bad


def test_a_malformed_dead_letter_id_is_bad_input(settings: Settings) -> None:
    for argv in (["dlq", "retry", "nope"], ["dlq", "drop", "nope"], ["dlq", "drop", "1-2-3"]):
        line = one_line(runctl(settings, *argv), BAD_INPUT)
        assert "dead-letter id" in line


# --------------------------------------------------------------------------- refusals
def test_redis_refusing_a_command_is_one_line_and_exit_7(
    tmp_path: Path, settings: Settings
) -> None:
    """OOM (maxmemory with noeviction), NOPERM (an ACL user without XADD) and READONLY (a
    replica): stop reads the run, then its XADD is refused."""
    with redis_server(tmp_path / "redis", "--maxmemory-policy", "noeviction") as server:
        url = f"redis://127.0.0.1:{server.port}/0"
        s = fast(at(settings, url))
        with worker_pool(s, tmp_path) as pool:
            pool.start("w-oom").wait_ready()
            started = runctl(s, "start", "synthetic", "--arg", "items=3", "--wait", "--json")
            assert started.code == 0, f"{started}\n{logs_of(pool)}"
            run_id = json.loads(started.stdout)["id"]
        admin = redis.Redis(port=server.port)
        try:
            # A maxmemory below what it holds: every write is refused (noeviction).
            used = int(admin.info("memory")["used_memory"])
            admin.config_set("maxmemory", used // 2)
            with pytest.raises(redis.exceptions.OutOfMemoryError):
                admin.set("filler", b"x" * 1024)
            line = one_line(runctl(s, "stop", run_id), REDIS_REFUSED)
            assert "OOM" in line, line

            admin.config_set("maxmemory", 0)
            admin.acl_setuser(
                "limited",
                enabled=True,
                passwords=[f"+{PASSWORD}"],
                keys=["*"],
                channels=["*"],
                commands=["+@all", "-xadd"],
            )
            limited = at(s, f"redis://limited:{PASSWORD}@127.0.0.1:{server.port}/0")
            result = runctl(limited, "stop", run_id)
            line = one_line(result, REDIS_REFUSED)
            assert "NOPERM" in line or "permission" in line, line
            assert_no_password(result.stdout, result.stderr)

            admin.replicaof("127.0.0.1", 1)  # nothing there: stays read-only
            line = one_line(runctl(s, "cancel", run_id), REDIS_REFUSED)
            assert "READONLY" in line or "read only" in line, line
        finally:
            admin.replicaof("NO", "ONE")
            admin.close()


# --------------------------------------------------------------------------- TLS
def test_rediss_works_with_a_self_signed_certificate(tmp_path: Path, settings: Settings) -> None:
    certs = self_signed(tmp_path / "tls")
    tls_args = (
        "--tls-cert-file", str(certs.cert),
        "--tls-key-file", str(certs.key),
        "--tls-ca-cert-file", str(certs.ca),
        "--tls-auth-clients", "no",
        "--requirepass", RIGHT_PASSWORD,
    )  # fmt: skip
    client = {"ssl": True, "ssl_ca_certs": str(certs.ca), "password": RIGHT_PASSWORD}
    with redis_server(tmp_path / "redis", *tls_args, client=client, tls=True) as server:
        url = f"rediss://:{RIGHT_PASSWORD}@127.0.0.1:{server.port}/0"
        s = fast(at(settings, url))
        with worker_pool(s, tmp_path) as pool:
            # The CA as a setting for the worker, as a URL parameter for runctl.
            pool.start("w-tls", RUNSTREAM_TLS_CA=str(certs.ca)).wait_ready()
            with_ca = at(s, f"{url}?ssl_ca_certs={quote(str(certs.ca))}")
            started = runctl(with_ca, "start", "synthetic", "--arg", "items=5", "--wait", "--json")
            assert started.code == 0, f"{started}\n{logs_of(pool)}"
            assert json.loads(started.stdout)["state"] == "succeeded"
            shown = runctl(s, "list", "--json", env={"RUNSTREAM_TLS_CA": str(certs.ca)})
            assert shown.code == 0, shown
            assert [r["state"] for r in json.loads(shown.stdout)] == ["succeeded"]
            # Without the CA the server's certificate is not trusted: one line, exit 4.
            refused = runctl(s, "list")
            line = one_line(refused, UNREACHABLE)
            assert "certificate" in line, line
            assert_no_password(refused.stdout, refused.stderr, password=RIGHT_PASSWORD)
            # Plain redis:// at a TLS port is not a Redis that answers.
            plain = runctl(at(s, url.replace("rediss://", "redis://")), "list", timeout=60)
            one_line(plain, UNREACHABLE)
            assert_no_password(plain.stdout, plain.stderr, password=RIGHT_PASSWORD)
            text = logs_of(pool)
    assert "worker_started" in text
    assert_no_password(text, password=RIGHT_PASSWORD)


def test_api_logs_and_answers_never_show_the_password(tmp_path: Path, settings: Settings) -> None:
    """The API, pointed at a Redis that refuses its password, answers 503 and logs the
    trouble as JSON; the password appears in neither."""
    import urllib.error
    import urllib.request

    from runstream.embedded import free_port
    from runstream.processes import start_api, wait_http, worker_env

    with redis_server(
        tmp_path / "redis", "--requirepass", RIGHT_PASSWORD, client={"password": RIGHT_PASSWORD}
    ) as server:
        url = f"redis://app:{PASSWORD}@127.0.0.1:{server.port}/0"
        port = free_port()
        api = start_api(worker_env(at(settings, url)), port, tmp_path / "api.log")
        try:
            wait_http(api, f"http://127.0.0.1:{port}/health")
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/runs",
                headers={"Authorization": "Bearer rst_ops_" + "A" * 40},
            )
            with pytest.raises(urllib.error.HTTPError) as answer:
                urllib.request.urlopen(request, timeout=10)
            body = answer.value.read().decode()
            assert answer.value.code == 503, body
        finally:
            api.terminate()
            api.close()
        text = api.log()
    assert_no_password(body, text)
    lines = json_lines(text)
    assert any(line["event"] == "redis_trouble" for line in lines), text  # logged, not hidden
