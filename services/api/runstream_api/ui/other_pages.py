"""Login, scenarios (with their start forms), dead letters, network stats and the guide."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar import Controller, Request, get, post
from litestar.datastructures import Cookie
from litestar.response import Redirect, Template
from markdown_it import MarkdownIt
from markupsafe import Markup

from runstream.contracts import commands as cmd
from runstream.domain.scenarios import BadArguments, Scenario
from runstream.ids import new_id
from runstream.query import split_label
from runstream.store import dlq
from runstream.tokens import ALL_PROJECTS, TokenRecord
from runstream_api.auth import require, visible_project
from runstream_api.context import ApiContext
from runstream_api.errors import not_found
from runstream_api.scenarios_routes import info
from runstream_api.ui import commands, present, schema_form
from runstream_api.ui.render import PREFIX, page
from runstream_api.ui.session import COOKIE, MAX_AGE_S

GUIDE = Path(__file__).parent / "guide.md"


def _next(target: str) -> str:
    """Where to go after login: a UI path only (never another site)."""
    return (
        target
        if target.startswith(f"{PREFIX}/") and not target.startswith("//")
        else (f"{PREFIX}/runs")
    )


class LoginPage(Controller):
    path = "/"

    @get("/", name="ui-home")
    async def home(self) -> Redirect:
        return Redirect(f"{PREFIX}/runs")

    @get("/login", name="ui-login")
    async def login_form(self, request: Request[Any, Any, Any], next_: str = "") -> Template:
        return page("login.html", request, None, next=_next(request.query_params.get("next", "")))

    @post("/login", name="ui-login-post", status_code=200)
    async def login(self, request: Request[Any, Any, Any], api: ApiContext) -> Template | Redirect:
        form = await request.form()
        token = str(form.get("token", "")).strip()
        target = _next(str(form.get("next", "")))
        record = await api.tokens.check(token) if token else None
        if record is None:
            message = "Enter an API token." if not token else "That token is unknown or revoked."
            return page("login.html", request, None, status=401, error=message, next=target)
        cookie = Cookie(
            key=COOKIE,
            value=token,
            path=PREFIX,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            max_age=MAX_AGE_S,
        )
        return Redirect(target, status_code=303, cookies=[cookie])

    @post("/logout", name="ui-logout", status_code=303)
    async def logout(self) -> Redirect:
        gone = Cookie(key=COOKIE, value="", path=PREFIX, max_age=0, httponly=True)
        return Redirect(f"{PREFIX}/login", status_code=303, cookies=[gone])


def _visible(api: ApiContext, caller: TokenRecord) -> list[Scenario[Any]]:
    return [s for s in api.registry if caller.project in (ALL_PROJECTS, s.project)]


class ScenariosPage(Controller):
    path = "/scenarios"

    @get("/", name="ui-scenarios")
    async def scenarios(
        self, request: Request[Any, Any, Any], api: ApiContext, ui_caller: TokenRecord
    ) -> Template:
        require(ui_caller, "viewer", visible_project(ui_caller))
        shown = [info(s) for s in _visible(api, ui_caller)]
        return page("scenarios.html", request, ui_caller, scenarios=shown)

    def _scenario(self, api: ApiContext, caller: TokenRecord, name: str) -> Scenario[Any]:
        found = api.registry.find(name)
        if found is None:
            raise not_found(f"no scenario {name!r}")
        require(caller, "viewer", found.project)
        return found

    def _form_page(
        self,
        request: Request[Any, Any, Any],
        caller: TokenRecord,
        scenario: Scenario[Any],
        *,
        status: int = 200,
        values: dict[str, str] | None = None,
        error: str = "",
        error_field: str | None = None,
    ) -> Template:
        described = info(scenario)
        return page(
            "scenario.html",
            request,
            caller,
            status=status,
            scenario=described,
            form=schema_form.fields(described.parameters),
            values=values or {},
            error=error,
            error_field=error_field,
            may_start=present.may(caller, "operator", scenario.project),
        )

    @get("/{name:str}", name="ui-scenario")
    async def scenario(
        self, request: Request[Any, Any, Any], api: ApiContext, ui_caller: TokenRecord, name: str
    ) -> Template:
        return self._form_page(request, ui_caller, self._scenario(api, ui_caller, name))

    @post("/{name:str}/start", name="ui-scenario-start", status_code=200)
    async def start(
        self, request: Request[Any, Any, Any], api: ApiContext, ui_caller: TokenRecord, name: str
    ) -> Template | Redirect:
        scenario = self._scenario(api, ui_caller, name)
        require(ui_caller, "operator", scenario.project)
        raw = await request.form()
        values = {k: str(v) for k, v in raw.items()}
        form = schema_form.fields(info(scenario).parameters)
        try:
            args = schema_form.arguments(form, values)
            scenario.validate(args)
            labels = _labels(values.get("run_labels", ""))
            command = cmd.StartRun(
                run_id=new_id(),
                command_id="ui-" + new_id(),
                actor=ui_caller.subject,
                scenario=scenario.name,
                args=args,
                name=values.get("run_name", "").strip(),
                description=values.get("run_description", "").strip(),
                labels=labels,
            )
            cmd.checked_bytes(command, api.settings.max_command_bytes)
        except (schema_form.FormError, BadArguments, cmd.BadCommand, ValueError) as exc:
            message = str(exc)
            field = getattr(exc, "field", None) or schema_form.field_of(message)
            return self._form_page(
                request,
                ui_caller,
                scenario,
                status=422,
                values=values,
                error=message,
                error_field=field,
            )
        status = await commands.send(api, ui_caller, command)
        if status.status == "rejected":
            return self._form_page(
                request,
                ui_caller,
                scenario,
                status=409,
                values=values,
                error=f"the service rejected the start: {status.reason}",
            )
        return Redirect(f"{PREFIX}/runs/{command.run_id}", status_code=303)


def _labels(text: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    for part in text.replace(",", " ").split():
        split = split_label(part)
        if split is None:
            raise ValueError(f"bad label {part!r}: expected key=value")
        labels[split[0]] = split[1]
    return labels


class DeadLettersPage(Controller):
    path = "/dead-letters"

    @get("/", name="ui-dead-letters")
    async def letters(
        self, request: Request[Any, Any, Any], api: ApiContext, ui_caller: TokenRecord
    ) -> Template:
        require(ui_caller, "viewer", visible_project(ui_caller))
        return page(
            "dead_letters.html",
            request,
            ui_caller,
            letters=await api.client.dead_letters(),
            may_admin=present.may(ui_caller, "admin", ALL_PROJECTS),
            notice=request.query_params.get("notice", ""),
        )

    @post("/{letter_id:str}/{what:str}", name="ui-dead-letter-act", status_code=200)
    async def act(
        self,
        request: Request[Any, Any, Any],
        api: ApiContext,
        ui_caller: TokenRecord,
        letter_id: str,
        what: str,
    ) -> Template | Redirect:
        # Letters are of no one project: handling them is for an admin of all projects.
        require(ui_caller, "admin", ALL_PROJECTS)
        letter = await api.client.dead_letter(letter_id)
        if letter is None:
            raise not_found(f"no dead letter {letter_id} (retried or dropped already?)")
        if what == "retry":
            try:
                entry = await api.client.retry_dead_letter(letter)
            except dlq.NotRetryable as exc:
                return page(
                    "dead_letters.html",
                    request,
                    ui_caller,
                    status=409,
                    letters=await api.client.dead_letters(),
                    may_admin=True,
                    error=str(exc),
                )
            notice = f"letter {letter_id} published again as {entry}"
        elif what == "drop":
            await api.client.drop_dead_letter(letter)
            notice = f"letter {letter_id} dropped"
        else:
            raise not_found(f"no action {what!r} for dead letters: retry or drop")
        return Redirect(f"{PREFIX}/dead-letters?notice={notice}", status_code=303)


class NetworkPage(Controller):
    path = "/network"

    @get("/", name="ui-network")
    async def network(
        self, request: Request[Any, Any, Any], api: ApiContext, ui_caller: TokenRecord
    ) -> Template:
        require(ui_caller, "viewer", visible_project(ui_caller))
        return page(
            "network.html",
            request,
            ui_caller,
            stats=await api.client.network_stats(),
            outbox=await api.client.outbox(20),
        )


_markdown = MarkdownIt("commonmark")


def guide_html() -> Markup:
    return Markup(_markdown.render(GUIDE.read_text(encoding="utf-8")))  # our own text


class GuidePage(Controller):
    path = "/guide"

    @get("/", name="ui-guide")
    async def guide(self, request: Request[Any, Any, Any], ui_caller: TokenRecord) -> Template:
        return page("guide.html", request, ui_caller, guide=guide_html())
