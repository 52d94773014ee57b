"""Pages from the console's Jinja2 templates, with the headers every console page carries."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from fastapi.templating import Jinja2Templates
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import Response

#: Pages name only the console's own files: no inline script or style, nothing from elsewhere.
#: (htmx would add a style element of its own; the base template turns that off.)
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; object-src 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    # Pages show webhooks and answers of receivers: nothing a shared cache should keep.
    "Cache-Control": "no-store",
}


def render(
    request: Request,
    name: str,
    context: Mapping[str, Any],
    *,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """`operator` (who is signed in), `section` (the page's place in the navigation) and
    `notice` default to None."""
    values = {"operator": None, "section": None, "notice": None, **context}
    response = templates.TemplateResponse(
        request, name, values, status_code=status_code, headers=dict(headers or {})
    )
    secure(response)
    return response


def secure(response: Response) -> Response:
    response.headers.update(_SECURITY_HEADERS)
    return response


def moment(value: datetime | None, *, precise: bool = False) -> Markup:
    """A time as a `<time>` element, in UTC, which is how every form of the console reads
    times too."""
    if value is None:
        return Markup("—")
    shown = value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] if precise else f"{value:%Y-%m-%d %H:%M:%S}"
    return Markup('<time datetime="{}">{} UTC</time>').format(value.isoformat(), shown)


def seconds(value: float | None) -> str:
    """A lag, read at a glance: milliseconds under a second, minutes past two."""
    if value is None or not math.isfinite(value):
        return "—"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.1f} s"
    if value < 7200:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


def size(value: int | None) -> str:
    if value is None:
        return "—"
    if value < 1000:
        return f"{value} bytes"
    amount, unit = value / 1000, "kB"
    for bigger in ("MB", "GB"):
        if amount < 1000:
            break
        amount, unit = amount / 1000, bigger
    return f"{amount:.1f} {unit}"


def progress(value: float | None) -> str:
    return "—" if value is None else f"{value:g} %"


def short(value: str, keep: int = 24) -> str:
    """Long task ids and URLs cut to fit a table cell (the whole value is in its title)."""
    return value if len(value) <= keep else value[: keep - 1] + "…"


def as_json(value: Any) -> str:
    """Metadata as the app registered it, indented for reading."""
    return json.dumps(value, indent=2, ensure_ascii=False)


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("app.console", "templates"),
        autoescape=select_autoescape(default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        moment=moment, seconds=seconds, size=size, progress=progress, short=short, as_json=as_json
    )
    return env


templates = Jinja2Templates(env=_environment())
