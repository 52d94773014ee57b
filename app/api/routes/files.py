"""`/v1/files`: the captured results, behind signed links that expire."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.responses import FileResponse, RedirectResponse, Response

from app.api import errors
from app.api.deps import RelayDep
from app.capture.links import Verdict
from app.store import captures

router = APIRouter(prefix="/v1/files", tags=["files"])

#: The longest a redirect to a bucket's presigned link is valid: it is followed at once.
PRESIGNED_FOR = timedelta(hours=1)

_FORGED = "this link was not signed by this relay, or was altered"
_EXPIRED = (
    "this link has expired; GET /v1/watches/{id} hands out a fresh one while the file is kept"
)
_GONE = "this file is no longer kept"


_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The file.", "content": {"video/mp4": {}}},
    206: {"description": "The ranges asked for (`Range`)."},
    307: {"description": "With a bucket for storage: its presigned link to the file."},
    400: {"description": "A malformed `Range` header.", "content": {"text/plain": {}}},
    403: errors.error(_FORGED),
    410: errors.error("The link expired, or the file is no longer kept."),
    416: {"description": "A `Range` past the end of the file.", "content": {"text/plain": {}}},
}


@router.head("/{watch_id}", response_class=Response, responses=_RESPONSES)
@router.get("/{watch_id}", response_class=Response, responses=_RESPONSES)
async def get_file(
    watch_id: str,
    relay: RelayDep,
    expires: Annotated[str, Query(description="When the link stops working (Unix time).")] = "",
    signature: Annotated[str, Query(description="The relay's signature of the link.")] = "",
) -> Response:
    """A captured result, as the links in webhooks name it; `Range` is supported (206), so
    players can seek. No API key: the signed link is the permission."""
    if not (expires.isascii() and expires.isdigit()) or len(expires) > 12:
        raise HTTPException(status.HTTP_403_FORBIDDEN, _FORGED)
    verdict = relay.links.verify(watch_id, int(expires), signature)
    if verdict is Verdict.FORGED:
        raise HTTPException(status.HTTP_403_FORBIDDEN, _FORGED)
    if verdict is Verdict.EXPIRED:
        raise HTTPException(status.HTTP_410_GONE, _EXPIRED)
    stored = await captures.stored_file(relay.db, watch_id=watch_id)
    if stored is None or stored.expires_at <= datetime.now(UTC):
        raise HTTPException(status.HTTP_410_GONE, _GONE)
    path = relay.storage.local_path(stored.key)
    if path is None:
        remaining = stored.expires_at - datetime.now(UTC)
        url = await relay.storage.presigned_url(
            stored.key, expires_in=min(remaining, PRESIGNED_FOR)
        )
        return RedirectResponse(url, status_code=status.HTTP_307_TEMPORARY_REDIRECT)
    if not path.is_file():
        raise HTTPException(status.HTTP_410_GONE, _GONE)
    return FileResponse(
        path,
        media_type=stored.content_type,
        headers={"ETag": f'"{stored.sha256}"', "Cache-Control": "private, max-age=3600"},
    )
