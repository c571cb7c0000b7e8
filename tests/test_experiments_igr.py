"""The IGR paper experiments: ``igr-vae`` (+ temperature selection), ``discrete-approx``, ``sop``,
``relaxation-timing`` on their smoke budgets, and the math they add (targets, total variation,
IGR-SB truncation, binary relaxed units against enumeration)."""

from __future__ import annotations

import itertools
import json
import math
import os
from pathlib import Path

import pytest
import torch

pytest.importorskip("lightning")

from simplexity.distributions import igr_zero_temperature_probs, stick_breaking_truncation
from simplexity_lab import experiments
from simplexity_lab.cli import main as cli_main
from simplexity_lab.engine import run
from simplexity_lab.engine.config import ConfigError
from simplexity_lab.engine.loop import train_plain
from simplexity_lab.experiments.discrete_approx import (
    DiscreteApproxTask,
    parse_target,
    target_pmf,
    total_variation,
)
from simplexity_lab.experiments.sop import split_halves
from simplexity_lab.experiments.temperature_selection import select_temperature
from simplexity_lab.models.sop import StructuredOutputPredictor

# the built-in scikit-learn digits keep the VAE-type smoke runs independent of downloaded data
DIGITS = ["dataset=digits", "binarize=dynamic"]
SMALL_VAE = [*DIGITS, "num_variables=4", "net=linear"]


def _run(name, tmp_path, overrides=(), **kw):
    return run(name, budget="smoke", overrides=list(overrides), out=tmp_path, progress_bar=False,
               plots=kw.pop("plots", False), **kw)  # fmt: skip


def _real_data() -> bool:
    root = os.environ.get("SIMPLEXITY_DATA_DIR")
    return bool(root) and (Path(root) / "mnist").is_dir()


def test_the_four_experiments_are_registered_with_smoke_and_paper_budgets():
    for name in ("igr-vae", "discrete-approx", "sop", "relaxation-timing"):
        exp = experiments.get(name)
        assert {"smoke", "paper"} <= set(exp.budgets)
    assert experiments.get("igr-vae").make_config("paper").eval_samples == 1000
    assert experiments.get("sop").make_config("paper").eval_samples == 100


# ----------------------------------------------------------------------------------- igr-vae


@pytest.mark.parametrize("relaxation", ["gumbel_softmax", "igr_sb"])
def test_igr_vae_smoke_reports_the_valid_bound_the_elbo_and_the_reference_number(
    tmp_path, relaxation
):
    result = _run("igr-vae", tmp_path, [*SMALL_VAE, f"relaxation={relaxation}"], plots=True)
    m = result.metrics
    for key in ("test/iw_bound", "test/relaxed_elbo", "test/reference_not_a_bound",
                "time/train_epoch_s", "time/train_step_ms"):  # fmt: skip
        assert math.isfinite(m[key]), key
    assert m["test/relaxed_elbo"] == pytest.approx(-m["test/loss"])
    assert m["test/iw_bound"] < 0 and m["time/train_step_ms"] > 0
    # 1,297 digits in batches of 50: 25 steps per epoch
    assert m["time/train_epoch_s"] == pytest.approx(25 * m["time/train_step_ms"] / 1000)
    record = json.loads((result.path / "metrics.json").read_text())
    assert (
        record["experiment"] == "igr-vae"
        and "not a bound" in record["summary"]["reference_not_a_bound"]
    )
    assert (result.path / "plots" / "reconstructions.png").is_file()


def test_igr_vae_reference_number_is_not_the_iw_bound_and_the_bound_tightens_with_s(tmp_path):
    # the discrete model's IW bound grows (in expectation) with S; the reference number is another
    # quantity, computed from relaxed KL and argmax samples
    from simplexity_lab.experiments.igr_vae import IGRVAETask

    config = experiments.get("igr-vae").make_config("smoke", [*SMALL_VAE, "relaxation=igr_i"])
    task = IGRVAETask(config)
    x = task.splits["test"].data[:64]
    torch.manual_seed(1)
    small = task.model.iw_bound(x, 1).mean()
    large = task.model.iw_bound(x, 200).mean()
    assert large > small
    ref = task.reference_number(x, 200).mean()
    assert torch.isfinite(ref) and abs(float(ref - large)) > 1e-3


