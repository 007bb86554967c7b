"""Heads over a user's own embeddings that start from what the embeddings already know.

A ``pairs`` folder holds embeddings that already rank their labelled pairs (often one sentence
encoder on both sides). A head trained from random init on a few hundred pairs forgets that (a
190-query folder with labelled cosine ~0.88 came out of training with similarities in
[-0.17, 0.09]). The heads here are frozen features under a trained map that *starts* at the
embeddings' own geometry, so epoch 0 of training is the raw embeddings (or, across dimensions,
their best rotation onto each other) and training can only move away from it when that helps:

- :class:`LinearHead` (``head="linear"``): ``y = x W + c``, ``W`` initialised to the start map
  ``M`` (the identity where both sides share a space), ``c = 0``.
- :class:`ResidualHead` (``head="residual"``): ``y = x M + f(x)``, ``M`` frozen, ``f`` a
  two-layer MLP whose output layer starts at zero (the zero-init residual branch of Goyal et al.,
  2017, "Accurate, large minibatch SGD", Sec. 5.1), so ``f(x) = 0`` at the start.

The start map ``M`` (:func:`start_maps`): where both sides have the same dimension, the identity on
both; where they differ, the side with more dimensions is mapped onto the other by orthogonal
Procrustes (Schoenemann, Psychometrika 1966) fitted on the labelled training pairs, reduced to the
rank the pairs determine (directions no pair spans map to zero rather than to an arbitrary rotation).

Shapes: every head maps ``[N, d_in]`` (or region features ``[N, R, d_in]``, mean-pooled) to
``[N, d_out]``; :class:`fnlab.models.dual.DualEncoder` L2-normalises the output.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

#: heads over features: ``mlp`` (random init, the built-in precomputed sets), and the two that start
#: from the start map
HEADS = ("mlp", "linear", "residual")
#: heads whose initial state is the start map (the raw embeddings): training evaluates that state as epoch 0
IDENTITY_START_HEADS = ("linear", "residual")


def _features(x: torch.Tensor, in_dim: int, name: str) -> torch.Tensor:
    x = x.float()
    if x.ndim == 3:
        x = x.mean(1)
    if x.ndim != 2 or x.shape[1] != in_dim:
        raise ValueError(f"{name} expects features [N, {in_dim}], got shape {tuple(x.shape)}")
    return x


class LinearHead(nn.Module):
    """``y = x W + c`` with ``W [in_dim, out_dim]`` starting at ``init`` (identity by default), ``c = 0``.

    Args:
        in_dim, out_dim: feature sizes.
        init: ``[in_dim, out_dim]`` start map (``None``: the identity; needs ``in_dim == out_dim``).

    Example:
        >>> head = LinearHead(4, 4)
        >>> x = torch.randn(2, 4)
        >>> torch.allclose(head(x), x)
        True
    """

    def __init__(self, in_dim: int, out_dim: int, init: torch.Tensor | np.ndarray | None = None) -> None:
        super().__init__()
        self.in_dim, self.out_dim = int(in_dim), int(out_dim)
        self.weight = nn.Parameter(_start_map(self.in_dim, self.out_dim, init))
        self.bias = nn.Parameter(torch.zeros(self.out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _features(x, self.in_dim, "LinearHead") @ self.weight + self.bias


class ResidualHead(nn.Module):
    """``y = x M + f(x)``: ``M`` the frozen start map, ``f`` = Linear -> ReLU -> Linear with the last
    layer initialised to zero (so the head starts as ``x M``).

    Args:
        in_dim, out_dim: feature sizes.
        hidden: hidden width of ``f``.
        init: ``[in_dim, out_dim]`` start map (``None``: the identity).

    Example:
        >>> head = ResidualHead(4, 4, hidden=8)
        >>> x = torch.randn(2, 4)
        >>> torch.allclose(head(x), x)
        True
    """

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 256,
                 init: torch.Tensor | np.ndarray | None = None) -> None:
        super().__init__()
        if hidden < 1:
            raise ValueError(f"ResidualHead needs a positive hidden width, got {hidden}")
        self.in_dim, self.out_dim = int(in_dim), int(out_dim)
        self.register_buffer("start", _start_map(self.in_dim, self.out_dim, init))
        self.branch = nn.Sequential(nn.Linear(self.in_dim, int(hidden)), nn.ReLU(inplace=True),
                                    nn.Linear(int(hidden), self.out_dim))
        nn.init.zeros_(self.branch[-1].weight)
        nn.init.zeros_(self.branch[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _features(x, self.in_dim, "ResidualHead")
        return x @ self.start + self.branch(x)


def _start_map(in_dim: int, out_dim: int, init: torch.Tensor | np.ndarray | None) -> torch.Tensor:
    if init is None:
        if in_dim != out_dim:
            raise ValueError(f"an identity start needs equal sizes, got {in_dim} -> {out_dim}; pass init=")
        return torch.eye(in_dim)
    m = torch.as_tensor(np.asarray(init, dtype=np.float32))
    if tuple(m.shape) != (in_dim, out_dim):
        raise ValueError(f"start map must have shape ({in_dim}, {out_dim}), got {tuple(m.shape)}")
    return m.clone()


def procrustes_map(x: np.ndarray, y: np.ndarray, *, rtol: float = 1e-6) -> np.ndarray:
    """Orthogonal Procrustes from ``x [n, d_x]`` onto ``y [n, d_y]`` (rows paired), reduced to the rank
    the pairs determine.

    ``W = U_r V_r^T`` from the thin SVD ``x^T y = U S V^T``, keeping the ``r`` singular directions
    with ``S > rtol * S_max``: the semi-orthogonal map maximising ``trace(W^T x^T y)`` on the spanned
    directions; directions no pair spans map to zero. Rows are L2-normalised first (what the dual
    encoder compares).

    Returns:
        ``[d_x, d_y]`` float32.

    Raises:
        ValueError: unpaired rows or no pairs.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or len(x) != len(y) or len(x) == 0:
        raise ValueError(f"procrustes_map needs paired rows [n, d_x], [n, d_y] with n >= 1, got {x.shape}, {y.shape}")
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    y = y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)
    u, s, vt = np.linalg.svd(x.T @ y, full_matrices=False)
    r = int((s > rtol * max(float(s[0]), 1e-300)).sum()) if s.size else 0
    return (u[:, :r] @ vt[:r]).astype(np.float32)


