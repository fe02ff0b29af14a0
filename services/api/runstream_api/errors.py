"""Every error the API answers is one JSON body, ``Problem``, with a message a person can
act on; the exception handlers here turn what the handlers and Litestar raise into it."""

from __future__ import annotations

from typing import Any

import msgspec
import redis
import structlog
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from litestar.types import ExceptionHandlersMap

from runstream.client import ResultNotFound, RunNotFound
from runstream.contracts.commands import BadCommand
from runstream.store.events import Tombstone
from runstream_api.times import to_wire

log = structlog.get_logger("runstream_api")


class Problem(msgspec.Struct, kw_only=True, omit_defaults=True):
    """An error: its HTTP status, a short machine-readable code, and what went wrong."""

    status: int
    error: str
    message: str
    # The request field at fault (bad input), when there is one.
    field: str | None = None
    # A deleted run's tombstone (410).
    tombstone: Tombstone | None = None
    # What the refused command was (409): its id, so a caller can correlate.
    command_id: str | None = None


class ApiError(Exception):
    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


def bad_input(message: str, field: str | None = None, status: int = 400) -> ApiError:
    return ApiError(Problem(status=status, error="bad_input", message=message, field=field))


def not_found(message: str) -> ApiError:
    return ApiError(Problem(status=404, error="not_found", message=message))


def gone(tomb: Tombstone) -> ApiError:
    return ApiError(
        Problem(
            status=410,
            error="deleted",
            message=f"run {tomb.run_id} was deleted by {tomb.actor}",
            tombstone=tomb,
        )
    )


def rejected(reason: str, command_id: str | None = None) -> ApiError:
    return ApiError(Problem(status=409, error="rejected", message=reason, command_id=command_id))


def _respond(problem: Problem, headers: dict[str, str] | None = None) -> Response[Any]:
    # to_wire: a tombstone's time in ISO 8601, as every time the API sends.
    return Response(
        to_wire(problem), status_code=problem.status, media_type=MediaType.JSON, headers=headers
    )


def _api_error(_: Request[Any, Any, Any], exc: ApiError) -> Response[Problem]:
    return _respond(exc.problem)


def _field_of(extra: Any) -> str | None:
    if isinstance(extra, list) and extra and isinstance(extra[0], dict):
        key = extra[0].get("key")
        return str(key) if key else None
    return None


def _validation(_: Request[Any, Any, Any], exc: ValidationException) -> Response[Problem]:
    # Litestar lists each bad field in ``extra``: name the first in the message.
    field = _field_of(exc.extra)
    detail = exc.extra[0].get("message", "") if field and isinstance(exc.extra, list) else ""
    message = f"bad {field}: {detail}" if field else str(exc.detail)
    return _respond(Problem(status=400, error="bad_input", message=message, field=field))


def _http(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Problem]:
    code = {
        400: "bad_input",
        401: "unauthorized",
        403: "forbidden",
        404: "not_found",
        405: "method_not_allowed",
        413: "too_large",
        429: "too_many_requests",
    }.get(exc.status_code, "error")
    headers = dict(exc.headers or {})
    message = str(exc.detail)
    if exc.status_code == 429:
        # Litestar's limiter says when its window resets; a client waits that long.
        retry_after = headers.get("RateLimit-Reset", "1")
        headers["Retry-After"] = retry_after
        policy = headers.get("RateLimit-Policy", "")
        message = (
            f"too many requests from this caller (RateLimit-Policy: {policy}): "
            f"retry after {retry_after} s"
        )
    return _respond(Problem(status=exc.status_code, error=code, message=message), headers)


def _bad_command(_: Request[Any, Any, Any], exc: BadCommand) -> Response[Problem]:
    return _respond(Problem(status=400, error="bad_input", message=str(exc)))


def _lookup(_: Request[Any, Any, Any], exc: LookupError) -> Response[Problem]:
    return _respond(Problem(status=404, error="not_found", message=str(exc)))


def _redis(
    _: Request[Any, Any, Any], exc: redis.RedisError | redis.exceptions.RedisClusterException
) -> Response[Problem]:
    # Never the URL (it may carry a password): the kind of trouble is enough here.
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if isinstance(exc, redis.ResponseError):
        message = f"Redis refused the command: {first}; nothing was changed"
    else:
        message = "Redis is unreachable; try again shortly"
    log.warning("redis_trouble", error=type(exc).__name__)
    return _respond(Problem(status=503, error="redis_unavailable", message=message))


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Problem]:
    log.exception("unhandled", path=request.url.path)
    return _respond(
        Problem(
            status=HTTP_500_INTERNAL_SERVER_ERROR,
            error="internal",
            message=f"internal error ({type(exc).__name__}); see the API's log",
        )
    )


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    ApiError: _api_error,
    ValidationException: _validation,
    HTTPException: _http,
    BadCommand: _bad_command,
    RunNotFound: _lookup,
    ResultNotFound: _lookup,
    redis.RedisError: _redis,
    # The cluster client's "no node answers" is not a RedisError.
    redis.exceptions.RedisClusterException: _redis,
    Exception: _unexpected,
}
