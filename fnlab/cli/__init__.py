"""The ``fnlab`` command (front-end layer). Each subcommand lives in ``fnlab/cli/<name>.py`` and exposes
``add_parser(subparsers)``; heavy imports happen inside the command's ``run``. ``python -m fnlab.cli``
runs it too (``__main__.py``).

Every user fault ends as one line on stderr, ``fnlab COMMAND: error: ...`` naming the file or flag
and what was expected, with exit code 2 (usage errors too: a bad flag value is one line, ``--help``
shows the usage); never a traceback (``FNLAB_DEBUG=1`` shows one). An unexpected failure (a bug) is one
line ``fnlab COMMAND: internal error: ...`` with exit code 1."""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys

from fnlab import __version__

# OpenMP threads that wait for each other by spinning fight the machine's other work for the cores: on 2 cores
# shared with other jobs a 10-epoch shapes-precomp run took about 200 s instead of 47 s, its warm-up epoch 10-24 s
# instead of 0.3 s (bench/train_speed.py). Waiting passively keeps the thread count, so every result is the same.
# Set before torch loads OpenMP; a value in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

COMMANDS = ("data", "train", "eval", "scan", "runs", "app")

EPILOG = """\
conventions:
  a run is named by its folder path everywhere: fnlab train --out runs/my-run,
  fnlab eval runs/my-run, fnlab runs show runs/my-run, fnlab runs rm runs/my-run;
  fnlab runs list --runs runs lists a run store (the folder holding runs).
  --root always means a dataset's data folder (precomp, pairs).
  KEY=VALUE flags (-o/--option, -p/--param, --loss-param) read VALUE as JSON
  (3, 0.1, true, null, "text"), else as text; names and types are checked
  against the registries before any work starts.
  errors: one line on stderr naming the file or flag, exit code 2
  (FNLAB_DEBUG=1 shows the traceback).
  fnlab deletes, replaces or moves only what it wrote (a run with its
  run.json, a scan output with its summary), inside the folder given;
  anything else is refused before any work.
"""


class OneLineParser(argparse.ArgumentParser):
    """argparse with one-line usage errors: ``fnlab train: error: argument --lr: ...`` (exit code 2)."""

    def error(self, message: str):
        name = self.prog if self.prog.startswith("fnlab") else f"fnlab {self.prog}"
        self.exit(2, f"{name}: error: {' '.join(message.split())} (see {name} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="fnlab",
        description="fnlab: find, measure and eliminate false negatives in contrastive and retrieval training.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"fnlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"fnlab.cli.{name}").add_parser(sub)
    return parser


_OS_HINTS = {
    errno.ENOSPC: "no space left on the device",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EISDIR: "is a folder, expected a file",
    errno.ENOTDIR: "a part of the path is not a folder",
    errno.ENOENT: "no such file or folder",
    errno.EEXIST: "already exists",
    errno.EDQUOT: "disk quota exceeded",
    errno.ENAMETOOLONG: "the file name is too long",
    errno.ELOOP: "too many levels of links",
}


def describe_error(err: BaseException) -> str:
    """One line for the user: the file (for OS errors) and what went wrong."""
    if isinstance(err, OSError) and err.errno is not None and err.filename is not None:
        what = _OS_HINTS.get(err.errno, err.strerror or str(err))
        where = os.fsdecode(err.filename)
        if err.filename2 is not None:
            where += f" -> {os.fsdecode(err.filename2)}"
        text = f"{where}: {what}"
    elif isinstance(err, MemoryError):
        text = "out of memory" + (f" ({err})" if str(err) else "")
    elif isinstance(err, KeyError):
        text = f"missing key {err}"
    else:
        text = str(err) or type(err).__name__
    return " ".join(text.split())  # one line


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"fnlab {args.command}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, KeyError, OSError, RuntimeError, MemoryError) as err:
        # user errors (bad files, flags, full or read-only disks): a clear message, no stack trace
        if os.environ.get("FNLAB_DEBUG"):
            raise
        print(f"fnlab {args.command}: error: {describe_error(err)}", file=sys.stderr)
        return 2
    except Exception as err:  # noqa: BLE001 - a bug: still one line, the traceback on request
        if os.environ.get("FNLAB_DEBUG"):
            raise
        print(f"fnlab {args.command}: internal error: {type(err).__name__}: {describe_error(err)} (a bug in fnlab; "
              "FNLAB_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 1
