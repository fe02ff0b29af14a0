"""Throwaway redis-servers with unusual configurations (a password, TLS, a tiny maxmemory),
and a plain TCP server that is not Redis: the troubles a user can point runstream at."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from runstream.embedded import find_redis_server, free_port


@dataclass(frozen=True)
class Server:
    port: int
    proc: subprocess.Popen[bytes]
    directory: Path


def _binary() -> str:
    try:
        return find_redis_server("auto")[0]
    except RuntimeError as exc:
        pytest.skip(f"no redis-server: {exc}")


@contextlib.contextmanager
def redis_server(
    directory: Path, *args: str, client: dict[str, Any] | None = None, tls: bool = False
) -> Iterator[Server]:
    """A redis-server on a free port (``--tls-port`` instead of ``--port`` with ``tls``),
    ready when a client built with ``client`` options answers PING."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    ports = ["--port", "0", "--tls-port", str(port)] if tls else ["--port", str(port)]
    command = [_binary(), *ports, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    command += ["--dir", str(directory), *args]
    with open(directory / "redis.out", "wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    probe = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1, **(client or {}))
    try:
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                output = (directory / "redis.out").read_text(errors="replace")
                if tls and "Bad directive" in output:
                    pytest.skip("this redis-server was built without TLS")
                raise AssertionError(f"redis-server exited:\n{output}")
            try:
                if probe.ping():
                    break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield Server(port, proc, directory)
    finally:
        probe.close()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass(frozen=True)
class Certificates:
    ca: Path
    cert: Path
    key: Path


def self_signed(directory: Path) -> Certificates:
    """A CA and a server certificate for 127.0.0.1 signed by it, made with openssl."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl to make a certificate with")
    directory.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=directory, check=True, capture_output=True)

    run(
        *[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=runstream-test-ca",
        ],
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    )
    run(
        *["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1"],
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    )
    (directory / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run(
        *[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
        ],
        "-extfile",
        "ext.cnf",
        "-out",
        "server.crt",
    )
    return Certificates(directory / "ca.crt", directory / "server.crt", directory / "server.key")


@contextlib.contextmanager
def not_redis() -> Iterator[int]:
    """A TCP server that answers like a web server: what a mistyped port reaches."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    port: int = listener.getsockname()[1]
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn, contextlib.suppress(OSError):
                conn.settimeout(1)
                conn.recv(1024)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        done.set()
        thread.join(5)
        listener.close()
