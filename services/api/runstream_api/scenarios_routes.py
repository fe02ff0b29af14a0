"""GET /scenarios: what runs can be started from, with each one's parameter JSON Schema."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, get

from runstream_api.context import ApiContext
from runstream_api.errors import not_found


class ScenarioInfo(msgspec.Struct, kw_only=True):
    name: str
    version: str
    description: str
    # JSON Schema of the scenario's parameters (the ``args`` of a start).
    parameters: dict[str, Any]


class ScenariosController(Controller):
    path = "/scenarios"
    tags = ("scenarios",)

    @get("/", summary="The scenarios, with their parameter JSON Schema")
    async def list_scenarios(self, api: ApiContext) -> list[ScenarioInfo]:
        return [msgspec.convert(s.describe(), ScenarioInfo) for s in api.registry]

    @get("/{name:str}", summary="One scenario")
    async def get_scenario(self, api: ApiContext, name: str) -> ScenarioInfo:
        for s in api.registry:
            if s.name == name:
                return msgspec.convert(s.describe(), ScenarioInfo)
        known = ", ".join(s.name for s in api.registry) or "none"
        raise not_found(f"no scenario {name!r} (known: {known})")
