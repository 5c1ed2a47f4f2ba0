"""soft_info_nce against a loop-by-loop transcription of the paper's Eq. 1."""

from __future__ import annotations

import math

import pytest
import torch

from class_core.losses import soft_info_nce, weight_stats


def eq1_reference(z: list[list[float]], w: list[list[float]], tau: float, hard: bool = False) -> float:
    """Eq. 1 with plain Python loops: self excluded from the denominator, rows without positives dropped."""
    b = len(z)
    s = [[sum(a * c for a, c in zip(z[i], z[j], strict=True)) / tau for j in range(b)] for i in range(b)]
    total, kept = 0.0, 0
    for i in range(b):
        wi = [0.0 if j == i else ((1.0 if w[i][j] > 0 else 0.0) if hard else w[i][j]) for j in range(b)]
        if sum(wi) == 0:
            continue
        denom = sum(math.exp(s[i][k]) for k in range(b) if k != i)
        num = sum(wi[j] * (s[i][j] - math.log(denom)) for j in range(b) if wi[j] > 0)
        total += num / sum(wi)
        kept += 1
    return -total / kept if kept else 0.0


def random_case(b: int, d: int, density: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z = torch.nn.functional.normalize(torch.randn(b, d, generator=g, dtype=torch.float64), dim=1)
    w = torch.rand(b, b, generator=g, dtype=torch.float64)
    w = torch.where(torch.rand(b, b, generator=g, dtype=torch.float64) < density, w, torch.zeros_like(w))
    w = torch.triu(w, 1)
    w = w + w.T
    w[0] = 0.0  # a row (and column) without positives
    w[:, 0] = 0.0
    return z, w


@pytest.mark.parametrize("hard", [False, True])
@pytest.mark.parametrize(("b", "d", "density", "tau", "seed"), [(7, 5, 0.3, 0.05, 0), (12, 16, 0.15, 0.5, 1)])
def test_matches_loop_reference(b: int, d: int, density: float, tau: float, seed: int, hard: bool) -> None:
    z, w = random_case(b, d, density, seed)
    # a non-zero diagonal must be ignored
    w_diag = w.clone()
    w_diag.fill_diagonal_(0.7)
    got, stats = soft_info_nce(z, w_diag, tau, hard=hard, return_stats=True)
    ref = eq1_reference(z.tolist(), w.tolist(), tau, hard)
    assert got.item() == pytest.approx(ref, rel=1e-10, abs=1e-10)
    assert stats.rows_kept == int((w.sum(1) > 0).sum()) < b
    assert stats.positive_pairs == int((torch.triu(w, 1) > 0).sum())
    # float32 agrees to float32 precision
    got32 = soft_info_nce(z.float(), w.float(), tau, hard=hard)
    assert got32.item() == pytest.approx(ref, rel=1e-4)


def test_asymmetric_weights_match_reference() -> None:
    z, _ = random_case(6, 4, 0.0, 3)
    g = torch.Generator().manual_seed(4)
    w = torch.rand(6, 6, generator=g, dtype=torch.float64) * (torch.rand(6, 6, generator=g) < 0.4)
    ref = eq1_reference(z.tolist(), w.tolist(), 0.1)
    assert soft_info_nce(z, w, 0.1).item() == pytest.approx(ref, rel=1e-10)


def test_stable_at_small_temperature() -> None:
    z, w = random_case(16, 8, 0.3, 5)
    loss = soft_info_nce(z.float(), w.float(), tau=1e-3)
    assert torch.isfinite(loss)
    assert loss.item() == pytest.approx(eq1_reference(z.tolist(), w.tolist(), 1e-3), rel=1e-3)


def test_no_positive_anywhere_gives_zero_with_graph() -> None:
    z = torch.nn.functional.normalize(torch.randn(5, 3), dim=1).requires_grad_()
    loss, stats = soft_info_nce(z, torch.zeros(5, 5), return_stats=True)
    assert loss.item() == 0.0 and stats.rows_kept == 0 and stats.anchor_share == 0.0
    loss.backward()
    assert torch.equal(z.grad, torch.zeros_like(z))


def test_gradients_flow_and_match_finite_differences() -> None:
    z, w = random_case(6, 4, 0.4, 6)
    raw = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x: soft_info_nce(torch.nn.functional.normalize(x, dim=1), w, 0.2), (raw,)
    )
    zz = z.clone().requires_grad_()
    soft_info_nce(zz, w, 0.05).backward()
    assert torch.isfinite(zz.grad).all() and zz.grad.abs().sum() > 0
    assert zz.grad[0].abs().sum() > 0  # row 0 has no positive but is still a negative of the others


def test_positives_pulled_together_by_a_gradient_step() -> None:
    z, w = random_case(10, 6, 0.3, 7)
    x = z.clone().requires_grad_()
    loss0 = soft_info_nce(x, w, 0.1)
    loss0.backward()
    x2 = torch.nn.functional.normalize(x.detach() - 0.05 * x.grad, dim=1)
    assert soft_info_nce(x2, w, 0.1) < loss0


def test_half_precision_input_is_computed_in_float32() -> None:
    z, w = random_case(8, 4, 0.4, 8)
    loss = soft_info_nce(z.to(torch.bfloat16), w.float())
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(eq1_reference(z.tolist(), w.tolist(), 0.05), rel=0.05)


def test_weight_stats() -> None:
    w = torch.tensor([[0.5, 0.2, 0.0], [0.2, 0.0, 0.0], [0.0, 0.0, 0.0]])
    s = weight_stats(w)
    assert (s.batch_size, s.rows_kept, s.positive_pairs) == (3, 2, 1)


def test_bad_input_errors_name_the_problem() -> None:
    z = torch.nn.functional.normalize(torch.randn(4, 3), dim=1)
    with pytest.raises(ValueError, match=r"w must be \(B, B\)"):
        soft_info_nce(z, torch.zeros(3, 3))
    with pytest.raises(ValueError, match="non-negative"):
        soft_info_nce(z, -torch.ones(4, 4))
    with pytest.raises(ValueError, match="NaN"):
        soft_info_nce(z, torch.full((4, 4), float("nan")))
    with pytest.raises(ValueError, match="tau"):
        soft_info_nce(z, torch.zeros(4, 4), tau=0.0)
    with pytest.raises(ValueError, match=r"z must be \(B, d\)"):
        soft_info_nce(z[0], torch.zeros(4, 4))
