"""A stand-in for the AI Nebula video API, so the relay can run without an upstream account.

It answers with the upstream's real shapes and quirks rather than idealised ones: submit answers
that differ per model family, ``task_not_exist`` as HTTP 400, tasks visible only to the key that
submitted them and briefly invisible after submit, Veo results as ``data:`` URIs, and Sora results
only through the download API. A submit body may carry a ``simulation`` object that scripts the
task's course, which lets tests drive every branch of the relay deterministically.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails

Family = Literal["sora", "veo", "wan"]
Status = Literal["queued", "in_progress", "succeeded", "failed"]

SORA_RETENTION_SECONDS = 24 * 3600
QUEUED_FRACTION = 0.1
"""Share of a time-driven course spent ``queued``, so pollers see every documented status."""


def _mp4_box(kind: bytes, payload: bytes) -> bytes:
    return (8 + len(payload)).to_bytes(4, "big") + kind + payload


FAKE_VIDEO = _mp4_box(b"ftyp", b"isom" + (512).to_bytes(4, "big") + b"isommp41") + _mp4_box(
    b"free", bytes(range(256)) * 16
)
"""Starts like a real MP4 so content sniffers accept it; nothing here ever decodes the frames."""
FAKE_VIDEO_BASE64 = base64.b64encode(FAKE_VIDEO).decode()
FAKE_VIDEO_DATA_URL = f"data:video/mp4;base64,{FAKE_VIDEO_BASE64}"


class SimulationSpec(BaseModel):
    """How one task unfolds; strict and closed so a typo in a test fails loudly, not silently.

    ``polls`` (advance one step per query) wins over ``duration`` (advance with the clock).
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    outcome: Literal["succeeded", "failed"] = "succeeded"
    duration: float = Field(default=10.0, ge=0)
    polls: int | None = Field(default=None, ge=1)
    failure_reason: str = "Prompt contains inappropriate content"
    visible_after: float = Field(default=0.0, ge=0)


class SubmitRequest(BaseModel):
    """Only the fields every model shares; model-specific ones (size, seconds, ...) pass through."""

    model_config = ConfigDict(extra="allow", strict=True)

    model: str = Field(min_length=1)
    prompt: str = Field(min_length=1)
    simulation: SimulationSpec = Field(default_factory=SimulationSpec)


@dataclass
class SimulatedTask:
    """One submitted task; it keeps only a digest of the API key, never the key itself."""

    task_id: str
    family: Family
    model: str
    key_digest: str
    simulation: SimulationSpec
    submitted_at: float = field(default_factory=time.monotonic)
    queries: int = 0

    def is_visible(self, key_digest: str, now: float) -> bool:
        """The upstream scopes tasks to accounts and may answer a submit before storing it."""
        stored = now - self.submitted_at >= self.simulation.visible_after
        return stored and secrets.compare_digest(self.key_digest, key_digest)

    def progress(self, now: float) -> tuple[Status, int]:
        """Current status and percent; a polls-driven task only moves when ``queries`` grows."""
        sim = self.simulation
        if sim.polls is not None:
            if self.queries >= sim.polls:
                return sim.outcome, 100
            if self.queries <= 1:
                return "queued", 0
            return "in_progress", 100 * (self.queries - 1) // (sim.polls - 1)
        elapsed = now - self.submitted_at
        if elapsed >= sim.duration:
            return sim.outcome, 100
        fraction = elapsed / sim.duration
        if fraction < QUEUED_FRACTION:
            return "queued", 0
        return "in_progress", int(fraction * 100)


class UpstreamError(Exception):
    """Carries an error body verbatim: the upstream's error shapes differ per endpoint."""

    def __init__(self, status_code: int, body: dict[str, Any]) -> None:
        super().__init__(status_code, body)
        self.status_code = status_code
        self.body = body


def _invalid_request(status_code: int, message: str) -> UpstreamError:
    return UpstreamError(
        status_code, {"error": {"message": message, "type": "invalid_request_error"}}
    )


def _task_not_exist() -> UpstreamError:
    return UpstreamError(400, {"code": "task_not_exist", "message": "task_not_exist", "data": None})


def _describe(errors: list[ErrorDetails]) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or 'body'}: {error['msg']}"
        for error in errors
    )


def family_of(model: str) -> Family:
    """Which upstream backend a model name routes to; unknown models behave like Wanxiang."""
    if model.startswith("sora-"):
        return "sora"
    if model.startswith("veo-"):
        return "veo"
    return "wan"


_NEW_TASK_ID: dict[Family, Callable[[], str]] = {
    "sora": lambda: f"video_{secrets.token_hex(16)}",
    # 302 bytes leave a stripped "=" pad: clients must not assume a length divisible by 4.
    "veo": lambda: base64.urlsafe_b64encode(secrets.token_bytes(302)).rstrip(b"=").decode(),
    "wan": lambda: str(uuid.uuid4()),
}


def key_digest(authorization: Annotated[str | None, Header()] = None) -> str:
    """Accepts any non-empty bearer key, as a stand-in has no accounts to check it against."""
    scheme, _, key = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise UpstreamError(
            401,
            {
                "error": {
                    "message": "Missing or malformed API key: send 'Authorization: Bearer <key>'",
                    "type": "new_api_error",
                }
            },
        )
    return hashlib.sha256(key.strip().encode()).hexdigest()


KeyDigest = Annotated[str, Depends(key_digest)]


