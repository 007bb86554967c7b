"""``fnlab train``: train a small dual encoder with a negative sampler and write a run."""

from __future__ import annotations

import argparse
import importlib
import math
from typing import Any

from fnlab.cli.options import integer, number
from fnlab.cli.options import parse_kv as _parse_kv  # the CLI's one KEY=VALUE parser
from fnlab.cli.options import registry_names as _names


def _datasets():
    from fnlab.data import DATASETS

    return DATASETS


def _json_value(text: str) -> Any:
    """A flag value read as ``-p`` reads it (JSON where it is JSON, else text)."""
    return _parse_kv(f"value={text}", "--param")[1]


def sampler_flags() -> dict[str, tuple[str, Any]]:
    """Named sampler flags (``--tau``): ``parameter -> (help, type)``, from the sampler registry's specs marked
    ``flag``; the help names each sampler that takes the parameter (no sampler is imported)."""
    from fnlab.samplers.registry import SAMPLERS

    helps: dict[str, list[str]] = {}
    kinds: dict[str, set[str]] = {}
    for e in SAMPLERS.entries():
        for spec in e.params:
            if spec.flag:
                text = spec.help + (f" ({', '.join(spec.choices)})" if spec.choices else "")
                helps.setdefault(spec.name, []).append(f"{e.name}: {text}")
                kinds.setdefault(spec.name, set()).add(spec.kind)
    types = {"choice": str, "int": integer(), "float": number()}
    return {name: ("; ".join(h), types[next(iter(kinds[name]))] if len(kinds[name]) == 1 else _json_value)
            for name, h in helps.items()}


