"""Structured logs for the service: one JSON object per line, with the fields passed as ``extra``."""

from __future__ import annotations

import json
import logging

# attributes every LogRecord has; anything else on a record came from ``extra``
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "event", ...extra}`` as one JSON line.

    Example:
        >>> rec = logging.LogRecord("kdiqa.serve", logging.INFO, "", 0, "request", None, None)
        >>> rec.status = 200
        >>> json.loads(JsonFormatter().format(rec))["status"]
        200
    """

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        out.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure(level: int = logging.INFO) -> None:
    """Sends the ``kdiqa.serve`` logger's records to stderr as JSON lines."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("kdiqa.serve")
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False
