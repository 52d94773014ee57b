"""Small charts drawn on the server as inline SVG: no charting library, no script, and they
follow the page's colours (CSS classes, set for light and dark).

Each chart is one image to assistive technology, named by its `<title>` and described by its
`<desc>` with the figures it shows; the page prints the same figures as text beside it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import timedelta

from markupsafe import Markup

from app.console.rendering import seconds
from app.store.activity import HourOfDeliveries, Lags

_BAR_WIDTH = 14
_BAR_GAP = 4
_PLOT_HEIGHT = 120
_LEFT = 40
_TOP = 8
_BOTTOM = 22
_HOUR = timedelta(hours=1)


def deliveries_chart(hours: Sequence[HourOfDeliveries], *, chart_id: str) -> Markup:
    """A bar per hour: attempts answered 2xx at the bottom, the others stacked on them."""
    top = _nice_ceiling(max((hour.succeeded + hour.failed for hour in hours), default=0))
    width = _LEFT + len(hours) * (_BAR_WIDTH + _BAR_GAP)
    height = _TOP + _PLOT_HEIGHT + _BOTTOM
    base = _TOP + _PLOT_HEIGHT
    succeeded = sum(hour.succeeded for hour in hours)
    failed = sum(hour.failed for hour in hours)
    parts = [
        _open(chart_id, width, height),
        _labels(
            chart_id,
            "Delivery attempts per hour, the last 24 hours (UTC)",
            f"{succeeded} answered 2xx and {failed} failed in all. "
            + " ".join(_hour_text(hour) for hour in hours if hour.succeeded or hour.failed),
        ),
        Markup('<line class="axis" x1="{x}" y1="{y}" x2="{w}" y2="{y}"/>').format(
            x=_LEFT - 2, y=base, w=width
        ),
        Markup('<text class="tick" x="{}" y="{}" text-anchor="end">{}</text>').format(
            _LEFT - 6, _TOP + 8, top
        ),
        Markup('<text class="tick" x="{}" y="{}" text-anchor="end">0</text>').format(
            _LEFT - 6, base
        ),
    ]
    for index, hour in enumerate(hours):
        x = _LEFT + index * (_BAR_WIDTH + _BAR_GAP)
        ok_height = _PLOT_HEIGHT * hour.succeeded / top
        failed_height = _PLOT_HEIGHT * hour.failed / top
        parts.append(Markup("<g><title>{}</title>").format(_hour_text(hour)))
        parts.append(_rect("bar-ok", x, base - ok_height, _BAR_WIDTH, ok_height))
        parts.append(
            _rect("bar-failed", x, base - ok_height - failed_height, _BAR_WIDTH, failed_height)
        )
        parts.append(Markup("</g>"))
        if index % 6 == 0:
            parts.append(
                Markup('<text class="tick" x="{}" y="{}">{:%H:%M}</text>').format(
                    x, base + 16, hour.start
                )
            )
    parts.append(Markup("</svg>"))
    return Markup("").join(parts)


def lags_chart(title: str, lags: Lags, *, scale: float | None, chart_id: str) -> Markup:
    """Three bars, p50, p90 and p99, on a scale shared with the charts beside it (`scale`, in
    seconds), each with its value written at its end."""
    rows = [("p50", lags.p50), ("p90", lags.p90), ("p99", lags.p99)]
    width, row_height, label_width, value_room = 260, 18, 34, 64
    plot = width - label_width - value_room
    top = scale if scale and scale > 0 else 1.0
    description = (
        f"No values in this window. {lags.count} in all."
        if lags.p50 is None
        else ", ".join(f"{name} {seconds(value)}" for name, value in rows)
        + f"; over {lags.count} values."
    )
    parts = [
        _open(chart_id, width, row_height * 3 + 4),
        _labels(chart_id, title, description),
    ]
    for index, (name, value) in enumerate(rows):
        y = 2 + index * row_height
        length = 0.0 if value is None else max(1.0, plot * min(value, top) / top)
        parts.append(Markup('<text class="tick" x="0" y="{}">{}</text>').format(y + 12, name))
        parts.append(_rect("bar-lag", label_width, y + 2, length, row_height - 6))
        parts.append(
            Markup('<text class="value" x="{}" y="{}">{}</text>').format(
                label_width + length + 4, y + 12, seconds(value)
            )
        )
    parts.append(Markup("</svg>"))
    return Markup("").join(parts)


def lag_scale(*lags: Lags) -> float | None:
    """The longest p99 among charts drawn side by side, so their bars compare."""
    found = [lag.p99 for lag in lags if lag.p99 is not None]
    return max(found) if found else None


def _open(chart_id: str, width: int, height: int) -> Markup:
    return Markup(
        '<svg class="chart" role="img" aria-labelledby="{id}-title {id}-desc" '
        'viewBox="0 0 {w} {h}" width="{w}" height="{h}" xmlns="http://www.w3.org/2000/svg">'
    ).format(id=chart_id, w=width, h=height)


def _labels(chart_id: str, title: str, description: str) -> Markup:
    return Markup('<title id="{id}-title">{}</title><desc id="{id}-desc">{}</desc>').format(
        title, description, id=chart_id
    )


def _rect(kind: str, x: float, y: float, width: float, height: float) -> Markup:
    if height <= 0 or width <= 0:
        return Markup("")
    return Markup('<rect class="{}" x="{:.1f}" y="{:.1f}" width="{:.1f}" height="{:.1f}"/>').format(
        kind, x, y, width, height
    )


def _hour_text(hour: HourOfDeliveries) -> str:
    end = hour.start + _HOUR
    return (
        f"{hour.start:%H:%M} to {end:%H:%M}: {hour.succeeded} answered 2xx, {hour.failed} failed."
    )


def _nice_ceiling(value: int) -> int:
    """The top of the scale: 1, 2 or 5 times a power of ten, at least the tallest bar."""
    if value <= 1:
        return 1
    power: int = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5):
        if value <= step * power:
            return step * power
    return 10 * power
