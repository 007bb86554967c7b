"""The Lesson's sentences about samplers, written from the numbers its charts show (no streamlit here, so they
are tested on their own): which FNE the lesson shows, the pool's comparison table, and a sentence for every
sampler that is as safe as FNE on the run."""

from __future__ import annotations

import pandas as pd

from app import labels
from fnlab import samplers

#: FNE at its registry defaults, where the lesson shows another setting
DEFAULT_FNE = "fne · calibrated, " + next((str(p.default) for p in samplers.param_specs("fne") if p.name == "rule"),
                                           "default") + " (its default)"
#: a sampler within this share of FNE's false-negative risk counts as "as safe"
AS_SAFE = 1.10


def fne_label(ex: dict) -> str:
    """The FNE the lesson shows, as the playground names it (``fne · calibrated``; its setting is in the text)."""
    return "fne · " + (ex.get("fne_params") or {}).get("mode", "calibrated")


def build_fne(ex: dict, post):
    return samplers.build_for_run("fne", dict(ex.get("fne_params") or {}), posterior=post)


def pool_table(ex: dict) -> pd.DataFrame:
    """The stored comparison over the pool: hardest, the lesson's FNE, the compared samplers (and FNE at its
    defaults when the lesson shows another setting)."""
    pool = ex["pool"]
    mine = " ".join(["fne", *(f"{k}={v}" for k, v in sorted((ex.get("fne_params") or {}).items()))])
    rows = [{"sampler": fne_label(ex), **pool[mine]}]
    if mine != "fne":
        rows.append({"sampler": DEFAULT_FNE, **pool["fne"]})
    rows += [{"sampler": k, **v} for k, v in pool.items() if not k.startswith("fne")]
    return pd.DataFrame(rows)


def safety_sentences(ex: dict) -> list[str]:
    """What the pool's numbers say about FNE next to the others, in sentences (each backed by a number shown)."""
    t = pool_table(ex).set_index("sampler")
    me = fne_label(ex)
    r, h = t.loc[me, "fn_risk"], t.loc[me, "hardness"]
    out = []
    for other in t.index:
        if other == me or other == "hardest":
            continue
        ro, ho = t.loc[other, "fn_risk"], t.loc[other, "hardness"]
        if ro <= r * AS_SAFE:
            how = "safer" if ro < r * 0.9 else "as safe"
            harder = ("and its negatives are as hard" if abs(ho - h) < 0.01 else
                      f"and its negatives are harder (mean similarity {ho:.2f} against {h:.2f})" if ho > h else
                      f"but its negatives are easier (mean similarity {ho:.2f} against {h:.2f})")
            out.append(f"**{other}** is {how} here ({ro:.1%} against {r:.1%}) {harder}.")
    if DEFAULT_FNE in t.index:
        rd = t.loc[DEFAULT_FNE, "fn_risk"]
        worse = [f"{o} ({t.loc[o, 'fn_risk']:.1%})" for o in t.index
                 if o not in (me, DEFAULT_FNE, "hardest") and t.loc[o, "fn_risk"] < rd]
        out.append(f"FNE at its default setting draws {rd:.1%} false negatives on this run"
                   + (f", more than {' and '.join(worse)}" if worse else "")
                   + f"; the lesson shows the setting with the lowest risk "
                     f"({labels.fne_setting(ex.get('fne_params') or {})}).")
    return out


