"""Streaming decoders for the two result forms that carry the video as base64 text.

Veo puts the whole video inline in a `data:` URI; the Sora download API wraps it in a JSON answer
that can run to hundreds of megabytes. Neither may be decoded in one piece: the relay captures
many results at once, and holding a whole answer (or its decoded copy) per capture would make its
memory grow with the size of the videos. So both are decoded a slice at a time, and what the
decoders keep between slices is bounded by a few times the slice, whatever the file size.

The module does no I/O and never awaits: its callers own the network, the threads and the storage.
"""

from __future__ import annotations

import binascii
import json
import re
from collections.abc import Callable, Iterator
from typing import Final, Protocol, TypeVar

__all__ = ["DecodeError", "DownloadAnswerDecoder", "data_uri_media_type", "iter_data_uri"]

_T = TypeVar("_T")

_DEFAULT_MEDIA_TYPE: Final = "application/octet-stream"
# A data: URI's head (scheme, media type, parameters) is a few dozen characters; the bound keeps
# a URI without a comma from being searched, or buffered, to its end.
_MAX_HEAD_CHARS: Final = 1024
# The JSON values that are kept (size, format, success) are tiny; the bound is what an answer that
# is not the one we know may cost before it is refused.
_MAX_TEXT_BYTES: Final = 64 * 1024
_MAX_NESTING: Final = 512

_BASE64_ALPHABET: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_ASCII_WHITESPACE: Final = b" \t\n\r\f\v"

_QUOTE: Final = ord('"')
_BACKSLASH: Final = ord("\\")
_LBRACE: Final = ord("{")
_RBRACE: Final = ord("}")
_COLON: Final = ord(":")
_COMMA: Final = ord(",")
_CLOSERS: Final = {ord("{"): ord("}"), ord("["): ord("]")}
_SCALAR_STARTS: Final = frozenset(b"-0123456789tfn")
_FILE_FIELDS: Final = frozenset({"base64", "data_url"})
_SIMPLE_ESCAPES: Final = {
    ord('"'): b'"',
    ord("\\"): b"\\",
    ord("/"): b"/",
    ord("b"): b"\b",
    ord("f"): b"\f",
    ord("n"): b"\n",
    ord("r"): b"\r",
    ord("t"): b"\t",
}

_JSON_WHITESPACE: Final = re.compile(rb"[ \t\n\r]*")
_SCALAR_RUN: Final = re.compile(rb"[A-Za-z0-9.+\-]*")
_NESTED_MARK: Final = re.compile(rb'["{}\[\]]')
_HEX4: Final = re.compile(rb"[0-9A-Fa-f]{4}")


class DecodeError(ValueError):
    """The result is malformed: retrying the same decoding cannot succeed."""


# --- data: URIs -------------------------------------------------------------------------------


def data_uri_media_type(uri: str) -> str:
    """Known before any decoding, so a result that is not a video is refused without the work."""
    return _media_type_of(_head_of(uri))


def iter_data_uri(uri: str, *, chunk_chars: int = 1 << 20) -> Iterator[bytes]:
    """The decoded bytes of a base64 `data:` URI, one slice of `chunk_chars` characters at a time.

    A plain function returning a generator, so a malformed head raises here, at the call, rather
    than at the first `next()` in some worker thread. Synchronous on purpose: each slice is CPU
    work the caller moves off its event loop. `chunk_chars` is rounded down to a multiple of 4 so
    that slices fall on base64 groups; whitespace inside the data only shifts that by a remainder
    of at most 3 characters, carried from one slice to the next.
    """
    if chunk_chars < 4:
        raise ValueError(f"chunk_chars must be at least 4, not {chunk_chars}")
    head = _head_of(uri)
    _media_type_of(head)
    return _decoded_slices(uri, len(head) + 1, chunk_chars - chunk_chars % 4)


def _decoded_slices(uri: str, start: int, step: int) -> Iterator[bytes]:
    decoder = _Base64Decoder()
    for at in range(start, len(uri), step):
        try:
            text = uri[at : at + step].encode("ascii")
        except UnicodeEncodeError:
            raise DecodeError("the data: URI holds a character that is not ASCII") from None
        if decoded := decoder.feed(text):
            yield decoded
    if tail := decoder.close():
        yield tail


