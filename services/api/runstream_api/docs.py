"""OpenAPI 3.1 at /schema (JSON at /schema/openapi.json) and a Swagger UI page that loads
nothing from a CDN: its assets come from the litestar-offline-docs wheel, served here."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

from litestar import Router, get
from litestar.openapi.config import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin, YamlRenderPlugin
from litestar.static_files import create_static_files_router

from runstream import asyncapi
from runstream_api.context import ApiContext

ASSETS = "/schema/assets"
_SWAGGER = SwaggerRenderPlugin(
    path=["/", "/swagger"],
    js_url=f"{ASSETS}/swagger-ui-bundle.js",
    css_url=f"{ASSETS}/swagger-ui.css",
    standalone_preset_js_url=f"{ASSETS}/swagger-ui-standalone-preset.js",
    # The default favicon is a CDN link.
    favicon="",
)


def openapi_config(version: str) -> OpenAPIConfig:
    return OpenAPIConfig(
        title="runstream",
        version=version,
        description=(
            "Start, stop, continue, cancel, revert and delete runs of scenarios. Writes are "
            "commands: send an Idempotency-Key to make a retry safe; ?wait=true waits for "
            "the outcome, else 202 with a Location to poll. Errors are JSON: "
            "{status, error, message, field?}."
        ),
        path="/schema",
        render_plugins=[_SWAGGER, JsonRenderPlugin(), YamlRenderPlugin()],
    )


def assets_router() -> Router:
    directory = Path(str(files("litestar_offline_docs") / "static"))
    return create_static_files_router(path=ASSETS, directories=[directory], name="docs-assets")


@get(
    "/asyncapi",
    summary="The AsyncAPI 3.0 document of the commands and the events feed (Redis streams)",
    tags=["service"],
)
async def asyncapi_document(api: ApiContext) -> dict[str, Any]:
    # Public, like /schema: it describes the interface, not the data.
    return asyncapi.document(api.settings.prefix)
