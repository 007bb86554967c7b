"""Plotly figure builders for fnlab: data in, figure out.

Every function takes plain arrays / DataFrames / dicts and returns a
:class:`plotly.graph_objects.Figure`. Nothing here imports streamlit, and nothing here
computes what the engine computes (posteriors, weights, scans): callers pass results in.

Status names and colours come from :mod:`fnlab.core.status` (one colour per status on every page);
other categories take colours from :data:`PALETTE`, which leaves the status colours out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from fnlab.core import status as _status

# ----------------------------------------------------------------- colours
# One home for the status names and colours (fnlab.core.status); re-exported here for figure callers.
POSITIVE, FALSE_NEGATIVE, TRUE_NEGATIVE, UNKNOWN = (_status.POSITIVE, _status.FALSE_NEGATIVE,
                                                    _status.TRUE_NEGATIVE, _status.UNKNOWN)
STATUS_COLORS: dict[str, str] = {**_status.COLORS, **_status.CONTEXT_COLORS}
STATUS_ORDER = list(_status.ORDER)
# Category colours for anything that is not a status (metadata, runs): Okabe-Ito and a few extra distinct
# colours, with the three status colours left out so a category never reads as "false negative".
PALETTE = [
    "#CC79A7", "#56B4E9", "#000000", "#F0E442", "#8C564B", "#17BECF", "#BCBD22", "#7F3C8D", "#666666",
    "#A6761D", "#9467BD", "#F781BF",
]
TEMPLATE = "plotly_white"


#: a legend row's height (px), and the room under the plot area for the x axis's ticks and title (px)
LEGEND_ROW_PX, X_AXIS_PX = 22, 80


def _layout(fig: go.Figure, *, title: str | None, xaxis: str | None = None, yaxis: str | None = None,
            height: int | None = None, legend: str = "right", legend_rows: int | None = None) -> go.Figure:
    # Title top-left; legend on the right (wide charts) or under the x axis (charts in half-width columns):
    # either way it never overlaps the title, subplot titles or the data. A long legend under the axis
    # (``legend_rows``) gets its rows added to the figure's height, so the plot area keeps its size and the legend
    # starts below the axis title however many rows it takes.
    if legend == "bottom" and legend_rows:
        bottom = X_AXIS_PX + LEGEND_ROW_PX * legend_rows + 20
        height = (height or 450) + LEGEND_ROW_PX * legend_rows
        plot_px = height - (60 if title else 30) - bottom
        leg = dict(orientation="h", yanchor="top", y=-X_AXIS_PX / plot_px, xanchor="left", x=0)
    elif legend == "bottom":
        leg = dict(orientation="h", yanchor="top", y=-0.22, xanchor="left", x=0)
        bottom = 130
    else:
        leg = dict(orientation="v", yanchor="top", y=1.0, xanchor="left", x=1.02)
        bottom = 50
    fig.update_layout(template=TEMPLATE, margin=dict(l=60, r=20, t=60 if title else 30, b=bottom),
                      title=dict(text=title, x=0.01, xanchor="left", y=0.98, yanchor="top") if title else None,
                      legend=leg)
    if height:
        fig.update_layout(height=height)
    if xaxis is not None:
        fig.update_xaxes(title_text=xaxis)
    if yaxis is not None:
        fig.update_yaxes(title_text=yaxis)
    return fig


def _np(x) -> np.ndarray:
    """Array from numpy / torch / list, float64, flattened."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64).ravel()


def _normal_pdf(x: np.ndarray, mean: float, std: float) -> np.ndarray:
    return np.exp(-0.5 * ((x - mean) / std) ** 2) / (std * np.sqrt(2 * np.pi))


def status_labels(positive: np.ndarray, false_negative: np.ndarray | None) -> np.ndarray:
    """Ground-truth status string per candidate from boolean masks (see :func:`fnlab.core.status.labels`)."""
    return _status.labels(positive, false_negative)


