"""The flows issue's experiments on the CLI: ``flow2d`` (with RAD), ``mixture-entropy``,
``flow-objectives`` and ``maxent-dirichlet`` on their smoke budgets through the real runner, their
paper budgets against the issue's settings, resume of the augmented Lagrangian, and bad options."""

from __future__ import annotations

import math

import pytest

pytest.importorskip("lightning")

from simplexity_lab import experiments
from simplexity_lab.engine import run
from simplexity_lab.engine.config import ConfigError
from simplexity_lab.experiments.flow2d import build_flow, matched_rad_width, num_parameters
from simplexity_lab.experiments.maxent_dirichlet import MaxEntDirichletTask

NEW = ("mixture-entropy", "flow-objectives", "maxent-dirichlet")


def _run(experiment, tmp_path, overrides=(), **kw):
    return run(experiment, budget="smoke", overrides=list(overrides), out=tmp_path, progress_bar=False,
               plots=kw.pop("plots", False), **kw)  # fmt: skip


class _Killed(RuntimeError):
    """A simulated crash mid-run."""


def _finite(metrics, *keys):
    for key in keys:
        assert math.isfinite(metrics[key]), key


def test_the_experiments_are_registered_and_paper_budgets_are_the_issues_settings():
    for name in ("flow2d", *NEW):
        assert {"smoke", "paper"} <= set(experiments.get(name).budgets)
    density = experiments.get("flow2d").make_config("paper", {"base": "rad"})
    assert (density.steps, density.batch_size, density.lr, density.grad_clip) == (
        2000, 256, "cosine:3e-3:0:2000", 10.0)  # fmt: skip
    assert (density.hidden, density.num_layers, density.test_size) == (32, 6, 20_000)
    # RAD at an equal parameter budget: width 28 under RAD, within 2% of the Gaussian base
    width = matched_rad_width(density)
    gaussian = num_parameters(build_flow(experiments.get("flow2d").make_config("paper")))
    rad = num_parameters(build_flow(density, width))
    assert width == 28 and abs(rad - gaussian) / gaussian < 0.02
    objectives = experiments.get("flow-objectives").make_config("paper", {"problem": "maxent"})
    assert (objectives.steps, objectives.inner, objectives.lr, objectives.grad_clip) == (
        1500, 500, "2e-3", None)  # fmt: skip
    assert experiments.get("flow-objectives").make_config("paper").grad_clip == 10.0
    maxent = experiments.get("maxent-dirichlet").make_config("paper")
    assert (maxent.steps, maxent.inner, maxent.batch_size, maxent.eval_samples) == (
        30_000, 3000, 300, 200_000)  # fmt: skip


def test_flow2d_rad_smoke_reports_a_finite_test_log_likelihood(tmp_path):
    result = _run("flow2d", tmp_path, ["base=rad"], plots=True)
    m = result.metrics
    _finite(m, "test/log_likelihood", "test/log_likelihood_se")
    assert m["test/nonfinite"] == 0 and m["test/log_likelihood"] == -m["test/loss"]
    assert result.record["summary"]["parameters"] > 0
    assert (result.path / "plots" / "density.png").is_file()


def test_mixture_entropy_smoke_bounds_bracket_the_truth(tmp_path):
    m = _run("mixture-entropy", tmp_path).metrics
    assert m["test/truth_halfwidth"] == 0 and m["test/gap_exact"] == 0  # hard: exact is exact
    assert m["test/gap_joint"] > 0  # H(c, z) >= H(z)
    assert m["test/gap_nested_M16"] > 0 > m["test/gap_nested_own_M16"]
    result = _run("mixture-entropy", tmp_path, ["reparam=igr", "temperature=0.5"], plots=True)
    soft = result.metrics
    _finite(soft, "test/truth", "test/gap_exact", "test/gap_nested_M256")
    assert 0 < soft["test/truth_halfwidth"] < 0.5
    assert (result.path / "plots" / "entropy_gaps.png").is_file()