@pytest.mark.skipif(not _real_data(), reason="needs SIMPLEXITY_DATA_DIR with mnist")
def test_igr_vae_smoke_budget_on_its_default_data_set(tmp_path):
    result = _run("igr-vae", tmp_path, ["net=linear", "relaxation=igr_i"])
    assert result.record["config"]["dataset"] == "mnist"
    assert math.isfinite(result.metrics["test/iw_bound"])


def test_temperature_selection_picks_the_best_validation_bound(tmp_path):
    from simplexity_lab.experiments.temperature_selection import TemperatureOnEdgeError

    with pytest.raises(TemperatureOnEdgeError):  # two points: the best is on an edge
        select_temperature(
            dataset="digits", net="linear", relaxations=["igr_i"], grid=[0.1, 0.5],
            budget="smoke", overrides=["num_variables=4", "binarize=dynamic"], out=tmp_path,
            max_extensions=0,
        )  # fmt: skip
    record = json.loads(
        (tmp_path / "igr-vae-select-digits-linear" / "selected_temperature.json").read_text()
    )
    scores = record["scores"]["igr_i"]
    assert set(scores) == {"0.1", "0.5"}
    assert record["selected"]["igr_i"] == float(max(scores, key=scores.get))
    assert record["criterion"] == "valid/iw_bound" and record["on_edge"] == ["igr_i"]
    # the report keeps selection runs apart from the comparison table
    import shutil

    from simplexity_lab.report import build_page

    run = next((tmp_path / "igr-vae-select-digits-linear").glob("igr_i-tau=*"))
    shutil.copytree(run, run.parent / "target=poisson:50")  # a name with a ':' (discrete-approx)
    results = tmp_path / "results"
    results.mkdir()
    page = results / "igr.md"  # the results page, with markers
    page.write_text(
        "# page\n<!-- begin table igr-vae-select -->\n<!-- end table igr-vae-select -->\n"
    )
    names = {p.name for p in build_page("igr", results, keep=tmp_path)}
    assert "igr-vae-select.md" in names and "igr-vae.md" not in names
    assert (results / "igr" / "igr-vae-select.md").read_text() in page.read_text()
    kept = [p.relative_to(results / "igr") for p in (results / "igr" / "runs").rglob("*")]
    assert kept and not any(":" in str(p) for p in kept)  # portable to Windows checkouts
    assert (
        results / "igr" / "runs" / run.parent.name / "target=poisson_50" / "metrics.json"
    ).is_file()
    with pytest.raises(ValueError, match="relaxation must be one of"):
        select_temperature(relaxations=["softmax"], out=tmp_path)
    with pytest.raises(ValueError, match="positive temperatures"):
        select_temperature(grid=[0.1, -1.0], out=tmp_path)


# --------------------------------------------------------------------------- discrete-approx


def test_target_pmfs_match_scipy():
    stats = pytest.importorskip("scipy.stats")
    k = torch.arange(200).numpy()
    cases = {
        "poisson:50": stats.poisson(50).pmf(k),
        "binomial:60:0.3": stats.binom(60, 0.3).pmf(k),
        "geometric:0.2": stats.geom(0.2).pmf(k + 1),  # scipy counts trials, we count failures
        "negative_binomial:5:0.3": stats.nbinom(5, 0.3).pmf(k),
    }
    for spec, expected in cases.items():
        got = target_pmf(spec, 200).numpy()
        assert got == pytest.approx(expected, abs=1e-12), spec
        assert got.sum() == pytest.approx(1.0, abs=1e-6), spec


@pytest.mark.parametrize(
    "spec, words",
    [("poisson", "needs 1 parameter"), ("poisson:-1", "rate must be > 0"),
     ("binomial:10.5:0.3", "n must be an integer"), ("geometric:1.5", "p must be in"),
     ("zipf:2", "unknown target")],
)  # fmt: skip
def test_bad_targets_raise_clear_errors(spec, words):
    with pytest.raises(ValueError, match=words):
        parse_target(spec)
    with pytest.raises(ConfigError, match=words):
        experiments.get("discrete-approx").make_config("smoke", [f"target={spec}"])


