"""Redis URLs: checked before use, never shown with their password.

A URL may carry a password (``redis://app:pw@host``, or ``?password=pw``): everything
that prints or logs a URL or an error that may embed one goes through ``redacted_url``
or ``scrub``. TLS (``rediss://``) takes redis-py's query parameters (``ssl_ca_certs``,
``ssl_certfile``, ``ssl_keyfile``, ``ssl_cert_reqs``); ``with_tls_files`` adds them from
settings.

A cluster is named by ``redis+cluster://[user:password@]host:port,host:port[/0][?...]``
(``rediss+cluster://`` for TLS): the nodes to start from (any of the cluster's nodes; the
client discovers the rest), the credentials and query parameters shared by every node.
``redis_target`` splits such a URL into a plain URL of its first node and the node list.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from redis.connection import parse_url as redis_parse_url

# A cluster scheme -> the scheme of its nodes' plain URL.
CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
SCHEMES = ("redis", "rediss", "unix", *CLUSTER_SCHEMES)
MASK = "***"
# Query parameters whose value is a secret.
_SECRET_PARAMS = frozenset({"password"})
# scheme://user:password@ : the password runs up to the last "@" before the host part.
_USERINFO = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]*:)(?P<pw>[^\s/]*)(?=@)")
# A scheme and the ":" and "/" that follow it, however many (malformed URLs included).
_HEAD = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[:/]*")
_QUERY_SECRET = re.compile(r"(?P<head>[?&]password=)(?P<pw>[^&\s#]*)", re.IGNORECASE)
_EXPECTED = (
    "expected redis://[[user]:password@]host[:port][/db], rediss://... (TLS) "
    "unix:///path/to/socket, or redis+cluster://[[user]:password@]host:port,host:port "
    "(rediss+cluster:// with TLS) for a Redis Cluster"
)


class BadRedisUrl(ValueError):
    """A REDIS_URL that is not a Redis URL; the message never holds its password."""


def _userinfo(url: str) -> tuple[str, str, str] | None:
    """Split ``url`` as ``(head, secret, tail)`` around what stands before its host's "@"
    (the password, or a lone user name that may be one), also when the URL is malformed
    (``redis:/:pw@host``, ``redis:pw@host``); None when there is no "@"."""
    head = _HEAD.match(url)
    start = head.end() if head else 0
    end = min(
        (i for i in (url.find("?", start), url.find("#", start)) if i != -1), default=len(url)
    )
    at = url.rfind("@", start, end)
    if at == -1:
        return None
    colon = url.find(":", start, at)
    if colon == -1:
        # "redis://word@host": a user name to redis-py, but often a password meant as one.
        return url[:start], url[start:at], url[at:]
    return url[: colon + 1], url[colon + 1 : at], url[at:]


def redacted_url(url: str) -> str:
    """The URL with its password (userinfo or ``password=`` parameter) replaced by ***."""
    parts = _userinfo(url)
    if parts is not None and parts[1]:
        url = parts[0] + MASK + parts[2]
    return _QUERY_SECRET.sub(lambda m: m["head"] + MASK, url)


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with the password of every URL in it masked, and each of ``secrets``
    (e.g. the configured URL's password, also as decoded) replaced by ***."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    text = _USERINFO.sub(lambda m: m["head"] + (MASK if m["pw"] else ""), text)
    return _QUERY_SECRET.sub(lambda m: m["head"] + MASK, text)


def secrets_of(url: str) -> list[str]:
    """The password(s) a URL carries, as written and percent-decoded (for ``scrub``)."""
    parts = _userinfo(url)
    raw = parts[1] if parts is not None else ""
    query = [m["pw"] for m in _QUERY_SECRET.finditer(url)]
    found: list[str] = []
    for value in (raw, unquote(raw), *query, *(unquote(q) for q in query)):
        # Very short "passwords" would mask unrelated text; the URL forms are masked anyway.
        if len(value) >= 3 and value not in found:
            found.append(value)
    # Longest first: a password that contains another is replaced whole.
    return sorted(found, key=len, reverse=True)


@dataclass(frozen=True)
class RedisTarget:
    """What a REDIS_URL names: one server, or a cluster reached through ``nodes``."""

    # A redis://, rediss:// or unix:// URL: the server, or a cluster's first node (with
    # the credentials and query parameters every node shares).
    url: str
    # A cluster's start-up nodes (host, port); empty for one server.
    nodes: tuple[tuple[str, int], ...] = ()

    @property
    def cluster(self) -> bool:
        return bool(self.nodes)


def _host_port(node: str) -> tuple[str, int]:
    """``host[:port]`` (``[v6]:port`` too) as urlsplit reads it: ValueError when bad."""
    parts = urlsplit(f"redis://{node}")
    port = parts.port
    if not parts.hostname or parts.netloc != node:
        raise ValueError(f"node {node!r} is not host:port")
    return parts.hostname, 6379 if port is None else port


def redis_target(url: str) -> RedisTarget:
    """Split a cluster URL into its first node's plain URL and its nodes; any other URL is
    one server. ValueError (that may quote the URL: scrub it) when a node is malformed."""
    scheme, _, rest = url.partition("://")
    if scheme not in CLUSTER_SCHEMES:
        return RedisTarget(url)
    end = min((i for i in (rest.find(c) for c in "/?#") if i != -1), default=len(rest))
    userinfo, at, hosts = rest[:end].rpartition("@")
    names = hosts.split(",")
    nodes = tuple(_host_port(n) for n in names)
    return RedisTarget(f"{CLUSTER_SCHEMES[scheme]}://{userinfo}{at}{names[0]}{rest[end:]}", nodes)


def check_redis_url(url: str, name: str = "REDIS_URL") -> str:
    """Return ``url`` if redis-py can connect with it, else raise BadRedisUrl with a
    one-line reason (the URL shown without its password)."""
    shown = redacted_url(url)
    secrets = secrets_of(url)
    scheme = url.partition("://")[0] if "://" in url else ""
    if scheme not in SCHEMES:
        what = f"unknown scheme {scrub(scheme, secrets)!r}" if scheme else "no scheme://"
        raise BadRedisUrl(f"{name}={shown} is not a Redis URL ({what}); {_EXPECTED}")
    if scheme in CLUSTER_SCHEMES:
        return _check_cluster_url(url, name, shown, secrets)
    try:
        parts = urlsplit(url)
        port = parts.port  # parses the port: ValueError when not a number in range
        redis_parse_url(url)  # type: ignore[no-untyped-call]  # what redis-py itself refuses (bad query values ...)
    except ValueError as exc:
        reason = scrub(str(exc), secrets)
        raise BadRedisUrl(f"{name}={shown} is not a valid URL ({reason}); {_EXPECTED}") from None
    if scheme == "unix":
        if not parts.path or parts.path == "/":
            raise BadRedisUrl(f"{name}={shown} names no socket path; {_EXPECTED}")
        return url
    if not parts.hostname:
        raise BadRedisUrl(f"{name}={shown} names no host; {_EXPECTED}")
    if port == 0:
        raise BadRedisUrl(f"{name}={shown}: port 0 is not a port; {_EXPECTED}")
    db = unquote(parts.path).strip("/")
    if db and not db.isdigit():
        raise BadRedisUrl(f"{name}={shown}: database {db!r} is not a number; {_EXPECTED}")
    return url


def _check_cluster_url(url: str, name: str, shown: str, secrets: list[str]) -> str:
    try:
        target = redis_target(url)
    except ValueError as exc:
        reason = scrub(str(exc), secrets)
        raise BadRedisUrl(f"{name}={shown} is not a valid URL ({reason}); {_EXPECTED}") from None
    if any(port == 0 for _, port in target.nodes):
        raise BadRedisUrl(f"{name}={shown}: port 0 is not a port; {_EXPECTED}")
    db = unquote(urlsplit(target.url).path).strip("/")
    if db not in ("", "0"):
        raise BadRedisUrl(f"{name}={shown}: a Redis Cluster has only database 0, not {db!r}")
    check_redis_url(target.url, name)
    return url


def with_tls_files(url: str, ca: str = "", cert: str = "", key: str = "") -> str:
    """``url`` with redis-py's TLS file parameters added (ones the URL sets itself win)."""
    wanted = {"ssl_ca_certs": ca, "ssl_certfile": cert, "ssl_keyfile": key}
    wanted = {k: v for k, v in wanted.items() if v}
    if not wanted:
        return url
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    present = {k for k, _ in query}
    query += [(k, v) for k, v in wanted.items() if k not in present]
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote, safe="/")))
