"""Human review of suspected false negatives: a concurrency-safe decision log with undo, and exports.

A reviewer looks at a scan's suspects (``fnlab.analysis.scan``: columns ``query, candidate, rank, similarity,
positive_similarity, p_false_negative``) and marks each pair *false negative* or *true negative*
(the strings of :mod:`fnlab.core.status`).

Storage: an **append-only log**, ``review_decisions.jsonl`` in the run folder (:class:`RunDecisions`)
or in any folder (:class:`FolderDecisions`, for uploads without a run). One JSON line per action:

    {"id": "…", "session": "…", "direction": "t2i", "query": 3, "candidate": 17,
     "decision": "false negative" | "true negative" | "undecided", "decided_at": "…"}
    {"id": "…", "session": "…", "undo": "<id of the action undone>", "decided_at": "…"}

Each append happens under an exclusive ``fcntl.flock`` on ``.review_decisions.lock`` and is one
``write`` of a whole line, so two browser tabs (or processes) clicking at once never lose a decision;
a reader ignores a last line without its newline (a writer killed mid-line), and skips a line that is not a
valid action (not JSON, or fields of the wrong type: damaged by hand or by a disk) with a
:class:`ReviewLogWarning` naming the file and the line, keeping every other line. The current decisions
are the log replayed: the last action on a pair wins, ``undecided`` clears it, and an undone action
counts as if it never happened (the pair's previous decision comes back). :meth:`RunDecisions.undo`
undoes this object's (this tab's) last action that is still in effect.

A decisions table written by older versions (``review_decisions.parquet``) is read as the starting
state.

Example:
    >>> log = FolderDecisions(tmp_path)                       # doctest: +SKIP
    >>> log.record("t2i", 3, 17, FALSE_NEGATIVE)              # doctest: +SKIP
    >>> log.undo()                                            # doctest: +SKIP
    >>> merge(scan_table.assign(direction="t2i"), log.load())  # doctest: +SKIP
"""

from __future__ import annotations

import io
import json
import os
import uuid
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from fnlab.core import files
from fnlab.core.status import FALSE_NEGATIVE, TRUE_NEGATIVE

UNDECIDED = "undecided"
DECISIONS = (FALSE_NEGATIVE, TRUE_NEGATIVE)
TABLE = "review_decisions"
LOG = f"{TABLE}.jsonl"
COLUMNS = ["direction", "query", "candidate", "decision", "decided_at"]
KEY = ["direction", "query", "candidate"]
EXPORT_FORMATS = ("csv", "parquet")

__all__ = ["FALSE_NEGATIVE", "TRUE_NEGATIVE", "UNDECIDED", "DECISIONS", "RunDecisions", "FolderDecisions",
           "ReviewLogWarning", "apply", "decisions_against_p", "empty", "merge", "export_bytes", "replay"]

#: the bands of P(false negative) in which :func:`decisions_against_p` sets the reviewer's decisions against P
CHECK_BANDS = ((0.0, 0.5), (0.5, 0.9), (0.9, 1.0))


class ReviewLogWarning(UserWarning):
    """A line of a review log that is skipped (not a valid action); the message names the file and the line."""


def _action_problem(entry: Any) -> str | None:
    """What makes a parsed log line not a valid action, or ``None``."""
    if not isinstance(entry, dict):
        return f"expected a JSON object, got {type(entry).__name__}"
    if "undo" in entry:
        return None if isinstance(entry["undo"], str) else "field 'undo' must be the id (a string) of an action"
    for key in ("query", "candidate"):
        if isinstance(entry.get(key), bool) or not isinstance(entry.get(key), int):
            return f"field {key!r} must be an integer, got {entry.get(key)!r}"
    if not isinstance(entry.get("direction"), str):
        return f"field 'direction' must be a string, got {entry.get('direction')!r}"
    if entry.get("decision") not in (*DECISIONS, UNDECIDED):
        return f"field 'decision' must be one of {[*DECISIONS, UNDECIDED]}, got {entry.get('decision')!r}"
    return None


