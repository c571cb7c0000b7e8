"""The engine's parts: typed config overrides, schedules, run directories, batches, tables."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Literal

import pytest
import torch

from simplexity_lab.engine import (
    ConfigError,
    Constant,
    Cosine,
    Exponential,
    Linear,
    RunDir,
    RunExistsError,
    StepBatches,
    StepSampler,
    build_config,
    markdown_table,
    parse_schedule,
    write_json_atomic,
)
from simplexity_lab.engine.config import load_config_file
from simplexity_lab.engine.table import format_mean_se


@dataclass(frozen=True)
class Cfg:
    n: int = 1
    lr: float = 1e-3
    flag: bool = False
    name: str = "a"
    kind: Literal["x", "y"] = "x"
    size: int | None = None
    hidden: tuple[int, ...] = (4,)

    def __post_init__(self) -> None:
        if self.n < 0:
            raise ValueError("n must be >= 0")


def test_overrides_are_converted_to_the_field_types():
    c = build_config(Cfg, ["n=3", "lr=3e-4", "flag=yes", "name=b", "kind=y", "size=none",
                           "hidden=512,256"])  # fmt: skip
    assert c == Cfg(3, 3e-4, True, "b", "y", None, (512, 256))
    assert build_config(Cfg, {"size": "7", "hidden": [1, 2]}).size == 7
    assert build_config(Cfg, ["n=1e3"]).n == 1000


@pytest.mark.parametrize(
    "override, words",
    [
        (["nope=1"], "unknown config key 'nope'"),
        (["n=abc"], "n must be an int"),
        (["n=1.5"], "n must be an int"),
        (["flag=maybe"], "flag must be true or false"),
        (["kind=z"], "kind must be one of"),
        (["lr=fast"], "lr must be a number"),
        (["n"], "expected key=value"),
        (["n=-1"], "n must be >= 0"),
    ],
)
def test_bad_overrides_raise_one_clear_config_error(override, words):
    with pytest.raises(ConfigError, match=words):
        build_config(Cfg, override)


def test_yaml_and_json_config_files(tmp_path):
    (tmp_path / "c.yaml").write_text("n: 4\nhidden: [8, 8]\n")
    (tmp_path / "c.json").write_text('{"lr": 0.5}')
    assert build_config(Cfg, load_config_file(tmp_path / "c.yaml")).hidden == (8, 8)
    assert build_config(Cfg, load_config_file(tmp_path / "c.json")).lr == 0.5
    (tmp_path / "bad.yaml").write_text("!!python/object:os.system ls\n")
    with pytest.raises(Exception, match=r"python/object|could not determine"):
        load_config_file(tmp_path / "bad.yaml")  # safe_load refuses arbitrary objects


def test_schedules():
    assert Constant(0.5)(10**6) == 0.5
    lin = Linear(1.0, 0.0, 10)
    assert [lin(s) for s in (0, 5, 10, 20)] == [1.0, 0.5, 0.0, 0.0]
    exp = Exponential(1.0, 0.01, 100)
    assert exp(50) == pytest.approx(0.1) and exp(200) == pytest.approx(0.01)
    cos = Cosine(1.0, 0.0, 10)
    assert (
        cos(0) == pytest.approx(1.0)
        and cos(5) == pytest.approx(0.5)
        and cos(10) == pytest.approx(0.0)
    )
    for s in (Constant(0.67), lin, exp, cos):
        assert parse_schedule(s.spec()) == s
    assert parse_schedule("0.1") == Constant(0.1)
    assert parse_schedule("warmup:0:1:100") == Linear(0.0, 1.0, 100)
    for bad in ("fast", "exp:1:0:10", "linear:1:2", "poly:1:2:3", "linear:1:0:0"):
        with pytest.raises(ValueError, match="temperature"):
            parse_schedule(bad, name="temperature")


def test_write_json_atomic_replaces_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "sub" / "m.json"
    write_json_atomic(path, {"a": torch.tensor(1.5), "b": (1, 2)})
    write_json_atomic(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2}
    assert [p.name for p in path.parent.iterdir()] == ["m.json"]


def test_run_dir_refuses_to_overwrite_and_checks_the_config_on_resume(tmp_path):
    run = RunDir(tmp_path / "r")
    assert run.prepare({"n": 1}, resume=False) is False
    with pytest.raises(RunExistsError, match="--resume"):
        run.prepare({"n": 1}, resume=False)
    with pytest.raises(ValueError, match="differs in n"):
        run.prepare({"n": 2}, resume=True)
    assert run.prepare({"n": 1}, resume=True) is False  # no checkpoint yet: starts afresh
    run.append_history(5, {"x": 1.0})
    run.append_history(10, {"x": 2.0})
    run.truncate_history(7)
    assert [h["step"] for h in run.read_history()] == [5]
    assert run.prepare({"n": 3}, resume=False, overwrite=True) is False
    assert run.read_history() == []


def test_step_sampler_is_a_function_of_the_step_and_shards_the_batch():
    full = StepSampler(23, 6, seed=1, num_steps=12)
    batches = dict(iter(full))
    assert len(full) == 12 and len(batches) == 12
    epoch0 = torch.cat([batches[s] for s in range(3)])  # 23 // 6 = 3 steps per epoch
    assert len(set(epoch0.tolist())) == 18  # no repeats within an epoch
    assert not torch.equal(batches[0], batches[3])  # a new permutation each epoch
    resumed = dict(iter(StepSampler(23, 6, seed=1, num_steps=12, start_step=7)))
    assert sorted(resumed) == list(range(7, 12))
    assert all(torch.equal(resumed[s], batches[s]) for s in resumed)
    shards = [
        dict(iter(StepSampler(23, 6, seed=1, num_steps=12, rank=r, world_size=2))) for r in (0, 1)
    ]
    assert all(torch.equal(torch.cat([shards[0][s], shards[1][s]]), batches[s]) for s in batches)
    with pytest.raises(ValueError, match="divisible"):
        StepSampler(23, 5, seed=1, num_steps=2, world_size=2)


def test_dynamic_binarization_depends_only_on_seed_and_step():
    data = torch.full((10, 4), 0.5)
    batches = StepBatches(data, None, binarize=True, seed=3)
    index = torch.arange(10)
    a, b, c = batches[(4, index)][0], batches[(4, index)][0], batches[(5, index)][0]
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert set(a.unique().tolist()) <= {0.0, 1.0}


def test_a_config_saved_before_a_key_existed_resumes_and_tabulates_with_its_default(tmp_path):
    from simplexity_lab.engine.config import config_defaults
    from simplexity_lab.engine.table import collect

    assert config_defaults(Cfg) == {"n": 1, "lr": 1e-3, "flag": False, "name": "a", "kind": "x",
                                    "size": None, "hidden": [4]}  # fmt: skip
    run = RunDir(tmp_path / "r")
    run.prepare({"n": 2}, resume=False)  # written by a version without "size"
    defaults = config_defaults(Cfg)
    assert run.prepare({"n": 2, "size": None}, resume=True, defaults=defaults) is False
    assert json.loads(run.config.read_text()) == {"n": 2, "size": None}
    run.config.write_text(json.dumps({"n": 2}))
    with pytest.raises(ValueError, match="differs in size"):  # a non-default value is a change
        run.prepare({"n": 2, "size": 3}, resume=True, defaults=defaults)
    with pytest.raises(ValueError, match="differs in size"):  # no defaults given: strict
        run.prepare({"n": 2, "size": None}, resume=True)
    # tables: an old record without a newer key (translation's output_normalizer) groups with new ones
    import simplexity_lab.experiments  # noqa: F401  (registers translation in the engine's registry)

    old = {"experiment": "translation", "config": {"seed": 0, "normalizer": "softmax"},
           "metrics": {"test/bleu": 1.0}}  # fmt: skip
    new = {"experiment": "translation", "metrics": {"test/bleu": 3.0},
           "config": {"seed": 1, "normalizer": "softmax", "output_normalizer": None}}  # fmt: skip
    for i, record in enumerate((old, new)):
        write_json_atomic(tmp_path / "t" / str(i) / "metrics.json", record)
    records = collect([tmp_path / "t"])
    assert records[0]["config"]["output_normalizer"] is None
    assert "| translation | 2 | 2 ± 1 |" in markdown_table(records, ["test/bleu"])


def test_markdown_table_mean_and_standard_error():
    def record(seed, relax, value):
        return {"experiment": "vae", "config": {"seed": seed, "relaxation": relax, "steps": 5},
                "metrics": {"test/iw_bound": value, "valid/loss": 1.0}}  # fmt: skip

    records = [record(0, "igr_i", 1.0), record(1, "igr_i", 2.0), record(2, "igr_i", 3.0),
               record(0, "gumbel_softmax", 5.0)]  # fmt: skip
    table = markdown_table(records)
    assert "| experiment | relaxation | seeds | test/iw_bound |" in table
    assert "| vae | igr_i | 3 | 2 ± 0.58 |" in table
    assert "| vae | gumbel_softmax | 1 | 5 |" in table
    assert format_mean_se([2.0, 2.0]) == "2 ± 0"


def _blowup_experiment(mode: str, at: int):
    """A one-parameter experiment whose loss stops being finite at step ``at`` (``"nan"``), whose
    distribution refuses the overflowed parameter there (``"overflow"``), or that raises a
    ValueError with finite parameters (``"bug"``)."""
    from simplexity_lab.engine import Task, TrainConfig
    from simplexity_lab.engine.experiment import Experiment

    @dataclass(frozen=True)
    class BlowupConfig(TrainConfig):
        steps: int = 12
        val_every: int = 4
        checkpoint_every: int = 4
        log_every: int = 1
        lr: str = "1e-2"
        batch_size: int = 4

    class BlowupTask(Task):
        def __init__(self, config, *, data_dir=None):
            super().__init__(config)
            self.w = torch.nn.Parameter(torch.ones(1))

        def train_batches(self):
            return StepBatches(torch.zeros(8, 1), seed=self.config.seed)

        def training_loss(self, batch, step):
            if step == at:
                if mode == "nan":
                    return self.w.sum() * math.nan, {}
                if mode == "overflow":
                    with torch.no_grad():
                        self.w.fill_(math.inf)
                    torch.distributions.Normal(0.0, self.w.exp(), validate_args=True)
                raise ValueError("a finite parameter, a real bug")
            return (self.w - 2).square().sum(), {"loss": (self.w - 2).square().sum().detach()}

        @torch.no_grad()
        def evaluate(self, split):
            assert torch.isfinite(self.w).all(), "evaluated a diverged model"
            return {f"{split}/loss": float((self.w - 2).square())}

    return Experiment(name="blowup", description="test", config_class=BlowupConfig,
                      task_class=BlowupTask, budgets={"smoke": {}, "paper": {}})  # fmt: skip


@pytest.mark.parametrize("mode", ["nan", "overflow"])
def test_a_run_whose_loss_stops_being_finite_ends_there_and_is_recorded_as_diverged(tmp_path, mode):
    from simplexity_lab.engine.runner import run

    result = run(_blowup_experiment(mode, at=6), budget="smoke", out=tmp_path, name="r",
                 progress_bar=False)  # fmt: skip
    record = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert record["diverged_at_step"] == 6 and record["steps"] == 6
    assert record["metrics"]["train/diverged_at_step"] == 6.0
    assert math.isnan(record["metrics"]["valid/loss"])
    assert result is not None and set(result.metrics) == {"train/diverged_at_step", "valid/loss"}
    # the validation before the divergence was recorded as usual
    history = [
        json.loads(line) for line in (tmp_path / "r" / "history.jsonl").read_text().splitlines()
    ]
    assert [h["step"] for h in history] == [4]


def test_a_value_error_with_finite_parameters_is_not_taken_for_divergence(tmp_path):
    from simplexity_lab.engine.runner import run

    with pytest.raises(ValueError, match="a real bug"):
        run(_blowup_experiment("bug", at=2), budget="smoke", out=tmp_path, name="r",
            progress_bar=False)  # fmt: skip


def test_a_finished_run_records_no_divergence(tmp_path):
    from simplexity_lab.engine.runner import run

    run(
        _blowup_experiment("nan", at=-1), budget="smoke", out=tmp_path, name="r", progress_bar=False
    )
    record = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert "diverged_at_step" not in record and record["steps"] == 12
    assert set(record["metrics"]) == {"valid/loss", "test/loss"}
