"""Process settings, read once from the environment (RUNSTREAM_* and REDIS_URL)."""

from __future__ import annotations

import os

import msgspec

from runstream.redis_url import (
    BadRedisUrl,
    check_redis_url,
    redis_target,
    scrub,
    secrets_of,
    with_tls_files,
)

EMBEDDED_PORT = 6390
DEFAULT_REDIS_URL = f"redis://127.0.0.1:{EMBEDDED_PORT}/0"
# Network partitions on a cluster unless set: enough to spread over a few masters.
CLUSTER_PARTITIONS = 16
MAX_PARTITIONS = 1024


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    # May hold a password: show it only through runstream.redis_url.redacted_url.
    redis_url: str = DEFAULT_REDIS_URL
    # TLS files for a rediss:// URL (the URL's own ssl_* query parameters win).
    tls_ca_file: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""
    prefix: str = "rs"
    # Fixed for the lifetime of a deployment's data: a run's shard is derived from its id.
    shards: int = 4
    # Network partitions (hash slots the network is spread over), also fixed for the
    # deployment's lifetime: an element's partition is derived from its namespace.
    # 0: 1 on one Redis (one slot, the fastest), CLUSTER_PARTITIONS on a cluster.
    network_partitions: int = 0
    # A chunk ends after this many items or this many seconds, whichever comes first;
    # stop and other commands take effect between chunks.
    chunk_items: int = 500
    chunk_seconds: float = 0.1
    # Effects compensated per revert step.
    revert_batch: int = 2000
    # A run's execution lease; a dead worker's runs are picked up after it expires.
    lease_ms: int = 5000
    # Pending commands of a dead worker are claimed after this idle time.
    claim_idle_ms: int = 5000
    # A command that failed handling this many times goes to the dead-letter stream.
    max_deliveries: int = 5
    snapshot_every: int = 50
    max_command_bytes: int = 64 * 1024
    # A dead letter keeps this many bytes of its payload (plus its size and sha256); one
    # cut shorter cannot be retried. The stream keeps at most this many letters per shard,
    # none older than this (0: no age cap).
    dlq_keep_bytes: int = 4096
    dlq_maxlen: int = 10_000
    dlq_max_age_s: float = 7 * 24 * 3600
    commands_per_read: int = 100
    # Runs one worker executes at once; past that, runs wait queued (priority, then age).
    max_parallel_runs: int = 8
    # Log lines kept per run: the oldest are dropped (and counted) past this.
    max_log_lines: int = 10_000
    # Result files: one file's size, and all of a run's files together, in bytes.
    max_result_bytes: int = 1024 * 1024
    max_run_result_bytes: int = 16 * 1024 * 1024
    # Runs whose commands one worker handles at once (across its shards).
    max_parallel_commands: int = 32
    # Redis connections a worker may open: handlers, executor and the claim/read loops.
    max_connections: int = 128
    # A feed no consumer group reads keeps about this many entries; with groups, it is
    # trimmed only past what every group has acknowledged.
    feed_maxlen: int = 10_000
    # Consumers idle this long with nothing pending are workers that went away: removed.
    stale_consumer_ms: int = 3_600_000
    upkeep_interval_s: float = 10.0
    # Extra scenario modules ("pkg.module" or "pkg.module:ATTR"), comma separated.
    scenario_modules: tuple[str, ...] = ()
    # Retention by outcome: a run finished this many days ago is deleted (its effects are
    # kept, a tombstone records it); 0 keeps runs in that state for ever. Pinned runs stay.
    retain_succeeded_days: float = 0
    retain_cancelled_days: float = 0
    retain_failed_days: float = 0
    retain_reverted_days: float = 0
    worker_name: str = ""
    shutdown_grace_s: float = 10.0
    # A worker's HTTP status port: /metrics (Prometheus), /health (ready: its loop answers,
    # it consumes, Redis answers) and /livez (its loop answers). 0, the default: none (so
    # several workers on one machine don't clash); the container image sets 9464.
    metrics_port: int = 0
    metrics_host: str = "127.0.0.1"
    log_format: str = "auto"  # auto | json | console
    # The HTTP API answers one caller (token, else address) at most this many requests per
    # second, then 429 with Retry-After; 0: no limit.
    api_rate_limit: int = 200

    def connection_url(self) -> str:
        """What redis-py and faststream connect with: the URL plus the TLS file settings."""
        return with_tls_files(
            self.redis_url, self.tls_ca_file, self.tls_cert_file, self.tls_key_file
        )

    def to_env(self) -> dict[str, str]:
        """Every setting as the environment variable that sets it: the exact inverse of
        ``load_settings`` (``load_settings(s.to_env()) == s``), to configure a child process."""
        env: dict[str, str] = {}
        for field in msgspec.structs.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, tuple):
                value = ",".join(value)
            # repr: the shortest text that reads back as the same float.
            env[env_name(field.name)] = repr(value) if isinstance(value, float) else str(value)
        return env


