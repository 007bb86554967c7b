"""Time one FNE sampling step against the hardest sampler and a row-loop transcription of
the official FNE ``choice_negative`` (Li et al., ACM MM 2023; github.com/LuminosityX/FNE).

Setting as in the paper: batch 128 anchors, pool = 128 batch entries + 8224 queue entries,
one negative per anchor. The similarity matrix is computed once; what is timed is the step
from similarities to sampled indices (posterior, weights, masking, fallback, multinomial).

Usage:
    python bench/sampler_speed.py [--device auto|cpu|cuda] [--repeats 50] [--out bench/results/sampler_speed.txt]
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fnlab import samplers  # noqa: E402
from fnlab.core.device import resolve_device  # noqa: E402
from fnlab.posterior import GaussianPosterior  # noqa: E402


def official_row_loop(pos_sims, sims, mask, mu_p, var_p, mu_n, var_n, hardest_index, margin=0.2):
    """The official ``choice_negative`` structure (our transcription): vectorised weights,
    then a Python loop over rows for the all-zero fallback, then multinomial."""
    tau, match_para, false_margin = 0.5, 10000, 0.999
    neg_scores = torch.exp(-(sims - pos_sims) ** 2 * tau)
    pos_p = torch.distributions.Normal(mu_p, math.sqrt(var_p)).log_prob(sims).exp()
    neg_p = torch.distributions.Normal(mu_n, math.sqrt(var_n)).log_prob(sims).exp()
    match_p = pos_p / (pos_p + (match_para - 1) * neg_p)
    no_match_p = 1 - match_p
    soft = torch.exp(-match_p * tau)
    match_mask = no_match_p < false_margin
    neg_scores[match_mask] = soft[match_mask]
    neg_scores = neg_scores.masked_fill_(mask, 0)
    neg_scores = neg_scores.masked_fill_(sims <= (mu_p - margin), 0)
    for i, sum_i in enumerate(neg_scores.sum(1)):
        if sum_i == 0:
            neg_scores[i, hardest_index[i]] = 1.0
    return torch.multinomial(neg_scores, 1)


def timeit_interleaved(fns: dict, device, repeats: int, warmup: int = 3) -> dict[str, float]:
    """Median seconds per call of each function, measured round-robin so that load from other
    processes affects every candidate alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--queue", type=int, default=8224)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "sampler_speed.txt"))
    args = ap.parse_args(argv)

    device = resolve_device(args.device)
    torch.manual_seed(0)
    b, m = args.batch, args.batch + args.queue
    anchors = torch.nn.functional.normalize(torch.randn(b, args.dim, device=device), dim=1)
    pool = torch.nn.functional.normalize(torch.randn(m, args.dim, device=device), dim=1)
    pool[:b] = torch.nn.functional.normalize(anchors + 0.5 * torch.randn(b, args.dim, device=device), dim=1)
    ids = torch.cat([torch.arange(b, device=device), torch.randint(0, 4 * b, (args.queue,), device=device)])
    sims = anchors @ pool.T
    mask = ids[:b, None] == ids[None, :]
    pos = sims.diagonal()[:b].clone()
    # a posterior placed so that a share of candidates falls in the FN region and the cut-down
    mu_p = float(pos.mean())
    mu_n, sd_n = float(sims.mean()), float(sims.std())
    post = GaussianPosterior(mu_p, 0.05, mu_n, sd_n, prior_pos=1e-4)
    gen = torch.Generator(device=device).manual_seed(0)

    fne_paper = samplers.build("fne", posterior=post, mode="paper")
    fne_cal = samplers.build("fne", posterior=post, mode="calibrated")
    hardest = samplers.build("hardest")
    hardest_idx = sims.masked_fill(mask, float("-inf")).argmax(1)

    # How often the fallback fires (the official loop's cost depends on it only through sync).
    w = fne_paper.weights(sims, pos, mask)
    results = timeit_interleaved({
        "fne (paper)": lambda: fne_paper.sample(sims, pos, mask, generator=gen),
        "fne (calibrated)": lambda: fne_cal.sample(sims, pos, mask, generator=gen),
        "hardest": lambda: hardest.sample(sims, pos, mask),
        "official row loop": lambda: official_row_loop(pos[:, None], sims.clone(), mask, mu_p, 0.05**2, mu_n,
                                                       sd_n**2, hardest_idx),
    }, device, args.repeats)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    lines = [
        "# bench/sampler_speed.py: one sampling step, sims [B, M] given",
        f"device: {device} ({name}); torch {torch.__version__}; threads {torch.get_num_threads()}",
        f"batch B = {b}, pool M = {args.batch} + {args.queue} = {m}, repeats {args.repeats} (median, round-robin)",
        f"rows needing the fallback: {int((w.sum(1) == 0).sum())}; "
        f"candidates in the FN region (P_fn > 1e-3): {float((post.prob_false_negative(sims) > 1e-3).float().mean()):.4f}",
        "",
        f"{'sampler':<22}{'ms/step':>10}{'x hardest':>12}",
    ]
    for k, t in results.items():
        lines.append(f"{k:<22}{t * 1e3:>10.3f}{t / results['hardest']:>12.2f}")
    lines += [
        "",
        f"fne (paper) / hardest:           {results['fne (paper)'] / results['hardest']:.2f}",
        f"official row loop / fne (paper): {results['official row loop'] / results['fne (paper)']:.2f}",
    ]
    text = "\n".join(lines)
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
