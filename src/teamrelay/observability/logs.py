"""One log line per request: JSON with LOG_FORMAT=json, readable otherwise.

Lines are built from ledger entries, which hold no secret by construction: key ids and
names, never key material.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import fields
from operator import attrgetter
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit
from urllib.request import getproxies

from teamrelay.ledger.recorder import LedgerEntry
from teamrelay.observability.redact import Redact

if TYPE_CHECKING:
    from teamrelay.config import Settings

log = logging.getLogger("teamrelay.requests")

_TEXT = "%s %s %s %s %s -> %s %.1fms ttfb=%s tokens=%s/%s"
_TEXT_FIELDS = attrgetter(
    "relay_request_id",
    "key_name",
    "method",
    "path",
    "operation",
    "status",
    "duration_ms",
    "ttfb_ms",
    "input_tokens",
    "output_tokens",
)
# Not the body an image or speech request kept for pricing: a member's content, not a fact.
_FIELDS = tuple(field.name for field in fields(LedgerEntry) if field.name != "shaped_body")
_values = attrgetter(*_FIELDS)


def request_fields(entry: LedgerEntry) -> dict[str, Any]:
    # Not `asdict`: it deep-copies every value, which cost more than the logging itself.
    line = dict(zip(_FIELDS, _values(entry), strict=True))
    line["ts"] = entry.ts.isoformat()
    return line


class JsonFormatter(logging.Formatter):
    """Every record as one JSON object per line. A batch of request lines (one record, to
    spare the logging machinery per request) becomes one line per request, each with its
    fields under `request`."""

    def format(self, record: logging.LogRecord) -> str:
        entries: Sequence[LedgerEntry] | None = getattr(record, "requests", None)
        if entries is None:
            return self._line(record, record.getMessage(), None)
        return "\n".join(
            self._line(record, request_text(entry), request_fields(entry)) for entry in entries
        )

    def _line(self, record: logging.LogRecord, message: str, request: object) -> str:
        line: dict[str, object] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": message,
        }
        if request is not None:
            line["request"] = request
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:  # as `Redact` rendered it
            line["error"] = record.exc_text
        return json.dumps(line, default=str)


class QuietAbort(logging.Filter):
    """uvicorn logs a traceback when a response is aborted on purpose; one line is enough."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and type(exc).__name__ == "UpstreamBroke":
            record.msg, record.args = "aborted a response: the upstream stream broke", ()
            record.exc_info = None
        return True


def logging_config(log_format: str, level: str, secrets: Sequence[str] = ()) -> dict[str, Any]:
    """A dictConfig for uvicorn to apply in every worker process; `secrets` are the configured
    ones (upstream key, bootstrap keys...) that the handler's `Redact` filter blanks out."""
    formatter: dict[str, Any] = (
        {"()": f"{__name__}.JsonFormatter"}
        if log_format == "json"
        else {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"relay": formatter},
        "filters": {
            "quiet_abort": {"()": f"{__name__}.QuietAbort"},
            "redact": {"()": Redact, "secrets": list(secrets)},
        },
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "relay",
                "filters": ["quiet_abort", "redact"],
            }
        },
        "root": {"handlers": ["stderr"], "level": level.upper()},
        "loggers": {
            name: {"handlers": [], "propagate": True}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
        },
    }


def configured_secrets(settings: Settings) -> list[str]:
    """The secrets the environment holds in clear, for `Redact` to find in any shape."""
    values = [settings.openai_api_key.get_secret_value(), *settings.relay_keys]
    values += [s.get_secret_value() for s in (settings.metrics_token, settings.signing_key) if s]
    urls = [settings.openai_base_url, settings.database_url, settings.redis_url or ""]
    urls += [settings.upstream_proxy or "", *getproxies().values()]
    for url in urls:
        password = urlsplit(url).password
        if password:
            values.append(password)
    return values


def write_request_lines(entries: Sequence[LedgerEntry]) -> None:
    """One record for the batch: the text is formatted here, the JSON fields only by a
    JSON formatter (from the entries it is handed)."""
    if not log.isEnabledFor(logging.INFO):
        return
    text = "\n".join([request_text(entry) for entry in entries])
    log.info("%s", text, extra={"requests": entries})


def request_text(entry: LedgerEntry) -> str:
    values = _TEXT_FIELDS(entry)
    ttfb = values[7]
    return _TEXT % (*values[:7], "-" if ttfb is None else f"{ttfb:.1f}ms", *values[8:])
