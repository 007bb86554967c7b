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


# ----------------------------------------------------------------------------- heads over a user's own embeddings
def embeddings_dataset(n_a=30, d_a=16, d_b=16, *, own=True, seed=0):
    """Features on both sides; B rows are noisy copies of their A rows (mapped when sizes differ)."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n_a, d_a)).astype(np.float32)
    b_to_a = np.repeat(np.arange(n_a), 2)
    mix = np.eye(d_a, d_b) if d_a == d_b else np.linalg.qr(rng.standard_normal((max(d_a, d_b),) * 2))[0][:d_a, :d_b]
    b = (a[b_to_a] @ mix + 0.05 * rng.standard_normal((len(b_to_a), d_b))).astype(np.float32)
    return MatchingDataset(name="mine", split="train", b_to_a=b_to_a, a_inputs=a, b_inputs=b, a_kind="features",
                           b_kind="features", inputs_are_embeddings=own)


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("head", ["linear", "residual"])
def test_identity_start_heads_begin_as_the_raw_embeddings(head):
    ds = embeddings_dataset()
    torch.manual_seed(0)
    model = build_dual_encoder(ds, dim=64, head=head)  # dim is the embeddings' own size, not 64
    assert model.spec["head"] == head and model.spec["head_start"] == "identity" and model.spec["dim"] == 16
    assert model.starts_from_inputs
    np.testing.assert_allclose(encode_side(model, ds.a_inputs, "a"), unit(ds.a_inputs), atol=1e-6)
    np.testing.assert_allclose(encode_side(model, ds.b_inputs, "b"), unit(ds.b_inputs), atol=1e-6)
    twin = dual_encoder_from_spec(model.spec)  # the spec alone rebuilds it; weights load strictly
    twin.load_state_dict(model.state_dict())
    np.testing.assert_allclose(encode_side(twin, ds.b_inputs, "b"), unit(ds.b_inputs), atol=1e-6)
    # the heads are trainable: a gradient step moves the output away from the start
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    fa = model.encode_a(torch.from_numpy(ds.a_inputs))
    (fa[:, 0].sum()).backward()
    opt.step()
    assert not np.allclose(encode_side(model, ds.a_inputs, "a"), unit(ds.a_inputs), atol=1e-4)


def test_heads_default_by_dataset_and_old_specs_load_as_mlp():
    own, builtin = embeddings_dataset(own=True), embeddings_dataset(own=False)
    from fnlab.models import default_head

    assert build_dual_encoder(own).spec["head"] == default_head(own)
    plain = build_dual_encoder(builtin, dim=8)
    assert plain.spec["head"] == "mlp" and isinstance(plain.encoder_a, FeatureMLP) and not plain.starts_from_inputs
    old = {k: v for k, v in plain.spec.items() if k != "head"}  # a spec saved before heads existed
    again = dual_encoder_from_spec(old)
    again.load_state_dict(plain.state_dict())
    assert isinstance(again.encoder_b, FeatureMLP)
    with pytest.raises(ValueError, match="head"):
        build_dual_encoder(own, head="transformer")
    with pytest.raises(ValueError, match="features on both sides"):
        build_dual_encoder(tiny_dataset("pixels", "tokens"), head="linear")


def procrustes_reference(x, y, trials=4000, seed=0):
    """Best trace(W^T x^T y) over random semi-orthogonal W (a slow search the closed form must beat)."""
    rng = np.random.default_rng(seed)
    m = unit(x).T @ unit(y)
    best = -np.inf
    for _ in range(trials):
        q = np.linalg.qr(rng.standard_normal((max(m.shape), max(m.shape))))[0][: m.shape[0], : m.shape[1]]
        best = max(best, float(np.trace(q.T @ m)))
    return best


@pytest.mark.parametrize("d_x,d_y", [(6, 6), (8, 5), (5, 8)])
def test_procrustes_map_recovers_a_rotation_and_beats_any_other_semi_orthogonal_map(d_x, d_y):
    from fnlab.models import procrustes_map

    rng = np.random.default_rng(d_x * 10 + d_y)
    q = np.linalg.qr(rng.standard_normal((max(d_x, d_y),) * 2))[0][:d_x, :d_y]
    x = rng.standard_normal((200, d_x))
    y = x @ q
    w = procrustes_map(x, y)
    assert w.shape == (d_x, d_y)
    m = unit(x).T @ unit(y)
    assert float(np.trace(w.T @ m)) >= procrustes_reference(x, y) - 1e-6
    if d_x <= d_y:  # x @ q loses nothing: the rotation itself comes back
        np.testing.assert_allclose(w, q, atol=1e-4)


def test_procrustes_map_sends_directions_no_pair_spans_to_zero():
    from fnlab.models import procrustes_map

    rng = np.random.default_rng(0)
    x = np.zeros((3, 10))
    x[:, :3] = rng.standard_normal((3, 3))  # three pairs span three of the ten input directions
    y = rng.standard_normal((3, 4))
    w = procrustes_map(x, y)
    np.testing.assert_allclose(w[3:], 0.0, atol=1e-6)
    assert np.linalg.matrix_rank(w) == 3
    with pytest.raises(ValueError, match="paired rows"):
        procrustes_map(np.zeros((3, 4)), np.zeros((2, 4)))


def test_sides_of_different_sizes_start_from_the_procrustes_map():
    ds = embeddings_dataset(d_a=24, d_b=12)
    model = build_dual_encoder(ds, head="linear")
    assert model.spec["head_start"] == "procrustes" and model.spec["dim"] == 12
    ea, eb = encode_side(model, ds.a_inputs, "a"), encode_side(model, ds.b_inputs, "b")
    np.testing.assert_allclose(eb, unit(ds.b_inputs), atol=1e-6)  # the smaller side keeps its own space
    top1 = np.argmax(eb @ ea.T, axis=1)
    assert (top1 == ds.b_to_a).mean() > 0.95  # the initial model already ranks the labelled pairs
    twin = dual_encoder_from_spec(model.spec)  # rebuilt without the data: the map comes with the weights
    twin.load_state_dict(model.state_dict())
    np.testing.assert_allclose(encode_side(twin, ds.a_inputs, "a"), ea, atol=1e-6)