# ------------------------------------------------------------ distributions
def similarity_histogram(
    pos_sims,
    neg_sims,
    *,
    fn_sims=None,
    fit: Mapping[str, float] | None = None,
    bins: int = 60,
    title: str | None = "Similarity distributions",
    marker: float | None = None,
) -> go.Figure:
    """Density histograms of labelled-positive and negative similarities.

    Args:
        pos_sims: similarities of labelled positive pairs.
        neg_sims: similarities of negatives (all unlabelled candidates).
        fn_sims: optional similarities of ground-truth false negatives (a subset of the negatives),
            drawn as a third histogram so the overlap with the positive mode is visible.
        fit: optional ``{"pos_mean", "pos_std", "neg_mean", "neg_std"}`` of fitted Gaussians,
            drawn as density curves.
        marker: optional x position (e.g. a query's positive similarity) drawn as a vertical line.
    """
    pos, neg = _np(pos_sims), _np(neg_sims)
    if pos.size == 0 and neg.size == 0:
        raise ValueError("similarity_histogram needs at least one similarity")
    everything = np.concatenate([pos, neg] + ([_np(fn_sims)] if fn_sims is not None else []))
    lo, hi = float(np.nanmin(everything)), float(np.nanmax(everything))
    if hi - lo < 1e-6:
        lo, hi = lo - 0.05, hi + 0.05
    # Binned here, drawn as bars: the browser gets `bins` numbers per series, not every similarity (a split
    # holds ~10^5 negatives), so the page stays fast.
    edges = np.linspace(lo, hi, bins + 1)
    width = float(edges[1] - edges[0])
    mids = (edges[:-1] + edges[1:]) / 2
    fig = go.Figure()
    series = [("negatives", neg, STATUS_COLORS[TRUE_NEGATIVE], 0.55),
              ("labelled positives", pos, STATUS_COLORS[POSITIVE], 0.55)]
    if fn_sims is not None and _np(fn_sims).size:
        series.append(("ground-truth false negatives", _np(fn_sims), STATUS_COLORS[FALSE_NEGATIVE], 0.75))
    for name, vals, colour, opacity in series:
        if vals.size:
            counts, _ = np.histogram(vals, bins=edges)
            fig.add_bar(x=mids, y=counts / (vals.size * width), width=width, name=f"{name} (n={vals.size:,})",
                        marker_color=colour, opacity=opacity, customdata=counts,
                        hovertemplate="s %{x:.3f}<br>density %{y:.2f}<br>%{customdata} pairs<extra>" + name
                                      + "</extra>")
    if fit:
        xs = np.linspace(lo, hi, 300)
        fig.add_scatter(x=xs, y=_normal_pdf(xs, fit["pos_mean"], fit["pos_std"]), mode="lines",
                        name="fitted positive density", line=dict(color=STATUS_COLORS[POSITIVE], width=3))
        fig.add_scatter(x=xs, y=_normal_pdf(xs, fit["neg_mean"], fit["neg_std"]), mode="lines",
                        name="fitted negative density",
                        line=dict(color=STATUS_COLORS[TRUE_NEGATIVE], width=3, dash="dash"))
    if marker is not None:
        fig.add_vline(x=float(marker), line=dict(color="black", dash="dot"), annotation_text="positive")
    fig.update_layout(barmode="overlay", bargap=0)
    return _layout(fig, title=title, xaxis="cosine similarity", yaxis="density")


