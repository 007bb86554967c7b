"""The ``fnlab`` command. Each subcommand lives in ``fnlab/commands/<name>.py`` and exposes
``add_parser(subparsers)``; heavy imports happen inside the command's ``run``."""

from __future__ import annotations

import argparse
import importlib
import sys

from fnlab import __version__

COMMANDS = ("data", "train", "eval", "scan", "runs")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fnlab",
        description="fnlab: find, measure and eliminate false negatives in contrastive and retrieval training.",
    )
    parser.add_argument("--version", action="version", version=f"fnlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"fnlab.commands.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"fnlab.commands.{name}":
                continue  # command not built yet
            raise
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, NotADirectoryError) as err:
        # user errors: a clear message, no stack trace
        print(f"fnlab {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
