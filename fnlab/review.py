"""Human review of suspected false negatives: decisions persisted with a run, and exports.

A reviewer looks at a scan's suspects (``fnlab.scan``: columns ``query, candidate, rank, similarity,
positive_similarity, p_false_negative``) and marks each pair *false negative* or *true negative*.
Decisions are written after every click, as one atomic table replace in the run folder
(``Run.save_table``), so an interrupted session loses nothing. Where no run exists (uploaded
embeddings), :class:`FolderDecisions` keeps them in a folder with the same atomic writes.

Example:
    >>> log = FolderDecisions(tmp_path)                       # doctest: +SKIP
    >>> log.record("t2i", 3, 17, FALSE_NEGATIVE)              # doctest: +SKIP
    >>> merge(scan_table.assign(direction="t2i"), log.load())  # doctest: +SKIP
"""

from __future__ import annotations

import io
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import pandas as pd

from fnlab.runs import atomic_write

FALSE_NEGATIVE = "false negative"
TRUE_NEGATIVE = "true negative"
UNDECIDED = "undecided"
DECISIONS = (FALSE_NEGATIVE, TRUE_NEGATIVE)
TABLE = "review_decisions"
COLUMNS = ["direction", "query", "candidate", "decision", "decided_at"]
KEY = ["direction", "query", "candidate"]
EXPORT_FORMATS = ("csv", "parquet")


class _TableOwner(Protocol):
    def load_table(self, name: str) -> pd.DataFrame: ...

    def save_table(self, name: str, df: pd.DataFrame) -> object: ...


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


def apply(decisions: pd.DataFrame, direction: str, query: int, candidate: int, decision: str) -> pd.DataFrame:
    """A new decisions table with one pair set to ``decision`` (``UNDECIDED`` removes it).

    Raises:
        ValueError: unknown decision.
    """
    if decision not in (*DECISIONS, UNDECIDED):
        raise ValueError(f"unknown decision {decision!r}: expected one of {[*DECISIONS, UNDECIDED]}")
    d = _normalise(decisions) if len(decisions) else empty()
    keep = ~((d["direction"] == str(direction)) & (d["query"] == int(query)) & (d["candidate"] == int(candidate)))
    d = d[keep]
    if decision != UNDECIDED:
        row = pd.DataFrame([{"direction": str(direction), "query": int(query), "candidate": int(candidate),
                             "decision": decision, "decided_at": datetime.now(UTC).isoformat(timespec="seconds")}])
        d = pd.concat([d, row], ignore_index=True) if len(d) else row
    return _normalise(d) if len(d) else empty()


class RunDecisions:
    """Decisions stored in a run (``Run.load_table`` / ``Run.save_table``, atomic replace)."""

    def __init__(self, run: _TableOwner) -> None:
        self.run = run

    def load(self) -> pd.DataFrame:
        try:
            df = self.run.load_table(TABLE)
        except (FileNotFoundError, KeyError, OSError, ValueError):
            return empty()
        return _normalise(df) if len(df) else empty()

    def save(self, df: pd.DataFrame) -> None:
        self.run.save_table(TABLE, _normalise(df) if len(df) else empty())

    def record(self, direction: str, query: int, candidate: int, decision: str) -> pd.DataFrame:
        df = apply(self.load(), direction, query, candidate, decision)
        self.save(df)
        return df


class FolderDecisions(RunDecisions):
    """Decisions stored as ``<folder>/review_decisions.parquet`` (for uploads without a run)."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)

    @property
    def path(self) -> Path:
        return self.folder / f"{TABLE}.parquet"

    def load(self) -> pd.DataFrame:
        if not self.path.exists():
            return empty()
        return _normalise(pd.read_parquet(self.path))

    def save(self, df: pd.DataFrame) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        table = _normalise(df) if len(df) else empty()
        atomic_write(self.path, lambda t: table.to_parquet(t, index=False))


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


def export_bytes(table: pd.DataFrame, fmt: str) -> bytes:
    """Serialise a reviewed table as CSV or Parquet (for a download button or a file).

    Raises:
        ValueError: unknown format.
    """
    if fmt == "csv":
        return table.to_csv(index=False).encode()
    if fmt == "parquet":
        buf = io.BytesIO()
        table.to_parquet(buf, index=False)
        return buf.getvalue()
    raise ValueError(f"unknown export format {fmt!r}: expected one of {list(EXPORT_FORMATS)}")
