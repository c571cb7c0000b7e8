"""Tests of simplexity.flows.maxent: the augmented-Lagrangian trainer and the Dirichlet check."""

from __future__ import annotations

import math
import time
from dataclasses import asdict

import pytest
import torch
from torch import nn
from torch.distributions.transforms import AffineTransform

from exact_error import raises_exactly
from simplexity.flows import (
    AugmentedLagrangian,
    GaussianBase,
    LazyFlow,
    MaxEntTrainer,
    MixtureBase,
    Planar,
    SimplexTransform,
    augmented_lagrangian_loss,
    dirichlet_constraints,
    dirichlet_entropy,
    update_multipliers,
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
    with pytest.raises(ValueError, match=r"^batch"):
        AugmentedLagrangian(batch=11)
    with pytest.raises(ValueError, match=r"^gamma"):
        AugmentedLagrangian(gamma=1.5)
    with pytest.raises(ValueError, match=r"^lr_decay"):
        AugmentedLagrangian(lr_decay=0.0)
    with pytest.raises(ValueError, match=r"^c0"):
        AugmentedLagrangian(c0=0.0)
    with pytest.raises(ValueError, match=r"^outer"):
        AugmentedLagrangian(outer=0)
    with pytest.raises(ValueError, match=r"^alpha"):
        dirichlet_constraints(torch.tensor([1.0]))
    with pytest.raises(ValueError, match=r"^alpha"):
        dirichlet_constraints(torch.tensor([1.0, -2.0]))


def test_augmented_lagrangian_loss_and_update_by_hand():
    g = torch.Generator().manual_seed(0)
    log_p = torch.randn(6, generator=g, dtype=torch.float64)
    t = torch.randn(6, 2, generator=g, dtype=torch.float64)
    lam = torch.tensor([0.3, -1.2], dtype=torch.float64)
    expected = (
        log_p.mean() + (lam * t.mean(0)).sum() + 0.5 * 1.7 * (t[:3].mean(0) * t[3:].mean(0)).sum()
    )
    torch.testing.assert_close(augmented_lagrangian_loss(log_p, t, lam, 1.7), expected)
    for bad_t, message in (
        (t[:, 0], "t must have shape (B, m) with B = 6 samples, got (6,)"),
        (t[:4], "t must have shape (B, m) with B = 6 samples, got (4, 2)"),
    ):
        with raises_exactly(ValueError, message):
            augmented_lagrangian_loss(log_p, bad_t, lam, 1.0)
    with raises_exactly(ValueError, "the batch must be even (it is split in halves), got 5"):
        augmented_lagrangian_loss(log_p[:5], t[:5], lam, 1.0)
    # c grows by beta unless the residual norm fell to gamma times the last one (or below)
    residual = torch.tensor([0.3, 0.4], dtype=torch.float64)  # norm 0.5
    new_lam, c = update_multipliers(lam, 2.0, residual, 2.0)  # 0.5 <= 0.25 * 2: kept
    torch.testing.assert_close(new_lam, lam + 2.0 * residual)
    assert c == 2.0
    assert update_multipliers(lam, 2.0, residual, 1.9)[1] == 8.0  # 0.5 > 0.475: x 4
    assert update_multipliers(lam, 2.0, residual, 1.0, gamma=0.6, beta=3.0)[1] == 2.0
    assert update_multipliers(lam, 2.0, residual, 1.0, gamma=0.4, beta=3.0)[1] == 6.0


def test_trainer_settings_state_and_learning_rate_decay():
    defaults = AugmentedLagrangian()
    assert (defaults.outer, defaults.inner, defaults.batch, defaults.lr, defaults.c0) == (
        10,
        3000,
        300,
        1e-3,
        0.05,
    )
    assert (defaults.gamma, defaults.beta, defaults.eval_samples, defaults.lr_decay) == (
        0.25,
        4.0,
        10000,
        1.0,
    )
    assert defaults.estimator_kwargs is None
    AugmentedLagrangian(batch=2, lr_decay=1.0, outer=1, inner=1, eval_samples=1)  # the bounds
    for kwargs, message in (
        ({"batch": 11}, "batch must be even (it is split in halves), got 11"),
        ({"gamma": 1.0}, "gamma must be in (0, 1), got 1.0"),
        ({"gamma": 0.0}, "gamma must be in (0, 1), got 0.0"),
        ({"lr_decay": 1.5}, "lr_decay must be in (0, 1], got 1.5"),
    ):
        with raises_exactly(ValueError, message):
            AugmentedLagrangian(**kwargs)
    for name in ("outer", "inner", "batch", "eval_samples", "lr", "c0", "beta"):
        with pytest.raises(ValueError, match=rf"^{name} must be"):
            AugmentedLagrangian(**{name: 0})
    torch.manual_seed(0)
    model = LazyFlow(GaussianBase(1), [Affine(1)])

    def constraint(z):
        return z - 1.0

    config = AugmentedLagrangian(outer=2, inner=1, batch=4, lr=0.1, lr_decay=0.5, eval_samples=8)
    trainer = MaxEntTrainer(model, constraint, config)
    assert trainer.c == config.c0 and trainer.lam is None and trainer.last_norm == math.inf
    assert trainer.state() == {"config": asdict(config), "lambda": None, "c": config.c0}
    assert trainer.optimizer.param_groups[0]["lr"] == 0.1
    trainer.loss()
    assert trainer.lam.tolist() == [0.0]
    history = trainer.fit()
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.025)
    assert trainer.last_norm == history[-1]["residual_norm"]
    state = trainer.state_dict()
    other = MaxEntTrainer(model, constraint, config)
    other.load_state_dict(state)
    assert torch.equal(other.lam, trainer.lam) and other.c == trainer.c
    assert other.last_norm == trainer.last_norm
    assert trainer.state() == {"config": asdict(config), "lambda": trainer.lam.tolist(),
                               "c": trainer.c}  # fmt: skip
    with raises_exactly(ValueError, "constraint must return shape (N, m), got (8,)"):
        MaxEntTrainer(model, lambda z: z.sum(-1), config).evaluate()