def posterior_curve(
    curves: Mapping[str, Callable[[np.ndarray], np.ndarray]],
    *,
    s_range: tuple[float, float] = (-0.2, 1.0),
    prior: float | None = None,
    fn_points: tuple[np.ndarray, np.ndarray] | None = None,
    pos_mean: float | None = None,
    margin: float | None = None,
    title: str | None = "P(false negative | similarity)",
    xaxis: str = "cosine similarity s",
) -> go.Figure:
    """P(FN | s) of one or more estimators over a similarity range.

    Args:
        curves: name -> function mapping a similarity array to probabilities.
        prior: the prior P(pos), drawn as a horizontal reference line.
        fn_points: optional ``(similarities, is_false_negative)`` ground truth, drawn as a rug of
            points at y = 1 (false negative) and y = 0 (true negative).
        pos_mean, margin: FNE's cut-down: weights are zero below ``pos_mean - margin`` (shaded).
        xaxis: the x-axis title (``"s − s⁺"`` for a posterior relative to each query's positive).
    """
    xs = np.linspace(s_range[0], s_range[1], 400)
    fig = go.Figure()
    if pos_mean is not None and margin is not None:
        fig.add_vrect(x0=s_range[0], x1=pos_mean - margin, fillcolor="#cccccc", opacity=0.3, line_width=0,
                      annotation_text="FNE cut-down (weight 0)", annotation_position="bottom left")
    for i, (name, fn) in enumerate(curves.items()):
        ys = _np(fn(xs))
        fig.add_scatter(x=xs, y=ys, mode="lines", name=name, line=dict(width=3, color=PALETTE[i % len(PALETTE)]))
    if fn_points is not None:
        s, is_fn = _np(fn_points[0]), np.asarray(fn_points[1], dtype=bool).ravel()
        rng = np.random.default_rng(0)
        jitter = rng.uniform(-0.03, 0.03, size=s.size)
        for mask, yv, name, status in ((~is_fn, 0.0, "true negatives (ground truth)", TRUE_NEGATIVE),
                                       (is_fn, 1.0, "false negatives (ground truth)", FALSE_NEGATIVE)):
            if mask.any():
                fig.add_scatter(x=s[mask], y=yv + jitter[mask], mode="markers", name=name, opacity=0.5,
                                marker=dict(size=5, color=STATUS_COLORS[status]))
    if prior is not None:
        fig.add_hline(y=float(prior), line=dict(color="black", dash="dot"),
                      annotation_text=f"prior P(pos) = {prior:.2g}", annotation_position="bottom right")
    fig.update_yaxes(range=[-0.05, 1.05])
    return _layout(fig, title=title, xaxis=xaxis, yaxis="P(false negative)", height=500, legend="bottom")


#: up to this many points a scatter is drawn as SVG (fast to draw everywhere, also without a GPU); beyond it WebGL
SVG_POINTS = 5000


def _scatter(fig: go.Figure, n: int, **kw) -> None:
    """Add a scatter trace: SVG for small figures, WebGL for large ones (see :data:`SVG_POINTS`)."""
    (fig.add_scatter if n <= SVG_POINTS else fig.add_scattergl)(**kw)


def posterior_scatter(sims, probs, is_fn=None, *, margin=None, max_points: int = 2000, seed: int = 0,
                      title: str | None = "P(false negative) of each pair") -> go.Figure:
    """Each pair's posterior P(false negative) against its similarity, coloured by ground truth.

    For posteriors of several signals (similarity, margin to the query's positive, neighbours) there is no
    single curve over ``s``: this shows what the posterior said about real pairs instead.

    Args:
        sims: ``[N]`` similarities of the pairs.
        probs: ``[N]`` their P(false negative).
        is_fn: ``[N]`` bool ground truth, or ``None`` (then one grey series).
        margin: optional ``[N]`` ``s - s+`` shown on hover.
        max_points: at most this many points are drawn (a fixed random subset).
    """
    s, p = _np(sims), _np(probs)
    if s.shape != p.shape:
        raise ValueError(f"sims and probs differ in size: {s.size} vs {p.size}")
    idx = np.arange(s.size)
    if s.size > max_points:
        idx = np.sort(np.random.default_rng(seed).choice(s.size, max_points, replace=False))
    m = _np(margin)[idx] if margin is not None else np.full(idx.size, np.nan)
    fig = go.Figure()
    if is_fn is None:
        groups = [(np.ones(idx.size, bool), UNKNOWN)]
    else:
        y = np.asarray(is_fn, dtype=bool).ravel()[idx]
        groups = [(~y, TRUE_NEGATIVE), (y, FALSE_NEGATIVE)]
    for mask, status in groups:
        if mask.any():
            _scatter(fig, idx.size, x=s[idx][mask], y=p[idx][mask], mode="markers",
                     name=f"{status} (n={int(mask.sum()):,})",
                     marker=dict(size=5, color=STATUS_COLORS[status], opacity=0.6), customdata=np.round(m[mask], 3),
                     hovertemplate="s %{x:.3f}<br>s − s⁺ %{customdata:.3f}<br>P(FN) %{y:.3f}<extra></extra>")
    fig.update_yaxes(range=[-0.03, 1.03])
    return _layout(fig, title=title, xaxis="cosine similarity s", yaxis="P(false negative)", height=500,
                   legend="bottom")


