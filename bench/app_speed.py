"""How fast the app answers interactions once cached: AppTest timing of each page's main widgets.

Usage:
    python bench/app_speed.py [--runs DIR] [--repeats 3]

``--runs`` is a runs folder with at least one run (default: $FNLAB_RUNS, else ``runs/``). Each page is opened,
every interaction is done once to warm the caches, then timed ``--repeats`` times (alternating between two
values so each rerun really changes something); the median goes to bench/results/app_speed.txt.
Target (issue 10): under 0.5 s per interaction on the demo run once cached (2 CPU cores). The embedding map
is measured with its UMAP already on disk (the page never computes one while you wait: it shows a PCA
projection until the background job has written it), so run the app once on the run first, or let this
script compute it (``--warm-map``).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# page -> list of (label, widget kind, key, value A, value B); "button" clicks (values unused)
INTERACTIONS = {
    "views/data.py": [("gallery size", "slider", "data_gallery_n", 12, 24)],
    "views/lesson.py": [("next / back step", "button", "lesson_next", None, None)],
    "views/rankings.py": [("top K", "slider", "rk_k", 10, 20), ("threshold", "slider", "rk_threshold", 0.3, 0.7),
                          ("query", "selectbox", "rk_query_t2i", 3, 0),
                          ("split (sidebar)", "radio", "split", "val", "test"),
                          ("direction (sidebar)", "radio", "direction", "i2t", "t2i")],
    "views/distributions.py": [("one query / whole split", "radio", "ds_scope", "one query", "the whole split")],
    "views/playground.py": [("FNE paper tau", "slider", "pg_fne · paper_tau", 2.0, 0.5),
                            ("SimANS a", "slider", "pg_simans_a", 2.0, 0.5),
                            ("query", "selectbox", "pg_query_t2i", 3, 0)],
    "views/embedding_map.py": [("select a point", "number_input", "map_manual", 5, 7),
                               ("colour by", "selectbox", "map_colour", "modality", "false-negative status"),
                               ("text search", "text_input", "map_search", "red", "circle")],
    "views/suspects.py": [("posterior range", "slider", "sus_range", (0.3, 1.0), (0.0, 1.0))],
    "views/compare.py": [("runs shown", "multiselect", "cmp_runs", None, None)],
}


def _widget(at, kind: str, key: str):
    return getattr(at, kind)(key=key)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default=os.environ.get("FNLAB_RUNS", "runs"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "app_speed.txt"))
    ap.add_argument("--warm-map", action="store_true", help="compute the UMAP maps of the run first (untimed)")
    args = ap.parse_args()
    os.environ["FNLAB_RUNS"] = str(Path(args.runs).resolve())
    os.environ["FNLAB_NO_DEMO"] = "1"
    if "FNLAB_CACHE" not in os.environ:  # a cold UMAP cache, so "first" includes computing the map
        import tempfile

        os.environ["FNLAB_CACHE"] = tempfile.mkdtemp(prefix="fnlab_bench_cache_")
    sys.path.insert(0, str(REPO))
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(REPO / "app" / "main.py"), default_timeout=600)
    t0 = time.perf_counter()
    at.run()
    if args.warm_map:
        from app import mapjob
        from fnlab.analysis import projection

        for split in ("test", "val"):
            projection.umap_2d(mapjob.embeddings(os.environ["FNLAB_RUNS"], at.sidebar.selectbox(key="run").value,
                                                 split), n_neighbors=mapjob.N_NEIGHBORS,
                               random_state=mapjob.RANDOM_STATE)
    if not at.sidebar.selectbox(key="run").value:
        sys.exit(f"no run in {args.runs}: train one first (make demo, or fnlab train --out {args.runs}/NAME)")
    run_name = at.sidebar.selectbox(key="run").value
    lines = [f"fnlab app speed (AppTest, streamlit reruns; median of {args.repeats}) on {platform.node()} "
             f"({os.cpu_count()} CPUs), run {run_name!r} in {args.runs}",
             f"{'page':<24} {'interaction':<26} {'first (s)':>10} {'cached (s)':>11}"]
    for page, steps in INTERACTIONS.items():
        at.switch_page(page)
        t = time.perf_counter()
        at.run()
        first_open = time.perf_counter() - t
        if at.exception or at.error:
            sys.exit(f"{page}: {(at.exception or at.error)[0].value}")
        t = time.perf_counter()
        at.run()
        lines.append(f"{page:<24} {'open page':<26} {first_open:>10.3f} {time.perf_counter() - t:>11.3f}")
        for label, kind, key, a, b in steps:
            if kind == "button":
                def act(i, key=key):
                    (at.button(key=key) if i % 2 == 0 else at.button(key="lesson_back")).click()
            else:
                w = _widget(at, kind, key)
                if kind == "multiselect":
                    a, b = w.value[:1], list(w.value)

                def act(i, kind=kind, key=key, a=a, b=b):
                    _widget(at, kind, key).set_value(a if i < 0 else (b if i % 2 == 0 else a))
            times = []
            t = time.perf_counter()
            act(-1 if kind != "button" else 0)
            at.run()
            first = time.perf_counter() - t
            if kind == "button":
                at.button(key="lesson_back").click()
                at.run()
            for i in range(args.repeats * 2):
                t = time.perf_counter()
                act(i)
                at.run()
                times.append(time.perf_counter() - t)
                if at.exception or at.error:
                    sys.exit(f"{page} {label}: {(at.exception or at.error)[0].value}")
            lines.append(f"{page:<24} {label:<26} {first:>10.3f} {statistics.median(times):>11.3f}")
            act(0)  # back to value B (the default), untimed, so the next pages see the usual state
            at.run()
    lines.append(f"total wall time {time.perf_counter() - t0:.1f} s")
    text = "\n".join(lines) + "\n"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