def test_total_variation_against_brute_force():
    torch.manual_seed(0)
    p = torch.rand(7).softmax(0)
    full = torch.rand(10).softmax(0)  # a target with mass beyond the 7 categories
    tv = total_variation(p, full[:7], full[7:].sum())
    padded = torch.cat((p, torch.zeros(3)))
    # TV = sup over events |P(A) - Q(A)|: brute force over all 2^10 events
    best = max(
        abs(float(padded[list(a)].sum() - full[list(a)].sum()))
        for r in range(11) for a in itertools.combinations(range(10), r)
    )  # fmt: skip
    assert float(tv) == pytest.approx(best, abs=1e-6)
    assert float(total_variation(full, full)) == 0.0
    with pytest.raises(ValueError, match="differ"):
        total_variation(p, full)


def test_igr_sb_reports_its_own_truncation():
    # sticks of half the remaining mass (eta = 0.5, tiny scale): 0.5, 0.25, 0.125, ... cover 0.9
    # with 4 sticks (cumulative 0.9375); 0.99 needs 7
    config = experiments.get("discrete-approx").make_config(
        "smoke", ["relaxation=igr_sb", "num_categories=30", "eval_samples=1000"]
    )
    task = DiscreteApproxTask(config)
    with torch.no_grad():
        task.raw.copy_(torch.cat((torch.zeros(29), torch.full((29,), -20.0))))
    m = task.evaluate("test")
    assert m["test/categories_used"] == 4 and m["test/threshold_met"] == 1
    sticks = 0.5 ** torch.arange(1, 30, dtype=torch.float64)
    assert stick_breaking_truncation(sticks, 0.99).num_sticks == 7
    # the largest stick is the first: all discretized mass on k = 0
    assert m["test/mean"] == 0 and m["test/support_at_threshold"] == 1


def test_discrete_approx_fits_a_geometric_target_and_gumbel_softmax_truncation_shows():
    overrides = ["target=geometric:0.3", "num_categories=12", "steps=300", "batch_size=100",
                 "lr=5e-2", "eval_samples=5000"]  # fmt: skip
    for relaxation in ("gumbel_softmax", "igr_sb"):
        config = experiments.get("discrete-approx").make_config(
            "smoke", [*overrides, f"relaxation={relaxation}"]
        )
        task = DiscreteApproxTask(config)
        before = task.evaluate("test")["test/tv"]
        train_plain(task, evaluate=False)
        after = task.evaluate("test")
        assert after["test/tv"] < min(0.12, before / 2), relaxation
        # the tail beyond the categories is a floor on the distance
        assert after["test/tv"] >= after["test/target_mass_outside"] - 1e-9


def test_discrete_approx_smoke_run(tmp_path):
    result = _run("discrete-approx", tmp_path, plots=True)
    m = result.metrics
    assert 0 <= m["test/tv"] <= 1 and 1 <= m["test/categories_used"] <= 39
    assert (result.path / "plots" / "histogram.png").is_file()
    # "valid" and "test" come from different sample streams, so their estimates differ (the TV
    # of Poisson(50) at K = 40 is the target's mass beyond K whatever the samples)
    assert m["valid/mean"] != m["test/mean"]


