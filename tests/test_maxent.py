"""Tests of simplexity.flows.maxent: the augmented-Lagrangian trainer and the Dirichlet check."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.distributions.transforms import AffineTransform

from simplexity.flows import (
    AugmentedLagrangian,
    GaussianBase,
    LazyFlow,
    MaxEntTrainer,
    MixtureBase,
    Planar,
    SimplexTransform,
    dirichlet_constraints,
    dirichlet_entropy,
)


class Affine(nn.Module):
    """Trainable elementwise affine map, returning torch's AffineTransform."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(features))
        self.log_scale = nn.Parameter(torch.zeros(features))

    def forward(self) -> AffineTransform:
        return AffineTransform(self.loc, self.log_scale.exp(), event_dim=1)


def test_dirichlet_reference_values():
    alpha = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    assert dirichlet_entropy(alpha).item() == pytest.approx(-1.2443, abs=1e-4)
    z = torch.distributions.Dirichlet(alpha).sample((200000,))
    residual = dirichlet_constraints(alpha)(z).mean(0)
    assert residual.abs().max() < 0.01


def test_recovers_the_gaussian_maximum_entropy_solution():
    # max H(p) on R s.t. E[z] = 1, E[z^2] = 5  ->  N(1, 4), entropy 0.5 log(2 pi e 4); the
    # start N(0, 1) has residual norm sqrt(17) and entropy 0.69 below the truth.
    torch.manual_seed(0)
    model = LazyFlow(GaussianBase(1), [Affine(1)])

    def constraint(z):
        return torch.cat([z - 1.0, z.square() - 5.0], -1)

    config = AugmentedLagrangian(
        outer=5, inner=200, batch=400, lr=0.02, c0=1.0, beta=2.0, eval_samples=50000
    )
    history = MaxEntTrainer(model, constraint, config).fit()
    truth = 0.5 * math.log(2 * math.pi * math.e * 4.0)
    # Tolerances: Adam at lr 0.02 keeps the parameters jittering by a few hundredths.
    assert history[-1]["entropy"] == pytest.approx(truth, abs=0.06)
    assert history[-1]["residual_norm"] < 0.4
    assert model.transforms[0].loc.item() == pytest.approx(1.0, abs=0.1)
    assert model.transforms[0].log_scale.exp().item() == pytest.approx(2.0, abs=0.1)


def test_penalty_grows_when_the_residual_stalls():
    torch.manual_seed(0)
    model = LazyFlow(GaussianBase(1), [Affine(1)])

    def constraint(z):  # unsatisfiable: E[1] = 0 (the residual never falls)
        return torch.ones_like(z)

    config = AugmentedLagrangian(outer=3, inner=2, batch=10, c0=0.5, beta=3.0, eval_samples=10)
    trainer = MaxEntTrainer(model, constraint, config)
    history = trainer.fit()
    # no test after the first outer iteration (nothing to compare with), then c grows by beta
    assert [h["c"] for h in history] == [0.5, 0.5, 1.5]
    # lambda accumulates c * R (R = 1) after each outer iteration
    assert history[-1]["lambda"][0] == pytest.approx(0.5 + 0.5 + 1.5)


@pytest.mark.parametrize("base", ["gaussian", "mixture"])
def test_simplex_flow_runs_with_any_base(base):
    torch.manual_seed(0)
    base_module = GaussianBase(2) if base == "gaussian" else MixtureBase(2, 3)
    model = LazyFlow(base_module, [Planar(2), Planar(2), SimplexTransform()])
    alpha = torch.tensor([1.0, 2.0, 3.0])
    kwargs = {"estimator": "nested_own", "num_inner": 4} if base == "mixture" else None
    config = AugmentedLagrangian(
        outer=2, inner=20, batch=64, eval_samples=256, estimator_kwargs=kwargs
    )
    history = MaxEntTrainer(model, dirichlet_constraints(alpha), config).fit()
    assert len(history) == 2 and all(math.isfinite(h["entropy"]) for h in history)
    z = model().sample((10,))
    assert torch.allclose(z.sum(-1), torch.ones(10), atol=1e-5)


def test_bad_configuration():
    with pytest.raises(ValueError, match="batch"):
        AugmentedLagrangian(batch=11)
    with pytest.raises(ValueError, match="gamma"):
        AugmentedLagrangian(gamma=1.5)
    with pytest.raises(ValueError, match="lr_decay"):
        AugmentedLagrangian(lr_decay=0.0)
    with pytest.raises(ValueError, match="c0"):
        AugmentedLagrangian(c0=0.0)
    with pytest.raises(ValueError, match="outer"):
        AugmentedLagrangian(outer=0)
    with pytest.raises(ValueError, match="alpha"):
        dirichlet_constraints(torch.tensor([1.0]))
    with pytest.raises(ValueError, match="alpha"):
        dirichlet_constraints(torch.tensor([1.0, -2.0]))
