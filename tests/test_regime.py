"""The regime map read back (fnlab.analysis.regime): placing a density, what the map says there, the estimated
density of a scan, and clear errors for a missing or wrong file."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _regime_fixture import summary, write

from fnlab.analysis import viz
from fnlab.analysis.regime import RegimeMap, estimated_density


def test_place_picks_the_nearest_cell_of_the_family():
    m = RegimeMap.from_summary(summary())
    assert [c.name for c in m.cells] == ["shapes:low", "shapes:high"]  # by family, then density
    assert m.place(0.2).name == "shapes:low" and m.place(0.5).name == "shapes:high"
    assert m.place(0.9, family="unknown").name == "shapes:high"  # no cell of that family: every cell


def test_best_arm_and_ranking_per_cell():
    high = RegimeMap.from_summary(summary()).place(0.6)
    assert high.best("plain").k == "10" and high.best("plain").mean == 420.0
    assert [r.arm for r in high.ranking()] == ["oracle", "semihard", "fne keep", "plain"]


def test_verdict_states_fne_against_plain_with_its_interval_and_semihard_where_it_is_as_good():
    m = RegimeMap.from_summary(summary())
    high = m.verdict(m.place(0.6))
    assert high[0].startswith("Best without ground truth: **semihard**")
    assert "fne keep vs plain at k = 10: +50.0 [95% CI +32.8, +67.2], better (3 seeds)." in high
    assert "Headroom (oracle - plain) at k = 1: +200.0 [95% CI +157.0, +243.0]." in high
    low = m.verdict(m.place(0.1))
    assert "fne keep vs plain at k = 10: -1.0 [95% CI -5.3, +3.3], not distinguishable (3 seeds)." in low
    assert any(s.startswith("Semi-hard (520.0) is at least as good as FNE's best (509.0)") for s in low)
    # an FNE arm on top but within noise of its base: the verdict says the base does as well
    data = summary()
    data["semihard"]["shapes:low"] = 500.0
    data["summary"]["primary"]["shapes:low"]["10"]["arms"]["fne keep"]["mean"] = 512.0
    data["summary"]["primary"]["shapes:low"]["10"]["vs_plain"]["fne keep"].update(mean=2.0, lo=-2.3, hi=6.3)
    said = RegimeMap.from_summary(data).verdict(RegimeMap.from_summary(data).place(0.1))
    assert said[0].startswith("Best without ground truth: **fne keep** (k = 10)")
    assert said[1] == ("But it is within noise of its own base, plain at k = 10 (+2.0 [95% CI -2.3, +6.3]): "
                       "plain at k = 10 does as well here without a posterior.")
    data["semihard"]["shapes:high"] = 400.0  # fne keep on top there too, +50.0 [32.8, 67.2] ahead of its base
    said = RegimeMap.from_summary(data).verdict(RegimeMap.from_summary(data).place(0.6))
    assert said[0].startswith("Best without ground truth: **fne keep**")
    assert not any("within noise of its own base" in x for x in said)


def test_merge_takes_each_figure_with_the_most_seeds_and_places_cells_from_any_summary(tmp_path):
    """A ten-seed summary without densities merged over the first map: its figures replace the three-seed ones
    of the same arm and window, the rest stay; semi-hard's own window reads with semihard as the base."""
    ten = {"commit": "def5678", "runs": 40, "protocol": summary()["protocol"], "density": {},
           "semihard": {"shapes:high": 530.0}, "semihard_n": {"shapes:high": 10},
           "summary": {"primary": {"shapes:high": {
               "10": {"arms": {"plain": {"mean": 400.0, "n": 10, "fn_rate": 0.6},
                               "fne adapt": {"mean": 460.0, "n": 10, "fn_rate": 0.3},
                               "fne leave": {"mean": 380.0, "n": 10, "fn_rate": 0.1},
                               "fne other": {"mean": 401.0, "n": 10, "fn_rate": 0.5}},
                      "H": {"mean": 90.0, "se": 5.0, "lo": 78.7, "hi": 101.3, "n": 10},
                      "vs_plain": {"fne adapt": {"mean": 60.0, "se": 5.0, "lo": 48.7, "hi": 71.3, "n": 10},
                                   "fne leave": {"mean": -20.0, "se": 3.0, "lo": -26.8, "hi": -13.2, "n": 10},
                                   "fne other": {"mean": 1.0, "se": 2.0, "lo": -3.5, "hi": 5.5, "n": 10}}},
               "semihard": {"arms": {"plain": {"mean": 530.0, "n": 10}, "oracle": {"mean": 540.0, "n": 10},
                                     "fne soft": {"mean": 535.0, "n": 10}},
                            "H": {"mean": 10.0, "se": 2.0, "lo": 5.5, "hi": 14.5, "n": 10},
                            "vs_plain": {"fne soft": {"mean": 5.0, "se": 1.0, "lo": 2.7, "hi": 7.3, "n": 10}}}}}}}
    (tmp_path / "ten.json").write_text(json.dumps(ten))
    alone = RegimeMap.load(tmp_path / "ten.json")
    assert alone.cells == []  # no density measured there: nothing to place
    m = RegimeMap.load_all([tmp_path / "ten.json", write(tmp_path / "first.json")])
    assert m.runs == 70 and m.commit == "def5678, abc1234"
    high = m.place(0.6)
    assert high.density == 0.6 and (high.semihard, high.semihard_n) == (530.0, 10)  # ten seeds over the first's
    plain10 = next(r for r in high.results if r.arm == "plain" and r.k == "10")
    assert (plain10.mean, plain10.n) == (400.0, 10)  # ten seeds over three
    assert next(r for r in high.results if r.arm == "fne keep").n == 3  # only in the first map: kept
    assert high.headroom["10"]["n"] == 10 and high.headroom["1"]["n"] == 3
    assert high.best("semihard").k == "semihard" and high.best("semihard").mean == 530.0
    said = m.verdict(high)
    assert "fne adapt vs plain at k = 10: +60.0 [95% CI +48.7, +71.3], better (10 seeds)." in said
    assert "fne leave vs plain at k = 10: -20.0 [95% CI -26.8, -13.2], worse (10 seeds)." in said  # every FNE arm
    assert "fne other vs plain at k = 10: +1.0 [95% CI -3.5, +5.5], not distinguishable (10 seeds)." in said
    assert "fne soft vs semihard on semi-hard's window: +5.0 [95% CI +2.7, +7.3], better (10 seeds)." in said
    assert "Headroom on semi-hard's window (oracle - semihard): +10.0 [95% CI +5.5, +14.5]." in said
    assert said[0] == "Best without ground truth: **fne soft** (k = semihard), last-epoch relevant rSum 535.0 (10 seeds)."
    low = m.place(0.1)
    assert [r.n for r in low.results] == [3] * len(low.results)


