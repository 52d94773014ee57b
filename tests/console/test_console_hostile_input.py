"""The console against hostile input: whatever a relay stores or a request carries, a page shows
it as text; a request the console cannot use gets a 4xx page (or the way to sign in), never a
500; the browser is only ever sent within the console; and a session acts for its own app alone.

Each relay here is real (its own uvicorn server, on SQLite and on PostgreSQL), and so are the
upstream, the receiver and the server of results that put hostile values into it.
"""

from __future__ import annotations

import asyncio
import base64
import html
import json
import re
import zlib
from collections.abc import AsyncIterator, Callable
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.console.session import Sessions
from tests.conftest import API_KEY, RelayClient, RelayFactory, Upstream
from tests.console.conftest import ADMIN_TOKEN, resigned
from tests.console.test_console_pages import (
    CALLBACK,
    DEAD_CALLBACK,
    console_of,
    csrf_of,
    other_app,
    signed_in,
    watch_ids_in,
)
from tests.flaky_upstream import Answer, FlakyUpstream, task
from tests.receiver import Answer as Reply
from tests.receiver import Receiver
from tests.servers import serve

Hooks = tuple[Receiver, str]

SCRIPT = "<script>alert(1)</script>"
ATTRIBUTE = '"><img src=x onerror=alert(2)>'
QUOTED = "'><svg onload=alert(3)>"
#: Breaks out of text, of a double- and a single-quoted attribute, and names a script's scheme.
HOSTILE = f"{ATTRIBUTE}{QUOTED}{SCRIPT} javascript:alert(4)"
#: The same without spaces, for the places that take none (a URL, a header's token).
UNSPACED = '"><img/src=x/onerror=alert(5)><script>alert(6)</script>'

#: Every element the console's pages are made of; anything else was put there by a value.
CONSOLE_ELEMENTS = frozenset(
    {
        "html",
        "head",
        "meta",
        "title",
        "link",
        "script",
        "body",
        "a",
        "header",
        "p",
        "nav",
        "ul",
        "li",
        "form",
        "input",
        "span",
        "strong",
        "button",
        "main",
        "h1",
        "h2",
        "h3",
        "h4",
        "div",
        "label",
        "select",
        "option",
        "table",
        "caption",
        "thead",
        "tbody",
        "tr",
        "th",
        "td",
        "time",
        "code",
        "dl",
        "dt",
        "dd",
        "details",
        "summary",
        "pre",
        "section",
        "article",
        "figure",
        "figcaption",
        "svg",
        "g",
        "rect",
        "line",
        "text",
        "desc",
    }
)
#: Attributes whose value the browser follows or loads.
URL_ATTRIBUTES = frozenset(
    {"href", "src", "action", "formaction", "hx-get", "hx-post", "xlink:href"}
)
HTMX_ATTRIBUTES = frozenset({"hx-get", "hx-trigger", "hx-swap", "hx-headers"})
HTMX = "/console/static/htmx.min.js"


class ParsedPage(HTMLParser):
    """The elements, attributes and text a browser would find in a page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.values: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        self.elements.append((tag, attributes))
        self.values.extend(attributes.values())

    def handle_data(self, data: str) -> None:
        self.values.append(data)

    def shows(self, value: str) -> bool:
        """Whether `value` is on the page as text or as an attribute's value."""
        return any(value in found for found in self.values)


def parsed(page: str) -> ParsedPage:
    found = ParsedPage()
    found.feed(page)
    found.close()
    return found