def reliability_diagram(
    estimators: Mapping[str, tuple[np.ndarray, np.ndarray]],
    *,
    n_bins: int = 10,
    title: str | None = "Reliability diagram",
) -> go.Figure:
    """Observed false-negative rate against predicted P(FN), one line per estimator.

    Args:
        estimators: name -> ``(predicted probabilities, ground-truth 0/1 labels)``.
    """
    # a local import: evaluate loads torch, which the app loads only when a diagram is drawn
    from fnlab.analysis.evaluate import reliability_bins

    fig = go.Figure()
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect calibration",
                    line=dict(color="#555555", dash="dash"))
    for i, (name, (p, y)) in enumerate(estimators.items()):
        bins = pd.DataFrame(reliability_bins(_np(p), _np(y), n_bins=n_bins),
                            columns=["lo", "hi", "count", "mean_p", "frac_positive"])
        fig.add_scatter(x=bins["mean_p"], y=bins["frac_positive"], mode="lines+markers", name=name,
                        marker=dict(size=np.clip(np.sqrt(bins["count"].to_numpy()) * 1.5, 6, 22)),
                        line=dict(color=PALETTE[i % len(PALETTE)], width=2),
                        customdata=bins["count"], hovertemplate="predicted %{x:.3f}<br>observed %{y:.3f}"
                        "<br>%{customdata} pairs<extra></extra>")
    fig.update_xaxes(range=[0, 1])
    fig.update_yaxes(range=[0, 1])
    return _layout(fig, title=title, xaxis="predicted P(false negative)", yaxis="observed false-negative rate",
                   height=500, legend="bottom")


# ----------------------------------------------------------------- samplers
def sampler_weight_bars(
    weights: Mapping[str, np.ndarray],
    status: Sequence[str],
    *,
    similarities: np.ndarray | None = None,
    hover: Sequence[str] | None = None,
    title: str | None = "Sampling probability per ranked candidate",
    normalise: bool = True,
) -> go.Figure:
    """One bar chart per sampler: the (normalised) weight on each ranked candidate, coloured by status.

    Args:
        weights: sampler name -> ``[M]`` non-negative weights over the candidates, ranked by similarity
            (rank 1 = most similar). Each row is normalised to sum to one (sampling probability).
        status: ``[M]`` ground-truth status strings (see :func:`status_labels`).
        similarities: optional ``[M]`` similarities shown on hover.
        hover: optional ``[M]`` texts (captions, item names) shown on hover.
        normalise: ``False`` when ``weights`` are already sampling probabilities over a larger set of which
            these ``M`` candidates are the top: the bars then show them as they are (summing to less than one).
    """
    if not weights:
        raise ValueError("sampler_weight_bars needs at least one sampler")
    status = np.asarray(status, dtype=object)
    names = list(weights)
    fig = make_subplots(rows=len(names), cols=1, shared_xaxes=True, vertical_spacing=0.06 if len(names) < 6 else 0.03,
                        subplot_titles=names)
    ranks = np.arange(1, status.size + 1)
    sims = _np(similarities) if similarities is not None else None
    hover_arr = np.asarray(hover, dtype=object) if hover is not None else None
    for r, name in enumerate(names, start=1):
        w = _np(weights[name])
        if w.size != status.size:
            raise ValueError(f"sampler {name!r}: {w.size} weights for {status.size} candidates")
        total = w.sum()
        prob = w / total if total > 0 and normalise else w
        for st in STATUS_ORDER:
            m = status == st
            if not m.any():
                continue
            custom = np.stack([sims[m] if sims is not None else np.full(m.sum(), np.nan),
                               hover_arr[m] if hover_arr is not None else np.full(m.sum(), "")], axis=1)
            fig.add_bar(x=ranks[m], y=prob[m], name=st, legendgroup=st, showlegend=r == 1,
                        marker_color=STATUS_COLORS[st], customdata=custom,
                        hovertemplate="rank %{x}<br>P(sampled) %{y:.3f}<br>similarity %{customdata[0]:.3f}"
                                      "<br>%{customdata[1]}<extra>" + st + "</extra>", row=r, col=1)
        fig.update_yaxes(title_text="P(sampled)", row=r, col=1, rangemode="tozero")
    # Labelled positives get weight 0 by construction: mark where they sit so the gap is not a mystery.
    for rank in ranks[status == POSITIVE]:
        fig.add_vline(x=float(rank), line=dict(color=STATUS_COLORS[POSITIVE], width=2, dash="dot"),
                      row="all", col=1)
    if (status == POSITIVE).any():
        fig.add_annotation(x=float(ranks[status == POSITIVE][0]), y=1.0, xref="x", yref="y domain",
                           text="labelled positive (weight 0)", showarrow=False, xanchor="left",
                           font=dict(color=STATUS_COLORS[POSITIVE], size=11))
    fig.update_xaxes(title_text="candidate rank (1 = most similar to the query)", row=len(names), col=1)
    fig.update_layout(bargap=0.1)
    return _layout(fig, title=title, height=max(300, 190 * len(names) + 90))


