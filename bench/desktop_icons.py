"""Pictures nobody here drew: the machine's desktop icons as a user's own image-text folder.

The Adwaita icon theme draws most icons at several sizes. Each icon with a 48 px picture and at least one other
size becomes one query: its name as words ("edit copy"), embedded with MiniLM; its labelled candidate is the 48 px
picture, and its other sizes are its unlabelled matches (``relevance.csv``): false negatives nobody planted. The
image features are what a user without an image model might bring: each picture as 16x16 RGB pixels over white.
Icons are split by name (all sizes of an icon in one split) through ``candidates.csv``, which also gives every
picture, labelled or not, its file.

The folder then goes through the commands a user runs: ``fnlab train --dataset pairs`` (5 epochs, seed 0), and a
scan of the test split with the run's embeddings, its posterior fitted on the test split itself (the run's own,
fitted on a validation split of a few labelled pairs, is scored beside it). Each is scored on the scanned rows
with the calibration suite's metrics, next to raw similarity.

    python bench/desktop_icons.py                   # reads /usr/share/icons/Adwaita
    python bench/desktop_icons.py --theme DIR       # another theme folder with SIZExSIZE/CONTEXT/NAME.png

The icons installed differ between machines: the results file records how many there were.
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

SIZES = ("16x16", "24x24", "32x32", "48x48", "64x64", "96x96")
LABELLED = "48x48"


def icon_files(theme: Path) -> dict[str, dict[str, Path]]:
    """``{icon name: {size: png}}`` of the theme's full-colour icons (symbolic ones left out) that have a
    :data:`LABELLED` picture and at least one other size."""
    by_name: dict[str, dict[str, Path]] = collections.defaultdict(dict)
    for size in SIZES:
        for f in sorted((theme / size).rglob("*.png")):
            if ".symbolic" not in f.name:
                by_name[f.stem].setdefault(size, f)
    return {n: v for n, v in sorted(by_name.items()) if LABELLED in v and len(v) >= 2}


def pixels(path: Path, side: int = 16) -> np.ndarray:
    """``[side * side * 3]`` float32: the picture over white, resized, centred on 0."""
    from PIL import Image

    im = Image.open(path).convert("RGBA").resize((side, side), Image.LANCZOS)
    over = Image.alpha_composite(Image.new("RGBA", im.size, (255, 255, 255, 255)), im).convert("RGB")
    return (np.asarray(over, dtype=np.float32) / 255.0 - 0.5).reshape(-1)


def write_folder(icons: dict[str, dict[str, Path]], out: Path, seed: int = 0) -> dict[str, int]:
    """The ``pairs`` folder (layout in :mod:`fnlab.data.pairs`); returns its counts."""
    from fnlab.data.minilm import text_view

    names = list(icons)
    rng = np.random.default_rng(seed)
    split_of = dict(zip(names, np.where(rng.random(len(names)) < 0.2, "test", "train"), strict=True))
    # a validation split of its own, so that the run keeps an epoch by it
    for n, u in zip(names, rng.random(len(names)), strict=True):
        if split_of[n] == "train" and u < 0.125:
            split_of[n] = "val"
    row_of, files, splits = {}, [], []
    for n in names:
        for size, f in sorted(icons[n].items()):
            row_of[(n, size)] = len(files)
            files.append(str(f))
            splits.append(split_of[n])
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "a.npy", np.stack([pixels(Path(f)) for f in files]).astype(np.float32))
    words = [n.replace("-", " ").replace("_", " ") for n in names]
    np.save(out / "b.npy", text_view(words).astype(np.float32))
    pd.DataFrame({"b": range(len(names)), "a": [row_of[(n, LABELLED)] for n in names], "text": words}).to_csv(
        out / "pairs.csv", index=False)
    pd.DataFrame({"image_path": files, "split": splits}).to_csv(out / "candidates.csv", index=False)
    rel = [(i, row_of[(n, s)]) for i, n in enumerate(names) for s in icons[n] if s != LABELLED]
    pd.DataFrame(rel, columns=["b", "a"]).to_csv(out / "relevance.csv", index=False)
    return {"icons": len(names), "pictures": len(files), "unlabelled_matches": len(rel)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--theme", default="/usr/share/icons/Adwaita")
    ap.add_argument("--top-k", type=int, default=20)
    ap.add_argument("--out", default=str(HERE / "results" / "desktop_icons.md"))
    args = ap.parse_args(argv)
    icons = icon_files(Path(args.theme))
    if not icons:
        print(f"{args.theme}: no icons with a {LABELLED} picture and another size", file=sys.stderr)
        return 1

    from calibration import scan_metrics

    import fnlab.data
    from fnlab.analysis.scan import scan_dataset
    from fnlab.cli import main as fnlab_main
    from fnlab.posterior import from_params
    from fnlab.storage.runs import Run

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "icons"
        counts = write_folder(icons, folder)
        assert fnlab_main(["train", "--dataset", "pairs", "--root", str(folder), "--epochs", "5", "--seed", "0",
                           "--no-progress", "--no-pages", "--out", str(Path(tmp) / "run")]) == 0
        run = Run(Path(tmp) / "run")
        test = fnlab.data.load("pairs", root=folder, split="test")
        ea, eb = run.load_array("emb_a_test"), run.load_array("emb_b_test")
        positives = sp.csr_matrix((np.ones(test.n_b, bool), (np.arange(test.n_b), test.b_to_a)),
                                  shape=(test.n_b, test.n_a))
        results = []
        for label, kw in (("posterior fitted on the test split", {}),
                          ("the run's posterior (validation split)",
                           {"posterior": from_params(run.load_json("posterior"))})):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = scan_dataset(ea, eb, test, top_k=args.top_k, seed=0, **kw)
            m = scan_metrics(res, test.relevance, positives)
            results.append((label, m, res.summary.get("status_reason", "")))

    fmt = lambda v, s=".3f": "-" if v is None else format(v, s)  # noqa: E731
    lines = ["# False negatives among desktop icons (`python bench/desktop_icons.py`)", "",
             f"{counts['icons']} icons of `{args.theme}` with a {LABELLED} picture and another size, "
             f"{counts['pictures']} pictures, {counts['unlabelled_matches']} unlabelled (name, picture) matches "
             f"(other sizes of the labelled picture). Test split: {test.n_b} names, {test.n_a} pictures; the scan's "
             f"top {args.top_k} a name ({test.n_b * min(args.top_k, test.n_a - 1)} rows), `pu` posterior, the run's "
             "embeddings (`fnlab train --dataset pairs`, 5 epochs, seed 0):", "",
             "| posterior | prior (true) | share of shown rows: P (true) | status | FN rows | ECE | p > 0.5: flagged, "
             "precision, recall | AP (similarity) | AUROC (similarity) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for label, m, _ in results:
        lines.append(f"| {label} | {m['prior']:.2e} ({m['true_prior']:.2e}) | {m['mean_p']:.3f} ({m['fn_share']:.3f}) | "
                     f"{m['status'].split(' (')[0]} | {m['fn_rows']} | {m['ece']:.3f} | {m['flagged_0.5']}, "
                     f"{fmt(m['precision_0.5'])}, {fmt(m['recall_0.5'])} | {fmt(m['ap'])} ({fmt(m['ap_sim'])}) | "
                     f"{fmt(m['auroc'])} ({fmt(m['auroc_sim'])}) |")
    lines += ["", "Why each status:", ""] + [f"- {label}: {reason or 'calibrated'}" for label, _, reason in results]
    report = "\n".join(lines) + "\n"
    Path(args.out).write_text(report, encoding="utf-8")
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