@pytest.mark.parametrize("relaxation", ["gumbel_softmax", "igr_sb"])
def test_discrete_approx_test_stream_is_held_out_and_reproducible(relaxation):
    config = experiments.get("discrete-approx").make_config(
        "smoke", [f"relaxation={relaxation}", "target=geometric:0.3", "eval_samples=20000"]
    )
    task = DiscreteApproxTask(config)
    streams = {s: task.stream_seed(s) for s in ("valid", "test")}
    assert len({*streams.values(), config.seed}) == 3  # neither is the training seed
    torch.manual_seed(1)
    test = task.evaluate("test")
    torch.manual_seed(2)  # the global RNG's state does not matter, and is left as it was
    state = torch.random.get_rng_state()
    assert task.evaluate("test") == test
    assert torch.equal(torch.random.get_rng_state(), state)
    valid = task.evaluate("valid")
    assert valid["valid/tv"] != test["test/tv"] and valid["valid/mean"] != test["test/mean"]
    # the test estimate is that of the test stream's own samples, which the summary keeps
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(streams["test"])
        probs = task.discretized_pmf(config.eval_samples)
    assert test["test/mean"] == float((probs * torch.arange(len(probs))).sum())
    kept = torch.tensor(task.summary()["discretized_pmf"], dtype=torch.float64)
    assert torch.allclose(kept, probs, atol=5e-7, rtol=0)
    with pytest.raises(ValueError, match="split must be one of"):
        task.evaluate("train")


# ------------------------------------------------------------------------------------- sop


@pytest.mark.parametrize("relaxation", ["gumbel_softmax", "igr_i"])
def test_binary_units_round_with_their_zero_temperature_probabilities(relaxation):
    torch.manual_seed(0)
    model = StructuredOutputPredictor(3, 2, hidden=(4,), relaxation=relaxation)
    x = torch.tensor([[1.0, 0.0, 1.0]])
    with torch.no_grad():
        q = model.unit_distribution(0, x, 0.3)
    if relaxation == "igr_i":
        # binary IGR: P(unit = +1) = Phi(mu / sigma), the K = 2 case of the quadrature
        loc, scale = q.loc[..., 0], q.scale[..., 0]
        expected = torch.special.ndtr(loc / scale)
        quad = igr_zero_temperature_probs(q.loc, q.scale)[..., 0]
        assert quad == pytest.approx(expected, abs=1e-5)
    else:
        expected = torch.sigmoid(q.logits[..., 0] - q.logits[..., 1])
    with torch.no_grad():
        units = model.units(x.expand(40_000, 3), 0.3, discrete=True)
    assert set(units.unique().tolist()) <= {-1.0, 1.0}
    freq = (units > 0).double().mean(0)
    assert freq == pytest.approx(expected.reshape(-1).double(), abs=0.012)


@pytest.mark.parametrize("relaxation", ["gumbel_softmax", "igr_i", "igr_planar"])
def test_sop_samples_share_the_first_layer_without_changing_the_draws(relaxation):
    # num_samples=S computes the first layer once per input; the draws are those of the
    # expanded input with the same random state (rounded: identical; relaxed: to rounding error)
    model = StructuredOutputPredictor(6, 4, hidden=(5, 3), relaxation=relaxation)
    x = torch.rand(7, 6).round()
    for discrete in (True, False):
        torch.manual_seed(3)
        expanded = model.units(x.expand(11, 7, 6), 0.4, discrete=discrete)
        torch.manual_seed(3)
        shared = model.units(x, 0.4, discrete=discrete, num_samples=11)
        assert shared.shape == (11, 7, 3)
        if discrete:
            assert torch.equal(shared, expanded)
        else:
            torch.testing.assert_close(shared, expanded)


@pytest.mark.parametrize("relaxation", ["gumbel_softmax", "igr_i"])
def test_sop_likelihood_against_enumeration(relaxation):
    torch.manual_seed(0)
    model = StructuredOutputPredictor(4, 3, hidden=(3, 2), relaxation=relaxation).double()
    x_up = torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.0]], dtype=torch.float64)
    outputs = torch.tensor(list(itertools.product((0.0, 1.0), repeat=3)), dtype=torch.float64)
    # the exact conditional pmf of the discrete model sums to one over all 8 outputs
    for row in x_up:
        exact = model.exact_log_likelihood(row.expand(8, 4), outputs)
        assert float(exact.exp().sum()) == pytest.approx(1.0, abs=1e-10)
    x_low = outputs[[2, 5]]
    exact = model.exact_log_likelihood(x_up, x_low)
    with torch.no_grad():
        estimate = model.log_likelihood(x_up, x_low, 0.5, num_samples=50_000, discrete=True)
        # S = 2, repeated 5,000 times (as a batch): a lower bound in expectation
        reps = 5000
        few = model.log_likelihood(x_up.repeat(reps, 1), x_low.repeat(reps, 1), 0.5, 2,
                                   discrete=True).view(reps, 2).mean(0)  # fmt: skip
    assert estimate == pytest.approx(exact, abs=0.01)
    assert (few < exact).all()


