"""The ``gradient-quality`` experiment: smoke runs, and its pieces against independent truth (a
brute-force ELBO, finite differences, the theory of the estimators it measures)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

pytest.importorskip("lightning")

from simplexity.distributions import igr_zero_temperature_probs
from simplexity_lab import experiments
from simplexity_lab.engine import run
from simplexity_lab.engine.config import ConfigError
from simplexity_lab.experiments.gradient_quality import (
    METHODS,
    GradientQualityConfig,
    GradientQualityTask,
    _igr_raw,
    gradient_metrics,
    report,
)

DIGITS = ["dataset=digits", "net=linear"]


def _run(tmp_path, overrides=()):
    return run("gradient-quality", budget="smoke", overrides=list(overrides), out=tmp_path,
               progress_bar=False, plots=False)  # fmt: skip


def test_registered_with_smoke_and_paper_budgets() -> None:
    exp = experiments.get("gradient-quality")
    assert {"smoke", "paper"} <= set(exp.budgets)
    paper = exp.make_config("paper")
    assert paper.estimates == 500 and paper.evaluations == 4 and set(paper.methods) == set(METHODS)


def test_smoke_vae(tmp_path) -> None:
    result = _run(tmp_path, DIGITS)
    config = result.record["config"]
    rows = result.record["summary"]["rows"]
    pathwise = len(METHODS) - 2 + len(config["decoupled_forward"]) - 1  # decoupled_st: one per τ_f
    per_target = pathwise * len(config["temperatures"]) + 2  # reinforce and rloo: no temperature
    assert len(rows) == 2 * 2 * per_target  # stages x targets
    m = result.metrics
    for stage in ("init", "trained"):
        for target in ("rec", "elbo"):
            assert -1 <= m[f"test/{stage}/{target}/rloo/cosine"] <= 1
            assert m[f"test/{stage}/{target}/reinmax/tau"] in config["temperatures"]
    assert all(math.isfinite(r["rel_variance"]) for r in rows)
    text = report([result.path])
    assert "Discrete VAE on digits" in text and "| rloo | — |" in text


def test_toy_estimators_behave_as_their_theory_says(tmp_path) -> None:
    """On the quadratic toy, against the exact gradient by enumeration: RLOO is unbiased, ReinMax
    at τ = 1 is unbiased (Heun's method is exact for a quadratic), straight-through is not."""
    result = _run(tmp_path, ["model=toy", "estimates=3000", "chunk=1000", "stages=init",
                             "temperatures=1.0", "evaluations=4"])  # fmt: skip
    rows = {r["method"]: r for r in result.record["summary"]["rows"]}
    for name in ("rloo", "reinforce", "reinmax"):
        assert rows[name]["rel_error"] < 4 * rows[name]["noise_floor"], rows[name]
    assert rows["reinmax"]["cosine"] > 0.99
    st = rows["straight_through"]
    assert st["rel_error"] > 4 * st["noise_floor"]


def test_exact_elbo_against_brute_force() -> None:
    torch.manual_seed(0)
    config = GradientQualityConfig(dataset="digits", net="linear", num_variables=2,
                                   num_categories=3, eval_size=5)  # fmt: skip
    task = GradientQualityTask(config)
    x = task.splits["test"].data[:4]
    value = task.exact_elbo(x)
    probs = torch.softmax(task._raw(x), -1)
    brute = torch.zeros(4)
    for h in itertools.product(range(3), repeat=2):
        z = torch.nn.functional.one_hot(torch.tensor(h), 3).float()
        log_px = task.model.likelihood(z.expand(4, 2, 3)).log_prob(x)
        weight = probs[:, 0, h[0]] * probs[:, 1, h[1]]
        brute += weight * log_px
    kl = (probs * (probs * 3).log()).sum((-1, -2))
    torch.testing.assert_close(value, brute - kl, rtol=1e-5, atol=1e-4)


def test_exact_gradient_by_finite_differences() -> None:
    config = GradientQualityConfig(model="toy", num_variables=2, num_categories=3)
    task = GradientQualityTask(config).double()
    objective = task._objective(None)

    def value(theta: torch.Tensor) -> torch.Tensor:
        return objective.exact(torch.log_softmax(theta, -1), task.configurations.double())

    assert torch.autograd.gradcheck(value, (task.theta.detach().clone().requires_grad_(),))


def test_gradient_metrics() -> None:
    torch.manual_seed(1)
    exact = torch.tensor([1.0, -2.0, 0.5, 0.0], dtype=torch.float64)
    noise = torch.randn(20_000, 4, dtype=torch.float64)
    unbiased = gradient_metrics(exact + noise, exact)
    assert unbiased["rel_bias"] < 0.02 and abs(unbiased["cosine"] - 1) < 1e-3
    assert unbiased["rel_variance"] == pytest.approx(4 / 5.25, rel=0.03)
    biased = gradient_metrics(exact * 0.5 + noise, exact)
    assert biased["rel_bias"] == pytest.approx(0.5, abs=0.02)
    assert biased["rel_rmse"] == pytest.approx(math.sqrt(0.25 + 4 / 5.25), rel=0.03)


def test_igr_parameters_match_the_categorical() -> None:
    probs = torch.softmax(torch.randn(5, 2, 4) * 2, -1)
    raw, tv = _igr_raw(probs)
    assert raw.shape == (5, 2, 6) and tv < 1e-4
    loc, pre = raw.split(3, -1)
    pmf = igr_zero_temperature_probs(loc, torch.nn.functional.softplus(pre) + 1e-4)
    torch.testing.assert_close(pmf, probs, atol=1e-4, rtol=0)


def test_bad_configs() -> None:
    exp = experiments.get("gradient-quality")
    for bad in (["methods=igr_sb"], ["num_variables=6", "num_categories=8"], ["evaluations=1"],
                ["stages=later"], ["temperatures=0"], ["estimates=1"]):  # fmt: skip
        with pytest.raises((ValueError, ConfigError)):
            exp.make_config("smoke", bad)
