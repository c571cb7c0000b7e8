r"""Training a :class:`~simplexity_lab.engine.task.Task` on Lightning: checkpoints that resume exactly,
CSV and TensorBoard logs, a progress bar, gradient clipping, schedules, DDP.

Exact resume rests on three things: the batches are a pure function of ``(seed, step)`` (the
loader restarts at the checkpoint's step), the global torch RNG state is saved in every checkpoint
and restored when training restarts, and evaluations run on a forked, seeded RNG so they never
move the training noise. Checkpoints are written atomically (temporary file, then ``os.replace``),
so a process killed mid-write leaves the previous ``last.ckpt`` intact, and they are read with
``torch.load(weights_only=True)``: they hold only tensors and plain containers.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from pathlib import Path
from typing import Any

import torch

from simplexity_lab.engine.loop import build_optimizer, evaluate_seeded, lr_lambda
from simplexity_lab.engine.runs import RunDir
from simplexity_lab.engine.task import Task, step_loader

__all__ = ["checkpoint_step", "fit", "load_checkpoint"]

_RNG_KEY = "simplexity_rng_state"


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint with ``torch.load(..., weights_only=True)`` on the CPU."""
    return torch.load(path, map_location="cpu", weights_only=True)


def checkpoint_step(path: str | Path) -> int:
    """The number of optimizer steps a checkpoint has done."""
    return int(load_checkpoint(path)["global_step"])


def _lightning():
    try:
        import lightning.pytorch as pl
    except ImportError as error:  # optional extra
        raise ImportError(
            "simplexity run needs Lightning: pip install 'simplexity[train]'"
        ) from error
    return pl


class _NoAdverts(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Tip:" not in str(record.msg)


def _module_class():
    pl = _lightning()
    for name in ("lightning.pytorch", "lightning.pytorch.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _NoAdverts) for f in logger.filters):
            logger.addFilter(_NoAdverts())
    from lightning.pytorch.plugins.io import TorchCheckpointIO

    class AtomicCheckpointIO(TorchCheckpointIO):
        """Save to a temporary file and rename; load with ``weights_only=True``."""

        def save_checkpoint(self, checkpoint, path, storage_options=None):
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)

        def load_checkpoint(self, path, map_location=None, weights_only=None):
            return torch.load(path, map_location=map_location or "cpu", weights_only=True)

    class TaskModule(pl.LightningModule):
        """The Lightning face of a task: one optimizer step per batch, seeded validation."""

        def __init__(self, task: Task, run_dir: RunDir | None, start_step: int = 0) -> None:
            super().__init__()
            self.task = task
            self.run_dir = run_dir
            self.start_step = start_step
            self._rng_state: torch.Tensor | None = None
            self.diverged_at: int | None = None  # the step whose loss was not finite

        def train_dataloader(self):
            # built here, after the processes are set up, so that the rank is known
            return step_loader(
                self.task.train_batches(),
                self.task.config,
                start_step=self.start_step,
                rank=self.global_rank,
                world_size=self.trainer.world_size,
            )

        def val_dataloader(self):
            # validation evaluates the whole split at once (Task.evaluate); one dummy batch
            return torch.utils.data.DataLoader([0], batch_size=None)

        def training_step(self, batch, batch_idx):
            step = self.global_step
            try:
                loss, logs = self.task.training_loss(batch, step)
            except ValueError:
                # parameters that overflowed make the task's distributions refuse them
                if all(torch.isfinite(p).all() for p in self.task.parameters()):
                    raise
                return self._diverge(step)
            if not torch.isfinite(loss.detach()).all():
                return self._diverge(step)
            if step % self.task.config.log_every == 0:
                scalars = {f"train/{k}": float(v) for k, v in logs.items()}
                scalars["train/lr"] = self.lr_schedulers().get_last_lr()[0]
                self.log_dict(scalars, on_step=True, on_epoch=False, prog_bar=False)
            if "loss" in logs:
                self.log("loss", float(logs["loss"]), prog_bar=True, on_step=True, logger=False)
            return loss

        def _diverge(self, step: int) -> None:
            """Stop at a non-finite loss (or parameters): the run is recorded as diverged."""
            self.diverged_at = step
            self.trainer.should_stop = True
            return None  # Lightning skips the optimizer step

        def validation_step(self, batch, batch_idx):
            if self.diverged_at is not None:  # nothing finite to evaluate; the monitor says so
                self.log(self.task.monitor, math.nan, on_step=False, on_epoch=True, batch_size=1)
                return
            metrics = evaluate_seeded(self.task, "valid", salt=self.global_step + 1)
            self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=False, batch_size=1)
            if (
                self.trainer.is_global_zero
                and self.run_dir is not None
                and not self.trainer.sanity_checking
            ):
                self.run_dir.append_history(self.global_step, metrics)

        def configure_optimizers(self):
            optimizer = build_optimizer(self.task)
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(self.task))
            return {
                "optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1},
            }

        def on_save_checkpoint(self, checkpoint):
            checkpoint[_RNG_KEY] = torch.get_rng_state()

        def on_load_checkpoint(self, checkpoint):
            self._rng_state = checkpoint.get(_RNG_KEY)

        def on_train_start(self):
            # restore here, after Lightning's setup (which may draw random numbers) is done
            if self._rng_state is not None:
                torch.set_rng_state(self._rng_state)
                self._rng_state = None

    return pl, TaskModule, AtomicCheckpointIO


