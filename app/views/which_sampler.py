"""Which sampler? The measured regime map (false-negative density x hardness), with the open run (or a share the
user types, e.g. from their own scan) placed on it and what the map says there."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import state, url
from fnlab.analysis import regime, viz

st.title("Which sampler?")
state.sidebar()
st.caption("Which negatives to train on depends on how many false negatives hide among each query's most similar "
           "candidates. The map below was measured by training every arm on data of known density (paired seeds; "
           "`python bench/regime_map.py`): each line is an arm at its best window size. The dashed line is where "
           "the open run sits, from its posterior's estimate of that density.")


@st.cache_resource(show_spinner=False)
def _map(paths: tuple[str, ...], mtimes: tuple[float, ...]) -> regime.RegimeMap:
    return regime.RegimeMap.load_all(list(paths))


def _run_density() -> tuple[float | None, float | None, str | None, str | None]:
    """``(estimated, measured, family, uncalibrated)`` for the open run's selected split: the top-10 FN share its
    posterior estimates, the one its ground truth gives (where the dataset has it), its dataset, and the posterior's
    reason for ``uncalibrated: rank only`` (None where it is calibrated)."""
    cur = state.current_run()
    if cur is None:
        return None, None, None, None
    root, name, split = cur
    table, summary = state.scan_run(str(root), name, split, 10)
    est = regime.estimated_density(table["p_false_negative"].to_numpy(), table["rank"].to_numpy(), 10)
    measured = float(table.loc[table["rank"] <= 10, "is_relevant"].mean()) if "is_relevant" in table else None
    dataset = str(state.get_run(root, name).config.get("dataset", ""))
    calibrated = str(summary.get("status", "calibrated")) == "calibrated"
    return est, measured, dataset, None if calibrated else str(summary.get("status_reason") or "no reason given")


def _page() -> None:
    paths = regime.map_paths()
    try:
        rmap = _map(tuple(map(str, paths)), tuple(p.stat().st_mtime if p.exists() else 0.0 for p in paths))
    except (FileNotFoundError, ValueError) as err:
        st.info(str(err))
        return
    est, measured, dataset, uncalibrated = _run_density()
    families = sorted({c.family for c in rmap.cells})
    family = dataset if dataset in families else None
    url.bind("ws_own", "share", 0.0, url.as_float, allowed=lambda v: 0.0 <= v <= 1.0)
    own = st.number_input("Or place your own data: its top-10 false-negative share (0: use the open run)", 0.0,
                          1.0, step=0.01, key="ws_own", format="%.2f",
                          help="From your own scan: `fnlab scan ... --top-k 10`, then the mean of its "
                               "`p_false_negative` column (the posterior's estimate of that share).")
    density, where = (float(own), "your data") if own > 0 else (est, "the open run")
    by_truth = own == 0 and uncalibrated is not None and measured is not None
    if own == 0 and uncalibrated is not None:
        st.warning(f"This run's posterior is uncalibrated ({uncalibrated}), so its estimate of the share can be off "
                   "by a large factor either way. " + ("The run is placed by its ground truth's share instead."
                                                        if by_truth else "Read the placement below as uncertain."))
    if by_truth:
        density = measured
    if density is None:
        st.info("Open a run in the sidebar, or type your data's share above, to place it on the map.")
    st.plotly_chart(viz.regime_map_figure(rmap, density=density, family=family if own == 0 else None),
                    width="stretch", key="ws_map")
    if density is None:
        return
    cell = rmap.place(density, family if own == 0 else None)
    if by_truth:
        line = (f"**{where.capitalize()}**: top-10 false-negative share by its ground truth **{density:.0%}** "
                f"(its uncalibrated posterior estimates {est:.0%})")
    else:
        line = f"**{where.capitalize()}**: estimated top-10 false-negative share **{density:.0%}**"
        if own == 0 and measured is not None:
            line += f" (ground truth: {measured:.0%})"
    st.markdown(line + f"; nearest measured cell **{cell.name}** (share {cell.density:.0%}, at the warm-up model).")
    for sentence in rmap.verdict(cell):
        st.markdown(f"- {sentence}")
    rows = [{"arm": r.arm, "best k": r.k, "relevant rSum, last epoch": f"{r.mean:.1f}",
             "seeds": str(r.n) if r.n else "—",  # semi-hard: a reference figure from the map's summary
             "sampled FN rate": "—" if r.fn_rate is None else f"{r.fn_rate:.3f}"} for r in cell.ranking()]
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    st.caption(f"Map measured at commit(s) {rmap.commit or '?'} from {rmap.runs} training runs (per arm and window, "
               "the figure with the most seeds; *seeds* says how many); the README's *Which sampler when?* section "
               "gives the protocol, the grid actually run and each criterion's outcome. \"semihard\" as a window: "
               "the arm acting on semi-hard's negatives. A run's share is measured on its trained model, the map's "
               "at the warm-up model.")


state.guard(_page)