_ENV_NAMES = {
    "redis_url": "REDIS_URL",
    "tls_ca_file": "RUNSTREAM_TLS_CA",
    "tls_cert_file": "RUNSTREAM_TLS_CERT",
    "tls_key_file": "RUNSTREAM_TLS_KEY",
}


def network_partitions(settings: Settings) -> int:
    """The network partition count these settings mean (0: by the kind of Redis)."""
    if settings.network_partitions:
        return settings.network_partitions
    return CLUSTER_PARTITIONS if redis_target(settings.redis_url).cluster else 1


def env_name(field: str) -> str:
    """The environment variable that sets the Settings field ``field``."""
    return _ENV_NAMES.get(field, "RUNSTREAM_" + field.upper())


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """Build Settings from env vars; a bad value raises ValueError naming the variable."""
    env = dict(os.environ if env is None else env)
    raw: dict[str, object] = {}
    for field in msgspec.structs.fields(Settings):
        name = env_name(field.name)
        if name not in env or env[name] == "":
            continue
        value: object = env[name]
        if field.name == "scenario_modules":
            value = tuple(p.strip() for p in env[name].split(",") if p.strip())
        raw[field.name] = value
    try:
        settings = msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        # Name the variable the user set, not the field: "... - at `$.lease_ms`".
        message = str(exc)
        for field in msgspec.structs.fields(Settings):
            message = message.replace(f"`$.{field.name}`", env_name(field.name))
        # msgspec may quote the value it refused: never a password.
        message = scrub(message, secrets_of(env.get("REDIS_URL", "")))
        raise ValueError(f"bad setting: {message}") from None
    if settings.shards < 1:
        raise ValueError("bad setting: RUNSTREAM_SHARDS must be at least 1")
    if not 0 <= settings.network_partitions <= MAX_PARTITIONS:
        raise ValueError(
            f"bad setting: RUNSTREAM_NETWORK_PARTITIONS must be 0 (automatic) to {MAX_PARTITIONS}"
        )
    for name in ("max_parallel_runs", "max_log_lines", "max_result_bytes", "max_run_result_bytes"):
        if getattr(settings, name) < 1:
            raise ValueError(f"bad setting: RUNSTREAM_{name.upper()} must be at least 1")
    if not 0 <= settings.metrics_port <= 65535:
        raise ValueError("bad setting: RUNSTREAM_METRICS_PORT must be 0 (off) to 65535")
    if settings.api_rate_limit < 0:
        raise ValueError("bad setting: RUNSTREAM_API_RATE_LIMIT must be 0 (no limit) or more")
    if settings.dlq_maxlen < 1:
        raise ValueError("bad setting: RUNSTREAM_DLQ_MAXLEN must be at least 1")
    if settings.dlq_keep_bytes < 0 or settings.dlq_max_age_s < 0:
        raise ValueError(
            "bad setting: RUNSTREAM_DLQ_KEEP_BYTES and RUNSTREAM_DLQ_MAX_AGE_S must not be negative"
        )
    try:
        check_redis_url(settings.redis_url)
    except BadRedisUrl as exc:
        raise ValueError(f"bad setting: {exc}") from None
    return settings