def hardness_risk_scatter(summary: pd.DataFrame, *, title: str | None = "Hardness vs false-negative risk",
                          styles: Mapping[str, tuple[str, str]] | None = None) -> go.Figure:
    """One point per sampler: x = hardness (mean similarity of sampled negatives), y = FN risk.

    Args:
        summary: columns ``sampler``, ``hardness``, ``fn_risk`` (share of sampled negatives that are
            truly relevant, or expected share under the posterior when no ground truth exists).
        styles: sampler -> ``(colour, marker symbol)``, so a sampler looks the same in every figure
            (default: by row).
    """
    missing = {"sampler", "hardness", "fn_risk"} - set(summary.columns)
    if missing:
        raise ValueError(f"hardness_risk_scatter: summary lacks columns {sorted(missing)}")
    fig = go.Figure()
    symbols = ["circle", "diamond", "square", "triangle-up", "x", "star", "hexagon", "cross", "pentagon"]
    for i, row in enumerate(summary.itertuples(index=False)):
        colour, symbol = (styles or {}).get(str(row.sampler), (PALETTE[i % len(PALETTE)], symbols[i % len(symbols)]))
        # Named in the legend, not by text next to the point: points of similar samplers sit close together and
        # their labels would overlap.
        fig.add_scatter(x=[row.hardness], y=[row.fn_risk], mode="markers", name=str(row.sampler),
                        marker=dict(size=15, color=colour, symbol=symbol, line=dict(width=1, color="white")),
                        hovertemplate=f"{row.sampler}<br>hardness %{{x:.3f}}<br>FN risk %{{y:.1%}}<extra></extra>")
    top = float(np.nanmax(summary["fn_risk"])) if len(summary) and np.isfinite(summary["fn_risk"]).any() else 1.0
    fig.update_yaxes(tickformat=".0%", range=[0, min(1.0, max(0.05, top * 1.15))])
    return _layout(fig, title=title, height=450, xaxis="hardness (mean similarity of sampled negatives)",
                   yaxis="FN risk (share truly relevant)", legend="bottom")


def similarity_rank_bars(table: pd.DataFrame, *, threshold: float | None = None,
                         title: str | None = "Top candidates") -> go.Figure:
    """Ranked candidates of one query: bars of similarity coloured by status, posterior as a line.

    Args:
        table: columns ``rank``, ``similarity``, ``status`` and optionally ``p_false_negative``, ``label``.
        threshold: suspect threshold on the posterior, drawn as a dotted line.
    """
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    for st in STATUS_ORDER:
        m = table["status"] == st
        if m.any():
            sub = table[m]
            fig.add_bar(x=sub["rank"], y=sub["similarity"], name=st, marker_color=STATUS_COLORS[st],
                        hovertext=sub["label"] if "label" in sub else None, secondary_y=False)
    if "p_false_negative" in table:
        fig.add_scatter(x=table["rank"], y=table["p_false_negative"], mode="lines+markers", name="P(false negative)",
                        line=dict(color="black", width=2), secondary_y=True)
        fig.update_yaxes(title_text="P(false negative)", range=[0, 1.02], tickmode="linear", tick0=0, dtick=0.25,
                         showgrid=False, secondary_y=True)  # round ticks, not ones synced to the similarity axis
        if threshold is not None:
            fig.add_hline(y=threshold, line=dict(color="black", dash="dot"), secondary_y=True)
    fig.update_yaxes(title_text="similarity", secondary_y=False)
    return _layout(fig, title=title, xaxis="rank")


# ------------------------------------------------------------------ training
def run_colors(all_runs: Sequence[str]) -> dict[str, str]:
    """A colour per run from its position in ``all_runs`` (every run of the folder, in a fixed order), so a
    run keeps its colour whichever subset is shown."""
    return {str(r): PALETTE[i % len(PALETTE)] for i, r in enumerate(all_runs)}


