"""What fnlab may delete, replace or move: only what it wrote, inside the place it was given.

One rule for every destructive step of fnlab (``fnlab runs rm``, ``fnlab train --overwrite``, the
commits of both scan engines, ``fnlab data make-sample``, the app's background training):

1. **Resolved first.** A target is made absolute, with ``..`` and the links among its parent folders
   resolved (:func:`resolve`). Its last component is kept as it is: a link is removed as a link and
   what it points to is never touched.
2. **Inside the place it was given.** The target must lie strictly inside the folder it belongs to
   (the run store, a run store's ``.staging``), never be that folder itself.
3. **Recognised by a marker fnlab wrote.** Each kind of thing fnlab writes (:class:`Kind`) carries a
   marker: a run its ``run.json``, a Ray scan output its ``_summary.json``, a saved dataset its
   ``dataset.json``, a scan table the ``TABLE.summary.json`` beside it, a triplets table its columns.
   The marker is checked against its kind's schema, and a folder must hold nothing but the files of
   its kind: a folder with anything else in it (a subfolder, ``thesis.tex``) is not fnlab's to remove.
4. **Refused before any work.** Anything else raises :class:`OwnershipError` (a ``ValueError``): one
   line naming the path and saying why, raised by :func:`check` before the caller starts its work.

:func:`remove` deletes a recognised folder name by name (the files it recognised), then the empty
folder, never with ``rmtree``: the folder is first renamed to a hidden sibling (it disappears at
once) and checked again; a file that turns up meanwhile is never deleted and the folder is put back.
Nothing here follows a link to delete what it points to.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "OwnershipError", "Kind", "resolve", "check", "remove", "check_apart", "safe_name", "run_marker_problem",
    "RUN", "STAGED_RUN", "RAY_SCAN_OUTPUT", "SCAN_TABLE", "SCAN_SUMMARY", "SCAN_TRIPLETS", "DATASET",
    "RUN_MARKER", "RUN_FILES", "TRIPLET_COLUMNS", "TRIPLET_TEXT_COLUMNS",
]


class OwnershipError(ValueError):
    """A destructive step refused: the target is not something fnlab wrote, or lies outside its place."""


# ------------------------------------------------------------------------------------- names
_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_RUN_FILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}\.(json|jsonl|npy|parquet|pt)")
# hidden files fnlab writes beside its files: atomic-write temporaries and lock files
_FNLAB_HIDDEN = re.compile(r"\.[A-Za-z0-9][A-Za-z0-9._-]*\.(tmp-\d+-[0-9a-f]{8}|lock)")
_HEX64 = re.compile(r"[0-9a-f]{64}")

RUN_MARKER = "run.json"
#: files every run may hold besides the ones its marker records (written before or after the marker)
RUN_FILES = frozenset({RUN_MARKER, "config.json", "metrics.jsonl", "review_decisions.jsonl",
                       "review_decisions.parquet"})
TRIPLET_COLUMNS = ("anchor", "positive", "negative", "positive_score", "negative_score", "p_false_negative")
#: the texts a triplets table carries after :data:`TRIPLET_COLUMNS` where the scan had them
TRIPLET_TEXT_COLUMNS = ("anchor_text", "positive_text", "negative_text")


def safe_name(name: Any) -> bool:
    """Whether ``name`` is one plain path component fnlab may write: 1-128 letters, digits, ``._-``,
    starting with a letter or digit, without ``..`` (so no ``/``, no absolute path, nothing hidden)."""
    return isinstance(name, str) and bool(_SAFE.fullmatch(name)) and ".." not in name


# ------------------------------------------------------------------------------------- markers
def run_marker_problem(info: Any) -> str | None:
    """What is wrong with a run's ``run.json`` (parsed), or ``None`` when it fits the schema.

    Schema (what :meth:`fnlab.storage.runs.RunWriter.finalize` writes)::

        {"name": str, "created": str, "finished": str,
         "files": {FILE: {"sha256": 64 hex digits, "bytes": int >= 0}}}

    ``FILE`` must be a file inside the run (:func:`safe_name`: no ``/``, ``..`` or absolute path).
    ``files`` may be absent (runs written before checksums were recorded), never of another type.
    """
    if not isinstance(info, dict):
        return f"expected a JSON object, got {type(info).__name__}"
    for key in ("name", "created", "finished"):
        if key not in info:
            return f"field {key!r} is missing"
        if not isinstance(info[key], str):
            return f"field {key!r} must be a string, got {type(info[key]).__name__}"
    if "files" not in info:
        return None
    recorded = info["files"]
    if not isinstance(recorded, dict):
        return f"field 'files' must be an object {{FILE: {{sha256, bytes}}}}, got {type(recorded).__name__}"
    for name, rec in recorded.items():
        if not safe_name(name):
            return (f"field 'files' names {name!r}, which is not a file inside the run (expected a plain file "
                    "name: no '/', no '..', not absolute)")
        if not isinstance(rec, dict):
            return f"field 'files' entry {name!r} must be an object {{sha256, bytes}}, got {type(rec).__name__}"
        digest, size = rec.get("sha256"), rec.get("bytes")
        if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
            return f"field 'files' entry {name!r}: 'sha256' must be 64 hex digits, got {digest!r}"
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            return f"field 'files' entry {name!r}: 'bytes' must be an integer >= 0, got {size!r}"
    return None


def _json_object(path: Path) -> dict | None:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


# ------------------------------------------------------------------------------------- kinds
@dataclass(frozen=True)
class Kind:
    """A kind of thing fnlab writes.

    Attributes:
        name: what it is called in messages (``"run"``); ``plural`` the same in the plural.
        folder: a folder (True) or one file.
        recognise: ``recognise(path)`` -> ``None`` when ``path`` carries this kind's marker, else why not.
        members: folder kinds: ``members(folder)`` -> a predicate telling which entry names are its own.
        empty_ok: an empty folder may be replaced or removed (there is nothing in it to lose).
    """

    name: str
    plural: str
    folder: bool
    recognise: Callable[[Path], str | None]
    members: Callable[[Path], Callable[[str], bool]] | None = None
    empty_ok: bool = False


def _runs_inside(folder: Path) -> int:
    try:
        return sum(1 for p in folder.iterdir() if p.is_dir() and (p / RUN_MARKER).is_file())
    except OSError:
        return 0


def _recognise_run(folder: Path) -> str | None:
    marker = folder / RUN_MARKER
    if not marker.is_file():
        runs = _runs_inside(folder)
        if runs:
            return (f"not a run but a run store holding {runs} run(s) (no {RUN_MARKER} of its own); name one run "
                    f"inside it, e.g. {folder}/NAME")
        extra = " (it holds a config.json: a run copied before it finished?)" if (folder / "config.json").exists() \
            else ""
        return f"not a run (no {RUN_MARKER}){extra}"
    info = _json_object(marker)
    if info is None:
        return f"its {RUN_MARKER} is not a readable JSON object, so fnlab cannot tell that it wrote this folder"
    if not {"name", "finished"} <= set(info):
        return f"its {RUN_MARKER} is not a run marker fnlab wrote (no 'name' and 'finished' fields)"
    return None


def _fnlab_hidden(name: str) -> bool:
    return bool(_FNLAB_HIDDEN.fullmatch(name))


def _run_members(folder: Path) -> Callable[[str], bool]:
    info = _json_object(folder / RUN_MARKER) or {}
    recorded = info.get("files") if run_marker_problem(info) is None else None

    def belongs(name: str) -> bool:
        if name in RUN_FILES or _fnlab_hidden(name):
            return True
        if isinstance(recorded, dict):
            return name in recorded
        return bool(_RUN_FILE.fullmatch(name))  # no usable record: the names fnlab gives run files

    return belongs


def _staged_members(folder: Path) -> Callable[[str], bool]:
    return lambda name: name in RUN_FILES or _fnlab_hidden(name) or bool(_RUN_FILE.fullmatch(name))


_PART = re.compile(r"part-[0-9a-f]{20}\.parquet")
_PART_TMP = re.compile(r"\.part-[0-9a-f]{20}\.parquet\.[0-9a-f]{32}\.tmp")


#: a Ray scan output's summary: ``_summary.json`` (the leading underscore makes Parquet readers such as pandas, pyarrow
#: and Spark skip it, so ``pandas.read_parquet(out)`` reads the parts as one table), ``summary.json`` before 2026-12-07
RAY_SUMMARIES = ("_summary.json", "summary.json")


def _recognise_ray_output(folder: Path) -> str | None:
    name = next((n for n in RAY_SUMMARIES if (folder / n).is_file()), RAY_SUMMARIES[0])
    summary = _json_object(folder / name)
    if summary is None:
        return "not a Ray scan output (no readable _summary.json)"
    if summary.get("engine") != "ray" or not isinstance(summary.get("output"), dict):
        return f"its {name} is not one a Ray scan wrote (no engine 'ray' and output record)"
    return None


def _ray_members(folder: Path) -> Callable[[str], bool]:
    return lambda name: name in RAY_SUMMARIES or bool(_PART.fullmatch(name) or _PART_TMP.fullmatch(name))


def _recognise_scan_table(path: Path) -> str | None:
    sidecar = path.with_name(path.name + ".summary.json")
    summary = _json_object(sidecar)
    output = summary.get("output") if summary else None
    if not isinstance(output, dict) or Path(str(output.get("path", ""))).name != path.name:
        return f"not a scan output fnlab wrote (no {sidecar.name} beside it recording it)"
    return None


def _recognise_scan_summary(path: Path) -> str | None:
    summary = _json_object(path)
    output = summary.get("output") if summary else None
    if not isinstance(output, dict) or Path(str(output.get("summary", ""))).name != path.name:
        return "not a scan summary fnlab wrote (no 'output' record naming it)"
    return None


def _table_columns(path: Path) -> list[str] | None:
    suffix = path.suffix.lower()
    try:
        if suffix in (".csv", ".jsonl", ".json"):
            with open(path, encoding="utf-8") as fh:
                first = fh.readline().strip()
            if suffix == ".csv":
                return first.split(",")
            obj = json.loads(first)
            return list(obj) if isinstance(obj, dict) else None
        import pyarrow.parquet as pq

        return list(pq.read_schema(path).names)
    except Exception:  # noqa: BLE001 - unreadable means: not a table fnlab wrote
        return None


def _recognise_triplets(path: Path) -> str | None:
    cols = [c for c in (_table_columns(path) or []) if not c.startswith("__index_level")]
    texts = tuple(cols[len(TRIPLET_COLUMNS):])
    if (tuple(cols[:len(TRIPLET_COLUMNS)]) != TRIPLET_COLUMNS
            or texts not in ((), TRIPLET_TEXT_COLUMNS[:1], TRIPLET_TEXT_COLUMNS[1:], TRIPLET_TEXT_COLUMNS)):
        return (f"not a triplets table fnlab wrote (its columns are not {','.join(TRIPLET_COLUMNS)}, then any of "
                f"{','.join(TRIPLET_TEXT_COLUMNS)})")
    return None


def _recognise_dataset(folder: Path) -> str | None:
    meta = _json_object(folder / "dataset.json")
    if meta is None or meta.get("format") != "fnlab-dataset":
        return "not a dataset fnlab saved (no dataset.json with format 'fnlab-dataset')"
    return None


_DATASET_FILES = frozenset({"dataset.json", "arrays.npz", "a_meta.parquet", "b_meta.parquet"})

RUN = Kind("run", "runs", True, _recognise_run, _run_members)
STAGED_RUN = Kind("interrupted run", "interrupted runs", True, lambda p: None, _staged_members, empty_ok=True)
RAY_SCAN_OUTPUT = Kind("Ray scan output folder", "Ray scan output folders", True, _recognise_ray_output,
                       _ray_members, empty_ok=True)
SCAN_TABLE = Kind("scan table", "scan tables", False, _recognise_scan_table)
SCAN_SUMMARY = Kind("scan summary", "scan summaries", False, _recognise_scan_summary)
SCAN_TRIPLETS = Kind("triplets table", "triplets tables", False, _recognise_triplets)
DATASET = Kind("saved dataset", "saved datasets", True, _recognise_dataset, lambda f: _DATASET_FILES.__contains__)


# ------------------------------------------------------------------------------------- the rule
def resolve(path: str | os.PathLike) -> Path:
    """``path`` made absolute, ``..`` and links among its parent folders resolved, its last component kept
    (a link stays the link). A path ending in ``..`` or ``.`` is resolved whole."""
    text = os.fspath(path)
    if "\x00" in text:
        raise OwnershipError(f"{text!r}: the path holds a NUL character")
    p = Path(text)
    if not text or p.name in ("", ".", ".."):
        return Path(os.path.realpath(text or "."))
    return Path(os.path.realpath(p.parent)) / p.name


def _shown(path: str | os.PathLike, target: Path, label: str | None) -> str:
    text = os.fspath(path)
    where = text if os.path.abspath(text) == str(target) else f"{text} (= {target})"
    return f"{label} {where}" if label else where


def _foreign(folder: Path, kind: Kind) -> list[str]:
    """Entries of ``folder`` that are not ``kind``'s own files (subfolders never are)."""
    belongs = kind.members(folder) if kind.members else (lambda name: False)
    out = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.is_dir(follow_symlinks=False) or not belongs(entry.name):
            out.append(entry.name + ("/" if entry.is_dir(follow_symlinks=False) else ""))
    return out