def test_estimated_density_is_the_mean_p_of_each_querys_top_k_rows():
    rng = np.random.default_rng(0)
    rank = np.tile(np.arange(1, 21), 7)
    p = rng.random(rank.size)
    want = np.mean([pi for pi, r in zip(p, rank, strict=True) if r <= 10])
    assert estimated_density(p, rank, 10) == pytest.approx(want)
    with pytest.raises(ValueError, match="top 3"):
        estimated_density(p[rank > 3], rank[rank > 3], 3)


def test_load_names_the_file_and_the_missing_field(tmp_path):
    with pytest.raises(FileNotFoundError, match="no regime map here"):
        RegimeMap.load(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"density": {}}))
    with pytest.raises(ValueError, match=r"bad\.json: field 'summary' missing"):
        RegimeMap.load(bad)
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not a JSON regime map"):
        RegimeMap.load(bad)
    assert RegimeMap.load(write(tmp_path / "m.json")).runs == 30


def test_figure_has_one_line_per_arm_and_the_run_marked():
    fig = viz.regime_map_figure(RegimeMap.from_summary(summary()), density=0.4, family="shapes")
    names = sorted(t.name for t in fig.data)
    assert names == ["fne keep", "oracle", "plain", "semihard"]
    plain = next(t for t in fig.data if t.name == "plain")
    assert list(plain.x) == [0.1, 0.6] and list(plain.y) == [510.0, 420.0] and list(plain.customdata) == ["10", "10"]
    assert any(s.x0 == 0.4 for s in fig.layout.shapes)
