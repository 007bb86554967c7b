"""One training run with its per-epoch validation figures: a probe for the headline experiment.

``bench/reproduce.py`` reports the kept (best validation rSum) model; this prints every epoch's
labelled validation rSum (``val``, the figure the best epoch is chosen by), relevant validation rSum
(``valrel``), the sampled false-negative rate and the loss, so one can see why a sampler's kept model
is or is not its warm-up.

Usage::

    python bench/epoch_probe.py SAMPLER [FIELD=VALUE ...]

``FIELD`` is a :class:`fnlab.training.train.TrainConfig` field (``seed=1``, ``lr=5e-4``, ``epochs=6``,
``queue_size=1024``, ``loss_params={"margin":0.1}``), ``ds.KEY`` a dataset option
(``ds.genericness=0.1``) and ``sp.KEY`` a sampler parameter. Dataset ``shapes-precomp``, 4 epochs and
one thread unless given; ``fne`` runs in calibrated mode unless ``sp.mode`` says otherwise.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fnlab.training.train import TrainConfig, train  # noqa: E402


def main(argv: list[str]) -> int:
    if not argv or argv[0].startswith("-"):
        print(__doc__)
        return 2
    sampler, fields, ds, params = argv[0], {}, {}, {}
    for item in argv[1:]:
        key, _, value = item.partition("=")
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            pass
        if key.startswith("ds."):
            ds[key[3:]] = value
        elif key.startswith("sp."):
            params[key[3:]] = value
        else:
            fields[key] = value
    fields.setdefault("epochs", 4)
    fields.setdefault("num_threads", 1)
    if sampler == "fne":
        params.setdefault("mode", "calibrated")
    cfg = TrainConfig(dataset=fields.pop("dataset", "shapes-precomp"), dataset_options=ds, sampler=sampler,
                      sampler_params=params, **fields)
    t0 = time.perf_counter()
    out = train(cfg)
    for m in out["metrics"]:
        print(f"  epoch {int(m['epoch'])}{' (warm-up)' if m['warmup'] else ''}: loss {m['loss']:.3f}  "
              f"val {m['val_rsum']:.1f}  valrel {m.get('val_relevant_rsum', float('nan')):.1f}  "
              f"FN-rate {m.get('sampled_fn_rate', float('nan')):.3f}  {m['seconds']:.1f}s")
    ev = out["eval"]
    print(f"RESULT {' '.join(argv)}: test relevant rSum {ev['relevant_recall']['rsum']:.1f}  "
          f"rSum {ev['recall']['rsum']:.1f}  best epoch {int(out['metrics'][-1]['best_epoch'])}  "
          f"{time.perf_counter() - t0:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
