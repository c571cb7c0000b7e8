"""Running an experiment end to end: config, run directory, training, final metrics, plots.

:func:`run` is what ``simplexity run`` calls; :func:`run_config` takes a ready config. Both take an
:class:`~simplexity_lab.engine.experiment.Experiment` or the name of one in
:data:`~simplexity_lab.engine.experiment.EXPERIMENTS` (which importing
:mod:`simplexity_lab.experiments` fills).
"""

from __future__ import annotations

import math
import os
import platform
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from simplexity_lab.engine.config import (
    config_defaults,
    config_to_dict,
    load_config_file,
    parse_overrides,
)
from simplexity_lab.engine.experiment import EXPERIMENTS, Experiment
from simplexity_lab.engine.loop import evaluate_seeded
from simplexity_lab.engine.runs import RunDir, write_json_atomic

__all__ = ["RunResult", "default_run_name", "is_child_process", "resolve", "run", "run_config"]


@dataclass
class RunResult:
    """What a finished run returns (``None`` is returned in DDP worker processes instead)."""

    path: Path
    metrics: dict[str, float]
    record: dict[str, Any]


def is_child_process() -> bool:
    """Whether this is a DDP worker process other than rank 0 (Lightning sets ``LOCAL_RANK``)."""
    return int(os.environ.get("LOCAL_RANK", "0")) > 0 or int(os.environ.get("NODE_RANK", "0")) > 0


def default_run_name(experiment: str, budget: str, overrides: Mapping[str, Any], seed: int) -> str:
    """``<experiment>-<budget>[-key=value...]-seed<seed>`` (seed kept last, other keys sorted).

    Example:
        >>> default_run_name("vae", "smoke", {"relaxation": "igr_i", "seed": "3"}, 3)
        'vae-smoke-relaxation=igr_i-seed3'
    """
    parts = [experiment, budget]
    parts += [f"{k}={v}" for k, v in sorted(overrides.items()) if k != "seed"]
    parts.append(f"seed{seed}")
    return re.sub(r"[^A-Za-z0-9_.=+-]", "_", "-".join(parts))


def resolve(experiment: str | Experiment) -> Experiment:
    """The :class:`Experiment` itself, or the one registered under that name."""
    if isinstance(experiment, Experiment):
        return experiment
    return EXPERIMENTS[experiment]


def _versions() -> dict[str, str]:
    import simplexity

    out = {"simplexity": simplexity.__version__, "torch": torch.__version__,
           "python": platform.python_version()}  # fmt: skip
    try:
        import lightning

        out["lightning"] = lightning.__version__
    except ImportError:  # optional extra
        pass
    return out


def run(
    experiment: str | Experiment,
    *,
    budget: str = "smoke",
    overrides: Sequence[str] | Mapping[str, Any] = (),
    config_file: str | None = None,
    name: str | None = None,
    **options: Any,
) -> RunResult | None:
    """Build the config of ``experiment`` (budget, then ``config_file``, then ``overrides``) and run it.

    Args:
        experiment: an :class:`Experiment` or a name in ``EXPERIMENTS``.
        budget: ``"smoke"``, ``"demo"`` or ``"paper"``.
        overrides: ``["key=value", ...]`` or a dict.
        config_file: a YAML or JSON file of config values.
        name: the run directory's name (default :func:`default_run_name`).
        **options: see :func:`run_config`.
    """
    exp = resolve(experiment)
    items = dict(overrides) if isinstance(overrides, Mapping) else parse_overrides(overrides)
    file_values = load_config_file(config_file) if config_file else None
    config = exp.make_config(budget, file_values, items)
    if name is None:
        name = default_run_name(exp.name, budget, {**(file_values or {}), **items}, config.seed)
    return run_config(exp, config, budget=budget, name=name, **options)