def empty() -> pd.DataFrame:
    """An empty decisions table with the right columns and dtypes."""
    return pd.DataFrame({"direction": pd.Series(dtype=str), "query": pd.Series(dtype="int64"),
                         "candidate": pd.Series(dtype="int64"), "decision": pd.Series(dtype=str),
                         "decided_at": pd.Series(dtype=str)})


def _normalise(df: pd.DataFrame) -> pd.DataFrame:
    missing = set(COLUMNS) - set(df.columns)
    if missing:
        raise ValueError(f"decisions table lacks columns {sorted(missing)}")
    out = df[COLUMNS].copy()
    out["query"] = out["query"].astype("int64")
    out["candidate"] = out["candidate"].astype("int64")
    out["direction"] = out["direction"].astype(str)
    return out.drop_duplicates(KEY, keep="last").reset_index(drop=True)


def _check_decision(decision: str) -> None:
    if decision not in (*DECISIONS, UNDECIDED):
        raise ValueError(f"unknown decision {decision!r}: expected one of {[*DECISIONS, UNDECIDED]}")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def apply(decisions: pd.DataFrame, direction: str, query: int, candidate: int, decision: str) -> pd.DataFrame:
    """A new decisions table with one pair set to ``decision`` (``UNDECIDED`` removes it).

    Raises:
        ValueError: unknown decision.
    """
    _check_decision(decision)
    d = _normalise(decisions) if len(decisions) else empty()
    keep = ~((d["direction"] == str(direction)) & (d["query"] == int(query)) & (d["candidate"] == int(candidate)))
    d = d[keep]
    if decision != UNDECIDED:
        row = pd.DataFrame([{"direction": str(direction), "query": int(query), "candidate": int(candidate),
                             "decision": decision, "decided_at": _now()}])
        d = pd.concat([d, row], ignore_index=True) if len(d) else row
    return _normalise(d) if len(d) else empty()


def replay(entries: list[dict[str, Any]], base: pd.DataFrame | None = None) -> pd.DataFrame:
    """The decisions table that a log of actions leaves (see the module docstring).

    Args:
        entries: log lines in order (set actions and ``undo`` actions).
        base: the starting table (older parquet decisions), or ``None``.
    """
    undone = {e["undo"] for e in entries if "undo" in e}
    state: dict[tuple, dict[str, Any]] = {}
    if base is not None and len(base):
        for row in _normalise(base).to_dict("records"):
            state[(row["direction"], int(row["query"]), int(row["candidate"]))] = row
    for e in entries:
        if "undo" in e or e.get("id") in undone:
            continue
        key = (str(e["direction"]), int(e["query"]), int(e["candidate"]))
        if e["decision"] == UNDECIDED:
            state.pop(key, None)
        else:
            state[key] = {"direction": key[0], "query": key[1], "candidate": key[2], "decision": e["decision"],
                          "decided_at": e.get("decided_at", "")}
    if not state:
        return empty()
    return _normalise(pd.DataFrame(list(state.values())))


