"""Who calls: ``Authorization: Bearer rst_...`` checked against the hashed tokens; 401
without a valid one, 403 naming the role needed when it ranks too low for the project."""

from __future__ import annotations

from typing import Any

from litestar import Request

from runstream.domain.run import RunSummary
from runstream.tokens import ALL_PROJECTS, DEFAULT_PROJECT, Role, TokenRecord, allows
from runstream_api.context import ApiContext
from runstream_api.errors import ApiError, Problem

_BEARER = "bearer "


def unauthorized(message: str) -> ApiError:
    return ApiError(Problem(status=401, error="unauthorized", message=message))


async def provide_caller(api: ApiContext, request: Request[Any, Any, Any]) -> TokenRecord:
    # Mistral clients without Keystone send their token as X-Auth-Token.
    header = request.headers.get("authorization", "")
    token = request.headers.get("x-auth-token", "")
    if header:
        if not header.lower().startswith(_BEARER):
            raise unauthorized("the Authorization header must be 'Bearer rst_...'")
        token = header[len(_BEARER) :].strip()
    if not token:
        hint = ""
        if request.url.path.endswith("/events"):
            # EventSource cannot send headers: a page signed in to the UI has its streams.
            hint = "; a browser's EventSource: sign in to the UI and use /ui" + request.url.path
        raise unauthorized(
            f"no API token: send 'Authorization: Bearer rst_...' (runctl token create){hint}"
        )
    record = await api.tokens.check(token)
    if record is None:
        raise unauthorized("the API token is unknown or revoked")
    return record


def require(caller: TokenRecord, needed: Role, project: str = DEFAULT_PROJECT) -> None:
    if not allows(caller, needed, project):
        scope = "all projects" if caller.project == ALL_PROJECTS else f"project {caller.project!r}"
        raise ApiError(
            Problem(
                status=403,
                error="forbidden",
                message=(
                    f"this needs the {needed} role for project {project!r}; token "
                    f"{caller.id} ({caller.subject}) is {caller.role} of {scope}"
                ),
            )
        )


def visible_project(caller: TokenRecord) -> str:
    """A project the caller may read (for reads that span projects, such as a list)."""
    return DEFAULT_PROJECT if caller.project == ALL_PROJECTS else caller.project


def project_of(api: ApiContext, scenario: str) -> str:
    """A run belongs to its scenario's project (a scenario no longer known: the default)."""
    found = api.registry.find(scenario)
    return found.project if found is not None else DEFAULT_PROJECT


def require_run(api: ApiContext, caller: TokenRecord, needed: Role, run: RunSummary) -> None:
    require(caller, needed, project_of(api, run.scenario))
