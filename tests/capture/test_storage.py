"""Captured files appear whole or not at all, in the storage folder."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.capture.storage import PARTS_DIR, FileStorage, TooLarge
from app.settings import Settings


def local(tmp_path: Path) -> FileStorage:
    return FileStorage.from_settings(Settings(_env_file=None, storage_dir=str(tmp_path)))


async def pieces(*chunks: bytes, then_fail: bool = False) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk
    if then_fail:
        raise ConnectionError("the download broke off")


async def test_a_file_is_stored_with_its_size_and_sha256(tmp_path: Path) -> None:
    written = await local(tmp_path).write(
        "videos/a.mp4", pieces(b"abc", b"def"), content_type="video/mp4", max_bytes=100
    )
    assert (written.size_bytes, written.sha256) == (6, hashlib.sha256(b"abcdef").hexdigest())
    assert (tmp_path / "videos/a.mp4").read_bytes() == b"abcdef"
    assert list((tmp_path / PARTS_DIR).iterdir()) == []


@pytest.mark.parametrize("failure", ["too large", "broken off"])
async def test_a_write_cut_short_leaves_nothing_where_files_are_served(
    tmp_path: Path, failure: str
) -> None:
    storage = local(tmp_path)
    chunks = pieces(b"x" * 60, b"y" * 60, then_fail=failure == "broken off")
    with pytest.raises(TooLarge if failure == "too large" else ConnectionError):
        limit = 100 if failure == "too large" else 1000
        await storage.write("videos/a.mp4", chunks, content_type="video/mp4", max_bytes=limit)
    assert not (tmp_path / "videos/a.mp4").exists()
    assert list((tmp_path / PARTS_DIR).iterdir()) == []


def test_parts_left_by_a_killed_process_are_removed_once_stale(tmp_path: Path) -> None:
    storage = local(tmp_path)
    parts = tmp_path / PARTS_DIR
    parts.mkdir()
    (parts / "old.mp4").write_bytes(b"half")
    (parts / "fresh.mp4").write_bytes(b"half")
    an_hour_ago = (tmp_path / PARTS_DIR / "old.mp4").stat().st_mtime - 3600
    os.utime(parts / "old.mp4", (an_hour_ago, an_hour_ago))

    assert storage.remove_stale_parts(older_than=600) == 1
    assert [part.name for part in parts.iterdir()] == ["fresh.mp4"]
