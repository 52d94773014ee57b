"""The streaming decoders of inline data: URIs and of the download API's JSON answers."""

from __future__ import annotations

import base64
import hashlib
import json
import random
import tracemalloc
from collections.abc import Iterable, Iterator

import pytest

from app.capture.decoding import (
    DecodeError,
    DownloadAnswerDecoder,
    data_uri_media_type,
    iter_data_uri,
)

MIB = 1 << 20
LENGTHS = [0, 1, 2, 3, 100, 1000, MIB + 7]
# Feeding a byte (or a few characters) at a time costs a Python call each: small payloads only.
SMALL = 1000


def random_bytes(length: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(length)


def data_uri(file: bytes, media_type: str = "video/mp4") -> str:
    return f"data:{media_type};base64,{base64.b64encode(file).decode()}"


def answer(file: bytes, *, fields: Iterable[str] = ("base64", "data_url")) -> str:
    encoded = base64.b64encode(file).decode()
    body: dict[str, object] = {
        "success": True,
        "generation_id": "gen_01",
        "task_id": "task_01",
        "format": "mp4",
        "size": len(file),
    }
    for field in fields:
        body[field] = encoded if field == "base64" else f"data:video/mp4;base64,{encoded}"
    return json.dumps(body)


def decode(text: str | bytes, chunk_size: int) -> tuple[bytes, DownloadAnswerDecoder]:
    raw = text.encode() if isinstance(text, str) else text
    decoder = DownloadAnswerDecoder()
    out = [decoder.feed(raw[at : at + chunk_size]) for at in range(0, len(raw), chunk_size)]
    out.append(decoder.close())
    return b"".join(out), decoder


def cases(chunk_sizes: list[int]) -> list[tuple[int, int]]:
    return [(n, size) for n in LENGTHS for size in chunk_sizes if size >= 4096 or n <= SMALL]


# --- data: URIs -------------------------------------------------------------------------------


@pytest.mark.parametrize(("length", "chunk_chars"), cases([4, 5, 8, 12, 4096, 65536, MIB]))
def test_a_data_uri_decodes_to_the_same_bytes_in_any_chunk_size(
    length: int, chunk_chars: int
) -> None:
    file = random_bytes(length)

    assert b"".join(iter_data_uri(data_uri(file), chunk_chars=chunk_chars)) == file


def test_a_data_uri_is_decoded_a_slice_at_a_time() -> None:
    file = random_bytes(10_000)

    chunks = list(iter_data_uri(data_uri(file), chunk_chars=1000))

    assert len(chunks) > 10
    assert max(len(chunk) for chunk in chunks) <= 750
    assert b"".join(chunks) == file


@pytest.mark.parametrize("length", [1, 2, 3, 4, 5, 100, 1000])
@pytest.mark.parametrize("chunk_chars", [4, 8, 4096])
def test_a_data_uri_without_padding_is_accepted(length: int, chunk_chars: int) -> None:
    file = random_bytes(length)
    unpadded = data_uri(file).rstrip("=")

    assert b"".join(iter_data_uri(unpadded, chunk_chars=chunk_chars)) == file


def test_whitespace_in_a_data_uri_is_ignored() -> None:
    file = random_bytes(3000)
    wrapped = "data:video/mp4;base64," + base64.encodebytes(file).decode().replace("\n", "\r\n ")

    for chunk_chars in (4, 7, 64, 4096):
        assert b"".join(iter_data_uri(wrapped, chunk_chars=chunk_chars)) == file


@pytest.mark.parametrize(
    ("uri", "media_type"),
    [
        ("data:video/mp4;base64,AAAA", "video/mp4"),
        ("data:;base64,AAAA", "application/octet-stream"),
        ("DATA:Video/MP4;codecs=avc1;base64,AAAA", "video/mp4"),
        ("data:video/webm;BASE64,", "video/webm"),
    ],
)
def test_the_media_type_of_a_data_uri_is_known_before_decoding(uri: str, media_type: str) -> None:
    assert data_uri_media_type(uri) == media_type


@pytest.mark.parametrize(
    "uri",
    [
        "https://cdn.example.com/video.mp4",
        "data:video/mp4,AAAA",
        "data:video/mp4;charset=base64,AAAA",
        "data:video/mp4;base64",
        "data:video/mp4;base64" + "A" * 5000,
        "",
    ],
)
def test_what_is_not_a_base64_data_uri_is_refused_before_any_decoding(uri: str) -> None:
    with pytest.raises(DecodeError):
        data_uri_media_type(uri)
    with pytest.raises(DecodeError):
        iter_data_uri(uri)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ("AAAA*AAA", "invalid base64 character"),
        ("AAAA-_AA", "invalid base64 character"),
        ("AAAAé", "not ASCII"),
        ("AA==AAAA", "after its '=' padding"),
        ("AAA==", "more '=' padding"),
        ("AAAA=", "more '=' padding"),
        ("AAAAA", "cut short"),
    ],
)
def test_a_malformed_data_uri_raises_a_decode_error(data: str, reason: str) -> None:
    for chunk_chars in (4, 8, 4096):
        with pytest.raises(DecodeError, match=reason):
            b"".join(iter_data_uri(f"data:video/mp4;base64,{data}", chunk_chars=chunk_chars))


