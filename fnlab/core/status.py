"""The status of a (query, candidate) pair: its one name and its one colour, everywhere.

Every view (figures in :mod:`fnlab.analysis.viz`, tables in :mod:`fnlab.analysis.explore`, review decisions in
:mod:`fnlab.analysis.review`, every app page) uses these strings and colours, so a labelled positive, a false
negative and a true negative look the same on every page. Nothing here imports plotly or streamlit.

Colours follow the Okabe-Ito palette (readable for colour-blind viewers): labelled positive = bluish
green, false negative = vermillion, true negative = blue, unknown ground truth = grey.
"""

from __future__ import annotations

import numpy as np

POSITIVE = "labelled positive"
FALSE_NEGATIVE = "false negative"
TRUE_NEGATIVE = "true negative"
UNKNOWN = "negative (no ground truth)"
SUSPECT = "suspected false negative"  # no ground truth, but the posterior calls it a likely match

COLORS: dict[str, str] = {
    POSITIVE: "#009E73",
    FALSE_NEGATIVE: "#D55E00",
    TRUE_NEGATIVE: "#0072B2",
    UNKNOWN: "#8C8C8C",
    SUSPECT: "#E69F00",
}
ORDER = [POSITIVE, FALSE_NEGATIVE, SUSPECT, TRUE_NEGATIVE, UNKNOWN]
# Statuses of a point on the embedding map: relative to a selected point (its pairs coloured as above,
# the rest OTHER), or, with nothing selected, whether the point takes part in any false negative.
OTHER, SELECTED = "other", "selected"
HAS_FALSE_NEGATIVE, NO_FALSE_NEGATIVE = "has a false negative", "no false negative"
CONTEXT_COLORS: dict[str, str] = {OTHER: "#D9D9D9", SELECTED: "#000000",
                                  HAS_FALSE_NEGATIVE: COLORS[FALSE_NEGATIVE], NO_FALSE_NEGATIVE: "#BDBDBD"}


def color(status: str, default: str = "#8C8C8C") -> str:
    """The colour of ``status`` (any of the strings above), ``default`` for anything else."""
    return COLORS.get(status, CONTEXT_COLORS.get(status, default))


def labels(positive: np.ndarray, false_negative: np.ndarray | None) -> np.ndarray:
    """Status string per candidate from boolean masks (same shape).

    ``false_negative`` is ``None`` when the dataset has no ground truth: negatives are then
    :data:`UNKNOWN`. A labelled positive wins over a false-negative flag.
    """
    positive = np.asarray(positive, dtype=bool)
    out = np.full(positive.shape, UNKNOWN if false_negative is None else TRUE_NEGATIVE, dtype=object)
    if false_negative is not None:
        out[np.asarray(false_negative, dtype=bool)] = FALSE_NEGATIVE
    out[positive] = POSITIVE
    return out