def assert_only_the_consoles_markup(page: httpx.Response) -> ParsedPage:
    """Nothing on the page is markup, a handler or a link that a stored value brought."""
    assert page.status_code < 500, page.text
    found = parsed(page.text)
    for tag, attributes in found.elements:
        assert tag in CONSOLE_ELEMENTS, (tag, attributes)
        for name, value in attributes.items():
            assert not name.startswith("on"), (tag, attributes)
            if name in URL_ATTRIBUTES:
                assert value.startswith("/console") or value in ("#main", "data:,"), (tag, value)
            if name.startswith("hx-"):
                assert name in HTMX_ATTRIBUTES, (tag, attributes)
        if tag == "script":
            assert attributes == {"src": HTMX, "defer": ""}, attributes
        if "hx-headers" in attributes:
            assert list(json.loads(attributes["hx-headers"])) == ["X-CSRF-Token"]
    return found


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def register_as(
    relay: RelayClient, key: str, task_id: str, callback_url: str = CALLBACK, **extra: Any
) -> dict[str, Any]:
    response = await relay.http.post(
        "/v1/watches",
        json={"task_id": task_id, "callback_url": callback_url, **extra},
        headers=bearer(key),
    )
    assert response.status_code == 201, response.text
    made: dict[str, Any] = response.json()
    return made


