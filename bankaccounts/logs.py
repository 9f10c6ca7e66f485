"""One log format per process: a line per event, as text or as JSON.

Every command calls configure_logging() first; uvicorn gets the same handler through
uvicorn_log_config(), so a web process writes one format to one stream. A JSON line
holds the time, level, logger, process (pid and role), the application and request
id where known, the message, any `extra` fields, and the traceback as a field.
"""

from __future__ import annotations

import json
import logging
import logging.config
import os
import re
import traceback
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")

#: The id of the HTTP request being answered (set by the web's middleware).
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

#: Fields of the code running now, in this thread or task (see bind()).
_context: ContextVar[dict[str, Any] | None] = ContextVar("log_context", default=None)

#: The process's role ("web", "worker sagas", ...), in every line.
_process: dict[str, Any] = {}

#: Fields of every line of the process (a worker's application), in any thread.
_process_fields: dict[str, Any] = {}

#: The format configure_logging() chose, for announce().
_format: list[str] = ["text"]

#: A LogRecord's own attributes: anything else on a record came from `extra`.
_RECORD_ATTRIBUTES = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__
) | {"message", "asctime", "taskName"}

#: What could carry a password: libpq's key=value and URL forms.
_SECRETS = (
    (re.compile(r"(password\s*=\s*)('[^']*'|\S+)", re.IGNORECASE), r"\1***"),
    (re.compile(r"(postgres(?:ql)?://[^:/@\s]+:)[^@\s]+@"), r"\1***@"),
)


def set_role(role: str, **fields: Any) -> None:
    """Names the process in every line ("web", "worker sagas"); fields go in every
    JSON line, from any thread (application="Sagas")."""
    _process["role"] = role
    _process_fields.update(fields)


def bind(**fields: Any) -> None:
    """Adds fields (application=..., positions=...) to this thread's or task's lines."""
    _context.set({**(_context.get() or {}), **fields})


def unbind(*names: str) -> None:
    """Removes fields that bind() added."""
    current = dict(_context.get() or {})
    for name in names:
        current.pop(name, None)
    _context.set(current)


def redact(text: str) -> str:
    """The text without passwords (a conninfo's or URL's, or POSTGRES_PASSWORD's)."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    password = os.environ.get("POSTGRES_PASSWORD")
    if password and len(password) >= 3:  # a shorter one is in every text
        text = text.replace(password, "***")
    return text


def one_line(error: BaseException) -> str:
    """The error's text on one line (libpq's messages span several)."""
    return " ".join(str(error).split()) or "no detail"


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    """The record's context: bound fields, then its `extra` ones."""
    fields = dict(_context.get() or {})
    fields.update(
        (key, value)
        for key, value in record.__dict__.items()
        if key not in _RECORD_ATTRIBUTES
        and not key.startswith("_")
        # uvicorn's own records carry these; they are in the message already.
        and key not in ("color_message", "status_code", "scope")
    )
    return fields


class JSONFormatter(logging.Formatter):
    """A JSON object per line: time, level, logger, process, message, and the rest."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        data: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "process": {"pid": record.process, **_process},
        }
        fields = {**_process_fields, **_fields(record)}
        if "application" in fields:
            data["application"] = fields.pop("application")
        data["message"] = redact(record.getMessage())
        current_request = request_id.get()
        if current_request is not None:
            data["request_id"] = current_request
        data.update(fields)
        if record.exc_info and record.exc_info[0] is not None:
            data["exception"] = redact(
                "".join(traceback.format_exception(*record.exc_info)).rstrip()
            )
        elif record.exc_text:
            data["exception"] = redact(record.exc_text)
        if record.stack_info:
            data["stack"] = record.stack_info
        return json.dumps(data, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """A line per event: time, level, logger, role and pid, message, a few fields.

    A traceback follows its line, indented, as Python prints it.
    """

    def format(self, record: logging.LogRecord) -> str:
        """The record as a line of text (and its traceback's lines)."""
        role = _process.get("role")
        who = f"{role} {record.process}" if role else str(record.process)
        message = redact(record.getMessage())
        parts = [_timestamp(record), record.levelname, record.name, f"[{who}]", message]
        # Structured values (positions by upstream) are for JSON; in text, only
        # values the message does not already say.
        fields = {
            key: value
            for key, value in _fields(record).items()
            if isinstance(value, str | int | float | bool) and str(value) not in message
        }
        if "application" in fields and fields["application"] == _process_fields.get(
            "application"
        ):
            del fields["application"]  # a worker's role names it already
        current_request = request_id.get()
        if current_request is not None:
            fields["request_id"] = current_request
        parts.extend(f"{key}={_text(value)}" for key, value in fields.items())
        line = " ".join(parts)
        if record.exc_info and record.exc_info[0] is not None:
            trace = "".join(traceback.format_exception(*record.exc_info)).rstrip()
            line = f"{line}\n{_indent(redact(trace))}"
        return line


def _text(value: Any) -> str:
    text = (
        value
        if isinstance(value, str)
        else json.dumps(value, default=str, separators=(",", ":"))
    )
    return json.dumps(text) if (" " in text or not text) else text


def _indent(text: str) -> str:
    return "\n".join(f"    {line}" for line in text.splitlines())


def make_formatter(fmt: str = "text", role: str | None = None) -> logging.Formatter:
    """The formatter of a format name (dictConfig's "()"; sets the role if given)."""
    if role is not None:
        set_role(role)
    return JSONFormatter() if fmt == "json" else TextFormatter()


def configure_logging(level: str, fmt: str = "text", role: str | None = None) -> None:
    """Sends every logger's records, uvicorn's included, to stderr in one format."""
    _format[0] = fmt
    logging.config.dictConfig(uvicorn_log_config(level, fmt, role))


def announce(message: str) -> None:
    """Prints a line the operator always sees, on stdout ("Serving http://...").

    As it is in text, and as a JSON log line in JSON, so a file of both streams
    holds one format.
    """
    if _format[0] == "json":
        record = logging.LogRecord(
            "bankaccounts", logging.INFO, "", 0, message, None, None
        )
        message = JSONFormatter().format(record)
    print(message, flush=True)


def uvicorn_log_config(
    level: str, fmt: str = "text", role: str | None = None
) -> dict[str, Any]:
    """A logging.config dictionary: one stderr handler, uvicorn's loggers through it.

    Given to uvicorn (log_config=...), so that its worker processes log the same way.
    """
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "default": {
                "()": "bankaccounts.logs.make_formatter",
                "fmt": fmt,
                "role": role or _process.get("role"),
            },
        },
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "stream": "ext://sys.stderr",
            },
        },
        "root": {"handlers": ["default"], "level": level.upper()},
        "loggers": {
            # uvicorn's own handlers would write a second, different format.
            name: {"handlers": [], "propagate": True, "level": level.upper()}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
        },
    }