def start_maps(a_dim: int, b_dim: int, a_paired: np.ndarray | None = None,
               b_paired: np.ndarray | None = None) -> tuple[np.ndarray | None, np.ndarray | None, str]:
    """The start maps of both sides and their joint dimension's kind.

    Equal sizes: the identity on both (``None, None, "identity"``). Different sizes: the larger side is
    mapped onto the smaller one's space by :func:`procrustes_map` fitted on the labelled pairs
    ``a_paired [n, a_dim]``, ``b_paired [n, b_dim]`` (row i of each is one labelled pair); the smaller
    side keeps the identity (``"procrustes"``).

    Raises:
        ValueError: different sizes and no paired rows to fit on.
    """
    if a_dim == b_dim:
        return None, None, "identity"
    if a_paired is None or b_paired is None or len(a_paired) == 0:
        raise ValueError(f"sides of different sizes ({a_dim} and {b_dim}) need labelled pairs to fit a start map")
    if a_dim > b_dim:
        return procrustes_map(a_paired, b_paired), None, "procrustes"
    return None, procrustes_map(b_paired, a_paired), "procrustes"


def build_head(kind: str, in_dim: int, out_dim: int, *, hidden: int = 256,
               init: torch.Tensor | np.ndarray | None = None) -> nn.Module:
    """The head ``kind`` (``linear`` or ``residual``) from ``in_dim`` to ``out_dim`` starting at ``init``.

    Raises:
        ValueError: unknown kind.
    """
    if kind == "linear":
        return LinearHead(in_dim, out_dim, init=init)
    if kind == "residual":
        return ResidualHead(in_dim, out_dim, hidden=hidden, init=init)
    raise ValueError(f"unknown head {kind!r}: expected one of {', '.join(IDENTITY_START_HEADS)}")
