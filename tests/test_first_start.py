"""A relay started with no configuration works, and says once what it generated."""

from __future__ import annotations

import gc
import logging

import httpx
import pytest

from app.main import create_app
from tests.conftest import RelayFactory, Upstream, relay_settings
from tests.servers import serve


async def test_a_key_and_a_secret_are_generated_once_and_kept(
    database_url: str, upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    settings = relay_settings(database_url, upstream.url, api_key=None, signing_secret=None)
    caplog.set_level(logging.WARNING, logger="app.relay")

    async with serve(create_app(settings)) as url:
        [announcement] = [
            r.getMessage() for r in caplog.records if "RELAY_API_KEY=" in r.getMessage()
        ]
        api_key = announcement.split("RELAY_API_KEY=")[1].split()[0]
        async with httpx.AsyncClient(base_url=url) as http:
            client = await http.get("/v1/client", headers={"Authorization": f"Bearer {api_key}"})
    assert client.status_code == 200
    secret = client.json()["signing_secret"]
    assert secret.startswith("whsec_")

    caplog.clear()
    async with serve(create_app(settings)) as url:
        assert not [r for r in caplog.records if "RELAY_API_KEY=" in r.getMessage()]
        async with httpx.AsyncClient(base_url=url) as http:
            again = await http.get("/v1/client", headers={"Authorization": f"Bearer {api_key}"})
    assert again.json()["signing_secret"] == secret


async def test_configured_credentials_replace_generated_ones(
    database_url: str, upstream: Upstream
) -> None:
    generated = relay_settings(database_url, upstream.url, api_key=None, signing_secret=None)
    async with serve(create_app(generated)):
        pass

    configured = relay_settings(database_url, upstream.url)
    async with serve(create_app(configured)) as url, httpx.AsyncClient(base_url=url) as http:
        key = configured.api_key.get_secret_value()  # type: ignore[union-attr]
        response = await http.get("/v1/client", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200
    assert response.json()["signing_secret"] == configured.signing_secret.get_secret_value()  # type: ignore[union-attr]


async def test_without_an_upstream_key_the_simulator_is_offered(
    database_url: str, upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    settings = relay_settings(database_url, upstream.url, nebula_api_key=None)
    caplog.set_level(logging.WARNING, logger="app.relay")

    async with serve(create_app(settings)):
        pass

    [offer] = [r.getMessage() for r in caplog.records if "NEBULA_API_KEY" in r.getMessage()]
    assert "RELAY_SIMULATOR=true RELAY_ALLOW_PRIVATE_CALLBACKS=true python -m uvicorn" in offer


async def test_what_startup_made_is_left_out_of_garbage_collection_while_the_relay_runs(
    start_relay: RelayFactory,
) -> None:
    """Each full collection would walk it all again: a pause of 50-100 ms of the event loop."""
    async with start_relay():
        assert gc.get_freeze_count() > 10_000
    assert gc.get_freeze_count() == 0
