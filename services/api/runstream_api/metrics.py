"""The API's Prometheus metrics: ``GET /metrics`` (the commands it sent by type and how
they stood when it answered, plus the deployment's shard gauges read from Redis) and
``GET /livez`` (the server answers; Redis is not asked, unlike /health). Both need no
token, as /health: they show counts, never a run's data."""

from __future__ import annotations

from litestar import Response, get
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, generate_latest

from runstream import shard_metrics
from runstream_api.context import ApiContext

COMMANDS_SENT = Counter(
    "runstream_api_commands",
    "Commands the API sent, by type and where they stood when it answered (pending, "
    "accepted, done, rejected)",
    ["type", "status"],
)


def command_answered(command_type: str, status: str) -> None:
    COMMANDS_SENT.labels(command_type, status).inc()


@get("/metrics", summary="Prometheus metrics", tags=["service"], include_in_schema=False)
async def metrics(api: ApiContext) -> Response[bytes]:
    await shard_metrics.refresh(api.client.redis, api.client.keys)
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


@get("/livez", summary="Does the API serve requests? (Redis is not asked)", tags=["service"])
async def livez() -> dict[str, str]:
    return {"status": "ok"}


service_routes = [metrics, livez]
