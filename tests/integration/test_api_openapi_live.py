"""Property-based live checks of the OpenAPI document (schemathesis): for every operation,
requests generated from the document (valid ones) sent to a real API process with a real
worker and Redis never get a server error, and every answer's body conforms to the schema
the document gives for its status."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from runstream.settings import Settings

from .api_service import ApiService, api_service

# A dev dependency since this test: an environment installed before it skips it.
schemathesis = pytest.importorskip("schemathesis")
from schemathesis import Case  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.core.result import Ok  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
)

# Examples per operation: enough to reach each parameter's edges, few enough for CI.
EXAMPLES = 15
# Streams never end, and an archive is no JSON: their shapes are tested elsewhere.
SKIPPED = ("/events", "/archive", "/ui")


def _summary(exc: BaseException) -> str:
    """What went wrong, in a few lines (schemathesis groups the failures of one case)."""
    found = [exc, *getattr(exc, "exceptions", [])]
    lines = [f"{type(e).__name__}: " + " | ".join(str(e).strip().splitlines()[:3]) for e in found]
    return "\n    ".join(dict.fromkeys(lines))


@pytest.fixture(scope="module")
def api(
    module_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiService]:
    with api_service(module_settings, tmp_path_factory.mktemp("api")) as service:
        service.http.post("/runs", params={"wait": "true"}, json={"scenario": "synthetic"})
        yield service


def test_generated_requests_get_no_server_error_and_answers_match_the_schema(
    api: ApiService,
) -> None:
    schema = schemathesis.openapi.from_url(f"{api.url}/schema/openapi.json")
    headers = {"Authorization": api.http.headers["authorization"]}
    failures: list[str] = []
    checked = 0
    for result in schema.get_all_operations():
        if not isinstance(result, Ok):
            failures.append(f"an operation the document does not describe well: {result}")
            continue
        operation = result.ok()
        if any(part in operation.path for part in SKIPPED):
            continue
        checked += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Case[Any]) -> None:
            response = case.call(base_url=api.url, headers=headers, timeout=30)
            case.validate_response(
                response,
                checks=[not_a_server_error, response_schema_conformance, content_type_conformance],
            )

        try:
            check()
        except (Exception, BaseExceptionGroup) as exc:  # every operation that failed
            failures.append(f"{operation.method.upper()} {operation.path}: {_summary(exc)}")
    assert checked > 20
    assert not failures, "\n\n".join(failures)


def test_a_dead_letter_id_past_what_redis_takes_is_bad_input(api: ApiService) -> None:
    """Found by the test above: the id pattern allows 20 digits, Redis no more than
    2**64 - 1, and its refusal was a 503."""
    answer = api.http.post("/dead-letters/99999999999999999999-0/retry")
    assert answer.status_code == 400, answer.text
    assert answer.json()["field"] == "letter_id"
    assert api.http.post("/dead-letters/18446744073709551615-0/retry").status_code == 404
