"""A stand-in for the AI Nebula video API, so the relay can run without an upstream account.

It answers with the upstream's real shapes and quirks rather than idealised ones: submit answers
that differ per model family, ``task_not_exist`` as HTTP 400, tasks visible only to the key that
submitted them and briefly invisible after submit, Veo results as ``data:`` URIs, and Sora results
only through the download API. A submit body may carry a ``simulation`` object that scripts the
task's course, which lets tests drive every branch of the relay deterministically.

Results are real bytes. By default every task's video is the small ``FAKE_VIDEO``; with
``video_bytes`` it is a video of that size whose content is derived from the task id, so a test
that knows the task id can compute the exact bytes, or just their SHA-256, with
``video_chunks``/``video_digest`` (``video_of``/``digest_of`` for a task object), without the
simulator having to keep any of them.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Annotated, Any, Literal, NamedTuple

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
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
DATA_URL_PREFIX = "data:video/mp4;base64,"
FAKE_VIDEO_DATA_URL = DATA_URL_PREFIX + FAKE_VIDEO_BASE64

MIN_VIDEO_BYTES = 64
MAX_VIDEO_BYTES = 1 << 30
VIDEO_CHUNK_SIZE = 64 * 1024
"""Sized videos are produced, streamed and hashed in pieces of this size, never whole."""
_FTYP_BOX = FAKE_VIDEO[:24]
_HEADER_SIZE = len(_FTYP_BOX) + 8  # the ftyp box, then the header of a box holding the rest

EXPIRED_LINK_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b"<Error>\n  <Code>AccessDenied</Code>\n  <Message>Request has expired.</Message>\n</Error>\n"
)
"""What an object store answers to a signed link past its expiry, as Wanxiang's links do."""
DOWNLOAD_FAILED_BODY: dict[str, Any] = {
    "error": {"message": "Failed to fetch the video from the provider", "type": "upstream_error"}
}


class VideoDigest(NamedTuple):
    """What a capture of a task's result must have stored: its SHA-256 (hex) and its length."""

    sha256: str
    size: int


def video_size(video_bytes: int | None) -> int:
    """The length of a result: ``video_bytes``, or that of ``FAKE_VIDEO`` when it is not set."""
    return len(FAKE_VIDEO) if video_bytes is None else video_bytes


def video_chunks(task_id: str, video_bytes: int | None = None) -> Iterator[bytes]:
    """The result of task ``task_id`` simulated with ``video_bytes``, in pieces of at most
    ``VIDEO_CHUNK_SIZE`` bytes.

    A sized video is an ftyp box (so content sniffers take it for an MP4) and one ``free`` box
    filling the rest with pseudo-random bytes: SHAKE-128 of a seed from the task id and the
    piece's index. Each piece is computed on its own, so nothing ever holds the whole video and
    the same task id always gives the same bytes, in the simulator and in a test alike.
    """
    if video_bytes is None:
        yield FAKE_VIDEO
        return
    if not MIN_VIDEO_BYTES <= video_bytes <= MAX_VIDEO_BYTES:
        raise ValueError(f"video_bytes must be {MIN_VIDEO_BYTES}..{MAX_VIDEO_BYTES}")
    seed = hashlib.sha256(b"simulated video\0" + task_id.encode()).digest()
    header = _FTYP_BOX + (video_bytes - len(_FTYP_BOX)).to_bytes(4, "big") + b"free"
    for index, start in enumerate(range(0, video_bytes, VIDEO_CHUNK_SIZE)):
        length = min(VIDEO_CHUNK_SIZE, video_bytes - start)
        chunk = hashlib.shake_128(seed + index.to_bytes(8, "big")).digest(length)
        yield header + chunk[_HEADER_SIZE:] if index == 0 else chunk