def test_split_halves_and_sop_errors():
    up, low = split_halves(torch.arange(784.0).view(1, 784))
    assert up.shape == low.shape == (1, 392) and low[0, 0] == 14 * 28
    with pytest.raises(ValueError, match="28x28"):
        split_halves(torch.zeros(1, 10))
    with pytest.raises(ValueError, match="binary units"):
        StructuredOutputPredictor(4, 4, relaxation="igr_sb")
    with pytest.raises(ConfigError, match="relaxation must be one of"):
        experiments.get("sop").make_config("smoke", ["relaxation=igr_sb"])


def test_sop_smoke_run(tmp_path):
    result = _run("sop", tmp_path, DIGITS, plots=True)
    m = result.metrics
    assert 0 < m["test/nll"] < 64 * math.log(2) + 1  # 32 binary pixels of an 8x8 digit... at most
    assert (result.path / "plots" / "predictions.png").is_file()


@pytest.mark.skipif(not _real_data(), reason="needs SIMPLEXITY_DATA_DIR with binarized_mnist")
def test_sop_smoke_budget_on_binarized_mnist(tmp_path):
    result = _run("sop", tmp_path, ["relaxation=igr_i"])
    assert 0 < result.metrics["test/nll"] < 392 * math.log(2) * 2


# ------------------------------------------------------------------------ relaxation-timing


def test_relaxation_timing_smoke_run(tmp_path):
    result = _run("relaxation-timing", tmp_path, DIGITS)
    m = result.metrics
    assert m["test/gumbel_softmax_ratio"] == 1.0
    for name in ("igr_i", "igr_planar", "igr_sb"):
        assert m[f"test/{name}_ms"] > 0 and 0.1 < m[f"test/{name}_ratio"] < 10
    assert len(result.record["summary"]["seconds_per_iteration_by_round"]["igr_i"]) == 2