def test_a_chunk_size_below_one_group_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 4"):
        iter_data_uri(data_uri(b"abc"), chunk_chars=3)


# --- the download API's answer ----------------------------------------------------------------


@pytest.mark.parametrize(("length", "chunk_size"), cases([1, 2, 3, 7, 4096, 65536, MIB, 8 * MIB]))
def test_an_answer_decodes_to_the_same_bytes_in_any_chunk_size(
    length: int, chunk_size: int
) -> None:
    file = random_bytes(length, seed=length)

    decoded, _ = decode(answer(file), chunk_size)

    assert decoded == file


@pytest.mark.parametrize(("length", "chunk_size"), cases([1, 5, 4096, MIB]))
def test_an_answer_with_escaped_slashes_decodes_the_same(length: int, chunk_size: int) -> None:
    file = random_bytes(length, seed=length)
    escaped = answer(file).replace("/", "\\/")
    assert length < 100 or "\\/" in escaped

    decoded, _ = decode(escaped, chunk_size)

    assert decoded == file


@pytest.mark.parametrize("chunk_size", [1, 3, 4096])
def test_other_json_escapes_in_the_file_are_decoded_too(chunk_size: int) -> None:
    file = random_bytes(1000)
    # Line-wrapped base64 keeps its newlines as \n; an encoder may escape any character as \uXXXX.
    wrapped = base64.encodebytes(file).decode()
    spelled = "".join(f"\\u{ord(c):04x}" if c in "+A" else c for c in wrapped)
    text = '{"format": "mp4", "base64": "' + json.dumps(wrapped)[1:-1] + '"}'
    text_u = '{"format": "mp4", "base64": "' + spelled.replace("\n", "\\n") + '"}'

    assert decode(text, chunk_size)[0] == file
    assert decode(text_u, chunk_size)[0] == file


@pytest.mark.parametrize(
    "fields",
    [("base64", "data_url"), ("data_url", "base64"), ("data_url",), ("base64",)],
)
@pytest.mark.parametrize("chunk_size", [1, 7, 4096])
def test_the_file_is_taken_from_either_field_and_given_once(
    fields: tuple[str, ...], chunk_size: int
) -> None:
    file = random_bytes(500)

    decoded, _ = decode(answer(file, fields=fields), chunk_size)

    assert decoded == file


def test_the_field_that_comes_second_is_not_read() -> None:
    file = random_bytes(300)
    encoded = base64.b64encode(file).decode()

    first_base64 = json.dumps({"base64": encoded, "data_url": "not a data URI at all"})
    first_data_url = json.dumps({"data_url": f"data:video/mp4;base64,{encoded}", "base64": "*"})

    assert decode(first_base64, 16)[0] == file
    assert decode(first_data_url, 16)[0] == file