def training_curves(
    metrics: Mapping[str, pd.DataFrame],
    *,
    columns: Sequence[str] = ("loss", "val_rsum", "sampled_fn_rate"),
    title: str | None = "Training curves",
    colors: Mapping[str, str] | None = None,
) -> go.Figure:
    """Per-epoch metrics of one or more runs, one panel per metric, one colour per run.

    Args:
        metrics: run name -> DataFrame with an ``epoch`` column and metric columns.
        colors: run name -> colour (see :func:`run_colors`); default: by position in ``metrics``.
    """
    labels = {"loss": "loss", "val_rsum": "validation rSum", "sampled_fn_rate": "FN rate of sampled negatives"}
    cols = [c for c in columns if any(c in df.columns for df in metrics.values())] or list(columns)
    fig = make_subplots(rows=1, cols=len(cols), subplot_titles=[labels.get(c, c) for c in cols],
                        horizontal_spacing=0.08)
    for i, (run, df) in enumerate(metrics.items()):
        colour = (colors or {}).get(run, PALETTE[i % len(PALETTE)])
        x = df["epoch"] if "epoch" in df else np.arange(1, len(df) + 1)
        for j, c in enumerate(cols, start=1):
            if c in df.columns and df[c].notna().any():
                fig.add_scatter(x=x, y=df[c], mode="lines+markers", name=run, legendgroup=run,
                                showlegend=j == 1, line=dict(color=colour, width=2), row=1, col=j)
        for j in range(1, len(cols) + 1):
            fig.update_xaxes(title_text="epoch", dtick=1, row=1, col=j)
    if "sampled_fn_rate" in cols:
        rates = [df["sampled_fn_rate"].dropna() for df in metrics.values() if "sampled_fn_rate" in df.columns]
        top = max([float(r.max()) for r in rates if len(r)] or [1.0])
        fig.update_yaxes(tickformat=".0%", range=[0, min(1.0, max(0.05, top * 1.15))], row=1,
                         col=cols.index("sampled_fn_rate") + 1)  # a share: never below 0 or above 100%
    warm = sorted({float(e) for df in metrics.values() if "warmup" in df.columns and "epoch" in df.columns
                   for e in df.loc[df["warmup"].fillna(0) > 0, "epoch"]})
    for e in warm:  # the warm-up epochs train without the sampler (VSE++): say so on the chart
        for j in range(1, len(cols) + 1):
            fig.add_vrect(x0=e - 0.5, x1=e + 0.5, fillcolor="#999999", opacity=0.12, line_width=0, row=1, col=j)
    if warm:
        # upright inside the band's foot: above the panel it ran into the panel's title, and the loss is at its
        # highest in the warm-up epoch, so the band's foot is free
        fig.add_annotation(x=warm[0], y=0.02, xref="x", yref="y domain", text="warm-up (no sampler)", textangle=-90,
                           showarrow=False, yanchor="bottom", font=dict(size=11, color="#555555"))
    return _layout(fig, title=title, height=360)


