"""Where this process listens: the app warns on its pages when it serves every network interface.

Streamlit reads its address from ``.streamlit/config.toml`` only in the working folder; started elsewhere
without ``--server.address`` it listens on every interface. The page cannot trust the setting, so it asks the
kernel: :func:`listening_addresses` reads the TCP sockets this process holds in the LISTEN state from
``/proc`` (Linux; elsewhere it returns ``None``: unknown). Nothing here imports streamlit.
"""

from __future__ import annotations

import os
import socket
import struct
from pathlib import Path

EVERY_INTERFACE = ("0.0.0.0", "::")
_LISTEN = "0A"


def _socket_inodes(proc: Path) -> set[str]:
    inodes = set()
    try:
        fds = os.listdir(proc / "fd")
    except OSError:
        return inodes
    for fd in fds:
        try:
            target = os.readlink(proc / "fd" / fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    return inodes


def _address(hex_ip: str) -> str:
    raw = bytes.fromhex(hex_ip)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, struct.pack("<I", struct.unpack(">I", raw)[0]))
    words = struct.unpack(">4I", raw)  # /proc prints each 32-bit word in host (little-endian) order
    return socket.inet_ntop(socket.AF_INET6, struct.pack("<4I", *words))


def listening_addresses(proc: str | os.PathLike = "/proc/self") -> list[tuple[str, int]] | None:
    """``[(address, port)]`` of the TCP sockets this process listens on; ``None`` where ``/proc`` is missing."""
    proc = Path(proc)
    net = proc / "net"
    if not (net / "tcp").exists():
        return None
    inodes = _socket_inodes(proc)
    out = []
    for table in ("tcp", "tcp6"):
        try:
            lines = (net / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) < 10 or cols[3] != _LISTEN or cols[9] not in inodes:
                continue
            hex_ip, hex_port = cols[1].split(":")
            out.append((_address(hex_ip), int(hex_port, 16)))
    return sorted(set(out))


def every_interface(addresses: list[tuple[str, int]] | None) -> list[int]:
    """The ports among ``addresses`` open on every interface (``0.0.0.0`` or ``::``)."""
    return sorted({port for addr, port in addresses or [] if addr in EVERY_INTERFACE})
