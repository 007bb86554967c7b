"""Memory: ring-buffer wraparound against a Python list reference, masks, momentum update."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fnlab import samplers
from fnlab.retrieval.memory import FeatureQueue, make_momentum_copy, momentum_update


@pytest.mark.parametrize("size,chunks", [(5, [2, 2, 2, 3]), (8, [3, 11, 1]), (4, [4, 4]), (7, [0, 6, 2, 9])])
def test_ring_buffer_matches_list_reference(size, chunks):
    q = FeatureQueue(dim=3, size=size, dim_b=2)
    ref: list[tuple[list[float], list[float], int]] = []
    next_id = 0
    for n in chunks:
        a = torch.arange(next_id, next_id + n, dtype=torch.float32)[:, None].expand(n, 3) * 1.0
        b = -torch.arange(next_id, next_id + n, dtype=torch.float32)[:, None].expand(n, 2)
        ids = torch.arange(next_id, next_id + n)
        q.enqueue(a, b, ids)
        ref.extend((a[i].tolist(), b[i].tolist(), int(ids[i])) for i in range(n))
        ref = ref[-size:]
        next_id += n
        fa, fb, fi = q.features()
        assert q.filled == len(ref)
        assert fi.tolist() == [r[2] for r in ref]
        assert fa.tolist() == [r[0] for r in ref] and fb.tolist() == [r[1] for r in ref]


def test_pool_with_a_sampler():
    q = FeatureQueue(dim=4, size=6)
    g = torch.Generator().manual_seed(0)
    feats = torch.nn.functional.normalize(torch.randn(9, 4, generator=g), dim=1)
    q.enqueue(feats, feats, torch.tensor([0, 1, 2, 0, 1, 2, 3, 4, 0]))  # keeps ids 0 1 2 3 4 0
    anchors = torch.tensor([0, 5])
    ba = torch.nn.functional.normalize(torch.randn(2, 4, generator=g), dim=1)
    pa, pb, pid = q.pool(ba, ba, anchors)
    assert pa.shape == (8, 4) and pid.tolist() == [0, 5, 0, 1, 2, 3, 4, 0]
    pool_mask = anchors[:, None] == pid[None, :]
    assert pool_mask[:, 2:].tolist() == [[True, False, False, False, False, True], [False] * 6]
    sims = ba @ pb.T
    idx = samplers.build("fne").sample(sims, sims.diagonal(), pool_mask, k=3, generator=g)
    assert not pool_mask.gather(1, idx).any()


def test_queue_errors():
    q = FeatureQueue(dim=3, size=4)
    with pytest.raises(ValueError, match="feats_a"):
        q.enqueue(torch.zeros(2, 5), torch.zeros(2, 3), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="ids"):
        q.enqueue(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2))
    with pytest.raises(ValueError, match="feats_b"):
        q.enqueue(torch.zeros(2, 3), torch.zeros(1, 3), torch.zeros(2, dtype=torch.long))
    assert q.filled == 0 and q.features()[0].shape == (0, 3)
    q.enqueue(torch.ones(3, 3), torch.ones(3, 3), torch.tensor([7, 8, 9]))
    assert q.features()[2].tolist() == [7, 8, 9] and q.filled == 3


def test_momentum_update_formula():
    torch.manual_seed(0)
    online = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    target = make_momentum_copy(online)
    assert all(not p.requires_grad for p in target.parameters())
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with torch.no_grad():
        for p in online.parameters():
            p.add_(1.0)
    online.train()(torch.randn(5, 3))  # changes BatchNorm running stats
    momentum_update(online, target, m=0.9)
    for name, p in online.named_parameters():
        want = 0.9 * before[name] + 0.1 * p.detach()
        torch.testing.assert_close(dict(target.named_parameters())[name], want)
    torch.testing.assert_close(target[1].running_mean, online[1].running_mean)
    with pytest.raises(ValueError, match="different parameters"):
        momentum_update(online, nn.Linear(3, 4))
    with pytest.raises(ValueError, match="'m'"):
        momentum_update(online, target, m=1.5)