def test_an_answer_without_a_file_is_refused() -> None:
    with pytest.raises(DecodeError, match="holds no file"):
        decode(answer(b"some file", fields=()), 4096)
    with pytest.raises(DecodeError, match="success: false"):
        decode('{"success": false, "error": "expired"}', 4096)


def test_an_empty_file_is_a_file() -> None:
    decoded, decoder = decode(answer(b""), 7)

    assert decoded == b""
    assert decoder.size == 0


@pytest.mark.parametrize("fields", [("base64", "data_url"), ("data_url",)])
def test_an_answer_cut_short_is_refused(fields: tuple[str, ...]) -> None:
    text = answer(random_bytes(200), fields=fields).encode()

    for end in range(len(text)):  # every prefix: inside keys, values, escapes and the file
        with pytest.raises(DecodeError):
            decode(text[:end], 64)


@pytest.mark.parametrize(
    ("answer_text", "reason"),
    [
        ('{"base64": "AAAA*AAA"}', "invalid base64 character"),
        ('{"base64": "AAAA\\"AAA"}', "invalid base64 character"),
        ('{"base64": "AAAA\\u00e9AAA"}', "non-ASCII escape"),
        ('{"base64": "AAAA\\xAAA"}', "invalid JSON escape"),
        ('{"base64": "AAAA\\u12"}', "ends inside the escape"),
        ('{"base64": "AA==AAAA"}', "after its '=' padding"),
        ('{"base64": "AAAAA"}', "cut short"),
        ('{"data_url": "AAAA"}', "no ',' ending its media type"),
        ('{"data_url": "data:video/mp4,AAAA"}', "not base64-encoded"),
        ('{"data_url": "https://cdn.example.com/v.mp4,AAAA"}', "not a data: URI"),
        ('{"base64": "AAAA"} {}', "nothing after the JSON object"),
        ('["AAAA"]', "a JSON object"),
        ('{"base64": "AAAA",}', "a key"),
        ('{"base64" "AAAA"}', "':'"),
        ('{"base64": "AAAA" "size": 3}', "',' or '}'"),
        ('{"base64": "AAAA", "size": 3 4}', "',' or '}'"),
        ('{"base64": "AAAA", "size": 01}', "no valid JSON value"),
        ('{"base64": "AAAA", "size": NaN}', "a value"),
        ('{"base64": "AAAA", "size": -Infinity}', "no valid JSON value"),
        ('{"base64": "AAAA", "size": "3"}', "not a byte count"),
        ('{"base64": "AAAA", "size": -3}', "not a byte count"),
        ('{"base64": "AAAA", "success": 1}', "not a bool"),
        ('{"base64": "AAAA", "format": 4}', "not a str"),
        ('{"base64": "AAAA", "format": "\\q"}', "not a valid JSON string"),
        ('{"base64": "AAAA", "extra": [1, 2}]}', "brackets to match"),
        ('{"base64": "AAAA", "extra": ' + "[" * 600 + "]" * 600 + "}", "nests deeper"),
    ],
)
def test_a_malformed_answer_raises_a_decode_error(answer_text: str, reason: str) -> None:
    for chunk_size in (1, 3, 4096):
        with pytest.raises(DecodeError, match=reason):
            decode(answer_text, chunk_size)


def test_a_long_string_outside_the_file_fields_is_refused() -> None:
    for field in ("format", "generation_id", "note"):
        text = json.dumps({"base64": "AAAA", field: "x" * 70_000})
        with pytest.raises(DecodeError, match="longer than"):
            decode(text, 4096)
    with pytest.raises(DecodeError, match="longer than"):
        decode('{"base64": "AAAA", "size": ' + "1" * 70_000 + "}", 4096)