async def wait_for_watch(
    relay: RelayClient, key: str, watch_id: str, ready: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """Read the watch as its app would, until `ready` says it has got where the test needs it."""
    async with asyncio.timeout(15):
        while True:
            response = await relay.http.get(f"/v1/watches/{watch_id}", headers=bearer(key))
            watch: dict[str, Any] = response.json()
            if ready(watch):
                return watch
            await asyncio.sleep(0.05)


@pytest.fixture
async def results() -> AsyncIterator[str]:
    """Where the upstream says a result is: it answers with a type that is no video's, and
    hostile."""

    async def answer(_: Request) -> Response:
        return Response(b"not a video", headers={"content-type": f"text/{UNSPACED}"})

    async with serve(Starlette(routes=[Route("/{path:path}", answer)])) as url:
        yield url


async def test_every_stored_value_is_shown_as_text_on_every_page(
    start_relay: RelayFactory, flaky: FlakyUpstream, receiver: Hooks, results: str
) -> None:
    """An app named, a task id, a callback, metadata, the upstream's status and error, a failed
    capture's error, the receiver's answer, and the webhook that carries them: all hostile."""
    hooks, hooks_url = receiver
    hooks.answer_next(Reply(500, body=HOSTILE.encode()))
    callback = f"{hooks_url}?to={UNSPACED}"
    metadata = {HOSTILE: [HOSTILE, {"link": "javascript:alert(7)"}]}
    async with start_relay(admin_token=ADMIN_TOKEN, nebula_base_url=flaky.url) as relay:
        app = await other_app(relay, SCRIPT + ATTRIBUTE)
        key = app["api_key"]
        ended = flaky.script(
            f"ended{HOSTILE}",
            task(HOSTILE, progress=50),
            task("succeeded", url=f"{results}/video.mp4?x={UNSPACED}"),
        )
        done = await register_as(relay, key, ended, callback, metadata=metadata)
        await wait_for_watch(relay, key, done["id"], lambda watch: watch["state"] == "completed")
        polling = flaky.script(
            f"polling{HOSTILE}",
            task(HOSTILE, progress=5),
            Answer(503, {"error": {"message": HOSTILE}}),
        )
        live = await register_as(relay, key, polling, callback)
        await wait_for_watch(relay, key, live["id"], lambda watch: bool(watch["last_poll_error"]))

        async with signed_in(relay, key) as console, signed_in(relay, ADMIN_TOKEN) as admin:
            done_page = f"/console/watches/{done['id']}"
            shown: list[tuple[str, dict[str, str], list[str]]] = [
                ("/console/watches", {}, [SCRIPT + ATTRIBUTE]),  # who is signed in
                ("/console/watches", {"task_id": ended[:40]}, [ended, ended[:40]]),
                (
                    done_page,
                    {},
                    [
                        ended,
                        callback,
                        HOSTILE,  # the upstream's status, and the receiver's answer
                        f"text/{UNSPACED}",  # the capture's error
                        f"x={UNSPACED}",  # where the result was
                        json.dumps(HOSTILE)[1:-1],  # in the metadata, and in the body sent
                    ],
                ),
                (done_page, {"notice": HOSTILE}, [ended]),
                (f"/console/watches/{live['id']}", {}, [HOSTILE]),  # the poll's error
                ("/console/overview", {}, []),
                ("/console/recover", {}, []),
                ("/console/watches", {"state": HOSTILE}, []),  # refused: the error page
            ]
            for path, params, values in shown:
                page = await console.http.get(path, params=params)
                found = assert_only_the_consoles_markup(page)
                for value in values:
                    assert found.shows(value), (path, value)
            refresh = await console.http.get(
                "/console/watches", params={"task_id": ended}, headers={"HX-Request": "true"}
            )
            assert assert_only_the_consoles_markup(refresh).shows(ended)
            for path, values in (
                ("/console/watches", [SCRIPT + ATTRIBUTE, ended]),
                (done_page, [SCRIPT + ATTRIBUTE, HOSTILE]),
                ("/console/recover", [SCRIPT + ATTRIBUTE]),
            ):
                found = assert_only_the_consoles_markup(await admin.http.get(path))
                for value in values:
                    assert found.shows(value), (path, value)


async def test_a_filter_is_given_back_as_text_in_the_form_and_the_lists_links(
    relay: RelayClient,
) -> None:
    await relay.register(f"{HOSTILE}-1", CALLBACK)
    async with signed_in(relay) as console:
        for task_id in (HOSTILE, "javascript:alert(8)", "//evil.example/"):
            page = await console.page("/console/watches", task_id=task_id)
            refresh = await console.http.get(
                "/console/watches", params={"task_id": task_id}, headers={"HX-Request": "true"}
            )

            found = assert_only_the_consoles_markup(page)
            assert found.shows(task_id)
            assert_only_the_consoles_markup(refresh)


#: Query strings of the list that no form of the console makes, by kind, with the status each
#: gets: a page, or a 400 page saying what is wrong, never a 500.
ODD_QUERIES = {
    "repeated fields, and huge values": [
        ("state=active&state=completed", 200),
        ("task_id=a&task_id=&before=&before=", 200),
        ("state=active&state=finished", 400),
        ("task_id=" + "a" * 5000, 400),
        ("created_after=" + "2" * 5000, 400),
        ("before=wat_" + "f" * 5000, 400),
        ("unknown=" + "y" * 5000, 200),
    ],
    "bytes that are no text: NUL, not UTF-8, surrogates": [
        ("state=%00", 400),
        ("task_id=a%00b", 400),
        ("created_after=2026-01-01%00", 400),
        ("before=wat_%00", 400),
        ("%00=%00", 200),
        ("task_id=%FF%FE", 200),
        ("state=%C0%AF", 400),
        ("created_before=%E2%82", 400),
        ("%FF=%FF", 200),
        ("task_id=%ED%A0%80", 200),
        ("created_before=%ED%B0%80", 400),
        ("event_type=%ED%A0%BD%ED%B8%80", 400),
    ],
    "dates out of range, and a cursor of the wrong shape": [
        ("created_after=0000-01-01T00:00", 400),
        ("created_after=99999-01-01T00:00", 400),
        ("created_after=0001-01-01T00:00%2B01:00", 400),
        ("created_before=9999-12-31T23:59-01:00", 400),
        ("created_after=0001-01-01T00:00", 200),
        ("created_before=9999-12-31T23:59:59.999999", 200),
        ("before=wat_123", 400),
        ("before=cli_" + "0" * 28, 400),
        ("before=WAT_" + "0" * 28, 400),
        ("before=wat_" + "0" * 28 + "%0A", 400),
        ("before=%20wat_" + "0" * 28, 400),
    ],
}


@pytest.mark.parametrize("kind", ODD_QUERIES)
async def test_odd_query_strings_of_the_list_get_a_page_never_a_500(
    relay: RelayClient, kind: str
) -> None:
    async with signed_in(relay) as console:
        for query, status in ODD_QUERIES[kind]:
            for headers in ({}, {"HX-Request": "true"}):
                answer = await console.http.get(f"/console/watches?{query}", headers=headers)

                assert answer.status_code == status, (query, headers, answer.text)
                assert "text/html" in answer.headers["content-type"]
                assert_only_the_consoles_markup(answer)


#: Watch ids in a path that name no watch: the pages and the actions answer 404.
ODD_WATCH_IDS = [
    "%00",
    "wat_" + "0" * 28 + "%00",
    "wat_" + "0" * 27 + "%C3%A9",
    "%ED%A0%80",
    "%FF%FE",
    "w" * 4000,
    "wat_" + "0" * 28 + "%0D%0ASet-Cookie:%20injected=1",
    "%E2%80%AEtaw",
]


async def test_odd_watch_ids_are_not_found_by_its_page_nor_its_actions(
    relay: RelayClient,
) -> None:
    async with signed_in(relay) as console:
        token = csrf_of((await console.page("/console/watches")).text)
        for watch_id in ODD_WATCH_IDS:
            for method, action in (("GET", ""), ("POST", "/redeliver"), ("POST", "/cancel")):
                answer = await console.http.request(
                    method,
                    f"/console/watches/{watch_id}{action}",
                    data={"csrf": token} if method == "POST" else None,
                )

                assert answer.status_code == 404, (watch_id, action, answer.text)
                assert "There is no watch with this id." in answer.text
                assert "location" not in answer.headers
                assert "injected" not in answer.headers.get("set-cookie", "")


#: Bodies posted to the recover form (with this session's token where `CSRF` stands), by kind,
#: with their type and the status each gets.
FORM = "application/x-www-form-urlencoded"
ODD_FORMS = {
    "not a form, or not UTF-8": [
        (b'{"csrf": "CSRF"}', "application/json", 415),
        (b"--b\r\n", "multipart/form-data; boundary=b", 415),
        (b"csrf=CSRF", "text/plain", 415),
        (b"csrf=CSRF&since=\xff", FORM, 400),
        (b"csrf=CSRF&since=%FF", FORM, 400),
        (b"csrf=CSRF&since=%ED%A0%80", FORM, 400),
        (b"csrf=CSRF&since=2026-01-01%00", FORM, 400),
    ],
    "dates out of range, repeated fields, and too many": [
        (b"csrf=CSRF&since=0000-01-01T00:00", FORM, 400),
        (b"csrf=CSRF&since=99999-01-01T00:00", FORM, 400),
        (b"csrf=CSRF&since=9999-12-31T23:59-01:00", FORM, 400),
        (b"csrf=CSRF&since=", FORM, 400),
        (b"csrf=wrong&csrf=CSRF&since=2026-01-01", FORM, 403),
        (b"csrf=CSRF&since=soon&since=2026-01-01", FORM, 400),
        (b"a=1&" * 30 + b"csrf=CSRF", FORM, 400),
    ],
    "too large": [
        (b"csrf=CSRF&x=" + b"a" * 20_000, FORM, 413),
        (b"csrf=CSRF&x=" + b"a" * 2_000_000, FORM, 413),  # past the relay's own cap on bodies
    ],
}


@pytest.mark.parametrize("kind", ODD_FORMS)
async def test_odd_form_bodies_get_a_page_saying_what_is_wrong(
    relay: RelayClient, kind: str
) -> None:
    async with signed_in(relay) as console:
        token = csrf_of((await console.page("/console/recover")).text).encode()
        for body, content_type, status in ODD_FORMS[kind]:
            answer = await console.http.post(
                "/console/recover",
                content=body.replace(b"CSRF", token),
                headers={"Content-Type": content_type},
            )

            assert answer.status_code == status, (body[:60], answer.text)
            assert "text/html" in answer.headers["content-type"]
            assert "<h1>" in answer.text


def tampered(cookie: str, **fields: Any) -> str:
    """The cookie with its payload changed (and no longer compressed), its signature kept."""
    compressed = cookie.startswith(".")
    payload, *signed = cookie.removeprefix(".").split(".")
    content = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    session = json.loads(zlib.decompress(content) if compressed else content)
    changed = base64.urlsafe_b64encode(json.dumps({**session, **fields}).encode()).rstrip(b"=")
    return ".".join([changed.decode(), *signed])


SessionCookie = Callable[[str, str], str]
#: Session cookies that are no session, by kind, each made from a good one of the default app
#: and another app's id.
NO_SESSIONS: dict[str, list[SessionCookie]] = {
    "garbage": [
        lambda good, other_id: "garbage",
        lambda good, other_id: '""',
        lambda good, other_id: "\u00e9\u00ff" * 8,
        lambda good, other_id: "." * 3,
    ],
    "tampered": [
        lambda good, other_id: tampered(good, client=other_id),
        lambda good, other_id: tampered(good, client=None),
        lambda good, other_id: good[: len(good) // 2],
        lambda good, other_id: resigned(good),
    ],
    "another relay's": [
        lambda good, other_id: Sessions(b"another relay", ttl=3600).open(
            client_id=other_id, credential="0" * 64
        )[1],
        lambda good, other_id: Sessions(b"another relay", ttl=3600).open(
            client_id=None, credential="0" * 64
        )[1],
    ],
}


@pytest.mark.parametrize("kind", NO_SESSIONS)
async def test_a_cookie_that_is_no_session_is_sent_to_sign_in_and_acts_on_nothing(
    relay: RelayClient, kind: str
) -> None:
    other = await other_app(relay)
    theirs = await register_as(relay, other["api_key"], "task-theirs")
    async with signed_in(relay) as console, console_of(relay) as forger:
        token = csrf_of((await console.page("/console/watches")).text)
        good = console.http.cookies["relay_console"]
        for make in NO_SESSIONS[kind]:
            cookie = make(good, other["client"]["id"])
            sent = {b"Cookie": f"relay_console={cookie}".encode("latin-1")}
            htmx = {**sent, b"HX-Request": b"true"}

            page = await forger.http.get("/console/watches", headers=sent)
            refresh = await forger.http.get("/console/watches", headers=htmx)
            their_page = await forger.http.get(f"/console/watches/{theirs['id']}", headers=sent)
            cancel = await forger.http.post(
                f"/console/watches/{theirs['id']}/cancel", data={"csrf": token}, headers=htmx
            )

            for answer in (page, their_page):
                assert answer.status_code == 303, (cookie, answer.text)
                assert answer.headers["location"] == "/console/sign-in"
            for answer in (refresh, cancel):
                assert answer.status_code == 401, (cookie, answer.text)
                assert answer.headers["hx-redirect"] == "/console/sign-in"
        watch = await relay.http.get(
            f"/v1/watches/{theirs['id']}", headers=bearer(other["api_key"])
        )
        assert watch.json()["state"] == "active"


async def test_a_sign_in_cookie_the_console_did_not_make_is_replaced(
    relay: RelayClient,
) -> None:
    async with console_of(relay) as console:
        for planted in ("a;b=c" + "x" * 20, "\u00e9" * 20, "x" * 15, "y" * 65, "z z" * 8):
            form = await console.http.get(
                "/console/sign-in",
                headers={b"Cookie": f'relay_console_sign_in="{planted}"'.encode()},
            )

            set_cookie = form.headers["set-cookie"]
            nonce = re.match(r"relay_console_sign_in=([^;]*);", set_cookie)
            assert nonce is not None, set_cookie
            assert re.fullmatch(r"[A-Za-z0-9_-]{16,64}", nonce.group(1)), set_cookie


#: Addresses that ask the console to send the browser elsewhere.
ELSEWHERE = [
    "/console?next=https://evil.example/",
    "/console//evil.example/",
    "/console/\\evil.example",
    "/console/sign-in?next=//evil.example",
    "/console/watches?next=https://evil.example/&redirect=//evil.example",
    "/console/%2F%2Fevil.example",
]


async def test_the_browser_is_only_ever_sent_within_the_console(relay: RelayClient) -> None:
    watch = await relay.register("task-redirects", CALLBACK)
    page = f"/console/watches/{watch['id']}"
    locations: list[str] = []
    async with console_of(relay) as stranger:
        for path in ELSEWHERE:
            answer = await stranger.http.get(path)
            assert answer.status_code < 500, path
            locations.extend(answer.headers.get_list("location"))
        refresh = await stranger.http.get(
            "/console/watches?next=//evil.example", headers={"HX-Request": "true"}
        )
        locations.append(refresh.headers["hx-redirect"])
    async with console_of(relay) as console:
        form = await console.http.get("/console/sign-in?next=//evil.example")
        signed = await console.http.post(
            "/console/sign-in?next=//evil.example",
            data={"key": API_KEY, "csrf": csrf_of(form.text), "next": "https://evil.example/"},
        )
        locations.append(signed.headers["location"])
        for path in ELSEWHERE:
            answer = await console.http.get(path)
            assert answer.status_code < 500, path
            locations.extend(answer.headers.get_list("location"))
        for action in ("redeliver", "cancel"):
            answer = await console.submit(
                page, f"{page}/{action}?next=//evil.example", next="https://evil.example/"
            )
            locations.append(answer.headers["location"])
        recovered = await console.submit(
            "/console/recover", "/console/recover", since="2000-01-01T00:00", next="//evil.example"
        )
        locations.append(recovered.headers["location"])
        signed_out = await console.submit("/console/watches", "/console/sign-out?next=//evil")
        locations.append(signed_out.headers["location"])

    for location in locations:
        assert re.fullmatch(
            r"/console/[a-z-]+(/wat_[0-9a-f]{28})?(\?[a-z]+=[a-z0-9-]+)?", location
        ), location


#: Each form the console posts, as (the page it is on, its action); `WATCH` stands for a watch.
POSTS = [
    ("/console/watches", "/console/sign-out"),
    ("/console/watches/WATCH", "/console/watches/WATCH/redeliver"),
    ("/console/watches/WATCH", "/console/watches/WATCH/cancel"),
    ("/console/recover", "/console/recover"),
]


async def test_every_post_without_this_sessions_token_is_refused_and_changes_nothing(
    relay: RelayClient,
) -> None:
    watch = await relay.register("task-csrf", CALLBACK)
    async with signed_in(relay) as console, signed_in(relay) as other_session:
        for form in POSTS:
            page, action = (path.replace("WATCH", watch["id"]) for path in form)
            others = csrf_of((await other_session.page(page)).text)
            ours = csrf_of((await console.page(page)).text)
            fields = {"since": "2000-01-01T00:00"}
            for sent, headers in (
                (fields, {}),
                ({**fields, "csrf": ""}, {}),
                ({**fields, "csrf": ours[:-1]}, {}),
                ({**fields, "csrf": ours.upper()}, {}),
                ({**fields, "csrf": f"{ours}\x00"}, {}),
                ({**fields, "csrf": others}, {}),
                (fields, {"X-CSRF-Token": others}),
            ):
                answer = await console.http.post(action, data=sent, headers=headers)

                assert answer.status_code == 403, (action, sent, headers, answer.text)
                assert "does not carry this session's security token" in html.unescape(answer.text)
        assert (await console.page("/console/watches")).status_code == 200  # still signed in
        assert (await relay.get(watch["id"]))["state"] == "active"


async def test_a_sign_in_form_works_only_in_the_browser_it_was_given_to(
    relay: RelayClient,
) -> None:
    async with console_of(relay) as first, console_of(relay) as second, console_of(relay) as bare:
        token = csrf_of((await first.http.get("/console/sign-in")).text)
        await second.http.get("/console/sign-in")  # a sign-in cookie of its own

        elsewhere = await second.http.post("/console/sign-in", data={"key": API_KEY, "csrf": token})
        without_cookie = await bare.http.post(
            "/console/sign-in", data={"key": API_KEY, "csrf": token}
        )
        made_up = await bare.http.post(
            "/console/sign-in",
            data={"key": API_KEY, "csrf": token},
            headers={"Cookie": "relay_console_sign_in=" + "a" * 22},
        )
        own = await first.http.post("/console/sign-in", data={"key": API_KEY, "csrf": token})

    for answer in (elsewhere, without_cookie, made_up):
        assert answer.status_code == 403, answer.text
        assert "relay_console=" not in answer.headers.get("set-cookie", "")
    assert own.status_code == 303


@pytest.fixture
async def two_apps(
    start_relay: RelayFactory, upstream: Upstream, receiver: Hooks
) -> AsyncIterator[tuple[RelayClient, Hooks, dict[str, dict[str, Any]], dict[str, Any]]]:
    """A relay where the default app has a watch delivered, one given up on and one still
    polling, and another app has signed up."""
    hooks, url = receiver
    async with start_relay(admin_token=ADMIN_TOKEN, retry_schedule=(0.05,)) as relay:
        watches = {
            "delivered": await relay.watch_to_the_end(upstream, url),
            "given up on": await relay.watch_to_the_end(upstream, DEAD_CALLBACK, state="failed"),
            "polling": await relay.register(await upstream.submit(polls=1000), url),
        }
        await hooks.wait_for(1)
        yield relay, receiver, watches, await other_app(relay)


async def test_another_apps_watches_are_out_of_reach_through_every_route(
    two_apps: tuple[RelayClient, Hooks, dict[str, dict[str, Any]], dict[str, Any]],
) -> None:
    relay, (hooks, _), watches, other = two_apps
    async with signed_in(relay, other["api_key"]) as console:
        token = csrf_of((await console.page("/console/watches")).text)
        for watch in watches.values():
            assert (await console.page(f"/console/watches/{watch['id']}")).status_code == 404
            for action in ("redeliver", "cancel"):
                answer = await console.http.post(
                    f"/console/watches/{watch['id']}/{action}", data={"csrf": token}
                )
                assert answer.status_code == 404, (watch["state"], action, answer.text)
            for params in ({"task_id": watch["task_id"]}, {"before": "wat_" + "f" * 28}):
                listed = await console.page("/console/watches", **params)
                refresh = await console.http.get(
                    "/console/watches", params=params, headers={"HX-Request": "true"}
                )
                assert watch_ids_in(listed.text) == watch_ids_in(refresh.text) == []
        recovered = await console.submit(
            "/console/recover", "/console/recover", since="2000-01-01T00:00"
        )
        overview = await console.page("/console/overview")

    assert recovered.headers["location"] == "/console/recover?recovered=0"
    assert '<span class="count">0</span> <span class="state state-completed">' in overview.text
    assert "0 answered 2xx and 0 failed in all." in overview.text
    await asyncio.sleep(0.2)  # a redelivery, had there been one, is sent at once
    assert len(hooks.received) == 1
    for name, watch in watches.items():
        assert (await relay.get(watch["id"]))["state"] == watch["state"], name


async def test_the_admins_actions_act_for_the_watchs_own_app(
    two_apps: tuple[RelayClient, Hooks, dict[str, dict[str, Any]], dict[str, Any]],
) -> None:
    relay, (hooks, _), watches, _ = two_apps
    delivered, polling = watches["delivered"]["id"], watches["polling"]["id"]
    async with signed_in(relay, ADMIN_TOKEN) as admin:
        again = await admin.submit(
            f"/console/watches/{delivered}", f"/console/watches/{delivered}/redeliver"
        )
        cancelled = await admin.submit(
            f"/console/watches/{polling}", f"/console/watches/{polling}/cancel"
        )

    assert again.headers["location"] == f"/console/watches/{delivered}?notice=redelivered"
    assert cancelled.headers["location"] == f"/console/watches/{polling}?notice=cancelled"
    received = await hooks.wait_for(2)
    assert received[0].headers["webhook-id"] == received[1].headers["webhook-id"]
    assert (await relay.get(polling))["state"] == "cancelled"  # read with the app's own key
