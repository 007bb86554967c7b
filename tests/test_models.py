"""Encoders and the dual encoder: shapes, unit norms, kinds, momentum update, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fnlab.data.base import MatchingDataset
from fnlab.models import (
    FeatureMLP,
    PixelCNN,
    TokenEncoder,
    build_dual_encoder,
    dual_encoder_from_spec,
    encode_side,
)


def tiny_dataset(a_kind="pixels", b_kind="tokens", n_a=6, channels=3, size=32):
    rng = np.random.default_rng(0)
    b_to_a = np.repeat(np.arange(n_a), 2)
    if a_kind == "pixels":
        a = rng.integers(0, 256, size=(n_a, channels, size, size), dtype=np.uint8)
    else:
        a = rng.standard_normal((n_a, 12)).astype(np.float32)
    if b_kind == "tokens":
        b = rng.integers(1, 9, size=(len(b_to_a), 5)).astype(np.int64)
        b[:, 3:] = 0
        vocab = ["<pad>", "<unk>"] + [f"w{i}" for i in range(7)]
    else:
        b = rng.standard_normal((len(b_to_a), 7)).astype(np.float32)
        vocab = None
    return MatchingDataset(name="tiny", split="train", b_to_a=b_to_a, a_inputs=a, b_inputs=b,
                           a_kind=a_kind, b_kind=b_kind, vocab=vocab)


@pytest.mark.parametrize("a_kind,b_kind,channels,size,text", [
    ("pixels", "tokens", 3, 32, "cnn"), ("pixels", "tokens", 1, 8, "gru"), ("features", "features", 3, 32, "cnn"),
    ("pixels", "features", 1, 16, "cnn"), ("features", "tokens", 1, 8, "bag"),
])
def test_dual_encoder_unit_outputs(a_kind, b_kind, channels, size, text):
    ds = tiny_dataset(a_kind, b_kind, channels=channels, size=size)
    torch.manual_seed(0)
    model = build_dual_encoder(ds, dim=16, text_encoder=text)
    ea = encode_side(model, ds.a_inputs, "a", batch_size=4)
    eb = encode_side(model, ds.b_inputs, "b", batch_size=5)
    assert ea.shape == (ds.n_a, 16) and eb.shape == (ds.n_b, 16)
    assert ea.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(ea, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(eb, axis=1), 1.0, atol=1e-5)
    # the spec rebuilds the same architecture: state dict loads strictly, outputs agree
    twin = dual_encoder_from_spec(model.spec)
    twin.load_state_dict(model.state_dict())
    np.testing.assert_allclose(encode_side(twin, ds.a_inputs, "a"), ea, atol=1e-5)
    np.testing.assert_allclose(encode_side(twin, ds.b_inputs, "b"), eb, atol=1e-5)


def test_gru_is_order_aware_and_ignores_padding():
    torch.manual_seed(0)
    enc = TokenEncoder(10, dim=8, kind="gru").eval()
    x = torch.tensor([[2, 3, 4, 0, 0], [4, 3, 2, 0, 0]])
    out = enc(x)
    assert not torch.allclose(out[0], out[1])
    # extra padding does not change the encoding
    x_long = torch.cat([x, torch.zeros(2, 3, dtype=torch.long)], dim=1)
    torch.testing.assert_close(enc(x_long), out, atol=1e-5, rtol=1e-5)
    bag = TokenEncoder(10, dim=8, kind="bag").eval()
    torch.testing.assert_close(bag(x)[0], bag(x)[1])  # a bag ignores order
    torch.testing.assert_close(bag(x_long), bag(x))


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="token ids"):
        TokenEncoder(5, dim=4)(torch.tensor([[7, 1]]))
    with pytest.raises(ValueError, match="PixelCNN expects"):
        PixelCNN(3, (32, 32), dim=4)(torch.zeros(2, 1, 32, 32))
    with pytest.raises(ValueError, match="FeatureMLP expects"):
        FeatureMLP(6, 4)(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="kind"):
        TokenEncoder(5, kind="lstm")
    ds = tiny_dataset()
    ds.a_inputs = None
    with pytest.raises(ValueError, match="a_inputs"):
        build_dual_encoder(ds)


def test_pixel_cnn_norm_option_and_old_specs():
    ds = tiny_dataset("pixels", "tokens", channels=3, size=32)
    model = build_dual_encoder(ds, dim=8)
    assert model.spec["norm"] == "group"
    assert any(isinstance(m, torch.nn.GroupNorm) for m in model.encoder_a.modules())
    old = {k: v for k, v in model.spec.items() if k != "norm"}  # a spec saved before the option
    plain = dual_encoder_from_spec(old)
    assert not any(isinstance(m, torch.nn.GroupNorm) for m in plain.encoder_a.modules())
    with pytest.raises(ValueError, match="norm"):
        PixelCNN(3, (32, 32), norm="batch")
