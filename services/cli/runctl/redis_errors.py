"""The one place that turns what Redis (or the network) raised into runctl's one-line
errors and exit statuses; no message ever shows the URL's password."""

from __future__ import annotations

import ssl

import redis

from runctl import errors
from runctl.errors import CliError
from runstream.redis_url import redacted_url, scrub, secrets_of

_START_HINT = (
    "start the service with 'make run' or 'runctl dev', or point REDIS_URL at a running Redis"
)


# redis-py drops the error code from the message: name it again.
_REFUSALS: tuple[tuple[type[redis.ResponseError], str], ...] = (
    (redis.exceptions.OutOfMemoryError, "OOM, out of memory"),
    (redis.exceptions.ReadOnlyError, "READONLY, a read-only replica"),
    (redis.exceptions.NoPermissionError, "NOPERM, the user lacks the permission"),
)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def cli_error(exc: BaseException, redis_url: str) -> CliError | None:
    """The CliError for an exception from talking to Redis; None if it is not one."""
    where = redacted_url(redis_url)
    reason = scrub(_first_line(exc), secrets_of(redis_url))
    match exc:
        case redis.AuthenticationError() | redis.exceptions.AuthorizationError():
            return CliError(
                f"Redis at {where} refused the login ({reason}); check the user and password "
                "in REDIS_URL",
                errors.UNREACHABLE,
            )
        case redis.BusyLoadingError():
            return CliError(
                f"Redis at {where} is still loading its data ({reason}); try again shortly",
                errors.UNREACHABLE,
            )
        case redis.InvalidResponse():
            return CliError(
                f"what answers at {where} is not Redis ({reason}); point REDIS_URL at a Redis "
                "server",
                errors.UNREACHABLE,
            )
        case redis.ResponseError():
            # OOM (maxmemory), READONLY (a replica), NOPERM (ACL), MISCONF ...: Redis is
            # there and said no. Nothing was changed by the refused command.
            kind = next((name for cls, name in _REFUSALS if isinstance(exc, cls)), "")
            return CliError(
                f"Redis at {where} refused the command ({kind or 'error'}): {reason}",
                errors.REDIS_REFUSED,
            )
        case ssl.SSLError():
            return CliError(
                f"TLS with Redis at {where} failed ({reason}); check rediss:// and "
                "RUNSTREAM_TLS_CA / ssl_ca_certs",
                errors.UNREACHABLE,
            )
        case redis.exceptions.RedisClusterException():
            # The cluster client's own trouble (no start-up node answers, slots unknown):
            # not a RedisError, but Redis is just as unreachable.
            return CliError(
                f"cannot reach the Redis Cluster at {where} ({reason}); {_START_HINT}",
                errors.UNREACHABLE,
            )
        case redis.ConnectionError() | redis.TimeoutError() | OSError():
            return CliError(
                f"cannot reach Redis at {where} ({reason}); {_START_HINT}", errors.UNREACHABLE
            )
        case redis.RedisError():
            return CliError(f"Redis at {where} failed: {reason}", errors.REDIS_REFUSED)
    return None