def _head_of(uri: str) -> str:
    """Everything before the first comma: the data never needs to be looked at to find it."""
    if uri[:5].lower() != "data:":
        raise DecodeError("not a data: URI")
    comma = uri.find(",", 0, _MAX_HEAD_CHARS)
    if comma < 0:
        raise DecodeError("the data: URI has no ',' ending its media type")
    return uri[:comma]


def _media_type_of(head: str) -> str:
    """Parameters (such as codecs) are dropped: the caller decides on the type alone."""
    if head[:5].lower() != "data:":
        raise DecodeError("not a data: URI")
    media_type, *parameters = head[5:].split(";")
    if not parameters or parameters[-1].strip().lower() != "base64":
        raise DecodeError("the data: URI is not base64-encoded (no ';base64')")
    return media_type.strip().lower() or _DEFAULT_MEDIA_TYPE


# --- base64 -----------------------------------------------------------------------------------


class _Base64Decoder:
    """Base64 decoding of text that arrives in pieces of any length.

    Only whole groups of 4 characters are decoded; the 0 to 3 left over wait for the next piece.
    Validation is done here, not left to binascii, whose lenient mode drops unknown characters
    silently and whose strict mode refuses whitespace and an unpadded end, both of which results
    are allowed to have.
    """

    def __init__(self) -> None:
        self._rest = b""
        self._padding = 0

    def feed(self, text: bytes) -> bytes:
        text = text.translate(None, _ASCII_WHITESPACE)
        if not text:
            return b""
        if invalid := text.translate(None, _BASE64_ALPHABET + b"="):
            raise DecodeError(f"invalid base64 character {invalid[:1]!r}")
        if self._padding or b"=" in text:
            text = self._without_padding(text)
        if self._rest:
            text = self._rest + text
        whole = len(text) - len(text) % 4
        self._rest = text[whole:]
        return binascii.a2b_base64(memoryview(text)[:whole]) if whole else b""

    def close(self) -> bytes:
        """Missing padding is accepted: some encoders leave it out, and it carries no data."""
        if len(self._rest) == 1:
            raise DecodeError("the base64 data was cut short (it ends with a lone character)")
        needed = -len(self._rest) % 4
        if self._padding > needed:
            raise DecodeError("the base64 data has more '=' padding than it needs")
        rest, self._rest = self._rest, b""
        return binascii.a2b_base64(rest + b"=" * needed) if rest else b""

    def _without_padding(self, text: bytes) -> bytes:
        """Padding can only end the data: anything after it means two files run together."""
        first = text.find(b"=")
        if first < 0 or text[first:].strip(b"="):
            raise DecodeError("the base64 data goes on after its '=' padding")
        self._padding += len(text) - first
        if self._padding > 2:
            raise DecodeError("the base64 data has more '=' padding than it needs")
        return text[:first]


# --- the download API's JSON answer -----------------------------------------------------------


class _Sink(Protocol):
    """Where the raw text of a JSON string goes: it arrives still escaped, in pieces."""

    def feed(self, raw: bytes) -> bytes:
        """Takes the next piece; returns the file bytes it completed."""

    def finish(self) -> bytes:
        """The closing quote was seen; returns the last file bytes."""


class _Skip:
    """For strings nobody reads: the scanner finds their end, and nothing is kept."""

    def feed(self, raw: bytes) -> bytes:
        return b""

    def finish(self) -> bytes:
        return b""


_SKIP: Final = _Skip()


