"""A worker process for the tests of `app.workers`: answers what it is sent, as it is told to."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from app import workers


@asynccontextmanager
async def _echoing(marks: str) -> AsyncIterator[workers.Handler]:
    """`marks`: a directory where a request asked to mark a name leaves a file of that name."""

    async def answer(request: tuple[str, Any]) -> Any:
        match request:
            case ("echo", value):
                return value
            case ("sleep", seconds):
                await asyncio.sleep(seconds)
                return seconds
            case ("mark-after", (seconds, name)):
                await asyncio.sleep(seconds)
                (Path(marks) / name).touch()
                return name
            case _:
                raise ValueError(request)

    yield answer


if __name__ == "__main__":
    workers.serve(_echoing)
