"""GET /scenarios: what runs can be started from, with each one's parameter JSON Schema."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, get

from runstream.domain.scenarios import Scenario
from runstream.tokens import ALL_PROJECTS, TokenRecord
from runstream_api.auth import require, visible_project
from runstream_api.context import ApiContext
from runstream_api.errors import not_found


class ScenarioInfo(msgspec.Struct, kw_only=True):
    name: str
    version: str
    description: str
    # The project its runs belong to (tokens give roles per project).
    project: str
    # JSON Schema of the scenario's parameters (the ``args`` of a start).
    parameters: dict[str, Any]


def info(scenario: Scenario[Any]) -> ScenarioInfo:
    return msgspec.convert({**scenario.describe(), "project": scenario.project}, ScenarioInfo)


class ScenariosController(Controller):
    path = "/scenarios"
    tags = ("scenarios",)

    @get("/", summary="The scenarios, with their parameter JSON Schema")
    async def list_scenarios(self, api: ApiContext, caller: TokenRecord) -> list[ScenarioInfo]:
        require(caller, "viewer", visible_project(caller))
        return [info(s) for s in api.registry if caller.project in (ALL_PROJECTS, s.project)]

    @get("/{name:str}", summary="One scenario")
    async def get_scenario(self, api: ApiContext, caller: TokenRecord, name: str) -> ScenarioInfo:
        found = api.registry.find(name)
        if found is None:
            known = ", ".join(s.name for s in api.registry) or "none"
            raise not_found(f"no scenario {name!r} (known: {known})")
        require(caller, "viewer", found.project)
        return info(found)
