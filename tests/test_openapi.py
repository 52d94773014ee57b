"""The committed OpenAPI document is the API the relay serves."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import RelayClient

SPEC = Path(__file__).parent.parent / "openapi" / "openapi.json"


async def test_the_committed_spec_matches_the_served_one(relay: RelayClient) -> None:
    served = (await relay.http.get("/openapi.json")).json()
    committed = json.loads(SPEC.read_text())
    assert served == committed, "openapi/openapi.json is stale: run `python -m app openapi`"


def test_every_operation_is_documented() -> None:
    spec = json.loads(SPEC.read_text())
    paths = spec["paths"]
    assert {"/v1/watches", "/v1/watches/{watch_id}", "/healthz", "/readyz", "/metrics"} <= set(
        paths
    )
    assert set(paths["/v1/watches"]) == {"get", "post"}
    assert set(paths["/v1/watches/{watch_id}"]) == {"get", "delete"}