@pytest.mark.parametrize("chunk_size", [1, 2, 4096])
def test_nested_values_are_skipped_whatever_their_strings_hold(chunk_size: int) -> None:
    file = random_bytes(400)
    nested: dict[str, object] = {
        "a": ['}]"\\', {"b": 'a \\" quote }{ ]['}, [[], {}], None, 1.5e3, True],
        "base64": "not the file",
        "c\\": "\\\\",
    }
    encoded = base64.b64encode(file).decode()
    text = json.dumps({"meta": nested, "format": "mp4", "list": ["]", "}"], "base64": encoded})

    decoded, decoder = decode(text, chunk_size)

    assert decoded == file
    assert decoder.format == "mp4"


def test_size_format_and_success_are_recorded() -> None:
    file = random_bytes(100)

    _, decoder = decode(answer(file), 1)

    assert (decoder.size, decoder.format, decoder.success) == (100, "mp4", True)


def test_fields_absent_or_null_leave_none() -> None:
    _, absent = decode('{"base64": ""}', 1)
    _, null = decode('{"size":null,"format":null,"success":null,"base64":""}', 1)

    for decoder in (absent, null):
        assert (decoder.size, decoder.format, decoder.success) == (None, None, None)


def test_escaped_keys_and_surrounding_whitespace_are_understood() -> None:
    file = random_bytes(50)
    text = (
        ' \r\n\t{ "\\u0073ize" : 50 ,\n "form\\u0061t":"mp\\u0034", '
        f'"base\\u0036\\u0034" :\t"{base64.b64encode(file).decode()}" ,"success":false}}\n '
    )

    decoded, decoder = decode(text, 1)

    assert decoded == file
    assert (decoder.size, decoder.format, decoder.success) == (50, "mp4", False)


def test_a_decoder_that_failed_or_closed_is_spent() -> None:
    failed = DownloadAnswerDecoder()
    with pytest.raises(DecodeError):
        failed.feed(b"[")
    with pytest.raises(DecodeError, match="already failed"):
        failed.feed(b"{}")

    closed = DownloadAnswerDecoder()
    closed.feed(b'{"base64": ""}')
    closed.close()
    with pytest.raises(RuntimeError):
        closed.feed(b" ")


def rechunked(pieces: Iterable[bytes], size: int) -> Iterator[bytes]:
    buffer = bytearray()
    for piece in pieces:
        buffer += piece
        while len(buffer) >= size:
            yield bytes(buffer[:size])
            del buffer[:size]
    if buffer:
        yield bytes(buffer)


def test_a_large_answer_is_decoded_in_bounded_memory() -> None:
    """50 MB of file, twice in the answer (133 MB of JSON): generated, fed and checked in chunks."""
    piece, count = 48 * 1024, 1067  # whole base64 groups per piece; 50 MiB and a bit
    total = piece * count

    def encoded_file(digest: hashlib._Hash | None) -> Iterator[bytes]:
        rng = random.Random(7)
        for _ in range(count):
            data = rng.randbytes(piece)
            if digest is not None:
                digest.update(data)
            yield base64.b64encode(data).replace(b"/", b"\\/")

    def answer_pieces(digest: hashlib._Hash) -> Iterator[bytes]:
        yield b'{"success": true, "format": "mp4", "size": %d, "base64": "' % total
        yield from encoded_file(digest)
        yield b'", "data_url": "data:video\\/mp4;base64,'
        yield from encoded_file(None)
        yield b'"}'

    sent, received = hashlib.sha256(), hashlib.sha256()
    size = 0
    decoder = DownloadAnswerDecoder()
    tracemalloc.start()
    try:
        for chunk in rechunked(answer_pieces(sent), 64 * 1024):
            out = decoder.feed(chunk)
            size += len(out)
            received.update(out)
        received.update(decoder.close())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert size == total == decoder.size
    assert received.digest() == sent.digest()
    assert peak < 8 * MIB, f"{peak} bytes at the peak"