def run_config(
    experiment: str | Experiment,
    config: Any,
    *,
    budget: str | None = None,
    name: str | None = None,
    out: str | Path = "runs",
    data_dir: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    devices: int | str = 1,
    strategy: str = "auto",
    accelerator: str = "auto",
    progress_bar: bool | None = None,
    plots: bool = True,
    threads: int | None = 1,
) -> RunResult | None:
    """Train ``config`` of ``experiment`` with Lightning under ``out/name`` and write its results.

    Args:
        experiment: an :class:`Experiment` or a name in ``EXPERIMENTS``.
        config: its config dataclass.
        budget: recorded in ``run.json`` and ``metrics.json``.
        name: run directory name (default from the experiment and the seed).
        out: the parent of run directories.
        data_dir: the data directory (default: ``SIMPLEXITY_DATA_DIR``, then the per-user cache).
        resume: continue from ``last.ckpt`` if there is one (else start; the config must match).
        overwrite: delete an existing run of the same name first.
        devices, strategy, accelerator: Lightning's (``devices=2, strategy="ddp"`` on the CPU).
        progress_bar: show the progress bar (default: when stderr is a terminal).
        plots: write the task's figures to ``plots/``.
        threads: torch's intra-op threads for this run (``None``: leave torch's setting). One
            thread is fastest for the small models here (and with DDP, one per process); a
            resumed run should use the same number, since reductions may round differently.

    Returns:
        A :class:`RunResult` in the main process, ``None`` in DDP worker processes.
    """
    from simplexity_lab.engine.lightning import checkpoint_step

    exp = resolve(experiment)
    if not isinstance(config, exp.config_class):
        raise TypeError(
            f"config must be a {exp.config_class.__name__}, got {type(config).__name__}"
        )
    name = name or default_run_name(exp.name, budget or "custom", {}, config.seed)
    run_dir = RunDir(Path(out) / name)
    config_dict = config_to_dict(config)
    child = is_child_process()
    if child:
        resuming = resume and run_dir.last_checkpoint.exists()
    else:
        resuming = run_dir.prepare(config_dict, resume=resume, overwrite=overwrite,
                                   defaults=config_defaults(exp.config_class))  # fmt: skip
        if resuming:
            run_dir.truncate_history(checkpoint_step(run_dir.last_checkpoint))
        elif run_dir.history.exists():
            run_dir.history.unlink()
        if run_dir.metrics.exists():
            run_dir.metrics.unlink()
        write_json_atomic(run_dir.info, {
            "experiment": exp.name, "budget": budget, "name": name, "seed": config.seed,
            "devices": devices, "strategy": strategy, "threads": threads, "versions": _versions(),
        })  # fmt: skip

    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _train_and_report(exp, config, run_dir, name, budget, data_dir, resuming, child,
                                 devices=devices, strategy=strategy, accelerator=accelerator,
                                 progress_bar=progress_bar, plots=plots)  # fmt: skip
    finally:
        torch.set_num_threads(previous_threads)


def _train_and_report(
    exp: Experiment,
    config: Any,
    run_dir: RunDir,
    name: str,
    budget: str | None,
    data_dir: str | None,
    resuming: bool,
    child: bool,
    *,
    devices: int | str,
    strategy: str,
    accelerator: str,
    progress_bar: bool | None,
    plots: bool,
) -> RunResult | None:
    from simplexity_lab.engine.lightning import fit

    experiment = exp.name
    config_dict = config_to_dict(config)
    torch.manual_seed(config.seed)
    task = exp.build(config, data_dir=data_dir)
    if progress_bar is None:
        progress_bar = os.isatty(2)
    start = time.perf_counter()
    trainer = fit(task, run_dir, resume=resuming, devices=devices, strategy=strategy,
                  accelerator=accelerator, progress_bar=progress_bar)  # fmt: skip
    train_time = time.perf_counter() - start
    if child or not trainer.is_global_zero:
        return None

    diverged = trainer.lightning_module.diverged_at
    metrics: dict[str, float] = {}
    if diverged is None:
        for split in ("valid", "test"):
            metrics.update(evaluate_seeded(task, split, salt=0))
    else:  # the loss stopped being finite: the run ends there, recorded, with nothing to evaluate
        metrics = {"train/diverged_at_step": float(diverged), task.monitor: math.nan}
    history = run_dir.read_history()
    if plots and diverged is None:
        _save_figures(task, history, run_dir)
    record = {
        "experiment": experiment,
        "budget": budget,
        "name": name,
        "seed": config.seed,
        "config": config_dict,
        "metrics": metrics,
        "summary": task.summary(),
        "steps": int(trainer.global_step) if diverged is None else diverged,  # optimizer steps
        "world_size": int(trainer.world_size),
        "resumed": bool(resuming),
        "train_time_s": round(train_time, 3),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": _versions(),
    }
    if diverged is not None:
        record["diverged_at_step"] = diverged
    write_json_atomic(run_dir.metrics, record)
    return RunResult(run_dir.root, metrics, record)


def _save_figures(task: Any, history: list[dict[str, Any]], run_dir: RunDir) -> None:
    try:
        figures = task.figures(history)
    except ImportError:  # matplotlib missing: the run's numbers do not depend on plots
        return
    run_dir.plots.mkdir(parents=True, exist_ok=True)
    for key, fig in figures.items():
        fig.savefig(run_dir.plots / f"{key}.png", dpi=110)