def fit(
    task: Task,
    run_dir: RunDir,
    *,
    resume: bool = False,
    devices: int | str = 1,
    strategy: str = "auto",
    accelerator: str = "auto",
    progress_bar: bool = True,
    loggers: tuple[str, ...] = ("csv", "tensorboard"),
) -> Any:
    """Train ``task`` with Lightning, writing checkpoints and logs under ``run_dir``.

    Args:
        task: the task (its ``config`` is a :class:`~simplexity_lab.engine.task.TrainConfig`).
        run_dir: the run directory.
        resume: continue from ``run_dir.last_checkpoint`` (which must exist).
        devices, strategy, accelerator: passed to ``lightning.Trainer`` (e.g. ``devices=2,
            strategy="ddp"`` on the CPU uses gloo).
        progress_bar: show Lightning's progress bar.
        loggers: any of ``"csv"``, ``"tensorboard"`` (skipped if tensorboard is not installed).

    Returns:
        The ``lightning.Trainer`` after fitting.
    """
    pl, TaskModule, AtomicCheckpointIO = _module_class()
    from lightning.pytorch.callbacks import ModelCheckpoint

    config = task.config
    ckpt_path = str(run_dir.last_checkpoint) if resume else None
    start_step = checkpoint_step(ckpt_path) if ckpt_path else 0

    logger_objects: list[Any] = []
    if "csv" in loggers:
        from lightning.pytorch.loggers import CSVLogger

        # a new version folder per (re)start: a resumed run keeps the logs of the earlier part
        logger_objects.append(CSVLogger(str(run_dir.logs), name="csv"))
    if "tensorboard" in loggers:
        try:
            import tensorboard  # noqa: F401
            from lightning.pytorch.loggers import TensorBoardLogger

            logger_objects.append(TensorBoardLogger(str(run_dir.logs), name="tensorboard"))
        except ImportError:  # optional extra
            pass

    callbacks = [
        ModelCheckpoint(
            dirpath=str(run_dir.checkpoints),
            save_top_k=0,
            save_last=True,
            every_n_train_steps=config.checkpoint_every,
        ),
        ModelCheckpoint(
            dirpath=str(run_dir.checkpoints),
            filename="best",
            monitor=task.monitor,
            mode=task.monitor_mode,
            save_top_k=1,
            auto_insert_metric_name=False,
            enable_version_counter=False,
        ),
    ]
    trainer = pl.Trainer(
        accelerator=accelerator,
        devices=devices,
        strategy=strategy,
        max_steps=config.steps,
        max_epochs=-1,
        val_check_interval=min(config.val_every, config.steps),
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        gradient_clip_val=config.grad_clip,
        deterministic=config.deterministic,
        use_distributed_sampler=False,
        logger=logger_objects or False,
        log_every_n_steps=config.log_every,
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
        enable_progress_bar=progress_bar,
        enable_model_summary=False,
    )
    module = TaskModule(task, run_dir, start_step)
    previous = torch.are_deterministic_algorithms_enabled()
    try:
        with warnings.catch_warnings():
            # the loader restarts at the checkpoint's step by itself (batches are a function of
            # the step), which Lightning cannot see; and the checkpoint folder is ours
            warnings.filterwarnings("ignore", message=".*dataloader is not resumable.*")
            warnings.filterwarnings("ignore", message=".*exists and is not empty.*")
            warnings.filterwarnings("ignore", message=".*LeafSpec.*")
            # a diverged step returns None on purpose (TaskModule._diverge)
            warnings.filterwarnings("ignore", message=".*`training_step` returned `None`.*")
            trainer.fit(module, ckpt_path=ckpt_path, weights_only=True)
        trainer.save_checkpoint(str(run_dir.last_checkpoint), weights_only=False)
    finally:
        torch.use_deterministic_algorithms(previous)
    return trainer
