"""The ``fnlab`` command starts without its heavy dependencies: building the parser (every subcommand's
help, with the names of the samplers, losses, datasets and posterior estimators) and listing runs import
no torch, numpy, pandas, faiss or streamlit. A structural check on ``sys.modules`` in a fresh interpreter,
not a timing test (the timings are in ``bench/cli_speed.py``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
#: what a parser or a listing must not load (each costs 0.1-10 s on a busy 2-core machine)
HEAVY = frozenset({"torch", "numpy", "pandas", "scipy", "sklearn", "faiss", "pyarrow", "streamlit", "umap",
                   "numba", "plotly", "ray", "tqdm"})

PROBE = """
import contextlib, io, sys
from fnlab.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        rc = main(sys.argv[1:])
    except SystemExit as stop:  # --help exits through argparse
        rc = stop.code
print(rc)
print(len(out.getvalue()))
print(" ".join(sorted({name.split(".")[0] for name in sys.modules})))
"""


def _probe(*argv: str, cwd: Path = REPO) -> tuple[int, int, set[str]]:
    """``(exit code, characters printed, top-level modules loaded)`` of ``fnlab ARGV`` in a fresh interpreter."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", PROBE, *argv], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rc, printed, modules = proc.stdout.strip().splitlines()[-3:]
    return int(rc), int(printed), set(modules.split())


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["scan", "--help"], ["eval", "--help"],
                                  ["data", "list"], ["runs", "--help"], ["app", "--print-command"]])
def test_the_parser_and_light_commands_load_no_heavy_module(argv):
    rc, printed, modules = _probe(*argv)
    assert rc == 0 and printed > 100
    assert not modules & HEAVY, f"fnlab {' '.join(argv)} imported {sorted(modules & HEAVY)}"


def test_help_lists_the_registries_names(capsys):
    """The names in --help come from the registries, read without importing a class."""
    from fnlab import data, losses, posterior, samplers
    from fnlab.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["train", "--help"])
    assert stop.value.code == 0
    flat = " ".join(capsys.readouterr().out.split())
    for names in (samplers.available(), losses.available(), posterior.available(), data.available()):
        assert ", ".join(names) in flat, names


def test_runs_list_of_a_store_loads_no_heavy_module(tmp_path):
    from fnlab.storage.runs import RunStore

    store = RunStore(tmp_path / "runs")
    for i in range(3):
        w = store.create({"dataset": {"name": "shapes"}, "sampler": {"name": "fne"}}, name=f"run-{i}")
        w.log_metrics({"epoch": 0, "loss": 0.5, "val_rsum": 150.0, "warmup": 1})
        w.log_metrics({"epoch": 1, "loss": 0.25, "val_rsum": 170.0 + i})
        w.save_json("eval", {"rsum": 150.0})
        w.finalize()
    (tmp_path / "runs" / "not-a-run").mkdir()
    for argv in (["runs", "list", "--runs", "runs"], ["runs", "list", "--runs", "runs", "--json", "--verify"]):
        rc, printed, modules = _probe(*argv, cwd=tmp_path)
        assert rc == 0 and printed > 200
        assert not modules & HEAVY, f"fnlab {' '.join(argv)} imported {sorted(modules & HEAVY)}"


def test_the_posterior_registry_names_every_estimator_without_loading_one():
    code = ("import sys; from fnlab.posterior import registry as r; names = r.available(); "
            "[r.describe(n) for n in names]; print(' '.join(names)); print('torch' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                         timeout=600).stdout.split("\n")
    assert out[0].split()[0] == "pu" and out[1] == "False"
    from fnlab import posterior

    for name in out[0].split():  # each declared class path loads, and is the class fit() uses
        cls = posterior.ESTIMATORS.get(name)
        assert hasattr(cls, "from_params") or hasattr(cls, "fit_context"), name
        assert posterior.describe(name)