class _Text:
    """A string that is kept (a key, the format): bounded, and decoded by json once whole."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._raw = bytearray()

    def feed(self, raw: bytes) -> bytes:
        self._raw += raw
        if len(self._raw) > _MAX_TEXT_BYTES:
            raise DecodeError(f"{self._what} is longer than {_MAX_TEXT_BYTES} bytes")
        return b""

    def finish(self) -> bytes:
        return b""

    def value(self) -> str:
        try:
            value = json.loads(b'"' + self._raw + b'"')
        except ValueError as exc:  # UnicodeDecodeError is one too
            raise DecodeError(f"{self._what} is not a valid JSON string: {exc}") from None
        assert isinstance(value, str)
        return value


class _JsonUnescaper:
    """JSON escapes out of a file field's text, which arrives in pieces split anywhere.

    Servers that escape `/` as `\\/` do it to every slash, that is to one base64 character in
    sixty-four: those are replaced in bulk. Any other escape takes the slow path, one at a time;
    an escape cut by the end of a piece waits for the next one.
    """

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, raw: bytes) -> bytes:
        if self._pending:
            raw, self._pending = self._pending + raw, b""
        if b"\\" not in raw:
            return raw
        # Exact when every backslash is followed by a slash; any other leaves a backslash behind.
        plain = raw.replace(b"\\/", b"/")
        return plain if b"\\" not in plain else self._one_by_one(raw)

    def finish(self) -> None:
        if self._pending:
            raise DecodeError(f"a file field ends inside the escape {self._pending!r}")

    def _one_by_one(self, raw: bytes) -> bytes:
        out = bytearray()
        at = 0
        while (backslash := raw.find(b"\\", at)) >= 0:
            out += raw[at:backslash]
            end = backslash + (6 if raw[backslash + 1 : backslash + 2] == b"u" else 2)
            if end > len(raw):
                self._pending = raw[backslash:]
                return bytes(out)
            out += _unescaped(raw[backslash:end])
            at = end
        out += raw[at:]
        return bytes(out)


def _unescaped(escape: bytes) -> bytes:
    """Only ASCII can be base64; anything else is refused here rather than passed on."""
    if escape[1] != ord("u"):
        if (simple := _SIMPLE_ESCAPES.get(escape[1])) is None:
            raise DecodeError(f"invalid JSON escape {escape!r}")
        return simple
    if not _HEX4.fullmatch(escape, 2):
        raise DecodeError(f"invalid JSON escape {escape!r}")
    code = int(escape[2:], 16)
    if code > 0x7F:
        raise DecodeError(f"a file field holds the non-ASCII escape {escape!r}")
    return bytes((code,))


class _FileField:
    """A `base64` field, or a `data_url` one (whose head is checked, then dropped)."""

    def __init__(self, *, data_url: bool) -> None:
        self._unescaper = _JsonUnescaper()
        self._base64 = _Base64Decoder()
        self._head: bytearray | None = bytearray() if data_url else None

    def feed(self, raw: bytes) -> bytes:
        text = self._unescaper.feed(raw)
        if self._head is not None:
            text = self._past_head(text)
        return self._base64.feed(text) if text else b""

    def finish(self) -> bytes:
        self._unescaper.finish()
        if self._head is not None:
            raise DecodeError("the data_url field has no ',' ending its media type")
        return self._base64.close()

    def _past_head(self, text: bytes) -> bytes:
        assert self._head is not None
        comma = text.find(b",")
        self._head += text if comma < 0 else text[:comma]
        if len(self._head) > _MAX_HEAD_CHARS:
            raise DecodeError("the data_url field has no ',' ending its media type")
        if comma < 0:
            return b""
        try:
            head = self._head.decode("ascii")
        except UnicodeDecodeError:
            raise DecodeError("the data_url field's head is not ASCII") from None
        _media_type_of(head)
        self._head = None
        return text[comma + 1 :]


_Step = Callable[[bytes, int], int]


class DownloadAnswerDecoder:
    """The file inside the download API's JSON answer, decoded while the answer streams in.

    The answer is one JSON object whose `base64` field, and again whose `data_url` field, hold the
    whole file. json.loads would need the answer whole, and then the file twice more (as text and
    decoded); this scanner instead follows the top-level object one chunk at a time: file fields
    are decoded as they stream, the small fields are kept, and everything else is skipped without
    being kept. Only the first file field is decoded (the two hold the same file); the other is
    skipped. Values nested in objects or arrays are skipped after their brackets and strings are
    followed, not validated further: none of them is read.

    Feed the answer's chunks to `feed`, then call `close`. Once either has raised DecodeError the
    decoder is spent.
    """

    def __init__(self) -> None:
        self.size: int | None = None
        self.format: str | None = None
        self.success: bool | None = None
        self._step: _Step = self._expect_object
        self._key = ""
        self._sink: _Sink = _SKIP
        self._then: Callable[[], None] = self._no_string
        self._escaped = False  # the string so far ends in an unpaired backslash
        self._scalar = bytearray()
        self._nesting = bytearray()  # the closing brackets awaited, innermost last
        self._file_taken = False
        self._complete = False
        self._failed = False
        self._closed = False
        self._out: list[bytes] = []

    def feed(self, chunk: bytes) -> bytes:
        """Returns the file bytes this chunk completed, possibly none."""
        self._check_usable()
        data = bytes(chunk)
        pos = 0
        try:
            while pos < len(data):
                pos = self._step(data, pos)
        except DecodeError:
            self._failed = True
            raise
        out, self._out = self._out, []
        return b"".join(out)

    def close(self) -> bytes:
        """The answer has ended: refuses it if it was cut short or held no file."""
        self._check_usable()
        self._closed = True
        if not self._complete:
            raise DecodeError("the answer was cut short: its JSON object never closed")
        if not self._file_taken:
            said = " (it says success: false)" if self.success is False else ""
            raise DecodeError(f"the answer holds no file: no base64 or data_url field{said}")
        return b""

    def _check_usable(self) -> None:
        if self._failed:
            raise DecodeError("the answer already failed to decode")
        if self._closed:
            raise RuntimeError("the decoder is closed")

    # Each step consumes from data[pos:] and returns where it stopped; it either reaches the end
    # of the chunk or moves to the next step.

    def _expect_object(self, data: bytes, pos: int) -> int:
        pos = _skip_whitespace(data, pos)
        if pos == len(data):
            return pos
        if data[pos] != _LBRACE:
            raise _unexpected(data, pos, "a JSON object")
        self._step = self._expect_first_key
        return pos + 1

    def _expect_first_key(self, data: bytes, pos: int) -> int:
        pos = _skip_whitespace(data, pos)
        if pos == len(data):
            return pos
        if data[pos] == _RBRACE:
            self._end_object()
            return pos + 1
        return self._start_key(data, pos)

    def _expect_key(self, data: bytes, pos: int) -> int:
        pos = _skip_whitespace(data, pos)
        return pos if pos == len(data) else self._start_key(data, pos)

    def _start_key(self, data: bytes, pos: int) -> int:
        if data[pos] != _QUOTE:
            raise _unexpected(data, pos, "a key")
        key = _Text("a key")
        self._start_string(key, lambda: self._key_read(key.value()))
        return pos + 1

    def _key_read(self, key: str) -> None:
        self._key = key
        self._step = self._expect_colon

    def _expect_colon(self, data: bytes, pos: int) -> int:
        pos = _skip_whitespace(data, pos)
        if pos == len(data):
            return pos
        if data[pos] != _COLON:
            raise _unexpected(data, pos, "':'")
        self._step = self._expect_value
        return pos + 1

    def _expect_value(self, data: bytes, pos: int) -> int:
        pos = _skip_whitespace(data, pos)
        if pos == len(data):
            return pos
        first = data[pos]
        if first == _QUOTE:
            self._start_string_value()
            return pos + 1
        if first in _CLOSERS:
            self._nesting = bytearray((_CLOSERS[first],))
            self._step = self._in_nested
            return pos + 1
        if first in _SCALAR_STARTS:
            self._scalar = bytearray()
            self._step = self._in_scalar
            return pos
        raise _unexpected(data, pos, "a value")

    def _start_string_value(self) -> None:
        if self._key in _FILE_FIELDS and not self._file_taken:
            self._file_taken = True
            self._start_string(_FileField(data_url=self._key == "data_url"), self._value_read)
        elif self._key in _FILE_FIELDS:
            self._start_string(_SKIP, self._value_read)
        else:
            text = _Text(f"the {self._key!r} field")
            self._start_string(text, lambda: self._record(text.value()))

    def _start_string(self, sink: _Sink, then: Callable[[], None]) -> None:
        self._sink = sink
        self._then = then
        self._escaped = False
        self._step = self._in_string

    def _in_string(self, data: bytes, pos: int) -> int:
        """Finds the closing quote, the first one not escaped; the text before it goes to the sink.

        Whether a quote is escaped depends on the run of backslashes before it, which may have
        begun in an earlier chunk: `_escaped` carries its parity over.
        """
        run_from, escaped = pos, self._escaped
        while (quote := data.find(b'"', run_from)) >= 0:
            if not _escapes_next(data, run_from, quote, escaped):
                self._out.append(self._sink.feed(data[pos:quote]))
                self._out.append(self._sink.finish())
                self._then()
                return quote + 1
            run_from, escaped = quote + 1, False
        self._escaped = _escapes_next(data, run_from, len(data), escaped)
        self._out.append(self._sink.feed(data[pos:]))
        return len(data)

    def _in_scalar(self, data: bytes, pos: int) -> int:
        end = _match_end(_SCALAR_RUN, data, pos)
        self._scalar += data[pos:end]
        if len(self._scalar) > _MAX_TEXT_BYTES:
            raise DecodeError(f"the {self._key!r} field is longer than {_MAX_TEXT_BYTES} bytes")
        if end < len(data):
            self._record(_parsed_scalar(bytes(self._scalar), self._key))
        return end

    def _in_nested(self, data: bytes, pos: int) -> int:
        mark = _NESTED_MARK.search(data, pos)
        if mark is None:
            return len(data)
        found = data[mark.start()]
        if found == _QUOTE:
            self._start_string(_SKIP, self._back_to_nested)
        elif found in _CLOSERS:
            if len(self._nesting) >= _MAX_NESTING:
                raise DecodeError(f"the {self._key!r} field nests deeper than {_MAX_NESTING}")
            self._nesting.append(_CLOSERS[found])
        elif found != self._nesting.pop():
            raise _unexpected(data, mark.start(), "the brackets to match")
        elif not self._nesting:
            self._value_read()
        return mark.end()

    def _back_to_nested(self) -> None:
        self._step = self._in_nested

    def _record(self, value: object) -> None:
        """Keeps the fields the caller checks; a null is taken as the field being absent."""
        if value is not None:
            if self._key == "size":
                self.size = _size(value)
            elif self._key == "format":
                self.format = _typed(value, str, "format")
            elif self._key == "success":
                self.success = _typed(value, bool, "success")
        self._value_read()

    def _value_read(self) -> None:
        self._step = self._expect_comma_or_end

    def _expect_comma_or_end(self, data: bytes, pos: int) -> int:
        pos = _skip_whitespace(data, pos)
        if pos == len(data):
            return pos
        if data[pos] == _COMMA:
            self._step = self._expect_key
        elif data[pos] == _RBRACE:
            self._end_object()
        else:
            raise _unexpected(data, pos, "',' or '}'")
        return pos + 1

    def _end_object(self) -> None:
        self._complete = True
        self._step = self._after_object

    def _after_object(self, data: bytes, pos: int) -> int:
        pos = _skip_whitespace(data, pos)
        if pos < len(data):
            raise _unexpected(data, pos, "nothing after the JSON object")
        return pos

    def _no_string(self) -> None:
        raise AssertionError("no string is being read")


def _escapes_next(data: bytes, start: int, end: int, escaped: bool) -> bool:
    """Whether data[end] is escaped: an odd run of backslashes ends data[start:end].

    If the run reaches back to `start`, it continues one from before (`escaped` says its parity).
    """
    at = end
    while at > start and data[at - 1] == _BACKSLASH:
        at -= 1
    odd = (end - at) % 2 == 1
    return odd != escaped if at == start else odd


def _skip_whitespace(data: bytes, pos: int) -> int:
    return _match_end(_JSON_WHITESPACE, data, pos)


def _match_end(pattern: re.Pattern[bytes], data: bytes, pos: int) -> int:
    match = pattern.match(data, pos)
    return match.end() if match else pos


def _unexpected(data: bytes, pos: int, expected: str) -> DecodeError:
    return DecodeError(f"malformed JSON answer: expected {expected}, found {data[pos : pos + 1]!r}")


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _parsed_scalar(raw: bytes, key: str) -> object:
    try:
        return json.loads(raw, parse_constant=_refuse_constant)
    except ValueError:
        raise DecodeError(f"the {key!r} field holds no valid JSON value: {raw[:40]!r}") from None


def _typed(value: object, kind: type[_T], name: str) -> _T:
    if not isinstance(value, kind):
        raise DecodeError(f"the {name!r} field is not a {kind.__name__}: {value!r:.40}")
    return value


def _size(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise DecodeError(f"the 'size' field is not a byte count: {value!r:.40}")
    return value
