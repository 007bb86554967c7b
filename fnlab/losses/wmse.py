"""W-MSE: whitening plus the normalised MSE between paired views, no negatives at all (Ermolov, Siarohin,
Sangineto and Sebe, "Whitening for Self-Supervised Representation Learning", ICML 2021; official
``htdt/self-supervised``: ``methods/w_mse.py`` ``WMSE.forward``, ``methods/whitening.py`` ``Whitening2d``,
``methods/norm_mse.py``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Loss
from .registry import register


def whiten(x: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """``[n, d] -> [n, d]``: ``W (x - mean)`` with ``W = L^{-1}``, ``L L^T = (1 - eps) Sigma + eps I`` (Cholesky;
    ``Sigma`` the unbiased covariance), so the output's covariance is the identity (``Whitening2d`` in training,
    ``track_running_stats=False``).

    Raises:
        ValueError: ``n <= d`` (the covariance is singular; whitening needs more rows than dimensions).
    """
    n, d = x.shape
    if n <= d and eps <= 0:
        raise ValueError(f"w-mse: whitening {n} rows of width {d} needs more rows than dimensions "
                         f"(a larger w_size or batch, or w_eps > 0)")
    xn = x - x.mean(dim=0, keepdim=True)
    cov = xn.T @ xn / (n - 1)
    eye = torch.eye(d, dtype=x.dtype, device=x.device)
    chol = torch.linalg.cholesky((1 - eps) * cov + eps * eye)
    w = torch.linalg.solve_triangular(chol, eye, upper=False)
    return xn @ w.T


@register("wmse")
class WMSELoss(Loss):
    """W-MSE on a batch of labelled pairs: each modality is whitened separately in random sub-batches of
    ``w_size`` rows (the same rows in both), then ``2 - 2 mean cos(z_a, z_b)`` over the labelled pairs.

    The official loss pairs views of one sample (``2 - 2 * (normalize(x0) * normalize(x1)).sum(-1).mean()``); here
    the two views are the image and the caption of a pair, whitened per modality (the paper whitens views of one
    modality; whitening each modality on its own is the natural extension). Pairs sharing an item id match: the
    loss is the mean of ``cos(z_a[i], z_b[j])`` over every ``(i, j)`` of a sub-batch with ``ids[i] == ids[j]``
    (the diagonal, plus two captions of one image), so no (anchor, unlabelled candidate) pair enters the loss:
    a false negative is never pushed away. Collapse is prevented by the whitening (unit covariance) instead of
    by negatives. Repeated over ``w_iter`` random partitions and averaged; rows beyond a multiple of ``w_size`` sit
    out the step (the official code needs the batch to be a multiple of ``w_size``).

    It is an embedding-level loss (``needs_embeddings``): the trainer calls :meth:`embed` with the batch's
    embeddings; a sampler's picks are ignored (pair it with ``in_batch``, which builds no queue).

    Args:
        w_size: rows per whitening sub-batch (128; must exceed the embedding width, fnlab's default 64).
        w_iter: random partitions per step (1).
        w_eps: covariance shrinkage towards I (0).
        reduction: unused (the loss is a batch mean).
    """

    needs_embeddings = True

    def __init__(self, w_size: int = 128, w_iter: int = 1, w_eps: float = 0.0, reduction: str = "mean") -> None:
        super().__init__(reduction)
        if int(w_size) < 2 or int(w_iter) < 1 or not 0 <= w_eps < 1:
            raise ValueError(f"{self.name}: need w_size >= 2, w_iter >= 1, 0 <= w_eps < 1, got {w_size}, {w_iter}, "
                             f"{w_eps}")
        self.w_size, self.w_iter, self.w_eps = int(w_size), int(w_iter), float(w_eps)
        self.generator: torch.Generator | None = None

    def check_shape(self, dim: int, batch: int) -> None:
        """Whitening ``min(w_size, batch)`` rows of width ``dim`` needs more rows than dimensions unless the
        covariance is shrunk (``w_eps > 0``)."""
        rows = min(self.w_size, int(batch))
        if self.w_eps == 0 and rows <= int(dim):
            raise ValueError(f"{self.name}: whitening sub-batches of {rows} rows (min of w_size {self.w_size} and "
                             f"batch size {batch}) cannot whiten embeddings of width {dim}: set w_size and the batch "
                             f"size above {dim} (--loss-param w_size=N --batch-size N), or shrink the covariance "
                             f"(--loss-param w_eps=0.1)")

    def partitions(self, n: int, device: torch.device) -> list[torch.Tensor]:
        """Random sub-batches of ``min(w_size, n)`` row indices (a remainder smaller than that sits out)."""
        size = min(self.w_size, n)
        gen = self.generator if self.generator is not None and self.generator.device == device else None
        perm = torch.randperm(n, generator=gen, device=device) if gen is not None else torch.randperm(n).to(device)
        return list(perm[: (n // size) * size].view(-1, size))

    @staticmethod
    def cosines(za: torch.Tensor, zb: torch.Tensor) -> torch.Tensor:
        """``[n, n]`` cosines of every whitened image row with every whitened caption row."""
        return F.normalize(za, dim=1) @ F.normalize(zb, dim=1).T

    @staticmethod
    def from_cosines(cos: torch.Tensor, paired: torch.Tensor) -> torch.Tensor:
        """The normalised MSE ``2 - 2 mean cos`` over the labelled pairs ``paired [n, n]`` (bool) of ``cos``;
        every other entry of ``cos`` gets exactly zero gradient."""
        return 2 - 2 * (cos * paired).sum() / paired.sum()

    def embed(self, fa: torch.Tensor, fb: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        if fa.shape != fb.shape or fa.ndim != 2 or ids.shape != (fa.shape[0],):
            raise ValueError(f"{self.name}: 'fa' and 'fb' must be [B, d] and 'ids' [B], got {tuple(fa.shape)}, "
                             f"{tuple(fb.shape)}, {tuple(ids.shape)}")
        loss = fa.new_zeros(())
        for _ in range(self.w_iter):
            parts = self.partitions(fa.shape[0], fa.device)
            for idx in parts:
                za, zb = whiten(fa[idx], self.w_eps), whiten(fb[idx], self.w_eps)
                paired = ids[idx][:, None] == ids[idx][None, :]
                loss = loss + self.from_cosines(self.cosines(za, zb), paired) / len(parts)
        return loss / self.w_iter

    def per_anchor(self, neg, valid, pos):
        raise NotImplementedError(f"loss {self.name!r} works on embeddings (embed), not on a pool's similarities")