def _describe(names: list[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:4])
    return shown + (f" and {len(names) - 4} more" if len(names) > 4 else "")


def check(path: str | os.PathLike, kind: Kind, *, inside: str | os.PathLike | None = None,
          label: str | None = None, action: str = "replace") -> Path:
    """Refuse, before any work, to ``action`` ``path`` unless it is a ``kind`` fnlab wrote inside ``inside``.

    A path that does not exist passes (there is nothing to lose); the caller creates it.

    Args:
        inside: the folder the target must lie strictly inside (``None``: no such check).
        label: the flag or command naming the path, for the message (``"--out"``).
        action: ``"replace"`` or ``"remove"``, for the message.

    Returns:
        the resolved target (:func:`resolve`): act on this path, not on ``path``.

    Raises:
        OwnershipError: one line naming the path and why it is not fnlab's to ``action``.
    """
    target = resolve(path)
    where = _shown(path, target, label)
    if inside is not None:
        base = Path(os.path.realpath(inside))
        if base not in target.parents:
            raise OwnershipError(f"{where}: lies outside {base}, the folder it must be inside; fnlab does not "
                                 f"{action} anything there")
    if not os.path.lexists(target):
        return target
    if target.is_symlink() and not target.exists():
        raise OwnershipError(f"{where}: is a broken link; fnlab {action}s only {kind.plural} it wrote")
    if kind.folder and not target.is_dir():
        raise OwnershipError(f"{where}: is a file, not a {kind.name}; fnlab {action}s only {kind.plural} it wrote")
    if not kind.folder and target.is_dir():
        raise OwnershipError(f"{where}: is a folder; expected a file ({kind.name})")
    if kind.folder and kind.empty_ok and not target.is_symlink() and not any(target.iterdir()):
        return target
    reason = kind.recognise(target)
    if reason is None and kind.folder and not target.is_symlink():
        foreign = _foreign(target, kind)
        if foreign:
            reason = (f"holds {_describe(foreign)}, which fnlab did not write (a {kind.name} holds only its own "
                      "files): move them out first")
    if reason is not None:
        advice = "" if kind.folder else ": choose another path, or move the file away first"
        raise OwnershipError(f"{where}: {reason}; fnlab {action}s only {kind.plural} it wrote{advice}")
    return target


