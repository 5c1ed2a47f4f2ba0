"""LARS, the warmup-cosine schedule and EMA against their formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from class_core.train.ema import EMA, ema_decay
from class_core.train.lars import LARS
from class_core.train.schedule import cosine_factor, cosine_with_warmup, warmup_steps_for


def lars_reference(params, grads_fn, steps, lr, wd, mom, eta):
    """numpy transcription: g += wd p; g *= eta ||p|| / ||g||; m = mom m + g; p -= lr m (not for 1-D)."""
    ps = [p.copy() for p in params]
    ms = [np.zeros_like(p) for p in params]
    for _ in range(steps):
        gs = grads_fn(ps)
        for k, (p, g) in enumerate(zip(ps, gs, strict=True)):
            if p.ndim > 1:
                g = g + wd * p
                pn, gn = np.linalg.norm(p), np.linalg.norm(g)
                g = g * (eta * pn / gn if pn > 0 and gn > 0 else 1.0)
            ms[k] = mom * ms[k] + g
            ps[k] = p - lr * ms[k]
    return ps


def test_lars_matches_formula_on_least_squares() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 5))
    y = rng.normal(size=(32, 3))
    w0, b0 = rng.normal(size=(5, 3)), rng.normal(size=(3,))

    def grads(ps):
        w, b = ps
        r = x @ w + b - y
        return [2 * x.T @ r / len(x), 2 * r.mean(0)]

    lr, wd, mom, eta = 0.7, 1e-2, 0.9, 1e-3
    ref = lars_reference([w0, b0], grads, 6, lr, wd, mom, eta)

    w = torch.tensor(w0, requires_grad=True)
    b = torch.tensor(b0, requires_grad=True)
    opt = LARS([w, b], lr=lr, weight_decay=wd, momentum=mom, trust_coefficient=eta)
    xt, yt = torch.tensor(x), torch.tensor(y)
    for _ in range(6):
        opt.zero_grad()
        ((xt @ w + b - yt) ** 2).sum(1).mean().backward()
        opt.step()
    np.testing.assert_allclose(w.detach().numpy(), ref[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(b.detach().numpy(), ref[1], rtol=1e-12, atol=1e-12)


def test_lars_1d_params_get_plain_momentum_and_no_decay() -> None:
    p = torch.tensor([1.0, -2.0], requires_grad=True)
    opt = LARS([p], lr=0.1, weight_decay=0.5, momentum=0.9)
    p.grad = torch.tensor([1.0, 1.0])
    opt.step()
    assert torch.allclose(p.detach(), torch.tensor([0.9, -2.1]))
    opt.step()  # momentum: m = 0.9 * 1 + 1 = 1.9
    assert torch.allclose(p.detach(), torch.tensor([0.9 - 0.19, -2.1 - 0.19]))


def test_lars_zero_weights_or_grads_fall_back_to_unit_ratio() -> None:
    p = torch.zeros(2, 2, requires_grad=True)
    opt = LARS([p], lr=1.0, weight_decay=0.0, momentum=0.0)
    p.grad = torch.ones(2, 2)
    opt.step()
    assert torch.allclose(p.detach(), -torch.ones(2, 2))


def test_lars_rejects_bad_hyperparameters() -> None:
    with pytest.raises(ValueError, match="momentum"):
        LARS([torch.zeros(1, requires_grad=True)], momentum=1.0)
    with pytest.raises(ValueError, match="trust_coefficient"):
        LARS([torch.zeros(1, requires_grad=True)], trust_coefficient=0.0)


def test_schedule() -> None:
    assert warmup_steps_for(10) == 50  # 5 epochs of 10 steps < 500
    assert warmup_steps_for(1000) == 500
    total, warm = 100, 10
    assert cosine_factor(0, total, warm) == 0.0
    assert cosine_factor(5, total, warm) == pytest.approx(0.5)
    assert cosine_factor(10, total, warm) == pytest.approx(1.0)
    assert cosine_factor(55, total, warm) == pytest.approx(0.5)
    assert cosine_factor(100, total, warm) == pytest.approx(0.0, abs=1e-12)
    mid = 10 + 90 / 3
    assert cosine_factor(int(mid), total, warm, min_factor=0.1) == pytest.approx(
        0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 3))
    )
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=2.0)
    sched = cosine_with_warmup(opt, total, warm)
    lrs = []
    for _ in range(total):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([2.0 * cosine_factor(s, total, warm) for s in range(total)])


def test_ema_decay_formula() -> None:
    assert ema_decay(0) == 0.0 and ema_decay(1) == 0.0  # first two updates copy (DP/diffusers)
    assert ema_decay(2) == pytest.approx(1 - 2**-0.75)
    assert ema_decay(10_001) == pytest.approx(0.999, abs=1e-6)
    assert ema_decay(10**9) == 0.9999  # clipped at max_decay
    assert ema_decay(50, power=2 / 3, update_after_step=10) == pytest.approx(1 - 40 ** (-2 / 3))
    assert ema_decay(3, min_decay=0.9) == 0.9


def test_ema_tracks_weights_with_warmup() -> None:
    net = torch.nn.Linear(3, 2)
    net.register_buffer("count", torch.zeros(()))
    ema = EMA(net, power=0.75)
    ref = {k: v.clone() for k, v in net.state_dict().items()}
    for step in range(5):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p))
            net.count += 1
        d = ema.update(net)
        assert d == ema_decay(step)
        for k, v in net.state_dict().items():
            ref[k] = v.clone() if k == "count" else d * ref[k] + (1 - d) * v
    for k, v in ema.model.state_dict().items():
        torch.testing.assert_close(v, ref[k])
    assert not any(p.requires_grad for p in ema.model.parameters()) and not ema.model.training
    state = ema.state_dict()
    ema2 = EMA(net)
    ema2.load_state_dict(state)
    assert ema2.optimization_step == 5 and ema2.get_decay(5) == ema.get_decay(5)
