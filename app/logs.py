"""The relay's log lines: one per event, JSON for log collectors, readable text on a terminal.

Code logs through the standard library, with the ids as fields:
`log.info("watch registered", extra={"watch_id": …, "task_id": …, "client_id": …})`. A line
below the level costs one comparison and no formatting, and tests read the records directly.

Every record, the relay's, uvicorn's or a library's, is rendered by structlog's
`ProcessorFormatter`: its fields, level, logger and time, then JSON or text, then the whole line
goes through the redaction (`redaction.py`). python-json-logger was the other candidate: it
renders JSON only, and the text form would have been ours to write.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

import structlog
from structlog.typing import EventDict, WrappedLogger

from app.redaction import Redactor, configured_secrets
from app.settings import Settings

#: The loggers of uvicorn: its messages, and its access log.
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")
#: The field by which one record shows a secret on purpose (`Redactor`'s `shown`).
SHOWN = "shown_once"
#: Below this, libraries' lines stay out whatever the relay's level (APScheduler logs each run).
_LIBRARIES = logging.WARNING

#: JSON's renderer is typed to return bytes too, as it would with a serializer that did.
_Renderer = Callable[[WrappedLogger, str, EventDict], str | bytes]


def configure(settings: Settings) -> None:
    """Render every line of the process as configured, unless whoever runs the relay has set up
    logging already (uvicorn with a `log_config` of its own, or `uvicorn_config`'s; pytest).

    Run as `uvicorn app.main:app`, the relay is imported after uvicorn has set up its own
    handlers: they keep their streams and their access-log switch, and get this formatter.
    """
    root = logging.getLogger()
    if root.handlers:
        return
    lean_records()
    formatter = make_formatter(settings)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root.addHandler(handler)
    root.setLevel(max(_LIBRARIES, _level(settings)))
    for name in ("app", *UVICORN_LOGGERS):
        logging.getLogger(name).setLevel(_level(settings))
    for name in UVICORN_LOGGERS:
        for uvicorn_handler in logging.getLogger(name).handlers:
            uvicorn_handler.setFormatter(formatter)


def uvicorn_config(settings: Settings) -> dict[str, Any]:
    """The logging configuration to hand to `uvicorn.run(log_config=…)`: uvicorn's lines and
    the relay's on standard error, in one format."""
    lean_records()
    level = logging.getLevelName(_level(settings))
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"relay": {"()": make_formatter, "settings": settings}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "relay",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {
            "level": logging.getLevelName(max(_LIBRARIES, _level(settings))),
            "handlers": ["stderr"],
        },
        "loggers": {
            "app": {"level": level},
            **{
                name: {"level": level, "handlers": [], "propagate": True}
                for name in UVICORN_LOGGERS
            },
        },
    }


def make_formatter(settings: Settings, *, terminal: bool | None = None) -> logging.Formatter:
    """JSON unless the format is `text`, or `auto` and standard error is a terminal.

    :param terminal: whether the lines go to a terminal (default: whether standard error is one).
    """
    if terminal is None:
        terminal = sys.stderr.isatty()
    as_text = settings.log_format == "text" or (settings.log_format == "auto" and terminal)
    renderer: _Renderer
    if as_text:
        renderer = structlog.dev.ConsoleRenderer(
            colors=terminal, exception_formatter=structlog.dev.plain_traceback
        )
        finishing: list[Any] = []
    else:
        renderer = structlog.processors.JSONRenderer()
        finishing = [structlog.processors.format_exc_info]
    redact = Redactor(configured_secrets(settings))
    return structlog.stdlib.ProcessorFormatter(
        pass_foreign_args=True,
        foreign_pre_chain=[
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.stdlib.ExtraAdder(),
            _uvicorn_fields,
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *finishing,
            _Redacted(renderer, redact),
        ],
    )


class _Redacted:
    """Renders a line, then masks the secrets in all of it: the message, the fields, the
    exception, whatever reprs they hold."""

    def __init__(self, renderer: _Renderer, redact: Redactor) -> None:
        self._renderer = renderer
        self._redact = redact

    def __call__(self, logger: WrappedLogger, method: str, event: EventDict) -> str:
        shown = event.pop(SHOWN, None)
        rendered = self._renderer(logger, method, event)
        text = rendered if isinstance(rendered, str) else rendered.decode()
        return self._redact(text, shown=shown)


def lean_records() -> None:
    """Records without the thread, the process and the line of code that wrote them: no line of
    the relay's formatter shows them, and the standard library looks each up for every record
    (the logging HOWTO's "Optimization"), an eighth of what a line costs (`bench.log_lines`).
    Only where the relay's formatter renders every line: a logging setup of someone else's may
    show them."""
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None


def _uvicorn_fields(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    """An access line's parts become fields too; the colored copy uvicorn gives its messages
    (an extra field) is the same words again."""
    event.pop("color_message", None)
    args = event.pop("positional_args", ())
    if event.get("logger") == "uvicorn.access" and isinstance(args, tuple) and len(args) == 5:
        client, method, path, _, status_code = args
        event.update(client=client, method=method, path=path, status_code=status_code)
    return event


def _level(settings: Settings) -> int:
    return logging.getLevelNamesMapping()[settings.log_level.upper()]
