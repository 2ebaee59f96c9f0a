"""What the ``bitnet`` command writes to the terminal: log lines, their format, progress bars.

- Verbosity: ``-q`` (warnings only; ``-qq`` errors only), default INFO, ``-v`` (debug),
  accepted before or after the sub-command.
- Log format: ``text`` (one readable line) or ``json`` (one JSON object per line, for log
  shippers), from ``--log-format`` or ``BITNET_LOG_FORMAT``. JSON lines carry the record's
  ``extra`` fields (the access log's request id, route, status, latency...).
- Progress bars are tqdm bars on stderr, shown only when stderr is a terminal and not
  ``-q``; log lines are written around the bar (tqdm's logging redirect), never through it.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from typing import Any

__all__ = [
    "LOG_FORMATS",
    "add_log_format",
    "add_verbosity",
    "configure_logging",
    "progress_bar",
    "routed_logging",
]

LOG_FORMATS = ("text", "json")

#: Chatty third-party loggers held at WARNING unless ``-v`` (the gguf writer logs each file).
_QUIET_LOGGERS = ("gguf", "gguf.gguf_writer")
_ACCESS_LOGGER = "bitnet_sdk.server.access"

_quiet = False

#: Attribute marking the root handler this module installed (replaced on a second call).
_OURS = "_bitnet_cli_handler"


def add_verbosity(parser: argparse.ArgumentParser, *, sub: bool = False) -> None:
    """``-q``/``-v`` on ``parser``; ``sub=True`` for a sub-command's parser (keeps the
    value given before the sub-command when it is not repeated after it)."""
    default: Any = argparse.SUPPRESS if sub else 0
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-v", "--verbose", action="count", default=default,
                       help="more log output (debug)")
    group.add_argument("-q", "--quiet", action="count", default=default,
                       help="less output: warnings only (-qq: errors only), no progress bars")


def add_log_format(parser: argparse.ArgumentParser) -> None:
    """``--log-format text|json`` (default ``$BITNET_LOG_FORMAT`` or text)."""
    parser.add_argument("--log-format", choices=LOG_FORMATS, default=None,
                        help="log lines as text or JSON objects (default: $BITNET_LOG_FORMAT or text)")


def verbosity(args: argparse.Namespace) -> int:
    """``-v`` count minus ``-q`` count."""
    return int(getattr(args, "verbose", 0) or 0) - int(getattr(args, "quiet", 0) or 0)


def configure_logging(level: int, log_format: str | None = None) -> None:
    """Root logging for a ``bitnet`` process: ``level`` is :func:`verbosity`'s number.

    Raises ``ValueError`` for an unknown ``BITNET_LOG_FORMAT``.
    """
    global _quiet
    fmt = log_format or os.environ.get("BITNET_LOG_FORMAT") or "text"
    if fmt not in LOG_FORMATS:
        raise ValueError(f"BITNET_LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, not {fmt!r}")
    _quiet = level < 0
    root = logging.getLogger()
    if any(not getattr(h, _OURS, False) for h in root.handlers):
        return  # embedded (a host program or pytest configured logging): as basicConfig, hands off
    from bitnet_sdk.service.log_context import ContextFilter

    handler = logging.StreamHandler(sys.stderr)
    setattr(handler, _OURS, True)
    handler.addFilter(ContextFilter())
    handler.setFormatter(_json_formatter() if fmt == "json" else _TextFormatter())
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if level > 0 else logging.INFO if level == 0
                  else logging.WARNING if level == -1 else logging.ERROR)
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if level > 0 else logging.WARNING)


class _TextFormatter(logging.Formatter):
    """One readable line; the request, user and job a line is about in brackets at the end."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        from bitnet_sdk.service.log_context import FIELDS

        line = super().format(record)
        if record.name == _ACCESS_LOGGER:  # the access line names them itself
            return line
        tags = " ".join(f"{name}={getattr(record, name)}" for name in FIELDS
                        if getattr(record, name, None))
        if not tags:
            return line
        first, newline, rest = line.partition("\n")  # before a traceback, if any
        return f"{first} [{tags}]{newline}{rest}"


def _json_formatter() -> logging.Formatter:
    from pythonjsonlogger.json import JsonFormatter

    return JsonFormatter(
        "%(levelname)s %(name)s %(message)s",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp=True,
    )


@contextlib.contextmanager
def routed_logging() -> Iterator[None]:
    """Log lines written with ``tqdm.write`` while this lasts, so they never break a bar.

    Only when :func:`configure_logging` installed the console handler (an embedding program
    keeps its own handlers untouched).
    """
    from tqdm.contrib.logging import logging_redirect_tqdm

    if not any(getattr(h, _OURS, False) for h in logging.getLogger().handlers):
        yield
        return
    with logging_redirect_tqdm():
        yield


def progress_bar(**options: Any) -> Any:
    """A tqdm bar on stderr, disabled when stderr is not a terminal or under ``-q``."""
    from tqdm import tqdm

    options.setdefault("file", sys.stderr)
    options.setdefault("dynamic_ncols", True)
    enabled = not _quiet and _isatty(options["file"])
    return tqdm(disable=not enabled, **options)


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