def test_cli_errors_are_one_line(tmp_path, capsys):
    code = cli_main(["run", "relaxation-timing", "--out", str(tmp_path), "--set",
                     "relaxations=gumbel_softmax,nope"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "unknown relaxation 'nope'" in err


def test_report_keeps_results_and_writes_tables_and_histograms(tmp_path):
    from simplexity_lab.report import build_page

    runs, results = tmp_path / "runs", tmp_path / "results"
    run("discrete-approx", budget="smoke", overrides=["target=geometric:0.3"],
        out=runs / "discrete-approx", progress_bar=False, plots=False)  # fmt: skip
    results.mkdir()
    (results / "igr.md").write_text("# no table markers\n")
    written = {p.name for p in build_page("igr", results, keep=runs)}
    assert {"discrete-approx.md", "discrete_approx_geometric_0p3.png"} <= written
    table = (results / "igr" / "discrete-approx.md").read_text()
    assert "test/tv" in table and "| discrete-approx |" in table
    kept = list((results / "igr" / "runs").rglob("metrics.json"))
    assert len(kept) == 1 and not list(results.rglob("*.ckpt"))


def test_histogram_of_a_truncation_that_misses_the_whole_target():
    # Gumbel-softmax with K = 20 for Poisson(50): the target has no mass to speak of below 20
    config = experiments.get("discrete-approx").make_config(
        "smoke", ["target=poisson:50", "num_categories=20", "relaxation=gumbel_softmax"]
    )
    task = DiscreteApproxTask(config)
    m = task.evaluate("test")
    assert m["test/target_mass_outside"] > 0.999 and m["test/tv"] > 0.999
    assert "histogram" in task.figures([])


def test_temperature_selection_extends_the_grid_until_the_best_is_inside(tmp_path, monkeypatch):
    """A best τ on the grid's edge is never selected: the grid grows past it, else the call fails."""
    from types import SimpleNamespace

    from simplexity_lab.experiments import temperature_selection as ts

    def fake_run(experiment, *, overrides, **_):  # a validation bound that peaks at τ = 1
        tau = float(next(s for s in overrides if s.startswith("temperature=")).split("=")[1])
        return SimpleNamespace(metrics={"valid/iw_bound": -((math.log(tau)) ** 2)})

    monkeypatch.setattr(ts, "run", fake_run)
    record = ts.select_temperature(relaxations=["gumbel_softmax"], grid=[0.25, 0.5], out=tmp_path)
    assert record["selected"]["gumbel_softmax"] == 1.1  # grown 0.5 -> 0.75 -> 1.1 -> 1.7
    assert list(record["scores"]["gumbel_softmax"]) == ["0.25", "0.5", "0.75", "1.1", "1.7"]
    assert record["on_edge"] == []
    with pytest.raises(ts.TemperatureOnEdgeError, match=r"gumbel_softmax \(τ = 0.5"):
        ts.select_temperature(
            relaxations=["gumbel_softmax"], grid=[0.25, 0.5], out=tmp_path / "b", max_extensions=0
        )
    saved = json.loads(
        (
            tmp_path / "b" / "igr-vae-select-mnist-nonlinear" / "selected_temperature.json"
        ).read_text()
    )
    assert saved["on_edge"] == ["gumbel_softmax"]  # the record is written before the error
    assert ts.next_temperature({0.03: -1.0, 0.05: -2.0}) == 0.02


def test_sop_temperature_selection_minimizes_the_validation_nll(tmp_path, monkeypatch):
    """sop's criterion is the lowest valid/nll: the grid grows toward it, and its folder has no net."""
    from types import SimpleNamespace

    from simplexity_lab.experiments import temperature_selection as ts

    seen = []

    def fake_run(experiment, *, overrides, out, **_):  # a validation NLL lowest at τ = 0.2
        seen.append((experiment.name, Path(out).name, sorted(overrides)))
        tau = float(next(s for s in overrides if s.startswith("temperature=")).split("=")[1])
        return SimpleNamespace(metrics={"valid/nll": 70.0 + math.log(tau / 0.2) ** 2})

    monkeypatch.setattr(ts, "run", fake_run)
    record = ts.select_temperature(
        experiment="sop", relaxations=["igr_i"], grid=[0.5, 1.0], out=tmp_path
    )
    assert record["selected"]["igr_i"] == 0.22  # 0.5 -> 0.33 -> 0.22 -> 0.15 (lowest NLL: 0.22)
    assert list(record["scores"]["igr_i"]) == ["0.15", "0.22", "0.33", "0.5", "1"]
    assert record["criterion"] == "valid/nll" and record["direction"] == "min"
    assert seen[0] == (
        "sop", "sop-select-binarized_mnist",
        ["dataset=binarized_mnist", "relaxation=igr_i", "temperature=0.5"],
    )  # fmt: skip
    saved = tmp_path / "sop-select-binarized_mnist" / "selected_temperature.json"
    assert json.loads(saved.read_text())["selected"] == {"igr_i": 0.22}
    ts.select_temperature(  # another relaxation, its own grid: the file keeps both choices
        experiment="sop", relaxations=["gumbel_softmax"], grid=[0.1, 0.2, 0.4], out=tmp_path
    )
    both = json.loads(saved.read_text())
    assert both["selected"] == {"igr_i": 0.22, "gumbel_softmax": 0.2}
    assert list(both["scores"]) == ["igr_i", "gumbel_softmax"] and both["on_edge"] == []
    with pytest.raises(ValueError, match="experiment must be one of igr-vae, sop, got 'vae'"):
        ts.select_temperature(experiment="vae", out=tmp_path)
    with pytest.raises(ValueError, match=r"^direction must be 'max' or 'min', got 'low'$"):
        ts.choose_temperature({0.1: 1.0}, direction="low")
    assert ts.next_temperature({0.1: float("nan"), 0.2: -1.0, 0.3: -2.0}) is None  # NaN never wins
    assert ts.next_temperature({0.1: -1.0, 0.2: -2.0, 0.3: float("nan")}) == 0.067


def test_report_recomputes_each_selection_and_flags_an_edge():
    """The IGR page's selection table: the best valid bound per (data set, net, relaxation), and
    'strictly inside' only with a worse temperature run on both sides."""
    from simplexity_lab.report.igr import selections

    def record(dataset, relaxation, tau, score):
        config = {"dataset": dataset, "net": "nonlinear", "relaxation": relaxation,
                  "temperature": str(tau)}  # fmt: skip
        return {"config": config, "metrics": {"valid/iw_bound": score}}

    records = [
        record("mnist", "gumbel_softmax", 0.5, -165.3),
        record("mnist", "gumbel_softmax", 0.67, -164.9),  # best, on the top edge
        record("omniglot", "igr_i", 0.1, -150.0),
        record("omniglot", "igr_i", 0.25, -149.0),  # best, inside
        record("omniglot", "igr_i", 0.5, -149.5),
        record("omniglot", "igr_i", 1.0, math.nan),  # a diverged run never wins
    ]
    chosen = selections(records)
    assert chosen[("mnist", "nonlinear", "gumbel_softmax")] == {
        "temperature": 0.67, "inside": False, "score": -164.9, "grid": [0.5, 0.67]
    }  # fmt: skip
    omniglot = chosen[("omniglot", "nonlinear", "igr_i")]
    assert (omniglot["temperature"], omniglot["inside"], omniglot["score"]) == (0.25, True, -149.0)


def test_report_igr_splits_sop_runs_by_the_selected_temperature(tmp_path):
    """sop's page tables: the selection (lowest valid NLL wins), the runs at the selected τ, the rest."""
    from simplexity_lab.report import build_page

    def fake(folder, name, relaxation, tau, seed, metrics):
        run = tmp_path / "runs" / folder / name
        run.mkdir(parents=True)
        config = {"dataset": "binarized_mnist", "relaxation": relaxation, "temperature": str(tau),
                  "seed": seed}  # fmt: skip
        record = {"experiment": "sop", "budget": "short", "name": name, "seed": seed,
                  "config": config, "metrics": metrics}  # fmt: skip
        (run / "metrics.json").write_text(json.dumps(record))

    for tau, nll in ((0.25, 75.0), (0.5, 72.0), (1.0, 73.0)):  # 0.5: lowest, inside
        fake("sop-select-binarized_mnist", f"gumbel_softmax-tau={tau:g}", "gumbel_softmax", tau,
             0, {"valid/nll": nll, "valid/nll_relaxed": nll + 1})  # fmt: skip
    for seed in (0, 1):
        fake("sop", f"short-gs-tau=0.5-seed{seed}", "gumbel_softmax", 0.5, seed,
             {"test/nll": 70.0 + seed, "test/nll_relaxed": 71.0})  # fmt: skip
    fake("sop", "short-gs-seed0", "gumbel_softmax", 0.67, 0,
         {"test/nll": 80.0, "test/nll_relaxed": 81.0})  # fmt: skip
    results = tmp_path / "results"
    results.mkdir()
    (results / "igr.md").write_text("# page\n")
    build_page("igr", results, keep=tmp_path / "runs", figures=False)
    tables = results / "igr"
    selected = (tables / "sop-selected.md").read_text()
    assert "| binarized_mnist | — | gumbel_softmax | 0.25, 0.5, 1 | 0.5 | 72 | yes |" in selected
    assert "valid/nll" in selected.splitlines()[0]
    at_selected, other = (tables / "sop.md").read_text(), (tables / "sop-other.md").read_text()
    assert "| sop | 2 | 70.5 ± 0.5 | 71 ± 0 |" in at_selected
    assert "| sop | 1 | 80 | 81 |" in other
    assert "| sop | 1.0 | 1 | 73 | 74 |" in (tables / "sop-select.md").read_text()