def remove(path: str | os.PathLike, kind: Kind, *, inside: str | os.PathLike | None = None,
           label: str | None = None) -> Path:
    """Remove ``path`` after :func:`check`: a link as a link, a file as a file, a folder name by name.

    Returns:
        the resolved path removed.

    Raises:
        FileNotFoundError: nothing there. OwnershipError: as :func:`check` (nothing removed).
    """
    target = check(path, kind, inside=inside, label=label, action="remove")
    if not os.path.lexists(target):
        raise FileNotFoundError(f"{_shown(path, target, label)}: no such file or folder")
    if target.is_symlink() or not kind.folder:
        os.unlink(target)
        return target
    trash = target.with_name(f".{target.name}.removing-{uuid.uuid4().hex[:8]}")
    os.rename(target, trash)  # gone from its name at once
    foreign = _foreign(trash, kind)
    if foreign:  # turned up between the check and the rename: put everything back, delete nothing
        os.rename(trash, target)
        raise OwnershipError(f"{_shown(path, target, label)}: holds {_describe(foreign)}, which fnlab did not "
                             f"write; fnlab removes only {kind.plural} it wrote")
    belongs = kind.members(trash) if kind.members else (lambda name: False)
    entries = sorted(os.scandir(trash), key=lambda e: e.name == RUN_MARKER)  # the marker last
    for entry in entries:
        if belongs(entry.name) and not entry.is_dir(follow_symlinks=False):
            os.unlink(entry.path)
    try:
        os.rmdir(trash)
    except OSError:
        os.rename(trash, target)  # something new inside: leave it where it was
        raise OwnershipError(f"{_shown(path, target, label)}: a file appeared in it while it was being removed; "
                             "what fnlab wrote is gone, the rest is left in place") from None
    return target


def check_apart(output: str | os.PathLike, inputs: Mapping[str, Any], *, label: str = "--out") -> None:
    """Refuse an output folder that is an input, lies inside an input folder, or holds an input.

    Args:
        output: the output folder (replaced when the job commits).
        inputs: ``{flag: path}``; entries that are not paths (arrays) are skipped.

    Raises:
        OwnershipError: naming both flags.
    """
    out = Path(os.path.realpath(output))
    for flag, value in inputs.items():
        if not isinstance(value, str | os.PathLike):
            continue
        src = Path(os.path.realpath(value))
        if src == out:
            raise OwnershipError(f"{label} {output}: is the input {flag}; the job would replace its own input: "
                                 "choose another output folder")
        if src in out.parents:
            raise OwnershipError(f"{label} {output}: lies inside the input folder {flag} {value}; choose an output "
                                 "folder outside the inputs")
        if out in src.parents:
            raise OwnershipError(f"{label} {output}: holds the input {flag} {value}; replacing it would delete the "
                                 "input: choose another output folder")
