"""Keep the session token out of the logs of the libraries that see it.

The protocol puts the token in the WebSocket URL's query (``?token=...``), and
the libraries log what they send: ``websockets`` logs ``> GET /ws/cmd?token=...``
at DEBUG, ``httpx`` logs every request URL at INFO, ``trio-websocket`` logs the
resource it connects to. `TokenFilter` rewrites the secret to ``***`` in a
record's message, arguments and exception text; `install_log_redaction` puts
it on the loggers those libraries write to.

A filter on a logger only sees the records created on that very logger (not
those of its children), so every logger is named here.
"""

from __future__ import annotations

import logging
import re
import traceback

__all__ = ["LIBRARY_LOGGERS", "TokenFilter", "install_log_redaction", "redact"]

# Every logger that is given a URL or a header with the token.
LIBRARY_LOGGERS = (
    "websockets.client",
    "trio-websocket",
    "picows.client",
    "httpx",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
)

# ``token=abc`` in a query, ``"token": "abc"`` in JSON, ``X-Auth-Token: abc``
# in a header: the key and separator are kept, the value becomes ``***``.
_SECRET = re.compile(r"""(token['"]?\s*[=:]\s*b?['"]?)(?!\*\*\*)[^&\s'",;}\]>)]+""", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with every token value replaced by ``***``.

    Args:
        text: Any text (a URL, a log message, a traceback).

    Returns:
        The text without secrets.
    """
    return _SECRET.sub(r"\1***", text) if "oken" in text or "OKEN" in text else text


class TokenFilter(logging.Filter):
    """A logging filter that rewrites token values to ``***``; it drops no record.

    Attach it to a logger (``logging.getLogger("httpx").addFilter(TokenFilter())``)
    or to a handler. The record's message is formatted once and its arguments
    dropped when they carry a secret; an exception is formatted into
    ``exc_text`` (which formatters use as is) with its secrets removed.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact ``record`` in place.

        Args:
            record: The record being logged.

        Returns:
            Always True: the record is kept.
        """
        try:
            message = record.getMessage()
        except Exception:  # a record whose arguments do not fit: leave it to logging
            return True
        clean = redact(message)
        if clean != message or (record.args and redact(repr(record.args)) != repr(record.args)):
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            # as logging.Formatter.formatException writes it, which then uses it as is
            record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)))
            record.exc_text = record.exc_text.removesuffix("\n")
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


_FILTER = TokenFilter()


def install_log_redaction(*names: str) -> None:
    """Put the token filter on the library loggers and on ``names``; idempotent.

    Args:
        names: More loggers to protect (records created on them exactly).
    """
    for name in (*LIBRARY_LOGGERS, *names):
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
