"""``fnlab app``: serve the Streamlit app, on this machine only unless asked otherwise.

Streamlit finds ``.streamlit/config.toml`` only in the working folder, so ``streamlit run app/main.py``
started from another folder listens on every network interface. This launcher passes every server
setting on the command line instead: the address (127.0.0.1 unless ``--address``), the port, headless
mode, no usage statistics, the viewer toolbar and the upload limit; the working folder does not matter.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

from fnlab.cli.options import integer

#: every server setting the app needs, passed explicitly (what .streamlit/config.toml holds)
SERVER_FLAGS = ("--server.headless", "true", "--browser.gatherUsageStats", "false",
                "--client.toolbarMode", "viewer", "--server.maxUploadSize", "200", "--theme.base", "light")
EVERY_INTERFACE = ("0.0.0.0", "::", "")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("app", help="serve the fnlab app (127.0.0.1 unless --address)",
                              description=__doc__.split("\n\n", 1)[1].strip().replace("``", ""))
    p.add_argument("--address", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 serves every "
                        "network interface, so anyone who can reach this machine can open the app)")
    p.add_argument("--port", type=integer(1, 65535), default=8501, help="port (default 8501)")
    p.add_argument("--runs", default=None, metavar="DIR",
                   help="runs folder the app opens (default: $FNLAB_RUNS, else runs in the working folder)")
    p.add_argument("--print-command", action="store_true", help="print the streamlit command and exit")
    p.set_defaults(func=run)


def app_main() -> Path:
    """``app/main.py`` of this checkout (the app lives beside the ``fnlab`` package, not inside it).

    Raises:
        FileNotFoundError: fnlab was installed without the app (not from a clone of the repository).
    """
    main = Path(__file__).resolve().parents[2] / "app" / "main.py"
    if not main.is_file():
        raise FileNotFoundError(f"{main}: the app is not part of this installation; run fnlab app from a clone of "
                                "the repository (pip install -e .)")
    return main


def command(address: str, port: int) -> list[str]:
    """The ``streamlit run`` command line that serves the app at ``address:port``."""
    return [sys.executable, "-m", "streamlit", "run", str(app_main()), "--server.address", address,
            "--server.port", str(port), *SERVER_FLAGS]


def run(args: argparse.Namespace) -> int:
    address = args.address.strip()
    if not address:
        raise ValueError("--address: empty; expected an address such as 127.0.0.1 (this machine) or 0.0.0.0")
    cmd = command(address, args.port)
    if args.print_command:
        print(" ".join(cmd))
        return 0
    if importlib.util.find_spec("streamlit") is None:
        raise ModuleNotFoundError("streamlit is not installed: pip install -e . (or make demo)")
    env = dict(os.environ)
    if args.runs is not None:
        env["FNLAB_RUNS"] = os.path.abspath(args.runs)
    if address in EVERY_INTERFACE:
        print(f"fnlab app: note: listening on every network interface ({address}): anyone who can reach this "
              "machine can open the app", file=sys.stderr)
    print(f"fnlab app: serving on http://{address if ':' not in address else f'[{address}]'}:{args.port} "
          "(Ctrl-C stops it)", file=sys.stderr)
    sys.stdout.flush()
    os.execve(sys.executable, cmd, env)  # the server takes this process over (signals go straight to it)
    return 0  # pragma: no cover - execve does not return
