"""fnlab.analysis.viz: each builder returns a figure holding the data it was given, with labelled axes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from fnlab.analysis import viz
from fnlab.analysis.evaluate import reliability_bins


def _rng():
    return np.random.default_rng(0)


def test_similarity_histogram_with_fit_and_fn():
    r = _rng()
    pos, neg, fn = r.normal(0.7, 0.1, 50), r.normal(0.1, 0.1, 500), r.normal(0.65, 0.1, 7)
    fit = {"pos_mean": 0.7, "pos_std": 0.1, "neg_mean": 0.1, "neg_std": 0.1}
    fig = viz.similarity_histogram(pos, neg, fn_sims=fn, fit=fit, marker=0.7)
    assert isinstance(fig, go.Figure)
    hists = [t for t in fig.data if t.type == "bar"]
    assert len(hists) == 3
    assert sum(int(np.sum(t.customdata)) for t in hists) == 557  # every similarity lands in a bin
    for t, n in zip(hists, (500, 50, 7), strict=True):  # densities integrate to one
        assert abs(float(np.sum(t.y)) * t.width - 1.0) < 1e-9 and int(np.sum(t.customdata)) == n
    curves = [t for t in fig.data if t.type == "scatter"]
    assert len(curves) == 2
    # The fitted positive density peaks at its mean.
    xs, ys = np.asarray(curves[0].x), np.asarray(curves[0].y)
    assert abs(xs[np.argmax(ys)] - 0.7) < 0.02
    assert fig.layout.xaxis.title.text == "cosine similarity"
    with pytest.raises(ValueError):
        viz.similarity_histogram([], [])


def test_posterior_curve_and_prior():
    curves = {"sigmoid": lambda s: 1 / (1 + np.exp(-(s - 0.5) * 20))}
    fig = viz.posterior_curve(curves, prior=1e-4, fn_points=(np.array([0.2, 0.8]), np.array([0, 1])),
                              pos_mean=0.7, margin=0.2)
    line = fig.data[0]
    assert line.name == "sigmoid"
    assert np.all(np.diff(np.asarray(line.y)) >= 0)  # monotone input stays monotone
    assert {t.name for t in fig.data[1:]} == {"true negatives (ground truth)", "false negatives (ground truth)"}
    assert fig.layout.yaxis.title.text == "P(false negative)"
    assert fig.layout.xaxis.title.text == "cosine similarity s"


def test_reliability_diagram_draws_the_evaluation_bins():
    r = _rng()
    p = r.uniform(size=400)
    y = (r.uniform(size=400) < p).astype(int)
    bins = reliability_bins(p, y, n_bins=5)
    fig = viz.reliability_diagram({"gaussian": (p, y)}, n_bins=5)
    assert fig.data[0].name == "perfect calibration"
    assert list(fig.data[1].x) == [b["mean_p"] for b in bins]
    assert list(fig.data[1].y) == [b["frac_positive"] for b in bins]
    with pytest.raises(ValueError):
        viz.reliability_diagram({"bad": ([0.1, 0.2], [1])})


def test_status_labels_and_weight_bars():
    pos = np.array([False, True, False, False])
    fn = np.array([True, False, False, False])
    status = viz.status_labels(pos, fn)
    assert list(status) == [viz.FALSE_NEGATIVE, viz.POSITIVE, viz.TRUE_NEGATIVE, viz.TRUE_NEGATIVE]
    assert list(viz.status_labels(pos, None)) == [viz.UNKNOWN, viz.POSITIVE, viz.UNKNOWN, viz.UNKNOWN]
    w = {"hardest": np.array([1.0, 0, 0, 0]), "random": np.array([1.0, 0, 1, 2])}
    fig = viz.sampler_weight_bars(w, status, similarities=np.array([0.9, 0.8, 0.5, 0.1]), hover=list("abcd"))
    bars = [t for t in fig.data if t.type == "bar"]
    # Probabilities per sampler sum to one and each bar carries its status colour.
    for axis in ("y", "y2"):
        total = sum(sum(t.y) for t in bars if t.yaxis == axis)
        assert total == pytest.approx(1.0)
    fn_bar = [t for t in bars if t.name == viz.FALSE_NEGATIVE and t.yaxis == "y2"][0]
    assert fn_bar.marker.color == viz.STATUS_COLORS[viz.FALSE_NEGATIVE]
    assert list(fn_bar.y) == pytest.approx([0.25])
    with pytest.raises(ValueError):
        viz.sampler_weight_bars({"x": np.ones(3)}, status)
    # Probabilities over a larger pool, of which these are the top 4, are drawn as they are (the playground's
    # bars must agree with its "probability below the ones shown" line).
    part = viz.sampler_weight_bars({"random": np.array([0.1, 0, 0.1, 0.2])}, status, normalise=False)
    assert sum(sum(t.y) for t in part.data if t.type == "bar") == pytest.approx(0.4)


def test_hardness_risk_scatter():
    df = pd.DataFrame({"sampler": ["hardest", "fne"], "hardness": [0.8, 0.6], "fn_risk": [0.4, 0.05]})
    fig = viz.hardness_risk_scatter(df)
    assert [t.name for t in fig.data] == ["hardest", "fne"]
    assert fig.data[0].x[0] == 0.8 and fig.data[1].y[0] == 0.05
    with pytest.raises(ValueError):
        viz.hardness_risk_scatter(df.drop(columns="fn_risk"))


def test_training_curves_and_comparison():
    m = pd.DataFrame({"epoch": [1, 2], "loss": [1.0, 0.5], "val_rsum": [100, 200], "sampled_fn_rate": [0.3, 0.2]})
    fig = viz.training_curves({"a": m, "b": m.assign(loss=[2.0, 1.0])})
    assert len(fig.data) == 6
    assert sum(t.showlegend for t in fig.data) == 2
    t = pd.DataFrame({"run": ["a", "b"], "rsum": [300.0, 310.0], "name": ["x", "y"]})
    fig = viz.run_comparison_bars(t)
    assert len(fig.data) == 1 and list(fig.data[0].y) == [300.0, 310.0]
    with pytest.raises(ValueError):
        viz.run_comparison_bars(t.drop(columns="run"))
    # a share that is 0 for every run keeps its axis at 0 and above (it spanned -1 to 1)
    zero = viz.run_comparison_bars(pd.DataFrame({"run": ["a", "b"], "sampled_fn_rate": [0.0, 0.0]}))
    assert zero.layout.yaxis.rangemode == "nonnegative"
    signed = viz.run_comparison_bars(pd.DataFrame({"run": ["a", "b"], "delta": [-1.0, 2.0]}))
    assert signed.layout.yaxis.rangemode is None


def test_similarity_rank_bars():
    t = pd.DataFrame({"rank": [1, 2, 3], "similarity": [0.9, 0.8, 0.7],
                      "status": [viz.FALSE_NEGATIVE, viz.POSITIVE, viz.TRUE_NEGATIVE],
                      "p_false_negative": [0.9, 0.5, 0.1]})
    fig = viz.similarity_rank_bars(t, threshold=0.5)
    assert {t.name for t in fig.data} == {viz.FALSE_NEGATIVE, viz.POSITIVE, viz.TRUE_NEGATIVE, "P(false negative)"}


def test_embedding_scatter_custom_data_and_click_selection():
    r = _rng()
    xy = r.normal(size=(30, 2))
    colour = ["image"] * 10 + ["caption"] * 20
    ids = np.arange(100, 130)
    fig = viz.embedding_scatter(xy, color=colour, row_ids=ids, hover=[f"p{i}" for i in range(30)],
                                symbol=colour, highlight=[105, 999])
    assert fig.layout.dragmode is None  # left to Streamlit, which then makes a click select a point
    got = sorted(int(c[0]) for t in fig.data[:2] for c in t.customdata)
    assert got == list(ids)
    assert fig.data[-1].name == "selected / neighbours" and int(fig.data[-1].customdata[0][0]) == 105
    # the shapes have a key: one legend-only entry a side, drawn in its shape
    key = [t for t in fig.data if t.legendgroup == "shape"]
    assert [(t.name, t.marker.symbol) for t in key] == [("image", "circle"), ("caption", "diamond")]
    assert all(t.x == (None,) for t in key)
    # Continuous colour: one trace with a colour scale.
    fig = viz.embedding_scatter(xy, color=r.uniform(size=30).tolist())
    assert len(fig.data) == 1 and fig.data[0].marker.showscale
    with pytest.raises(ValueError):
        viz.embedding_scatter(xy[:, :1], color=colour)
    with pytest.raises(ValueError):
        viz.embedding_scatter(xy, color=colour[:3])


def test_status_colours_are_one_per_status_and_kept_out_of_the_category_palette():
    from fnlab.core import status

    assert len(set(status.COLORS.values())) == len(status.COLORS)
    assert not set(status.COLORS.values()) & set(viz.PALETTE)
    assert viz.STATUS_COLORS[viz.FALSE_NEGATIVE] == status.color(status.FALSE_NEGATIVE) == "#D55E00"
    assert status.color(status.HAS_FALSE_NEGATIVE) == status.COLORS[status.FALSE_NEGATIVE]
    # A map coloured by a non-status field never uses a status colour.
    fig = viz.embedding_scatter(np.zeros((4, 2)), color=["a", "b", "c", "d"])
    assert not {t.marker.color for t in fig.data} & set(status.COLORS.values())


def test_run_colours_do_not_depend_on_the_selection():
    colors = viz.run_colors(["a", "b", "c"])
    table = pd.DataFrame({"run": ["c", "a"], "m": [1.0, 2.0]})
    fig = viz.run_comparison_bars(table, metrics=["m"], colors=colors, labels={"m": "a metric (unit)"})
    assert list(fig.data[0].marker.color) == [colors["c"], colors["a"]]
    assert fig.layout.annotations[0].text == "a metric (unit)"
    curves = viz.training_curves({"c": pd.DataFrame({"epoch": [1], "loss": [1.0]})}, colors=colors)
    assert curves.data[0].line.color == colors["c"]


def test_posterior_scatter_colours_pairs_by_ground_truth():
    r = _rng()
    s, p, y = r.uniform(0, 1, 5000), r.uniform(0, 1, 5000), r.uniform(0, 1, 5000) < 0.1
    fig = viz.posterior_scatter(s, p, y, max_points=1000)
    names = [t.name for t in fig.data]
    assert names[0].startswith(viz.TRUE_NEGATIVE) and names[1].startswith(viz.FALSE_NEGATIVE)
    assert sum(len(t.x) for t in fig.data) == 1000
    assert fig.data[1].marker.color == viz.STATUS_COLORS[viz.FALSE_NEGATIVE]
    with pytest.raises(ValueError):
        viz.posterior_scatter([0.1], [0.2, 0.3])


@pytest.mark.parametrize("rows", [1, 3, 8])
def test_a_long_bottom_legend_grows_the_figure_not_into_the_axis_title(rows):
    fig = go.Figure()
    for i in range(3 * rows):
        fig.add_scatter(x=[0, 1], y=[i, i], name=f"arm {i}")
    out = viz._layout(fig, title="t", xaxis="x", height=460, legend="bottom", legend_rows=rows)
    m = out.layout.margin
    plot_px = out.layout.height - m.t - m.b
    assert plot_px == 460 - 60 - (viz.X_AXIS_PX + 20)  # the same plot area for any number of rows
    assert out.layout.legend.y * plot_px == pytest.approx(-viz.X_AXIS_PX)  # the legend starts below the axis title
    assert m.b >= viz.X_AXIS_PX + viz.LEGEND_ROW_PX * rows  # and has room for every row