def run_comparison_bars(table: pd.DataFrame, *, metrics: Sequence[str] | None = None,
                        title: str | None = "Runs compared", colors: Mapping[str, str] | None = None,
                        labels: Mapping[str, str] | None = None) -> go.Figure:
    """Grouped bars: one group per metric, one bar per run.

    Args:
        table: one row per run, a ``run`` column and numeric metric columns.
        metrics: which columns to show (default: every numeric column).
        colors: run name -> colour (see :func:`run_colors`); default: by row position.
        labels: metric column -> human title of its panel.
    """
    if "run" not in table.columns:
        raise ValueError("run_comparison_bars: table needs a 'run' column")
    metrics = list(metrics) if metrics is not None else [
        c for c in table.columns if c != "run" and pd.api.types.is_numeric_dtype(table[c])]
    if not metrics:
        raise ValueError("run_comparison_bars: no numeric metric columns to show")
    titles = [(labels or {}).get(m, m) for m in metrics]
    ncols = min(2, len(metrics))  # two panels a row: long metric names stay readable at 1280 px
    nrows = -(-len(metrics) // ncols)
    fig = make_subplots(rows=nrows, cols=ncols, subplot_titles=titles, horizontal_spacing=0.08,
                        vertical_spacing=0.5 / nrows if nrows > 1 else 0.1)
    runs = table["run"].astype(str).tolist()
    bar_colors = [(colors or {}).get(r, PALETTE[i % len(PALETTE)]) for i, r in enumerate(runs)]
    for j, m in enumerate(metrics):
        r, c = j // ncols + 1, j % ncols + 1
        fig.add_bar(x=runs, y=table[m], marker_color=bar_colors,
                    showlegend=False, name=m, text=table[m].map(lambda v: f"{v:.3g}" if pd.notna(v) else ""),
                    textposition="outside", cliponaxis=False, row=r, col=c)
    fig.update_xaxes(tickangle=-20)  # every panel at once (one call per panel costs a walk over all axes each)
    values = table[metrics].apply(pd.to_numeric, errors="coerce")
    if not (values < 0).any().any():  # shares, rSums, AUROCs: an axis from 0, never a negative share
        fig.update_yaxes(rangemode="nonnegative")
    fig.update_annotations(font_size=13)
    return _layout(fig, title=title, height=150 + 300 * nrows)


# ---------------------------------------------------------------- embeddings
def embedding_scatter(
    coords: np.ndarray,
    *,
    color: Sequence,
    row_ids: Sequence[int] | None = None,
    hover: Sequence[str] | None = None,
    symbol: Sequence[str] | None = None,
    color_name: str = "colour",
    highlight: Sequence[int] | None = None,
    title: str | None = "Embedding map (UMAP)",
    axes: str = "UMAP",
) -> go.Figure:
    """2-D scatter of embeddings, one trace per colour value, ``custom_data[0]`` = row id (clicks select points).

    Args:
        coords: ``[N, 2]`` projected coordinates.
        color: ``[N]`` category per point (strings or ints); numeric with more than 20 values is drawn as a
            continuous colour scale in one trace.
        row_ids: ``[N]`` ids returned by selections (default ``0..N-1``); read back with
            :func:`fnlab.analysis.projection.selection_to_ids`.
        hover: ``[N]`` hover texts (captions, item names).
        symbol: ``[N]`` marker symbol groups (e.g. modality) shown as circle / diamond.
        highlight: row ids to ring in black (the selected point, its neighbours).
        axes: the projection's name for the axis titles (``"UMAP"``, ``"PCA"``).
    """
    xy = np.asarray(coords, dtype=np.float64)
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise ValueError(f"coords must be [N, 2], got {xy.shape}")
    n = xy.shape[0]
    ids = np.arange(n) if row_ids is None else np.asarray(row_ids)
    colour = pd.Series(list(color)) if len(color) == n else None
    if colour is None:
        raise ValueError(f"color has {len(color)} values for {n} points")
    texts = np.asarray(hover, dtype=object) if hover is not None else np.asarray([str(i) for i in ids], dtype=object)
    symbols = np.asarray(symbol, dtype=object) if symbol is not None else None
    symbol_map = {}
    if symbols is not None:
        for i, v in enumerate(pd.unique(symbols)):
            symbol_map[v] = ["circle", "diamond", "square", "x", "triangle-up"][i % 5]
    fig = go.Figure()
    hovertemplate = "%{text}<br>id %{customdata[0]}<extra>%{fullData.name}</extra>"
    continuous = pd.api.types.is_float_dtype(colour) and colour.nunique() > 20
    if continuous:
        _scatter(fig, n, x=xy[:, 0], y=xy[:, 1], mode="markers", name=color_name, text=texts,
                          customdata=ids.reshape(-1, 1), hovertemplate=hovertemplate,
                          marker=dict(size=6, color=colour.to_numpy(), colorscale="Viridis", showscale=True,
                                      colorbar=dict(title=color_name),
                                      symbol=[symbol_map[s] for s in symbols] if symbols is not None else None))
    else:
        values = colour.astype(str).to_numpy()
        cats = list(pd.unique(values))
        order = STATUS_ORDER + [_status.HAS_FALSE_NEGATIVE, _status.NO_FALSE_NEGATIVE, _status.OTHER,
                                _status.SELECTED]
        cats.sort(key=lambda c: (order.index(c) if c in order else 99, c))
        for i, cat in enumerate(cats):
            m = values == cat
            col = STATUS_COLORS.get(cat, PALETTE[i % len(PALETTE)])
            _scatter(fig, n, x=xy[m, 0], y=xy[m, 1], mode="markers", name=cat, text=texts[m],
                              customdata=ids[m].reshape(-1, 1), hovertemplate=hovertemplate,
                              marker=dict(size=6, color=col, opacity=0.8,
                                          symbol=[symbol_map[s] for s in symbols[m]] if symbols is not None else None))
    if len(symbol_map) > 1:  # a key to the shapes (which side a point is), in the legend only
        for value, shape in symbol_map.items():
            fig.add_scatter(x=[None], y=[None], mode="markers", name=str(value), legendgroup="shape",
                            legendgrouptitle_text="shape", hoverinfo="skip",
                            marker=dict(size=8, color="#777777", symbol=shape))
    if highlight is not None and len(highlight):
        pos = {int(v): k for k, v in enumerate(ids)}
        hl = [pos[int(h)] for h in highlight if int(h) in pos]
        if hl:
            _scatter(fig, n, x=xy[hl, 0], y=xy[hl, 1], mode="markers", name="selected / neighbours",
                              text=texts[hl], customdata=ids[hl].reshape(-1, 1), hovertemplate=hovertemplate,
                              marker=dict(size=13, color="rgba(0,0,0,0)", line=dict(width=2, color="black")))
    # No dragmode here: Streamlit then makes a click select a point (clickmode "event+select", drag pans); with
    # dragmode "lasso" it would turn clicks into plain events. Box and lasso stay one click away in the toolbar.
    fig.update_layout(legend_title_text=color_name)
    fig.update_xaxes(showticklabels=False, title_text=f"{axes} 1")
    fig.update_yaxes(showticklabels=False, title_text=f"{axes} 2")
    return _layout(fig, title=title, height=600, legend="bottom")


def regime_map_figure(rmap: Any, *, density: float | None = None, family: str | None = None,
                      title: str | None = "Which sampler where: last-epoch relevant rSum by false-negative density"
                      ) -> go.Figure:
    """The regime map (:class:`fnlab.analysis.regime.RegimeMap`): x = top-10 false-negative share of a cell,
    y = last-epoch relevant rSum (mean over seeds) of each arm at its best window ``k`` there, one line per arm
    and dataset family; a dashed line at ``density`` (the open run's or a scan's), in ``family`` where given."""
    fig = go.Figure()
    symbols = {"plain": "circle", "fne soft": "diamond", "fne keep": "square", "oracle": "star", "semihard": "x"}
    arms = sorted({a for c in rmap.cells for a in c.arms()} | ({"semihard"} if any(
        c.semihard is not None for c in rmap.cells) else set()))
    families = sorted({c.family for c in rmap.cells})
    for fi, fam in enumerate(families):
        cells = [c for c in rmap.cells if c.family == fam]
        for ai, arm in enumerate(arms):
            xs, ys, ks = [], [], []
            for c in cells:
                best = c.best(arm) if arm != "semihard" else None
                y, k = (best.mean, best.k) if best else ((c.semihard, "-") if arm == "semihard" else (None, None))
                if y is not None:
                    xs.append(c.density), ys.append(y), ks.append(k)
            if not xs:
                continue
            dash = ["solid", "dot", "dash", "longdash"][fi % 4]
            fig.add_scatter(x=xs, y=ys, mode="lines+markers", name=f"{arm} · {fam}" if len(families) > 1 else arm,
                            customdata=ks, line=dict(color=PALETTE[ai % len(PALETTE)], dash=dash),
                            marker=dict(size=11, symbol=symbols.get(arm, "circle")),
                            hovertemplate=f"{arm} ({fam})<br>top-10 FN share %{{x:.2f}}<br>relevant rSum %{{y:.1f}}"
                                          "<br>best k %{customdata}<extra></extra>")
    if density is not None and np.isfinite(density):
        fig.add_vline(x=float(density), line_dash="dash", line_color="#444444",
                      annotation_text="this run" if family is None else f"this run ({family})",
                      annotation_position="top")
    fig.update_xaxes(tickformat=".0%", rangemode="tozero")
    return _layout(fig, title=title, height=460, xaxis="false-negative share of each query's top 10",
                   yaxis="relevant rSum, last epoch (0-600)", legend="bottom", legend_rows=-(-len(fig.data) // 3))
