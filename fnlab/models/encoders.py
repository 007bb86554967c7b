"""Small encoders, sized to train on a CPU.

Every encoder maps a batch of raw inputs to ``[N, dim]`` float32 features (not yet
normalised; :class:`fnlab.models.dual.DualEncoder` L2-normalises them, as VSE++ and FNE
(Li et al., ACM MM 2023, Sec. 3.1) compare unit vectors by inner product).

- :class:`PixelCNN`: images ``[N, C, H, W]`` (uint8 in 0..255 or float in [0, 1]); stride-2
  conv blocks down to a 4x4 map, so 32x32 RGB and 8x8 grey digits both work. The 4x4 map is
  flattened (not pooled to 1x1) so that positions ("on the left") stay visible to the head.
- :class:`TokenEncoder`: token ids ``[N, L]`` int64 with 0 as padding; ``kind="cnn"`` (a
  width-3 convolution over word embeddings, max-pooled: binds neighbouring words such as
  "red circle", so "red circle and blue square" differs from "blue circle and red square"),
  ``kind="bag"`` (mean of word embeddings plus an MLP) or ``kind="gru"`` (a one-layer
  bidirectional GRU; order-aware but slow on CPU).
- :class:`FeatureMLP`: precomputed features ``[N, d]`` (or region features ``[N, R, d]``,
  mean-pooled over regions) through a two-layer MLP, the adapter of VSE-style precomp runs.
"""

from __future__ import annotations

import torch
from torch import nn

TEXT_KINDS = ("cnn", "gru", "bag")


