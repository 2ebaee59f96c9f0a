"""The ``bitnet`` command: one sub-command per module in this package.

Each sub-command module exposes ``register(subparsers)``, which adds its parser
and sets ``func`` (called with the parsed namespace, returns an exit code).
Modules are listed by name in :data:`COMMANDS` (help order); each imports its
heavy dependencies inside ``func``, so ``bitnet --help`` stays fast.

An operator's mistake never ends in a traceback: sub-commands report the errors
they expect, and :func:`main` turns what is left of the operator's doing (a
closed pipe, Ctrl-C, a file the OS refuses) into one line and an exit status.
Tracebacks are kept for bugs.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

__all__ = ["main"]

#: Sub-command modules under ``bitnet_sdk.cli``, in help order.
COMMANDS = (
    "serve",
    "worker",
    "backends",
    "validate",
    "inspect",
    "generate",
    "quantize",
    "models",
    "user",
    "sdk",
)

#: Exit status after the reader of stdout went away (128 + SIGPIPE, as a killed process).
EXIT_BROKEN_PIPE = 141


def build_parser() -> argparse.ArgumentParser:
    from bitnet_sdk import __version__
    from bitnet_sdk.cli.output import add_verbosity

    parser = argparse.ArgumentParser(
        prog="bitnet", description="Quantize, inspect and serve 1.58-bit (ternary) models."
    )
    parser.add_argument("--version", action="version", version=f"bitnet-sdk {__version__}")
    add_verbosity(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"bitnet_sdk.cli.{name}").register(sub)
    for command in sub.choices.values():
        _add_verbosity_to_leaves(command)
    return parser


def _add_verbosity_to_leaves(parser: argparse.ArgumentParser) -> None:
    """``-q``/``-v`` also after the sub-command (``bitnet quantize -q …``, ``bitnet user list -v``)."""
    from bitnet_sdk.cli.output import add_verbosity

    children = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not children:
        add_verbosity(parser, sub=True)
    for action in children:
        for child in action.choices.values():
            _add_verbosity_to_leaves(child)


def main(argv: list[str] | None = None) -> int:
    from bitnet_sdk.cli.output import configure_logging, routed_logging, verbosity

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        configure_logging(verbosity(args), getattr(args, "log_format", None))
    except ValueError as exc:
        parser.error(str(exc))
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        with routed_logging():
            return int(args.func(args) or 0)
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # a file or folder the operator named that the OS refuses
        print(f"bitnet {args.command}: {exc}", file=sys.stderr)
        return 1


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail again.

    (The recipe of the Python docs for SIGPIPE: the reader is gone, nothing more to say.)
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout replaced by something without a descriptor
        pass
    finally:
        os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