@lru_cache(maxsize=64)
def video_digest(task_id: str, video_bytes: int | None = None) -> VideoDigest:
    """SHA-256 and length of ``video_chunks(task_id, video_bytes)``, hashed piece by piece.

    Cached, since a test may check several captures of one large video.
    """
    sha256 = hashlib.sha256()
    for chunk in video_chunks(task_id, video_bytes):
        sha256.update(chunk)
    return VideoDigest(sha256.hexdigest(), video_size(video_bytes))


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
    video_bytes: int | None = Field(default=None, ge=MIN_VIDEO_BYTES, le=MAX_VIDEO_BYTES)
    """Size of the result (see ``video_chunks``); None gives ``FAKE_VIDEO``."""
    link_ttl: float | None = Field(default=None, ge=0)
    """Seconds after success until the result is gone, as upstream retention makes it: the
    Wanxiang link answers 403, the Veo ``url`` reads ``"expired"``, the Sora download API 404.
    None keeps it forever."""
    download_failures: int = Field(default=0, ge=0)
    """How many times the Sora download API answers 502 before it hands out the video."""


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
    first_succeeded_at: float | None = None
    """When a query first answered ``succeeded``: the moment a polls-driven task succeeded."""
    downloads_failed: int = 0
    _data_url: str | None = field(default=None, repr=False)

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

    def record_query(self, now: float) -> tuple[Status, int]:
        """Counts a query and answers its status; notes when a query first saw success."""
        self.queries += 1
        status, percent = self.progress(now)
        if status == "succeeded" and self.first_succeeded_at is None:
            self.first_succeeded_at = now
        return status, percent

    def succeeded_at(self) -> float | None:
        """When the task succeeded, if it has: a time-driven one at the end of its duration
        whether or not anyone asked, a polls-driven one when a query first said so."""
        sim = self.simulation
        if sim.outcome != "succeeded":
            return None
        if sim.polls is None:
            return self.submitted_at + sim.duration
        return self.first_succeeded_at

    def result_expired(self, now: float) -> bool:
        """Whether ``link_ttl`` has run out, so the upstream no longer has the result."""
        ttl = self.simulation.link_ttl
        succeeded_at = self.succeeded_at()
        return ttl is not None and succeeded_at is not None and now >= succeeded_at + ttl

    def data_url(self) -> str:
        """The result as a ``data:`` URI; a sized one is built on first use and kept, as the
        Veo answer and the Sora download repeat it on every request."""
        if self.simulation.video_bytes is None:
            return FAKE_VIDEO_DATA_URL
        if self._data_url is None:
            encoded = base64.b64encode(b"".join(video_of(self))).decode()
            self._data_url = DATA_URL_PREFIX + encoded
        return self._data_url


def video_of(task: SimulatedTask) -> Iterator[bytes]:
    """The task's result, in pieces (see ``video_chunks``)."""
    return video_chunks(task.task_id, task.simulation.video_bytes)


def digest_of(task: SimulatedTask) -> VideoDigest:
    """SHA-256 and length of the task's result, computed without holding it."""
    return video_digest(task.task_id, task.simulation.video_bytes)


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
    """The documented flat shape; Sora reports integer progress, the other backends strings.

    It counts as a query: a polls-driven task moves on by one step.
    """
    status, percent = task.record_query(now)
    answer: dict[str, Any] = {
        "task_id": task.task_id,
        "status": status,
        "format": "mp4",
        "progress": percent if task.family == "sora" else f"{percent}%",
    }
    if status == "failed":
        answer["error"] = {"code": 400, "message": task.simulation.failure_reason}
    elif status == "succeeded" and task.family == "veo":
        # Past its retention Veo still reports success, but the data is replaced by a word.
        answer["url"] = "expired" if task.result_expired(now) else task.data_url()
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
    if task.result_expired(now):
        raise _invalid_request(404, "Task not found")  # Sora forgets the task with its video
    if task.downloads_failed < task.simulation.download_failures:
        task.downloads_failed += 1
        raise UpstreamError(502, DOWNLOAD_FAILED_BODY)
    data_url = task.data_url()
    return {
        "success": True,
        "generation_id": "gen_" + task.task_id.removeprefix("video_"),
        "task_id": task.task_id,
        "format": "mp4",
        "size": video_size(task.simulation.video_bytes),
        "base64": data_url.removeprefix(DATA_URL_PREFIX),
        "data_url": data_url,
    }


def file_answer(task: SimulatedTask | None, method: str, now: float) -> Response:
    """A Wanxiang result link: the video streamed piece by piece with its length, as an object
    store serves it (HEAD included), or the store's 403 once the signed link has expired."""
    if task is None:
        return Response(status_code=404)
    if task.result_expired(now):
        return Response(EXPIRED_LINK_BODY, status_code=403, media_type="application/xml")
    headers = {"Content-Length": str(video_size(task.simulation.video_bytes))}
    if method == "HEAD":
        return Response(headers=headers, media_type="video/mp4")
    # A sync iterator is run in a worker thread, so producing the bytes never blocks the loop.
    return StreamingResponse(video_of(task), headers=headers, media_type="video/mp4")


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

    def get(self, task_id: str) -> SimulatedTask | None:
        """Any task, whoever submitted it: for tests that inspect a task's state."""
        return self._tasks.get(task_id)

    def video_file(self, name: str) -> SimulatedTask | None:
        """The Wanxiang task whose result link ends in ``name``, if there is one."""
        task = self._tasks.get(name.removesuffix(".mp4"))
        if name.endswith(".mp4") and task is not None and task.family == "wan":
            return task
        return None


def create_simulator() -> FastAPI:
    """Builds an independent simulator whose tasks live in this instance's memory only."""
    app = FastAPI(title="AI Nebula video API simulator")
    book = TaskBook()
    app.state.book = book  # lets a test that built the app look at its tasks

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
        return query_answer(task, request, now)

    # Unauthenticated on purpose: real result links are pre-signed, not bearer-protected.
    @app.api_route("/simulator-files/{name}", methods=["GET", "HEAD"], name="simulator_file")
    async def simulator_file(name: str, request: Request) -> Response:
        return file_answer(book.video_file(name), request.method, time.monotonic())

    return app
