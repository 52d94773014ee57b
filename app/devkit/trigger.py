"""`python -m app trigger`: a simulated task with a chosen outcome, watched by the relay.

It does what an app does with a real upstream (submit a task, register a watch for its id) so
that a webhook receiver can be exercised on demand. The task goes to the relay's own simulator
(`RELAY_SIMULATOR=true`) unless `--upstream-url` names a standalone one.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from app.devkit import mounted_simulator

Outcome = Literal["succeeded", "failed"]


class TriggerFailed(Exception):
    """The simulator or the relay refused; the message says which and why."""


@dataclass(frozen=True, slots=True)
class Triggered:
    #: The watch, as the relay answered its registration.
    watch: dict[str, Any]
    #: The watch's page in the relay's operator console; None if the relay serves none.
    console_url: str | None


@dataclass(frozen=True, slots=True)
class Simulation:
    """The course the simulated task takes (see `SimulationSpec` in `simulator.py`)."""

    outcome: Outcome
    model: str
    duration: float
    failure_reason: str | None = None

    def submit_body(self) -> dict[str, Any]:
        course: dict[str, Any] = {"outcome": self.outcome, "duration": self.duration}
        if self.failure_reason is not None:
            course["failure_reason"] = self.failure_reason
        return {
            "model": self.model,
            "prompt": "a simulated video, from python -m app trigger",
            "simulation": course,
        }


async def trigger(
    simulation: Simulation,
    *,
    callback_url: str,
    relay_url: str,
    api_key: str,
    upstream_url: str | None,
    upstream_key: str,
    wait: float = 30.0,
) -> Triggered:
    """Submits the task, registers the watch, and returns the watch as the relay answered it,
    with where the console shows it.

    Waits up to `wait` seconds for the relay to come up, so it can be run right after starting it.
    """
    upstream_url = upstream_url or relay_url.rstrip("/") + mounted_simulator.MOUNT_PATH
    async with httpx.AsyncClient(timeout=10.0) as http:
        await _wait_until_up(http, relay_url.rstrip("/") + "/healthz", wait)
        submitted = await http.post(
            upstream_url.rstrip("/") + "/v1/video/generations",
            json=simulation.submit_body(),
            headers={"Authorization": f"Bearer {upstream_key}"},
        )
        if submitted.status_code != 200:
            raise TriggerFailed(
                f"the simulator at {upstream_url} answered HTTP {submitted.status_code}: "
                f"{submitted.text} (is the relay running with RELAY_SIMULATOR=true?)"
            )
        task_id = submitted.json()["task_id"]
        registered = await http.post(
            relay_url.rstrip("/") + "/v1/watches",
            json={"task_id": task_id, "callback_url": callback_url},
            headers={"Authorization": f"Bearer {api_key}"},
        )
        if registered.status_code not in (200, 201):
            raise TriggerFailed(
                f"the relay refused the watch with HTTP {registered.status_code}: {registered.text}"
            )
        watch: dict[str, Any] = registered.json()
        console = relay_url.rstrip("/") + "/console"
        served = (await http.get(console + "/sign-in")).status_code == 200
    return Triggered(watch, f"{console}/watches/{watch['id']}" if served else None)


async def _wait_until_up(http: httpx.AsyncClient, health_url: str, wait: float) -> None:
    deadline = asyncio.get_running_loop().time() + wait
    while True:
        try:
            await http.get(health_url)
            return
        except httpx.TransportError as exc:
            if asyncio.get_running_loop().time() >= deadline:
                raise TriggerFailed(f"nothing answered at {health_url}") from exc
            await asyncio.sleep(0.25)
