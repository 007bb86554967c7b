"""Momentum encoders and a feature queue with item ids (MoCo; FNE, Li et al., ACM MM 2023, Sec. 3.3).

FNE keeps momentum copies of both encoders (``m = 0.995``) and a ring buffer of 8224 image
and text features from them, with the item (image) id of each pair. The pool a sampler draws
from is the batch's momentum features followed by the queue; every pool entry sharing the
anchor's item id is a labelled positive (official ``pos_idx = idx == idx_all``). The queue is
only filled during training, after each step (pytorch-metric-learning ``CrossBatchMemory``,
lightly ``MemoryBankModule``).

Example:
    >>> q = FeatureQueue(dim=4, size=6)
    >>> q.enqueue(torch.randn(4, 4), torch.randn(4, 4), torch.tensor([0, 1, 2, 3]))
    >>> q.enqueue(torch.randn(4, 4), torch.randn(4, 4), torch.tensor([4, 5, 6, 7]))
    >>> q.features()[2].tolist()
    [2, 3, 4, 5, 6, 7]
"""

from __future__ import annotations

import copy

import torch
from torch import nn


# ----------------------------------------------------------------------------- momentum
def make_momentum_copy(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` with gradients off, to be updated by :func:`momentum_update`."""
    twin = copy.deepcopy(module)
    for p in twin.parameters():
        p.requires_grad_(False)
    return twin


@torch.no_grad()
def momentum_update(online: nn.Module, target: nn.Module, m: float = 0.995) -> None:
    """``theta_target <- m theta_target + (1 - m) theta_online`` in place; buffers are copied.

    Raises:
        ValueError: ``m`` outside [0, 1], or the two modules' parameters differ in names or shapes.
    """
    if not 0.0 <= m <= 1.0:
        raise ValueError(f"momentum_update: 'm' must lie in [0, 1], got {m}")
    src, dst = dict(online.named_parameters()), dict(target.named_parameters())
    if src.keys() != dst.keys():
        raise ValueError("momentum_update: 'online' and 'target' have different parameters "
                         f"(only in online: {sorted(src.keys() - dst.keys())[:3]}, "
                         f"only in target: {sorted(dst.keys() - src.keys())[:3]})")
    for name, p in src.items():
        q = dst[name]
        if p.shape != q.shape:
            raise ValueError(f"momentum_update: parameter {name!r} has shape {tuple(p.shape)} in online "
                             f"but {tuple(q.shape)} in target")
        q.mul_(m).add_(p.detach().to(q.dtype), alpha=1.0 - m)
    bsrc, bdst = dict(online.named_buffers()), dict(target.named_buffers())
    for name, b in bsrc.items():
        if name in bdst:
            bdst[name].copy_(b)


# ----------------------------------------------------------------------------- queue
class FeatureQueue:
    """Ring buffer of paired features (side A and side B) with their item ids.

    Args:
        dim: feature size of side A (images).
        size: capacity (FNE: 8224).
        dim_b: feature size of side B (captions); defaults to ``dim``.
        device: where the buffers live (default CPU).
        dtype: feature dtype (float32).

    Entries are returned oldest first. Only filled entries are returned (the official code
    starts from random features with id -100; fnlab starts empty).
    """

    def __init__(self, dim: int, size: int = 8224, *, dim_b: int | None = None,
                 device: str | torch.device | None = None, dtype: torch.dtype = torch.float32) -> None:
        if int(size) < 1 or int(dim) < 1:
            raise ValueError(f"FeatureQueue: 'size' and 'dim' must be >= 1, got size={size}, dim={dim}")
        self.size, self.dim = int(size), int(dim)
        self.dim_b = self.dim if dim_b is None else int(dim_b)
        device = torch.device("cpu") if device is None else torch.device(device)
        self.feats_a = torch.zeros(self.size, self.dim, dtype=dtype, device=device)
        self.feats_b = torch.zeros(self.size, self.dim_b, dtype=dtype, device=device)
        self.ids = torch.full((self.size,), -1, dtype=torch.long, device=device)
        self.ptr = 0
        self.filled = 0

    @property
    def device(self) -> torch.device:
        return self.feats_a.device

    @torch.no_grad()
    def enqueue(self, feats_a: torch.Tensor, feats_b: torch.Tensor, ids: torch.Tensor) -> None:
        """Append ``n`` pairs, overwriting the oldest once full.

        Args:
            feats_a: ``[n, dim]``; feats_b: ``[n, dim_b]``; ids: ``[n]`` integer item ids.
            With ``n > size`` only the last ``size`` pairs are kept.

        Raises:
            ValueError: shapes that disagree with each other or with the queue.
        """
        n = feats_a.shape[0] if feats_a.ndim == 2 else -1
        if feats_a.ndim != 2 or feats_a.shape[1] != self.dim:
            raise ValueError(f"FeatureQueue.enqueue: 'feats_a' must be [n, {self.dim}], got {tuple(feats_a.shape)}")
        if feats_b.shape != (n, self.dim_b):
            raise ValueError(f"FeatureQueue.enqueue: 'feats_b' must be [{n}, {self.dim_b}], got {tuple(feats_b.shape)}")
        ids = ids.reshape(-1)
        if ids.shape != (n,) or ids.is_floating_point():
            raise ValueError(f"FeatureQueue.enqueue: 'ids' must be an integer tensor [{n}], got "
                             f"{ids.dtype} {tuple(ids.shape)}")
        if n == 0:
            return
        if n > self.size:
            feats_a, feats_b, ids = feats_a[-self.size:], feats_b[-self.size:], ids[-self.size:]
            n = self.size
        pos = (self.ptr + torch.arange(n, device=self.device)) % self.size
        self.feats_a[pos] = feats_a.detach().to(self.feats_a)
        self.feats_b[pos] = feats_b.detach().to(self.feats_b)
        self.ids[pos] = ids.to(self.device, torch.long)
        self.ptr = (self.ptr + n) % self.size
        self.filled = min(self.size, self.filled + n)

    def _order(self) -> torch.Tensor:
        start = (self.ptr - self.filled) % self.size
        return (start + torch.arange(self.filled, device=self.device)) % self.size

    def features(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(feats_a [F, dim], feats_b [F, dim_b], ids [F])`` of the ``F`` filled entries, oldest first."""
        if self.filled < self.size and self.ptr == self.filled:
            return self.feats_a[: self.filled], self.feats_b[: self.filled], self.ids[: self.filled]
        order = self._order()
        return self.feats_a[order], self.feats_b[order], self.ids[order]

    def pool(self, batch_a: torch.Tensor, batch_b: torch.Tensor, batch_ids: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The batch followed by the queue, as FNE's pool: ``([B+F, dim], [B+F, dim_b], [B+F])``.

        The positive mask of anchors ``batch_ids`` over the pool is ``batch_ids[:, None] == ids[None, :]``.
        """
        qa, qb, qi = self.features()
        return (torch.cat([batch_a, qa.to(batch_a.dtype)]), torch.cat([batch_b, qb.to(batch_b.dtype)]),
                torch.cat([batch_ids.reshape(-1).to(qi), qi]))
