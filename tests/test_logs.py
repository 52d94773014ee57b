"""The relay's log lines: one per event, with its ids as fields, JSON for collectors and text on
a terminal, and never a secret, whatever road it takes."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import logging
import os
import pty
import re
import secrets
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from cryptography.fernet import Fernet

from app import logs
from app.redaction import MASK, Redactor, configured_secrets
from app.settings import Settings
from tests.conftest import API_KEY, Upstream
from tests.flaky_upstream import SERVER_ERROR, FlakyUpstream, task
from tests.processes import SERVE, relay_env, relay_process
from tests.receiver import Receiver
from tests.servers import free_port, serve

Line = dict[str, Any]


def credentials() -> dict[str, str]:
    """Secrets of the forms they take in production, fresh for each test."""
    return {
        "RELAY_API_KEY": "rk_" + secrets.token_urlsafe(32),
        "RELAY_SIGNING_SECRET": "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode(),
        "RELAY_ADMIN_TOKEN": secrets.token_urlsafe(32),
        "NEBULA_API_KEY": "sk-" + secrets.token_hex(24),
        "RELAY_ENCRYPTION_KEY": Fernet.generate_key().decode(),
    }


def parsed(output: str) -> list[Line]:
    """Every line of the output as JSON: one that is not fails the test."""
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def lines_of(lines: list[Line], event: str, **fields: Any) -> list[Line]:
    return [
        line
        for line in lines
        if line["event"] == event and all(line.get(k) == v for k, v in fields.items())
    ]


def auth(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"}


async def wait_for_state(
    http: httpx.AsyncClient, watch_id: str, api_key: str, state: str, within: float = 20.0
) -> dict[str, Any]:
    async with asyncio.timeout(within):
        while True:
            watch: dict[str, Any] = (
                await http.get(f"/v1/watches/{watch_id}", headers=auth(api_key))
            ).json()
            if watch["state"] == state:
                return watch
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def receivers() -> AsyncIterator[tuple[Receiver, str, Receiver, str]]:
    """One receiver that refuses its first webhook and takes the next, one that is down."""
    flaky, down = Receiver(), Receiver(default_status=500)
    flaky.answer_next(500)
    async with serve(flaky.app) as flaky_url, serve(down.app) as down_url:
        yield flaky, f"{flaky_url}/hooks", down, f"{down_url}/hooks"


async def test_a_full_run_logs_each_event_once_as_json_with_its_ids_and_no_secret(
    database_url: str, upstream: Upstream, tmp_path: Path
) -> None:
    given = credentials()
    admin = {"Authorization": f"Bearer {given['RELAY_ADMIN_TOKEN']}"}
    own_key = "watch-key-" + secrets.token_hex(16)  # a form no pattern knows
    log = tmp_path / "relay.log"
    async with (
        receivers() as (flaky, flaky_url, _, down_url),
        relay_process(
            database_url,
            upstream,
            log,
            SERVE,
            RELAY_LOG_FORMAT="json",
            RELAY_RETRY_SCHEDULE="0.2",
            RELAY_API_KEY=given["RELAY_API_KEY"],
            RELAY_SIGNING_SECRET=given["RELAY_SIGNING_SECRET"],
            RELAY_ADMIN_TOKEN=given["RELAY_ADMIN_TOKEN"],
            NEBULA_API_KEY=given["NEBULA_API_KEY"],
            RELAY_ENCRYPTION_KEY=given["RELAY_ENCRYPTION_KEY"],
        ) as (http, _),
    ):
        default = given["RELAY_API_KEY"]
        made = (await http.post("/v1/admin/clients", json={"name": "second"}, headers=admin)).json()
        second_id = made["client"]["id"]
        rotated_secret = (
            await http.post(f"/v1/admin/clients/{second_id}/rotate-secret", headers=admin)
        ).json()["signing_secret"]
        rotated_key = (
            await http.post(f"/v1/admin/clients/{second_id}/rotate-key", headers=admin)
        ).json()["api_key"]

        async def register(api_key: str, task_id: str, callback: str, **extra: Any) -> str:
            answer = await http.post(
                "/v1/watches",
                json={"task_id": task_id, "callback_url": callback, **extra},
                headers=auth(api_key),
            )
            assert answer.status_code == 201, answer.text
            watch_id: str = answer.json()["id"]
            return watch_id

        ends = await upstream.submit(api_key=given["NEBULA_API_KEY"], duration=0.3)
        delivered = await register(default, ends, flaky_url)
        fails = await upstream.submit(api_key=own_key, duration=0.3, outcome="failed")
        dead = await register(rotated_key, fails, down_url, upstream_api_key=own_key)
        endless = await upstream.submit(api_key=given["NEBULA_API_KEY"], duration=600)
        cancelled = await register(default, endless, flaky_url, metadata={"n": 1})
        expired = await register(default, endless, down_url, timeout=0.5)

        assert (await http.delete(f"/v1/watches/{cancelled}", headers=auth(default))).is_success
        await wait_for_state(http, delivered, default, "completed")
        await wait_for_state(http, dead, rotated_key, "failed")
        await wait_for_state(http, expired, default, "failed")
        link = json.loads(flaky.received[-1].body)["data"]["url"]
        assert (await http.get(link)).status_code == 200
        await http.post(f"/v1/admin/clients/{second_id}/revoke", headers=admin)

    output = log.read_text()
    lines = parsed(output)
    registered = [
        (line["watch_id"], line["task_id"], line["client_id"])
        for line in lines_of(lines, "watch registered")
    ]
    default_id = registered[0][2]
    assert registered == [
        (delivered, ends, default_id),
        (dead, fails, second_id),
        (cancelled, endless, default_id),
        (expired, endless, default_id),
    ]
    ended = {
        line["watch_id"]: (line["task_id"], line["status"])
        for line in lines_of(lines, "task ended")
    }
    assert ended == {delivered: (ends, "succeeded"), dead: (fails, "failed")}
    assert lines_of(lines, "capture stored", watch_id=delivered, task_id=ends)
    assert lines_of(lines, "watch cancelled", watch_id=cancelled, task_id=endless)
    assert lines_of(lines, "watch expired", watch_id=expired, reason="deadline_exceeded")

    created = {line["watch_id"]: line for line in lines_of(lines, "event created")}
    assert {watch_id: line["event_type"] for watch_id, line in created.items()} == {
        delivered: "task.succeeded",
        dead: "task.failed",
        expired: "watch.expired",
    }
    sent_id = flaky.received[-1].headers["webhook-id"]
    assert created[delivered]["event_id"] == sent_id
    attempts = [
        (line["event"], line["attempt"], line["status_code"])
        for line in lines
        if line.get("event_id") == sent_id and "attempt" in line
    ]
    assert attempts == [("delivery failed", 1, 500), ("delivery succeeded", 2, 204)]
    [dead_line] = lines_of(lines, "delivery dead-lettered", watch_id=dead)
    assert (dead_line["event_id"], dead_line["attempt"]) == (created[dead]["event_id"], 2)
    assert dead_line["client_id"] == second_id and dead_line["level"] == "warning"

    for event in (
        "client app created",
        "client app's signing secret rotated",
        "client app's API key rotated",
        "client app revoked",
    ):
        assert lines_of(lines, event, client_id=second_id), event
    assert not lines_of(lines, "task polled"), "per-poll lines are at debug level"
    assert {"uvicorn.error", "uvicorn.access"} <= {line["logger"] for line in lines}
    [download] = [line for line in lines if str(line.get("path")).startswith("/v1/files/")]
    assert (download["logger"], download["method"], download["status_code"]) == (
        "uvicorn.access",
        "GET",
        200,
    )
    assert f"signature={MASK}" in download["path"]

    signature = parse_qs(urlsplit(link).query)["signature"][0]
    leaked = [
        *given.values(),
        made["api_key"],
        made["signing_secret"],
        rotated_secret,
        rotated_key,
        own_key,
        signature,
    ]
    assert [secret for secret in leaked if secret in output] == []


async def test_the_upstream_circuit_logs_when_it_opens_and_when_it_closes(
    database_url: str, flaky: FlakyUpstream, tmp_path: Path
) -> None:
    for number in range(12):
        flaky.script(f"task-{number}", SERVER_ERROR, task("succeeded"))
    log = tmp_path / "relay.log"
    async with relay_process(
        database_url,
        flaky,
        log,
        RELAY_LOG_FORMAT="json",
        RELAY_CAPTURE="false",
        RELAY_CIRCUIT_COOLDOWN="0.3",
        RELAY_UPSTREAM_BACKOFF_MAX="0.3",
    ) as (http, _):
        for number in range(12):
            answer = await http.post(
                "/v1/watches",
                json={"task_id": f"task-{number}", "callback_url": "http://127.0.0.1:9/hooks"},
            )
            assert answer.status_code == 201
        await until_written(log.read_text, "upstream circuit closed")

    lines = parsed(log.read_text())
    opened = lines_of(lines, "upstream circuit opened")
    assert opened and {line["level"] for line in opened} == {"warning"}
    assert opened[0]["cause"].endswith("polls failed") and opened[0]["pause_seconds"] == 0.3
    assert lines_of(lines, "upstream circuit closed")


async def test_on_a_terminal_lines_are_readable_text_with_their_ids_not_json(
    database_url: str, upstream: Upstream, receiver: tuple[Receiver, str], tmp_path: Path
) -> None:
    _, callback = receiver
    port = free_port()
    env = relay_env(
        database_url, upstream, tmp_path, RELAY_CAPTURE="false", RELAY_LOG_LEVEL="debug"
    )
    env.pop("RELAY_LOG_FORMAT", None)
    with terminal() as (screen, written):
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "uvicorn", "app.main:app", "--port", str(port),
            env=env, stdin=asyncio.subprocess.DEVNULL, stdout=screen, stderr=screen,
        )  # fmt: skip
        try:
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}", headers=auth(API_KEY)
            ) as http:
                await until_healthy(http)
                task_id = await upstream.submit(duration=0.2)
                answer = await http.post(
                    "/v1/watches", json={"task_id": task_id, "callback_url": callback}
                )
                watch_id = answer.json()["id"]
                await until_written(lambda: "".join(written), "delivery succeeded")
        finally:
            process.terminate()
            await process.wait()

    text = ANSI_STYLE.sub("", "".join(written))
    lines = [line for line in text.splitlines() if line.strip()]
    assert [line for line in lines if is_json(line)] == []
    [registered] = [line for line in lines if "watch registered" in line]
    assert f"watch_id={watch_id}" in registered and f"task_id={task_id}" in registered
    assert [line for line in lines if "task polled" in line], "RELAY_LOG_LEVEL=debug shows polls"
    assert [line for line in lines if "Application startup complete" in line]


def test_secrets_are_masked_in_every_form_they_take_and_a_json_line_stays_json() -> None:
    given = credentials()
    redact = Redactor(given.values())
    password = secrets.token_urlsafe(12)
    body = {
        "event": f"connecting to postgresql://relay:{password}@db:5432/relay",
        "headers": repr({"Authorization": f"Bearer {secrets.token_hex(8)}", "Accept": "*/*"}),
        "request": f'{{"authorization": "Basic {secrets.token_hex(8)}"}}',
        "link": f"/v1/files/wat_1?expires=1797100060&signature={secrets.token_urlsafe(16)}",
        "keys": f"rk_{secrets.token_urlsafe(32)} whsec_{secrets.token_hex(24)}",
        "configured": " ".join(given.values()),
    }

    masked = json.loads(redact(json.dumps(body)))

    assert masked == {
        "event": f"connecting to postgresql://relay:{MASK}@db:5432/relay",
        "headers": f"{{'Authorization': '{MASK}', 'Accept': '*/*'}}",
        "request": f'{{"authorization": "{MASK}"}}',
        "link": f"/v1/files/wat_1?expires=1797100060&signature={MASK}",
        "keys": f"rk_{MASK} whsec_{MASK}",
        "configured": " ".join([MASK] * len(given)),
    }


def test_a_secret_in_an_exception_message_is_masked_in_the_logged_traceback() -> None:
    given = credentials()
    settings = Settings(
        _env_file=None,
        api_key=given["RELAY_API_KEY"],
        admin_token=given["RELAY_ADMIN_TOKEN"],
        nebula_api_key="upstream-key-" + secrets.token_hex(8),
        log_format="json",
    )
    assert settings.nebula_api_key is not None
    upstream_key = settings.nebula_api_key.get_secret_value()
    with captured(settings) as (log, written):
        try:
            raise ConnectionError(f"refused {upstream_key!r} (admin {given['RELAY_ADMIN_TOKEN']})")
        except ConnectionError:
            log.exception("poll failed unexpectedly", extra={"watch_id": "wat_1"})

    [line] = parsed(written.getvalue())
    assert line["event"] == "poll failed unexpectedly" and line["watch_id"] == "wat_1"
    assert f"ConnectionError: refused '{MASK}' (admin {MASK})" in line["exception"]
    assert upstream_key not in written.getvalue()


def test_the_generated_api_key_is_the_one_secret_a_line_shows() -> None:
    generated, other = "rk_" + secrets.token_urlsafe(32), "rk_" + secrets.token_urlsafe(32)
    with captured(Settings(_env_file=None, log_format="text")) as (log, written):
        log.warning("RELAY_API_KEY=%s (not %s)", generated, other, extra={logs.SHOWN: generated})

    assert f"RELAY_API_KEY={generated} (not rk_{MASK})" in written.getvalue()
    assert logs.SHOWN not in written.getvalue()


ANSI_STYLE = re.compile(r"\x1b\[[0-9;]*m")


def is_json(line: str) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


async def until_written(output: Callable[[], str], text: str) -> None:
    async with asyncio.timeout(20):
        while True:
            if text in output():
                return
            await asyncio.sleep(0.05)


async def until_healthy(http: httpx.AsyncClient) -> None:
    async with asyncio.timeout(20):
        while True:
            with contextlib.suppress(httpx.TransportError):
                if (await http.get("/healthz")).status_code == 200:
                    return
            await asyncio.sleep(0.05)


@contextlib.contextmanager
def terminal() -> Iterator[tuple[int, list[str]]]:
    """A pseudo-terminal for a child's output, and what it has written so far (read as it
    comes, so the child never blocks on a full terminal)."""
    screen, child_side = pty.openpty()
    written: list[str] = []

    def read() -> None:
        with contextlib.suppress(OSError):  # EIO once the child's side is closed
            while chunk := os.read(screen, 65536):
                written.append(chunk.decode(errors="replace"))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        yield child_side, written
    finally:
        os.close(child_side)
        reader.join(timeout=10)
        os.close(screen)


@contextlib.contextmanager
def captured(settings: Settings) -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger of its own whose lines are rendered as the relay renders them, into a string."""
    written = io.StringIO()
    handler = logging.StreamHandler(written)
    handler.setFormatter(logs.make_formatter(settings, terminal=False))
    log = logging.getLogger(f"app.test_logs.{secrets.token_hex(4)}")
    log.addHandler(handler)
    log.propagate = False
    try:
        yield log, written
    finally:
        log.removeHandler(handler)