#: named sampler options -> (help, type), derived from the sampler registry (only passed when given)
SAMPLER_FLAGS = sampler_flags()
#: each built-in loader's option defaults ``(module, attribute)``, from the dataset registry's ``defaults``:
#: ``-o`` values are type-checked against them
DATASET_DEFAULTS = {e.name: tuple(e.meta["defaults"].split(":")) for e in _datasets().entries() if "defaults" in e.meta}
SEED_MAX = 2**63 - 1


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train a dual encoder with a negative sampler and write a run",
        description="Train a small dual encoder on a dataset with the chosen negative sampler and loss, with "
        "FNE's momentum queue (--queue-size 0 turns it off). Writes config, per-epoch metrics (loss, validation "
        "rSum, sampled false-negative rate, seconds), val/test embeddings, model.pt, posterior.json and "
        "eval.json into --out.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--dataset", required=True, help=f"{_names('fnlab.data')} or a saved dataset folder")
    p.add_argument("--root", default=None, help="data folder (precomp, pairs)")
    p.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE",
                   help="dataset loader option, e.g. -o genericness=0.5 (repeatable)")
    p.add_argument("--sampler", default="fne", help=f"negative sampler: {_names('fnlab.samplers')}")
    p.add_argument("--param", "-p", action="append", default=[], metavar="KEY=VALUE",
                   help="sampler parameter, e.g. -p top_k=50 (repeatable; JSON values)")
    for flag, (help_text, typ) in SAMPLER_FLAGS.items():
        p.add_argument(f"--{flag.replace('_', '-')}", dest=f"sp_{flag}", type=typ, default=None, help=help_text)
    p.add_argument("--loss", default=None,
                   help=f"loss on the picked negatives: {_names('fnlab.losses')} (default: the sampler's own loss, "
                   "triplet for most)")
    p.add_argument("--loss-param", action="append", default=[], metavar="KEY=VALUE",
                   help="loss parameter, e.g. --loss-param tau_plus=0.1 (repeatable; JSON values; names from "
                   "fnlab.losses.param_specs(LOSS), plus margin: the warm-up's hinge margin)")
    p.add_argument("--loss-margin", type=number(), default=None, help="alias of --loss-param margin=X")
    p.add_argument("--temperature", type=number(), default=None, help="alias of --loss-param temperature=X "
                   "(losses with a temperature only)")
    p.add_argument("--epochs", type=integer(1), default=5)
    p.add_argument("--seed", type=integer(0, SEED_MAX), default=0)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--queue-size", type=integer(0), default=8224, help="memory queue entries (0: off)")
    p.add_argument("--momentum", type=number(0, 1, high_open=True), default=0.995,
                   help="momentum of the key encoders")
    p.add_argument("--warmup-epochs", type=integer(0), default=None,
                   help="VSE++ epochs before the sampler (default: 1 with the queue or a sampler that needs it, "
                   "else 0)")
    p.add_argument("--select-by", default="labelled", choices=["auto", "relevant", "labelled"],
                   help="validation figure the kept epoch maximises: labelled rSum (default), relevant rSum "
                        "(needs ground truth; a labelled-only rSum punishes ranking unlabelled matches high), or "
                        "auto (relevant where the data have ground truth)")
    p.add_argument("--batch-size", type=integer(2), default=128)
    p.add_argument("--lr", type=number(0, low_open=True), default=2e-3)
    p.add_argument("--dim", type=integer(1), default=64, help="joint embedding size")
    p.add_argument("--text-encoder", default="cnn", choices=["cnn", "gru", "bag"])
    p.add_argument("--posterior", default="pu",
                   help=f"false-negative posterior estimator (posterior.json, FNE's calibrated mode): "
                   f"{_names('fnlab.posterior')}")
    p.add_argument("--view-encoder", default=None, metavar="NAME",
                   help="encode the data's texts (captions; a pairs folder's text and a_text) with this sentence "
                   "encoder once, as the posterior's second view in every refit, FNE's pool and posterior.json: "
                   "'minilm' (bundled, offline) or a local sentence-transformers folder. Default: the view only "
                   "where it needs no encoder (the *-precomp sets)")
    p.add_argument("--threads", type=integer(1), default=None, help="CPU threads for torch")
    p.add_argument("--out", required=True, metavar="DIR", help="run folder to create, e.g. runs/my-run (must not "
                   "exist unless --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace the run at --out; the old run stays "
                   "until the new one is complete. Only a run fnlab wrote is ever replaced: a folder or file of "
                   "your own at --out is refused before any work")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-pages", action="store_true", help="do not store the app's pages of the test and val "
                   "splits after training (stored by default in $FNLAB_CACHE/pages, default .fnlab_cache/pages, "
                   "so `fnlab app` opens the run without computing them)")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace):
    from fnlab.training.train import TrainConfig

    sampler_params = dict(_parse_kv(t, "--param") for t in args.param)
    sampler_flags = {}
    for flag in SAMPLER_FLAGS:
        value = getattr(args, f"sp_{flag}")
        if value is not None:
            sampler_params[flag] = value
            sampler_flags[flag] = f"--{flag.replace('_', '-')}"
    loss_params: dict[str, Any] = dict(_parse_kv(t, "--loss-param") for t in args.loss_param)
    loss_flags = {k: "--loss-param" for k in loss_params}
    if args.loss_margin is not None:
        loss_params["margin"], loss_flags["margin"] = args.loss_margin, "--loss-margin"
    if args.temperature is not None:
        loss_params["temperature"], loss_flags["temperature"] = args.temperature, "--temperature"
    from fnlab.samplers import default_loss

    loss = args.loss if args.loss is not None else default_loss(args.sampler)  # unknown sampler: names listed
    sampler_params, loss_params = check_train_params(args.sampler, sampler_params, sampler_flags, loss,
                                                     loss_params, loss_flags)
    dataset_options = check_dataset_options(args.dataset, dict(_parse_kv(t, "--option") for t in args.option))
    return TrainConfig(
        dataset=args.dataset, dataset_root=args.root, dataset_options=dataset_options,
        sampler=args.sampler, sampler_params=sampler_params, loss=loss, loss_params=loss_params,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, dim=args.dim, text_encoder=args.text_encoder,
        queue_size=args.queue_size, momentum=args.momentum, warmup_epochs=args.warmup_epochs,
        select_by=args.select_by, view_encoder=args.view_encoder,
        posterior=args.posterior, seed=args.seed, device=args.device, num_threads=args.threads,
    )


def check_train_params(sampler: str, sampler_params: dict, sampler_flags: dict, loss: str, loss_params: dict,
                       loss_flags: dict) -> tuple[dict, dict]:
    """Names and types of sampler and loss parameters checked against the registries, before training.

    Raises:
        ValueError: unknown sampler or loss (valid names listed), unknown loss parameter, wrong type.
    """
    from fnlab import losses, samplers
    from fnlab.cli.options import check_params

    sampler_params = check_params(sampler_params, samplers.param_specs(sampler), owner=f"sampler {sampler!r}",
                                  flags=sampler_flags, strict=False)  # names: the sampler's own check
    specs = losses.param_specs(loss)
    extra = {} if any(s.name == "margin" for s in specs) else {"margin": "the warm-up's hinge margin"}
    loss_params = check_params(loss_params, specs, owner=f"loss {loss!r}", flags=loss_flags, extra=extra)
    if "margin" in extra and "margin" in loss_params:
        loss_params["margin"] = check_params({"margin": loss_params["margin"]},
                                             [s for s in losses.param_specs("triplet") if s.name == "margin"],
                                             owner="warm-up", flags=loss_flags)["margin"]
    return sampler_params, loss_params


