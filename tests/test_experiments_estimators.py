"""The straight-through family in the lab's discrete VAE: ``igr-vae`` takes each name, trains,
and evaluates the valid importance-weighted bound of the discrete model."""

from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("lightning")

from simplexity.distributions import OneHotSurrogate
from simplexity_lab import experiments  # noqa: F401  (registers igr-vae)
from simplexity_lab.engine import run
from simplexity_lab.models.discrete_vae import DiscreteVAE

NAMES = ["straight_through", "st_gumbel", "gumbel_rao", "reinmax", "decoupled_st"]


@pytest.mark.parametrize("name", NAMES)
def test_discrete_vae_takes_the_name(name: str) -> None:
    torch.manual_seed(0)
    vae = DiscreteVAE(16, num_variables=3, num_categories=4, relaxation=name, net="linear")
    x = torch.rand(5, 16).round()
    q = vae.posterior(x, 1.0)
    assert isinstance(q, OneHotSurrogate)
    torch.testing.assert_close(vae.discrete_posterior(q), q.probs)  # already discrete
    torch.testing.assert_close(vae.discrete_prior(x), torch.full((4,), 0.25))
    loss, _ = vae.loss(x, 1.0)
    loss.backward()
    assert vae.analytic_kl is True  # the categorical KL, in closed form
    assert all(p.grad is not None for p in vae.encoder.parameters())
    bound = vae.iw_bound(x, num_samples=200)
    assert bound.shape == (5,) and bool(bound.isfinite().all())


@pytest.mark.parametrize("name", ["reinmax", "gumbel_rao", "rloo"])
def test_igr_vae_smoke(tmp_path, name: str) -> None:
    sets = ["relaxation=straight_through", "estimator=rloo"] if name == "rloo" else [
        f"relaxation={name}"]  # fmt: skip
    result = run("igr-vae", budget="smoke", out=tmp_path, progress_bar=False, plots=False,
                 overrides=["dataset=digits", "binarize=dynamic", "net=linear",
                            "num_variables=4", *sets, "temperature=1.3"])  # fmt: skip
    assert math.isfinite(result.metrics["test/iw_bound"])
    if name == "rloo":
        assert result.record["config"]["estimator"] == "rloo"
        assert result.record["config"]["score_samples"] == 4
    else:
        assert result.record["config"]["relaxation"] == name


def test_igr_vae_score_function_settings_are_checked_at_construction() -> None:
    from simplexity_lab.engine import ConfigError, build_config
    from simplexity_lab.experiments.igr_vae import IGRVAEConfig

    with pytest.raises(
        (ConfigError, ValueError), match="relaxation must be one of straight_through"
    ):
        build_config(IGRVAEConfig, ["estimator=rloo", "relaxation=igr_i"])
    with pytest.raises((ConfigError, ValueError), match="score_samples must be"):
        build_config(IGRVAEConfig, ["estimator=rloo", "relaxation=reinmax",
                                              "score_samples=1"])  # fmt: skip
