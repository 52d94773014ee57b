"""Where captured files are kept: a local directory, or an S3-compatible bucket.

Both are reached through obstore, whose one interface covers a local directory and the object
stores, with streamed writes that appear whole or not at all (a local file is written aside and
renamed into place; an S3 upload is completed only at its end), so a half-written file is never
served. Streaming keeps memory to a few parts in flight, whatever the file's size.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import obstore
from obstore.store import LocalStore, S3Store

from app.settings import Settings

if TYPE_CHECKING:
    from obstore.store import S3Config

#: The part size of a streamed write: S3's smallest multipart part.
PART_BYTES = 5 * 1024 * 1024
#: Parts in flight at once; with `PART_BYTES`, what a capture to a bucket holds in memory.
PARTS_IN_FLIGHT = 2
#: Where local writes are made before they are renamed into place, within the storage folder.
PARTS_DIR = ".parts"
#: Chunks at least this large are hashed (and written) in a worker thread; smaller ones cost less
#: than the hop.
IN_THREAD_BYTES = 256 * 1024


class TooLarge(Exception):
    """The file grew past the cap it was written with; nothing was stored."""


@dataclass(frozen=True, slots=True)
class Written:
    size_bytes: int
    sha256: str


class FileStorage:
    """:param local_root: the directory of a local store, whose files are served from disk."""

    def __init__(self, store: LocalStore | S3Store, *, local_root: Path | None) -> None:
        self._store = store
        self._local_root = local_root

    @classmethod
    def from_settings(cls, settings: Settings) -> FileStorage:
        if settings.storage_url is None:
            root = Path(settings.storage_dir).resolve()
            return cls(LocalStore(root, mkdir=True), local_root=root)
        bucket, _, prefix = settings.storage_url.removeprefix("s3://").partition("/")
        options: S3Config = {"region": settings.s3_region}
        if settings.s3_endpoint_url is not None:
            options["endpoint"] = settings.s3_endpoint_url
        if settings.s3_access_key_id is not None:
            options["access_key_id"] = settings.s3_access_key_id.get_secret_value()
        if settings.s3_secret_access_key is not None:
            options["secret_access_key"] = settings.s3_secret_access_key.get_secret_value()
        store = S3Store(
            bucket,
            prefix=prefix.strip("/") or None,
            config=options,
            client_options={"allow_http": True},
        )
        return cls(store, local_root=None)

    @property
    def description(self) -> str:
        return str(self._local_root) if self._local_root is not None else repr(self._store)

    async def write(
        self, key: str, chunks: AsyncIterator[bytes], *, content_type: str, max_bytes: int
    ) -> Written:
        """Stream `chunks` to `key`, hashing them on the way.

        :raises TooLarge: past `max_bytes`; the write is abandoned.
        """
        if self._local_root is not None:
            return await _write_local(self._local_root, key, chunks, max_bytes)
        counted = _Counted(chunks, max_bytes)
        await obstore.put_async(
            self._store,
            key,
            counted,
            attributes={"Content-Type": content_type},  # what presigned links serve
            chunk_size=PART_BYTES,
            max_concurrency=PARTS_IN_FLIGHT,
        )
        return counted.written()

    async def delete(self, key: str) -> None:
        """Deleting what is not there is not an error: cleanups may race or be repeated."""
        with contextlib.suppress(FileNotFoundError):
            await obstore.delete_async(self._store, key)

    def local_path(self, key: str) -> Path | None:
        """The file on disk, for a local store (served by the relay itself)."""
        return None if self._local_root is None else self._local_root / key

    async def presigned_url(self, key: str, *, expires_in: timedelta) -> str:
        """A link straight to the bucket, for a store that is not local."""
        if not isinstance(self._store, S3Store):
            raise TypeError("a local store has no presigned links: serve its files from disk")
        return await obstore.sign_async(self._store, "GET", key, expires_in)

    def remove_stale_parts(self, older_than: float) -> int:
        """Delete the parts of local writes cut short (a process killed mid-capture); return how
        many. Parts live in a folder of their own, so this never walks the stored files."""
        if self._local_root is None:
            return 0
        parts = self._local_root / PARTS_DIR
        if not parts.is_dir():
            return 0
        cutoff = time.time() - older_than
        removed = 0
        for part in parts.iterdir():
            with contextlib.suppress(FileNotFoundError):
                if part.stat().st_mtime < cutoff:
                    part.unlink()
                    removed += 1
        return removed


class _Counted:
    """The chunks of a result, hashed and counted as they pass, refused past `max_bytes`.

    :param sink: also given each chunk, in the same worker-thread hop as its hashing (a write
        to a local file: under sustained writes the kernel makes writers wait for its
        write-back, which must not hold up the event loop).
    """

    def __init__(
        self,
        chunks: AsyncIterator[bytes],
        max_bytes: int,
        sink: Callable[[bytes], object] | None = None,
    ) -> None:
        self._chunks = chunks
        self._max_bytes = max_bytes
        self._sink = sink
        self._digest = hashlib.sha256()
        self._size = 0

    def __aiter__(self) -> _Counted:
        return self

    async def __anext__(self) -> bytes:
        chunk = await anext(self._chunks)
        self._size += len(chunk)
        if self._size > self._max_bytes:
            raise TooLarge(f"the result is larger than {self._max_bytes} bytes")
        if len(chunk) >= IN_THREAD_BYTES:
            # Hashing and writing let go of the GIL: on another core, not in the loop's time.
            await asyncio.to_thread(self._take, chunk)
        else:
            self._take(chunk)
        return chunk

    def written(self) -> Written:
        return Written(self._size, self._digest.hexdigest())

    def _take(self, chunk: bytes) -> None:
        self._digest.update(chunk)
        if self._sink is not None:
            self._sink(chunk)


async def _write_local(
    root: Path, key: str, chunks: AsyncIterator[bytes], max_bytes: int
) -> Written:
    """Written beside the stored files and renamed into place once whole.

    Written directly rather than through obstore, whose streamed writes buffer whole parts (5 MB)
    per capture and hand each chunk over to threads of their own: each capture holds one chunk.
    The chunks are written in a worker thread (`_Counted`), where a write waits on the kernel
    without holding up the loop; opening and renaming take a fraction of a millisecond and stay
    on the loop, since each hop to a thread and back can wait milliseconds for the GIL while the
    loop is busy (docs/capture-benchmark.md).
    """
    target = root / key
    part = root / PARTS_DIR / f"{secrets.token_hex(8)}{target.suffix}"
    try:
        with _create(part) as file:
            counted = _Counted(chunks, max_bytes, sink=file.write)
            async for _ in counted:
                pass
        target.parent.mkdir(parents=True, exist_ok=True)
        part.replace(target)
    finally:
        part.unlink(missing_ok=True)
    return counted.written()


def _create(path: Path) -> BinaryIO:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("wb")
