"""The UI's router: its pages, the live feed, the static assets, and error pages (a UI
error is a page, not the API's JSON; no valid session: the sign-in page)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from litestar import MediaType, Request, Response, Router
from litestar.di import Provide
from litestar.exceptions import HTTPException, ValidationException
from litestar.response import Redirect, Template
from litestar.static_files import create_static_files_router
from litestar.types import ExceptionHandlersMap

from runstream.client import ResultNotFound, RunNotFound
from runstream_api.errors import ApiError
from runstream_api.ui import event_streams, live, other_pages
from runstream_api.ui.render import PREFIX, page, template_config
from runstream_api.ui.run_page import RunPage
from runstream_api.ui.runs_list import RunsPage
from runstream_api.ui.session import ForeignOrigin, LoginNeeded, provide_ui_caller

STATIC = Path(__file__).parent / "static"

__all__ = ["router", "template_config"]


def _login(request: Request[Any, Any, Any], _: LoginNeeded) -> Response[Any]:
    target = f"{PREFIX}/login?next={quote(request.url.path)}"
    if request.headers.get("hx-request"):
        # htmx follows a redirect inside its request: have the browser go instead.
        return Response("", status_code=401, headers={"HX-Redirect": target})
    return Redirect(target, status_code=303)


def _error(request: Request[Any, Any, Any], status: int, message: str) -> Template:
    return page("error.html", request, None, status=status, message=message)


def _api_error(request: Request[Any, Any, Any], exc: ApiError) -> Template:
    return _error(request, exc.problem.status, exc.problem.message)


def _http(request: Request[Any, Any, Any], exc: HTTPException) -> Template:
    return _error(request, exc.status_code, str(exc.detail))


def _validation(request: Request[Any, Any, Any], exc: ValidationException) -> Template:
    return _error(request, 400, f"bad request: {exc.detail}")


def _lookup(request: Request[Any, Any, Any], exc: LookupError) -> Template:
    return _error(request, 404, str(exc))


def _foreign(request: Request[Any, Any, Any], _: ForeignOrigin) -> Response[str]:
    return Response(
        "refused: this form was not sent from the runstream UI",
        status_code=403,
        media_type=MediaType.TEXT,
    )


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    LoginNeeded: _login,
    ForeignOrigin: _foreign,
    ApiError: _api_error,
    ValidationException: _validation,
    HTTPException: _http,
    RunNotFound: _lookup,
    ResultNotFound: _lookup,
}


def router() -> Router:
    static = create_static_files_router(
        path="/static", directories=[STATIC], name="ui-static", include_in_schema=False
    )
    return Router(
        path=PREFIX,
        route_handlers=[
            other_pages.LoginPage,
            RunsPage,
            RunPage,
            other_pages.ScenariosPage,
            other_pages.DeadLettersPage,
            other_pages.NetworkPage,
            other_pages.GuidePage,
            live.live,
            event_streams.events,
            event_streams.run_events,
            static,
        ],
        dependencies={"ui_caller": Provide(provide_ui_caller)},
        exception_handlers=EXCEPTION_HANDLERS,
        include_in_schema=False,
    )
