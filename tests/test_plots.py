"""Curves over seeds: the statistics (engine.table.seed_mean) and how plots draws them."""

import numpy as np
import pytest
from scipy import stats

pytest.importorskip("matplotlib")

from simplexity_lab import plots
from simplexity_lab.engine.table import format_mean_se, mean_se, seed_mean


def test_seed_mean_agrees_with_scipy_on_the_common_steps():
    rng = np.random.default_rng(0)
    runs = [{step: float(rng.normal()) for step in range(0, 100, 10)} for _ in range(5)]
    runs[2][200] = 1.0  # a step only one run has is left out
    del runs[4][50]  # and a step one run lacks
    steps, mean, se = seed_mean(runs)
    assert steps == [s for s in range(0, 100, 10) if s != 50]
    values = np.array([[r[s] for s in steps] for r in runs])
    np.testing.assert_allclose(mean, values.mean(0))
    np.testing.assert_allclose(se, stats.sem(values, axis=0))


def test_seed_mean_of_one_run_has_zero_error_and_none_is_an_error():
    steps, mean, se = seed_mean([{1: 2.0, 3: 4.0}])
    assert steps == [1, 3] and mean == [2.0, 4.0] and se == [0.0, 0.0]
    with pytest.raises(ValueError, match="at least one run"):
        seed_mean([])
    with pytest.raises(ValueError, match="at least one value"):
        mean_se([])


def test_the_table_cell_and_the_curve_band_are_the_same_statistic():
    values = [3.0, 1.0, 4.0, 1.5]
    mean, se = mean_se(values)
    assert (mean, se) == pytest.approx((np.mean(values), stats.sem(values)))
    assert format_mean_se(values) == f"{mean:.4g} ± {se:.2g}"
    assert seed_mean([{7: v} for v in values]) == ([7], [mean], [se])


def test_curves_shade_the_standard_error_and_reject_other_tuples():
    steps, mean, se = seed_mean([{0: 1.0, 1: 2.0}, {0: 3.0, 1: 2.5}])
    fig = plots.curves({"band": (steps, mean, se), "line": ([0, 1], [0.0, 1.0])}, title="t")
    ax = fig.axes[0]
    assert len(ax.lines) == 2 and len(ax.collections) == 1  # one band, for the series with se
    lower = ax.collections[0].get_paths()[0].vertices[:, 1].min()
    assert lower == pytest.approx(min(np.subtract(mean, se)))
    with pytest.raises(ValueError, match=r"series\['bad'\] must be \(x, y\)"):
        plots.curves({"bad": ([0, 1],)})
    with pytest.raises(ValueError, match="at least one panel"):
        plots.curve_panels({})
