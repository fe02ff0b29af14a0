"""Pages: the Jinja environment (autoescaped, with the UI's filters) and the one way a
handler answers with a page, the caller and the current path always in its context."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from litestar import Request
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Template
from litestar.template.config import TemplateConfig
from markupsafe import Markup, escape

from runstream.tokens import TokenRecord
from runstream_api.ui import present

TEMPLATES = Path(__file__).parent / "templates"
PREFIX = "/ui"
_RUN_ID = re.compile(r"\b([0-9A-HJKMNP-TV-Z]{26})\b")


def link_runs(text: str) -> Markup:
    """Text with each run id in it as a link to that run's page (escaped otherwise)."""
    out = []
    last = 0
    for match in _RUN_ID.finditer(text):
        out.append(escape(text[last : match.start()]))
        run_id = match.group(1)
        out.append(Markup('<a href="{}/runs/{}">{}</a>').format(PREFIX, run_id, run_id))
        last = match.end()
    out.append(escape(text[last:]))
    return Markup("").join(out)


def query_with(params: dict[str, str], **changes: str | None) -> str:
    """``?...``: the page's query with ``changes`` (None removes a parameter)."""
    merged = {**params, **changes}
    kept = {k: v for k, v in merged.items() if v not in (None, "")}
    return "?" + urlencode(kept) if kept else "?"


def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        when=present.when,
        iso=present.iso,
        duration=present.duration,
        size=present.size,
        link_runs=link_runs,
    )
    env.globals.update(prefix=PREFIX, query_with=query_with)
    return env


def template_config() -> TemplateConfig[Any]:

    return TemplateConfig(instance=JinjaTemplateEngine.from_environment(environment()))


def page(
    name: str,
    request: Request[Any, Any, Any],
    caller: TokenRecord | None,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> Template:
    return Template(
        name,
        context={"caller": caller, "path": request.url.path, **context},
        status_code=status,
        headers=headers,
    )