def test_flow_objectives_smoke_reverse_kl_and_maxent(tmp_path):
    exact = _run("flow-objectives", tmp_path).metrics
    _finite(exact, "test/estimate", "test/truth")
    assert exact["test/gap"] == 0 and exact["test/truth"] > 0  # a KL, exact for hard samples
    sets = ["problem=maxent", "reparam=gumbel_softmax", "temperature=0.5",
            "estimator=nested_own", "num_inner=4"]  # fmt: skip
    result = _run("flow-objectives", tmp_path, sets, plots=True)
    m = result.metrics
    _finite(m, "test/estimate", "test/truth", "test/gap", "test/residual_norm")
    assert m["test/truth_halfwidth"] > 0
    assert len(result.record["summary"]["outer_updates"]) == 1  # 2 outer iterations: 1 update
    assert (result.path / "plots" / "samples.png").is_file()


def test_maxent_dirichlet_smoke_reports_entropy_gap_residual_and_kl(tmp_path):
    result = _run("maxent-dirichlet", tmp_path, ["base=mixture", "transform=coupling",
                                                 "lr_decay=0.5"], plots=True)  # fmt: skip
    m, summary = result.metrics, result.record["summary"]
    _finite(m, "test/entropy", "test/residual_norm", "test/kl_to_dirichlet")
    assert m["test/entropy_gap"] == pytest.approx(m["test/entropy"] - summary["true_entropy"])
    assert summary["true_entropy"] == pytest.approx(-1.2443, abs=1e-4)
    assert m["test/kl_to_dirichlet"] > -3 * m["test/kl_se"]  # a KL, up to noise
    assert "decayed by 0.5" in summary["lr"]
    assert (result.path / "plots" / "maxent.png").is_file()


def test_maxent_dirichlet_resumed_at_an_outer_boundary_matches_an_uninterrupted_run(
    tmp_path, monkeypatch
):
    sets = ["steps=40", "inner=10", "checkpoint_every=10", "val_every=10"]
    whole = _run("maxent-dirichlet", tmp_path, sets, name="whole")
    original = MaxEntDirichletTask.training_loss

    def crash(self, batch, step):
        if step == 25:
            raise _Killed
        return original(self, batch, step)

    monkeypatch.setattr(MaxEntDirichletTask, "training_loss", crash)
    with pytest.raises(_Killed):
        _run("maxent-dirichlet", tmp_path, sets, name="cut")
    monkeypatch.undo()
    resumed = _run("maxent-dirichlet", tmp_path, sets, name="cut", resume=True)
    assert resumed.record["resumed"] is True
    assert resumed.metrics == pytest.approx(whole.metrics, rel=1e-6, abs=1e-7)
    assert resumed.record["summary"]["lambda"] == whole.record["summary"]["lambda"]


@pytest.mark.parametrize(
    ("name", "overrides", "match"),
    [
        ("flow-objectives", ["estimator=nested"], "num_inner"),
        ("flow-objectives", ["estimator=exact", "num_inner=4"], "num_inner"),
        ("flow-objectives", ["reparam=igr"], "temperature"),
        ("flow-objectives", ["temperature=0.5"], "temperature"),
        ("flow-objectives", ["problem=forward_kl"], "problem"),
        ("flow-objectives", ["problem=maxent", "steps=25"], "multiple of inner"),
        ("mixture-entropy", ["lr=1e-3"], "lr 0"),
        ("maxent-dirichlet", ["lr_decay=1.5"], "lr_decay"),
        ("maxent-dirichlet", ["lr_decay=0.5", "lr=cosine:1e-3:0:40"], "constant lr"),
        ("maxent-dirichlet", ["batch_size=41"], "even"),
        ("flow2d", ["base=spline"], "base"),
        ("flow2d", ["rad_pieces=1"], "rad_pieces"),
    ],
)
def test_bad_options_raise_a_value_error_naming_the_option(name, overrides, match):
    with pytest.raises(ValueError, match=match):
        experiments.get(name).make_config("smoke", overrides)
    assert issubclass(ConfigError, ValueError)
