"""A small CNN pretrained on attribute classification, then frozen: the image-side feature extractor of
``shapes-precomp`` and ``digits-precomp``.

It plays the part of the detector behind the precomputed features VSE++ and FNE train on (bottom-up
attention, Anderson et al., CVPR 2018: Faster R-CNN pretrained on Visual Genome objects and attributes),
at the scale of 32x32 generated images: trained once on images disjoint from the retrieval splits, to
predict each image's attributes (several classification heads), then used frozen; its penultimate
activations are the image features.

Shapes:
    pixels ``[N, C, S, S]`` uint8 (or float in [0, 1]) -> features ``[N, feature_dim]`` float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

IGNORE = -100  #: target value of a head that does not apply to an image (e.g. no second object)


class AttributeCNN(nn.Module):
    """Three conv blocks (32, 64, 128 channels, each halving the size), a ``feature_dim`` ReLU layer, and one
    linear classification head per attribute.

    Args:
        in_channels: image channels.
        image_size: side of the square input.
        head_classes: number of classes of each head.
        feature_dim: size of the penultimate layer (the exported features).
    """

    def __init__(self, in_channels: int, image_size: int, head_classes: Sequence[int], feature_dim: int = 256) -> None:
        super().__init__()
        if image_size < 8:
            raise ValueError(f"AttributeCNN needs images of at least 8x8, got {image_size}")
        blocks, c = [], in_channels
        for out in (32, 64, 128):
            blocks += [nn.Conv2d(c, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            c = out
        self.conv = nn.Sequential(*blocks)
        side = image_size // 8
        self.feature = nn.Sequential(nn.Flatten(), nn.Linear(c * side * side, feature_dim), nn.ReLU(inplace=True))
        self.heads = nn.ModuleList(nn.Linear(feature_dim, int(k)) for k in head_classes)
        self.feature_dim = int(feature_dim)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, C, S, S]`` float in [0, 1] -> ``[N, feature_dim]`` penultimate activations."""
        return self.feature(self.conv(x))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Logits of every head, ``[N, k_h]`` each."""
        h = self.features(x)
        return [head(h) for head in self.heads]


@dataclass(frozen=True)
class PretrainReport:
    """What pretraining reached: per-head accuracy on the pretraining images (held-out share)."""

    head_names: tuple[str, ...]
    heldout_accuracy: tuple[float, ...]
    epochs: int
    images: int

    def as_dict(self) -> dict:
        return {"heads": dict(zip(self.head_names, self.heldout_accuracy, strict=True)),
                "epochs": self.epochs, "images": self.images}


def _as_float(pixels: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(pixels))
    return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()


def pretrain(
    pixels: np.ndarray, targets: np.ndarray, head_classes: Sequence[int], head_names: Sequence[str], *,
    seed: int = 0, epochs: int = 8, batch_size: int = 128, lr: float = 2e-3, feature_dim: int = 256,
    heldout: float = 0.1, progress: bool = False,
) -> tuple[AttributeCNN, PretrainReport]:
    """Train an :class:`AttributeCNN` on attribute classification (sum of cross-entropies over heads).

    Args:
        pixels: ``[N, C, S, S]`` pretraining images (disjoint from the retrieval splits).
        targets: ``[N, H]`` int64 class of each head, :data:`IGNORE` where a head does not apply.
        head_classes, head_names: classes and name of each of the ``H`` heads.
        seed: seeds initialisation and batch order (same seed -> same weights on the same machine).
        epochs, batch_size, lr: Adam, cosine-decayed learning rate.
        heldout: share of the images kept out of training to report accuracy.
        progress: show a tqdm bar over the epochs.

    Returns:
        the frozen model (eval mode, no gradients) and its :class:`PretrainReport`.
    """
    targets = np.asarray(targets, dtype=np.int64)
    if targets.ndim != 2 or targets.shape != (len(pixels), len(head_classes)):
        raise ValueError(f"pretrain: targets must be [N, H] = [{len(pixels)}, {len(head_classes)}], got {targets.shape}")
    gen = torch.Generator().manual_seed(int(seed))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = AttributeCNN(pixels.shape[1], pixels.shape[2], head_classes, feature_dim)
    order = torch.randperm(len(pixels), generator=gen)
    n_hold = int(round(heldout * len(pixels))) if len(pixels) > 10 else 0
    hold, fit = order[:n_hold], order[n_hold:]
    x_all, y_all = _as_float(pixels), torch.from_numpy(targets)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps = max(1, epochs * int(np.ceil(len(fit) / batch_size)))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=epochs, desc="pretraining the attribute CNN", unit="epoch", dynamic_ncols=True)
    model.train()
    for _ in range(int(epochs)):
        perm = fit[torch.randperm(len(fit), generator=gen)]
        for start in range(0, len(perm), batch_size):
            idx = perm[start : start + batch_size]
            logits = model(x_all[idx])
            y = y_all[idx]
            loss = sum(F.cross_entropy(lg, y[:, h], ignore_index=IGNORE) for h, lg in enumerate(logits)
                       if bool((y[:, h] != IGNORE).any()))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
    if bar is not None:
        bar.close()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    acc = []
    if n_hold:
        with torch.no_grad():
            logits = model(x_all[hold])
        y = y_all[hold]
        for h, lg in enumerate(logits):
            valid = y[:, h] != IGNORE
            acc.append(float((lg.argmax(1)[valid] == y[valid, h]).float().mean()) if bool(valid.any()) else float("nan"))
    else:
        acc = [float("nan")] * len(head_classes)
    return model, PretrainReport(tuple(head_names), tuple(acc), int(epochs), int(len(fit)))


def extract_features(model: AttributeCNN, pixels: np.ndarray, *, batch_size: int = 512) -> np.ndarray:
    """Frozen penultimate features ``[N, feature_dim]`` float32 of ``pixels [N, C, S, S]``."""
    model.eval()
    out = np.empty((len(pixels), model.feature_dim), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, len(pixels), batch_size):
            out[start : start + batch_size] = model.features(_as_float(pixels[start : start + batch_size])).numpy()
    return out