def check_dataset_options(dataset: str, options: dict) -> dict:
    """Types of ``-o KEY=VALUE`` checked against the built-in loader's defaults (:data:`DATASET_DEFAULTS`),
    before any work: an integer option takes an integer, a number option a finite number, a switch true/false.
    Unknown names are left to the loader, which lists the valid ones.

    Raises:
        ValueError: naming ``-o KEY`` and what it takes.
    """
    where = DATASET_DEFAULTS.get(dataset)
    if where is None:
        return options
    defaults = getattr(importlib.import_module(where[0]), where[1])
    out = dict(options)
    for key, value in options.items():
        if key not in defaults:
            continue
        default, label = defaults[key], f"-o/--option {key}={value!r} (dataset {dataset!r})"
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise ValueError(f"{label}: expected true or false")
        elif isinstance(default, int):
            if isinstance(value, float) and value.is_integer():
                out[key] = value = int(value)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{label}: expected an integer")
        elif isinstance(default, float):
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"{label}: expected a finite number")
    return out


class _TqdmCallback:
    """A tqdm bar over all steps, with the epoch's metrics in the postfix."""

    def __init__(self) -> None:
        self.bar = None

    def on_train_start(self, config, info) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=info["epochs"] * info["steps_per_epoch"], unit="step", dynamic_ncols=True,
                        desc=f"{config.dataset}/{config.sampler}")

    def on_step(self, epoch, step, steps, loss) -> None:
        self.bar.update(1)
        if step % 10 == 0:
            self.bar.set_postfix(epoch=epoch, loss=f"{loss:.4f}", refresh=False)

    def on_epoch_end(self, epoch, metrics) -> None:
        extra = {}
        if "posterior_active" in metrics:  # fne: did the running posterior switch on this epoch?
            extra = {"confident": int(metrics.get("confident_pairs", 0)),
                     "fne_on": f"{metrics['posterior_active']:.2f}"}
            if "fne_density_read" in metrics:  # rules 'adapt'/'leave': share of posteriors whose density was read
                extra["density_read"] = f"{metrics['fne_density_read']:.2f}"
        self.bar.set_postfix(epoch=epoch, loss=f"{metrics['loss']:.4f}", val_rsum=f"{metrics['val_rsum']:.1f}",
                             fn_rate=f"{metrics['sampled_fn_rate']:.3f}", **extra)

    def on_train_end(self, run) -> None:
        self.bar.close()


def run(args: argparse.Namespace) -> int:
    from fnlab.storage.runs import RunStore
    from fnlab.training.train import train

    config = config_from_args(args)
    store, name = RunStore.for_path(args.out, overwrite=args.overwrite)
    try:  # before loading data and training: only a run fnlab wrote is ever replaced
        store.check_target(name, label="--out")
    except FileExistsError:
        raise FileExistsError(f"--out {args.out}: run {name!r} already exists in {store.root} (use --overwrite "
                              f"to replace it, or remove it with: fnlab runs rm {args.out})") from None
    callbacks = [] if args.no_progress else [_TqdmCallback()]  # duck-typed fnlab.training.train.Callback
    result = train(config, callbacks=callbacks, store=store, name=name)
    summary = result.load_json("eval")
    rec = summary["recall"]
    line = f"run written to {result.path}: test rsum {rec['rsum']:.1f}"
    if summary.get("relevant_recall"):
        line += f", relevant rsum {summary['relevant_recall']['rsum']:.1f}"
    if summary.get("sampled_fn_rate") is not None:
        line += f", sampled FN rate {summary['sampled_fn_rate']:.3f}"
    print(line)
    if not args.no_pages:
        _store_pages(result)
    return 0


def _store_pages(result) -> None:
    """Store the app's pages of the new run; a failure is one warning line, never a failed run (the app
    computes what is missing when a page asks for it)."""
    import sys

    from fnlab.storage.pages import store_for_app

    try:
        folder, splits = store_for_app(result)
    except Exception as err:  # noqa: BLE001 - the run is saved; the pages are a cache
        print(f"warning: the app's pages were not stored ({type(err).__name__}: {' '.join(str(err).split())}); "
              "the app computes them when the run is first opened", file=sys.stderr)
        return
    if splits:
        print(f"app pages ({', '.join(splits)} splits) stored in {folder}")