def test_the_database_password_is_among_the_secrets_masked_as_written_and_as_decoded() -> None:
    settings = Settings(
        _env_file=None, database_url="postgresql+asyncpg://relay:p%40ss%2Fw0rd-x@db:5432/relay"
    )

    found = configured_secrets(settings)

    assert "p%40ss%2Fw0rd-x" in found
    assert "p@ss/w0rd-x" in found


def test_where_the_relay_renders_every_line_records_skip_the_fields_no_line_shows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The thread, the process and the line of code that wrote a record: the standard library
    looks each up for every record, and no line the relay renders shows them."""
    # As the standard library starts (the relay's own setup may have run in this process);
    # put back after the test.
    for name in ("logThreads", "logProcesses", "logMultiprocessing"):
        monkeypatch.setattr(logging, name, True)
    monkeypatch.setattr(
        logging, "_srcfile", os.path.normcase(logging.addLevelName.__code__.co_filename)
    )
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[assignment,method-assign]
    logger = logging.getLogger("tests.lean_records")
    logger.addHandler(handler)
    try:
        logger.warning("before")
        logs.uvicorn_config(Settings(_env_file=None))
        logger.warning("after")
    finally:
        logger.removeHandler(handler)

    before, after = records
    assert (before.threadName, before.lineno) != (None, 0)
    assert (after.threadName, after.processName, after.process, after.lineno) == (None,) * 3 + (0,)
