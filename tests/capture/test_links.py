"""Links to captured files can be neither guessed nor extended, and name the right address."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

from app.capture.links import FALLBACK_ORIGIN, FileLinks, Origin, Verdict

KEY = bytes(range(32))


def parts(url: str) -> tuple[str, int, str]:
    split = urlsplit(url)
    query = parse_qs(split.query)
    return split.path.rsplit("/", 1)[1], int(query["expires"][0]), query["signature"][0]


def test_a_link_verifies_until_it_expires_and_not_after() -> None:
    links = FileLinks(KEY, origin=Origin("https://relay.example.com"))
    watch_id, expires, signature = parts(links.url("wat_1", datetime.now(UTC) + timedelta(hours=1)))
    assert watch_id == "wat_1"
    assert links.verify(watch_id, expires, signature) is Verdict.VALID

    past = links.url("wat_1", datetime.now(UTC) - timedelta(seconds=1))
    assert links.verify(*parts(past)) is Verdict.EXPIRED


def test_a_link_altered_in_any_part_or_signed_with_another_key_is_forged() -> None:
    links = FileLinks(KEY, origin=Origin(None))
    watch_id, expires, signature = parts(links.url("wat_1", datetime.now(UTC) + timedelta(hours=1)))
    assert links.verify("wat_2", expires, signature) is Verdict.FORGED
    assert links.verify(watch_id, expires + 1, signature) is Verdict.FORGED
    for at, char in enumerate(signature):
        other_char = "B" if char == "A" else "A"  # "A" alone was the signature itself at times
        altered = signature[:at] + other_char + signature[at + 1 :]
        assert links.verify(watch_id, expires, altered) is Verdict.FORGED
    other = FileLinks(bytes(32), origin=Origin(None))
    assert other.verify(watch_id, expires, signature) is Verdict.FORGED
    # An expired link is only called expired once it is known to be real.
    assert links.verify(watch_id, 1, signature) is Verdict.FORGED


def test_links_name_the_public_url_else_the_address_first_called_else_the_default() -> None:
    origin = Origin(None)
    links = FileLinks(KEY, origin=origin)
    later = datetime.now(UTC) + timedelta(hours=1)
    assert links.url("wat_1", later).startswith(f"{FALLBACK_ORIGIN}/v1/files/wat_1?")
    origin.learned = "http://localhost:8000"
    assert links.url("wat_1", later).startswith("http://localhost:8000/v1/files/wat_1?")
    public = FileLinks(KEY, origin=Origin("https://relay.example.com"))
    assert public.url("wat_1", later).startswith("https://relay.example.com/v1/files/wat_1?")