def test_dirichlet_constraints_exactly():
    alpha = torch.tensor([0.5, 2.0, 3.5], dtype=torch.float64)
    z = torch.tensor([[0.2, 0.3, 0.5], [0.6, 0.1, 0.3]], dtype=torch.float32)
    target = torch.special.digamma(alpha) - torch.special.digamma(alpha.sum())
    out = dirichlet_constraints(alpha)(z)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, z.log() - target.float())
    with raises_exactly(ValueError, "alpha must be a vector of length >= 2, got (2, 2)"):
        dirichlet_constraints(torch.ones(2, 2))
    with raises_exactly(ValueError, "alpha must be a vector of length >= 2, got (1,)"):
        dirichlet_constraints(torch.ones(1))
    pair = torch.tensor([0.5, 2.0], dtype=torch.float64)  # two categories: the smallest simplex
    expected = z[:, :2].double().log() - (
        torch.special.digamma(pair) - torch.special.digamma(pair.sum())
    )
    torch.testing.assert_close(dirichlet_constraints(pair)(z[:, :2].double()), expected)
    with pytest.raises(ValueError, match=r"^alpha must be"):
        dirichlet_constraints(torch.tensor([1.0, -1.0]))
    with pytest.raises(TypeError, match=r"^alpha must be a floating-point tensor"):
        dirichlet_constraints(torch.tensor([1, 2]))


def test_fit_records_reach_the_callback_with_their_index_and_elapsed_seconds():
    """Each outer record is passed to the callback as returned; ``outer`` counts from 0 and
    ``seconds`` is the time since fit began (within the wall time measured around the call)."""
    torch.manual_seed(0)
    model = LazyFlow(GaussianBase(1), [Affine(1)])
    config = AugmentedLagrangian(outer=3, inner=1, batch=4, eval_samples=8)
    seen = []
    before = time.perf_counter()
    history = MaxEntTrainer(model, lambda z: z - 1.0, config).fit(callback=seen.append)
    elapsed = time.perf_counter() - before
    assert seen == history and [r["outer"] for r in history] == [0, 1, 2]
    seconds = [r["seconds"] for r in history]
    assert 0 < seconds[0] < seconds[1] < seconds[2] <= elapsed
    assert set(history[0]) == {"outer", "entropy", "residual", "residual_norm", "lambda", "c",
                               "seconds"}  # fmt: skip


def test_evaluate_is_the_entropy_estimate_and_per_constraint_residual_of_fresh_samples():
    """Against the model's own samples under the same seed: -mean log p, and the mean of each of
    the m = 2 constraints over the batch (a vector, not one number)."""
    torch.manual_seed(0)
    model = LazyFlow(MixtureBase(2, 3), [Planar(2)]).double()

    def constraint(z):
        return torch.stack((z[:, 0] - 0.3, z[:, 1] * z[:, 0]), -1)

    kwargs = {"estimator": "nested_own", "num_inner": 4}
    config = AugmentedLagrangian(batch=4, eval_samples=64, estimator_kwargs=kwargs)
    trainer = MaxEntTrainer(model, constraint, config)
    torch.manual_seed(1)
    z, log_p = model().rsample_and_log_prob((64,), **kwargs)
    torch.manual_seed(1)
    entropy, residual = trainer.evaluate()
    assert residual.shape == (2,)
    torch.testing.assert_close(residual, constraint(z).mean(0), rtol=0, atol=0)
    torch.testing.assert_close(entropy, -log_p.mean(), rtol=0, atol=0)
    torch.manual_seed(1)
    _, default_log_p = model().rsample_and_log_prob((64,))  # the estimator settings matter
    assert not torch.equal(default_log_p, log_p)


def test_multipliers_start_at_zero_in_the_constraints_dtype_and_device():
    """lambda is made like the constraint values: float64 for a float64 model, on their device (a
    default device of "meta" must not be picked up)."""
    torch.manual_seed(0)
    model = LazyFlow(GaussianBase(2), [Affine(2)]).double()
    trainer = MaxEntTrainer(model, lambda z: z[:, :1] - 1.0, AugmentedLagrangian(batch=4))
    with torch.device("meta"):
        trainer.loss()
    assert trainer.lam.dtype == torch.float64 and trainer.lam.device.type == "cpu"
    assert trainer.lam.tolist() == [0.0]


def test_the_constraint_shape_is_checked_before_lambda_is_made_from_it():
    torch.manual_seed(0)
    model = LazyFlow(GaussianBase(1), [Affine(1)])
    config = AugmentedLagrangian(outer=1, inner=1, batch=4, eval_samples=8)
    with raises_exactly(ValueError, "constraint must return shape (N, m), got (4,)"):
        MaxEntTrainer(model, lambda z: z.sum(-1), config).loss()
    with raises_exactly(ValueError, "constraint must return shape (N, m), got (4, 1, 1)"):
        MaxEntTrainer(model, lambda z: z.unsqueeze(-1), config).step()
    with raises_exactly(ValueError, "constraint must return shape (N, m), got (8,)"):
        MaxEntTrainer(model, lambda z: z.sum(-1), config).evaluate()