def submit_answer(task: SimulatedTask) -> dict[str, Any]:
    """Each backend answers a submit in its own shape, and the relay must cope with all three."""
    if task.family == "veo":
        return {"task_id": task.task_id}
    if task.family == "wan":
        return {
            "task_id": task.task_id,
            "status": "submitted",
            "metadata": {
                "request_id": str(uuid.uuid4()),
                "output": {"task_id": task.task_id, "task_status": "PENDING"},
            },
        }
    created_at = int(time.time())
    return {
        "task_id": task.task_id,
        "status": "submitted",
        "format": "mp4",
        "metadata": {
            "id": task.task_id,
            "object": "video",
            "model": task.model,
            "status": "queued",
            "progress": 0,
            "created_at": created_at,
            "expires_at": created_at + SORA_RETENTION_SECONDS,
        },
    }


def query_answer(task: SimulatedTask, request: Request, now: float) -> dict[str, Any]:
    """The documented flat shape; Sora reports integer progress, the other backends strings."""
    status, percent = task.progress(now)
    answer: dict[str, Any] = {
        "task_id": task.task_id,
        "status": status,
        "format": "mp4",
        "progress": percent if task.family == "sora" else f"{percent}%",
    }
    if status == "failed":
        answer["error"] = {"code": 400, "message": task.simulation.failure_reason}
    elif status == "succeeded" and task.family == "veo":
        answer["url"] = FAKE_VIDEO_DATA_URL
    elif status == "succeeded" and task.family == "wan":
        # url_for keeps any mount prefix, so the link works however the simulator is hosted.
        answer["url"] = str(request.url_for("simulator_file", name=f"{task.task_id}.mp4"))
    return answer


def download_answer(task: SimulatedTask | None, now: float) -> dict[str, Any]:
    """Sora's separate result API: JSON with the whole file inline, never raw bytes."""
    if task is None:
        raise _invalid_request(404, "Task not found")
    if task.family != "sora":
        raise _invalid_request(400, "Only Sora tasks are downloaded; others return a url")
    status, _ = task.progress(now)
    if status != "succeeded":
        raise _invalid_request(400, f"Video is not available: task status is {status}")
    return {
        "success": True,
        "generation_id": "gen_" + task.task_id.removeprefix("video_"),
        "task_id": task.task_id,
        "format": "mp4",
        "size": len(FAKE_VIDEO),
        "base64": FAKE_VIDEO_BASE64,
        "data_url": FAKE_VIDEO_DATA_URL,
    }


class TaskBook:
    """The simulator's memory: one per app instance, so parallel simulators never share tasks."""

    def __init__(self) -> None:
        self._tasks: dict[str, SimulatedTask] = {}

    def submit(self, body: SubmitRequest, digest: str) -> SimulatedTask:
        family = family_of(body.model)
        task = SimulatedTask(
            task_id=_NEW_TASK_ID[family](),
            family=family,
            model=body.model,
            key_digest=digest,
            simulation=body.simulation,
        )
        self._tasks[task.task_id] = task
        return task

    def visible(self, task_id: str, digest: str, now: float) -> SimulatedTask | None:
        """What the given key may see now; everything else must look like an unknown id."""
        task = self._tasks.get(task_id)
        return task if task is not None and task.is_visible(digest, now) else None

    def has_video_file(self, name: str) -> bool:
        """Whether ``name`` is a link handed out for a Wanxiang task."""
        task = self._tasks.get(name.removesuffix(".mp4"))
        return name.endswith(".mp4") and task is not None and task.family == "wan"


def create_simulator() -> FastAPI:
    """Builds an independent simulator whose tasks live in this instance's memory only."""
    app = FastAPI(title="AI Nebula video API simulator")
    book = TaskBook()

    @app.exception_handler(UpstreamError)
    async def upstream_error(_: Request, exc: UpstreamError) -> JSONResponse:
        return JSONResponse(exc.body, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid_parameters(_: Request, exc: RequestValidationError) -> JSONResponse:
        error = _invalid_request(400, _describe(list(exc.errors())))
        return JSONResponse(error.body, status_code=error.status_code)

    @app.post("/v1/video/generations")
    async def submit(request: Request, digest: KeyDigest) -> dict[str, Any]:
        # Validated by hand so a bad key is reported before a bad body, as upstream does.
        try:
            body = SubmitRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            raise _invalid_request(400, _describe(exc.errors())) from exc
        return submit_answer(book.submit(body, digest))

    # Declared before "/{task_id}", which would otherwise capture "download" as a task id.
    @app.get("/v1/video/generations/download")
    async def download(
        digest: KeyDigest, task_id: Annotated[str, Query(alias="id", min_length=1)]
    ) -> dict[str, Any]:
        now = time.monotonic()
        return download_answer(book.visible(task_id, digest, now), now)

    @app.get("/v1/video/generations/{task_id}")
    async def query(task_id: str, request: Request, digest: KeyDigest) -> dict[str, Any]:
        now = time.monotonic()
        task = book.visible(task_id, digest, now)
        if task is None:
            raise _task_not_exist()
        task.queries += 1
        return query_answer(task, request, now)

    # Unauthenticated on purpose: real result links are pre-signed, not bearer-protected.
    @app.get("/simulator-files/{name}", name="simulator_file")
    async def simulator_file(name: str) -> Response:
        if not book.has_video_file(name):
            return Response(status_code=404)
        return Response(FAKE_VIDEO, media_type="video/mp4")

    return app
