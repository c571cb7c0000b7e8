"""The training engine: configs, schedules, run directories, tasks, Lightning training, tables.

Importing this package does not import Lightning (only :func:`simplexity_lab.engine.lightning.fit`
and :func:`run` need it).
"""

from __future__ import annotations

from simplexity_lab.engine.config import (
    ConfigError,
    build_config,
    config_to_dict,
    load_config_file,
    parse_overrides,
)
from simplexity_lab.engine.loop import evaluate_seeded, train_plain
from simplexity_lab.engine.runner import RunResult, default_run_name, run, run_config
from simplexity_lab.engine.runs import RunDir, RunExistsError, read_json, write_json_atomic
from simplexity_lab.engine.schedules import (
    Constant,
    Cosine,
    Exponential,
    Linear,
    Schedule,
    parse_schedule,
)
from simplexity_lab.engine.table import collect, markdown_table
from simplexity_lab.engine.task import StepBatches, StepSampler, Task, TrainConfig, step_loader

__all__ = [
    "ConfigError",
    "Constant",
    "Cosine",
    "Exponential",
    "Linear",
    "RunDir",
    "RunExistsError",
    "RunResult",
    "Schedule",
    "StepBatches",
    "StepSampler",
    "Task",
    "TrainConfig",
    "build_config",
    "collect",
    "config_to_dict",
    "default_run_name",
    "evaluate_seeded",
    "load_config_file",
    "markdown_table",
    "parse_overrides",
    "parse_schedule",
    "read_json",
    "run",
    "run_config",
    "step_loader",
    "train_plain",
    "write_json_atomic",
]