class FolderDecisions:
    """Decisions logged in ``<folder>/review_decisions.jsonl`` (for uploads without a run).

    Each instance is one reviewing session (one browser tab): :meth:`undo` undoes its own actions.
    """

    def __init__(self, folder: str | os.PathLike, *, session: str | None = None) -> None:
        self.folder = Path(folder)
        self.session = session or uuid.uuid4().hex[:12]
        #: the lines the last read skipped, one sentence each (also warned as ReviewLogWarning)
        self.problems: list[str] = []

    @property
    def path(self) -> Path:
        """The log file."""
        return self.folder / LOG

    @property
    def _lock(self) -> Path:
        return self.folder / f".{TABLE}.lock"

    @property
    def _legacy(self) -> Path:
        return self.folder / f"{TABLE}.parquet"

    def entries(self) -> list[dict[str, Any]]:
        """The log's actions in order. A torn last line is ignored (a writer killed mid-line); a line that is
        not a valid action is skipped with a :class:`ReviewLogWarning` naming the file and the line (and listed
        in :attr:`problems`); every other line is kept."""
        self.problems = []
        if not self.path.is_file():
            return []
        text = self.path.read_bytes().decode("utf-8", errors="replace")
        lines = text.split("\n")
        complete = lines[:-1]  # the part after the last newline is empty, or a line still being written
        out = []
        for i, line in enumerate(complete, start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as err:
                problem = f"not valid JSON ({err})"
            else:
                problem = _action_problem(entry)
            if problem is None:
                out.append(entry)
                continue
            self.problems.append(f"{self.path}: line {i} skipped: {problem}; expected one review action per line")
            warnings.warn(ReviewLogWarning(self.problems[-1]), stacklevel=2)
        return out

    def _base(self) -> pd.DataFrame | None:
        if not self._legacy.is_file():
            return None
        try:
            return pd.read_parquet(self._legacy)
        except Exception as err:  # pyarrow raises several types for a damaged file
            raise files.FileFormatError(f"{self._legacy}: not a readable decisions table ({err})") from None

    def load(self) -> pd.DataFrame:
        """The current decisions: ``direction, query, candidate, decision, decided_at``."""
        return replay(self.entries(), self._base())

    def _append(self, entries: list[dict[str, Any]]) -> None:
        if not entries:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        with files.file_lock(self._lock):
            self._append_locked(entries)

    def _append_locked(self, entries: list[dict[str, Any]]) -> None:
        """Append whole lines (caller holds the lock); a torn last line of a killed writer is cut off first."""
        data = "".join(files.dumps(e) + "\n" for e in entries).encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size:
                with open(self.path, "rb") as fh:
                    fh.seek(max(0, size - (1 << 16)))
                    tail = fh.read()
                if not tail.endswith(b"\n"):
                    cut = tail.rfind(b"\n")
                    os.ftruncate(fd, size - len(tail) + cut + 1 if cut >= 0 else max(0, size - len(tail)))
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)

    def _action(self, direction: str, query: int, candidate: int, decision: str) -> dict[str, Any]:
        _check_decision(decision)
        return {"id": uuid.uuid4().hex, "session": self.session, "direction": str(direction),
                "query": int(query), "candidate": int(candidate), "decision": decision, "decided_at": _now()}

    def record(self, direction: str, query: int, candidate: int, decision: str) -> pd.DataFrame:
        """Log one decision (``UNDECIDED`` clears the pair); returns the current decisions.

        Raises:
            ValueError: unknown decision.
        """
        self._append([self._action(direction, query, candidate, decision)])
        return self.load()

    def undo(self) -> dict[str, Any] | None:
        """Undo this session's last action still in effect; returns it (``None``: nothing to undo).

        Under the lock, so an undo and another tab's click never interleave.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        with files.file_lock(self._lock):
            entries = self.entries()
            undone = {e["undo"] for e in entries if "undo" in e}
            target = next((e for e in reversed(entries) if "undo" not in e and e.get("session") == self.session
                           and e.get("id") not in undone), None)
            if target is None:
                return None
            self._append_locked([{"id": uuid.uuid4().hex, "session": self.session, "undo": target["id"],
                                  "decided_at": _now()}])
        return target

    def save(self, df: pd.DataFrame) -> None:
        """Make the current decisions equal ``df`` (logs only the differences, so nothing else is lost)."""
        want = _normalise(df) if len(df) else empty()
        have = self.load()
        want_map = {(r["direction"], r["query"], r["candidate"]): r["decision"] for r in want.to_dict("records")}
        have_map = {(r["direction"], r["query"], r["candidate"]): r["decision"] for r in have.to_dict("records")}
        actions = [self._action(*k, v) for k, v in want_map.items() if have_map.get(k) != v]
        actions += [self._action(*k, UNDECIDED) for k in have_map if k not in want_map]
        self._append(actions)


class RunDecisions(FolderDecisions):
    """Decisions logged in a run's folder (``run.path / review_decisions.jsonl``).

    The log is a later addition to a complete run: it is not among the files whose sha256 ``run.json``
    recorded, so reviewing never makes a run look corrupt.
    """

    def __init__(self, run: Any, *, session: str | None = None) -> None:
        super().__init__(Path(run.path), session=session)
        self.run = run


def merge(suspects: pd.DataFrame, decisions: pd.DataFrame, *, direction: str | None = None) -> pd.DataFrame:
    """The suspects table with a ``decision`` column (``undecided`` where none was taken).

    Args:
        suspects: scan table (``query``, ``candidate`` ...), with a ``direction`` column or ``direction=``.
    """
    s = suspects.copy()
    if "direction" not in s.columns:
        if direction is None:
            raise ValueError("merge: suspects lack a 'direction' column and no direction was given")
        s["direction"] = direction
    s["direction"] = s["direction"].astype(str)
    d = _normalise(decisions)[KEY + ["decision"]] if len(decisions) else empty()[KEY + ["decision"]]
    if "decision" in s.columns:
        s = s.drop(columns="decision")
    out = s.merge(d, on=KEY, how="left")
    out["decision"] = out["decision"].fillna(UNDECIDED)
    return out


def decisions_against_p(table: pd.DataFrame, bands: tuple[tuple[float, float], ...] = CHECK_BANDS) -> pd.DataFrame:
    """How the reviewer's own decisions bear out P(false negative): on a user's data their decisions are the
    only ground truth, so this is the calibration check that holds there. For each band ``[lo, hi)`` of
    ``p_false_negative`` (the last band includes ``hi``): the pairs decided (false or true negative), how many
    were marked false negatives, that share, and the band's mean P. A share well below the mean P says P is
    over-confident on these data. (Pairs are not reviewed at random, so this is a check, not an estimate of
    the whole scan's calibration.)

    Args:
        table: :func:`merge`'s output (``p_false_negative`` and ``decision`` columns).

    Returns:
        One row per band holding a decision: ``lo``, ``hi``, ``decided``, ``false_negatives``, ``share``,
        ``mean_p``.
    """
    decided = table[table["decision"].isin(DECISIONS)]
    p = decided["p_false_negative"].astype(float).to_numpy()
    fn = (decided["decision"] == FALSE_NEGATIVE).to_numpy()
    rows = []
    for i, (lo, hi) in enumerate(bands):
        m = (p >= lo) & ((p <= hi) if i == len(bands) - 1 else (p < hi))
        if m.any():
            rows.append({"lo": lo, "hi": hi, "decided": int(m.sum()), "false_negatives": int(fn[m].sum()),
                         "share": float(fn[m].mean()), "mean_p": float(p[m].mean())})
    return pd.DataFrame(rows, columns=["lo", "hi", "decided", "false_negatives", "share", "mean_p"])


def export_bytes(table: pd.DataFrame, fmt: str, *, dataset: Any = None, direction: str | None = None) -> bytes:
    """Serialise a reviewed table as CSV or Parquet (for a download button or a file).

    Args:
        table: pairs with ``query``/``candidate`` indices (and ``direction``, ``decision``...).
        fmt: ``"csv"`` or ``"parquet"``.
        dataset: the split the indices refer to (a :class:`fnlab.data.base.MatchingDataset`): with it each
            row also carries what its query and candidate are, beside the indices (ids in the full dataset,
            texts, image paths: :func:`fnlab.analysis.explore.with_content`).
        direction: for tables without a ``direction`` column (default ``"t2i"``).

    Raises:
        ValueError: unknown format, or indices outside ``dataset``'s split.
    """
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {fmt!r}: expected one of {list(EXPORT_FORMATS)}")
    if dataset is not None:
        from fnlab.analysis.explore import with_content

        table = with_content(table, dataset, direction=direction)
    if fmt == "csv":
        return table.to_csv(index=False).encode()
    buf = io.BytesIO()
    table.to_parquet(buf, index=False)
    return buf.getvalue()