def pixels_to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 pixels in 0..255 -> float32 in [0, 1]; float input is returned as float32."""
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    return x.float()


class PixelCNN(nn.Module):
    """Small strided CNN for ``[N, C, H, W]`` pixels (fast on CPU: about 1 MMAC per 32x32 image).

    Stride-2 conv blocks halve the map until it is 4x4 (32 -> 16 -> 8 -> 4; 8x8 digits: one
    block), then the 4x4 map is flattened (not pooled), so positions ("on the left") stay
    visible to the MLP head. Each conv is followed by GroupNorm (``norm="group"``, the
    default; no running buffers, so the momentum twin of FNE stays a pure parameter EMA and
    batches full of repeated images do not skew statistics). Without it (``norm="none"``,
    the layout of models saved before the option existed) the from-scratch CNN learned about
    4x slower on ``shapes`` (val rSum ~100 vs ~400 after 3 epochs of 39 steps).
    Inputs are centred (``x - 0.5``).

    Args:
        in_channels: C (3 for RGB, 1 for grey).
        image_size: (H, W) of the inputs (decides how many stride-2 blocks fit).
        dim: output feature size.
        width: channels of the first block (doubled per block, at most 4x).
        norm: ``"group"`` (GroupNorm after every conv) or ``"none"``.

    Shapes:
        input ``[N, C, H, W]`` -> output ``[N, dim]``.
    """

    def __init__(self, in_channels: int, image_size: tuple[int, int], dim: int = 64, width: int = 16,
                 norm: str = "group") -> None:
        super().__init__()
        if in_channels < 1 or dim < 1 or width < 1:
            raise ValueError(f"PixelCNN needs positive in_channels, dim and width, got {in_channels}, {dim}, {width}")
        if norm not in ("group", "none"):
            raise ValueError(f"PixelCNN norm must be 'group' or 'none', got {norm!r}")
        self.norm = norm

        def block(c_in: int, c_out: int, k: int, stride: int) -> list[nn.Module]:
            conv = nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2)
            if norm == "none":
                return [conv, nn.ReLU(inplace=True)]
            return [conv, nn.GroupNorm(min(8, c_out), c_out), nn.ReLU(inplace=True)]
        h, w = image_size
        layers: list[nn.Module] = []
        c_in, c_out = in_channels, width
        first = True
        while min(h, w) // 2 >= 4:
            k = 5 if first else 3
            layers += block(c_in, c_out, k, 2)
            h, w = (h + 1) // 2, (w + 1) // 2
            c_in, c_out = c_out, min(c_out * 2, width * 4)
            first = False
        # one stride-1 block when the input is already small (8x8 digits)
        layers += block(c_in, c_out, 3, 1) + [nn.AdaptiveAvgPool2d((4, 4))]
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c_out * 16, 4 * dim), nn.ReLU(inplace=True),
                                  nn.Linear(4 * dim, dim))
        self.in_channels = in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 3:  # [N, H, W] grey
            x = x.unsqueeze(1)
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"PixelCNN expects pixels [N, {self.in_channels}, H, W], got shape {tuple(x.shape)}")
        x = pixels_to_float(x)
        if self.norm != "none":
            x = x - 0.5
        return self.head(self.features(x))


class TokenEncoder(nn.Module):
    """Caption encoder over token ids (0 = padding).

    Args:
        vocab_size: number of token ids (ids must be < vocab_size).
        dim: output feature size.
        kind: ``"cnn"`` (default: a width-3 1-D convolution over word embeddings, max-pooled over
            tokens; sees word pairs such as "red circle", fast on CPU), ``"bag"`` (masked mean of
            embeddings + MLP) or ``"gru"`` (bidirectional GRU; order-aware, slowest on CPU).
        emb_dim: word embedding size.

    Shapes:
        input ``[N, L]`` int64 -> output ``[N, dim]``. An all-padding row encodes to the
        encoder's bias (no NaN).
    """

    def __init__(self, vocab_size: int, dim: int = 64, *, kind: str = "cnn", emb_dim: int = 64) -> None:
        super().__init__()
        if kind not in TEXT_KINDS:
            raise ValueError(f"unknown text encoder kind {kind!r}: expected one of {', '.join(TEXT_KINDS)}")
        if vocab_size < 2:
            raise ValueError(f"vocab_size must be at least 2 (padding + one token), got {vocab_size}")
        self.kind = kind
        self.vocab_size = vocab_size
        self.embed = nn.Embedding(vocab_size, emb_dim, padding_idx=0)
        if kind == "cnn":
            self.conv = nn.Conv1d(emb_dim, 2 * emb_dim, 3, padding=1)
            self.head = nn.Sequential(nn.Linear(2 * emb_dim, 2 * dim), nn.ReLU(inplace=True), nn.Linear(2 * dim, dim))
        elif kind == "gru":
            self.rnn = nn.GRU(emb_dim, emb_dim, batch_first=True, bidirectional=True)
            self.head = nn.Sequential(nn.Linear(2 * emb_dim, 2 * dim), nn.ReLU(inplace=True), nn.Linear(2 * dim, dim))
        else:
            self.head = nn.Sequential(nn.Linear(emb_dim, 2 * dim), nn.ReLU(inplace=True), nn.Linear(2 * dim, dim))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.ndim != 2:
            raise ValueError(f"TokenEncoder expects token ids [N, L], got shape {tuple(tokens.shape)}")
        tokens = tokens.long()
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= self.vocab_size):
            raise ValueError(f"token ids must lie in [0, {self.vocab_size}), got min {int(tokens.min())}, "
                             f"max {int(tokens.max())}")
        mask = tokens != 0
        emb = self.embed(tokens)  # [N, L, E]
        if self.kind == "bag":
            denom = mask.sum(1, keepdim=True).clamp(min=1).to(emb.dtype)
            pooled = (emb * mask.unsqueeze(-1)).sum(1) / denom
            return self.head(pooled)
        if self.kind == "cnn":
            h = self.conv((emb * mask.unsqueeze(-1)).transpose(1, 2)).relu()  # [N, 2E, L]
            h = h.masked_fill(~mask.unsqueeze(1), 0.0)  # ReLU output >= 0, so 0 is neutral for max
            return self.head(h.max(2).values)
        lengths = mask.sum(1).clamp(min=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(emb, lengths, batch_first=True, enforce_sorted=False)
        _, h = self.rnn(packed)  # h: [2, N, E]
        return self.head(torch.cat([h[0], h[1]], dim=1))


class FeatureMLP(nn.Module):
    """MLP adapter for precomputed features.

    Args:
        in_dim: d of the input features.
        dim: output feature size.
        hidden: hidden width (0 for a single linear map).

    Shapes:
        ``[N, d]`` (or ``[N, R, d]``, mean-pooled over R) -> ``[N, dim]``.
    """

    def __init__(self, in_dim: int, dim: int = 64, hidden: int = 256) -> None:
        super().__init__()
        if in_dim < 1:
            raise ValueError(f"FeatureMLP needs a positive input size, got {in_dim}")
        self.in_dim = in_dim
        if hidden > 0:
            self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, dim))
        else:
            self.net = nn.Linear(in_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if x.ndim == 3:
            x = x.mean(1)
        if x.ndim != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"FeatureMLP expects features [N, {self.in_dim}], got shape {tuple(x.shape)}")
        return self.net(x)

