"""Run directories: ``runs/<name>/`` with the resolved config, ``metrics.json``, checkpoints, logs
and plots; atomic JSON writes; the history of evaluations; resume checks.

Layout of a run directory::

    runs/<name>/
      config.json          resolved config (and config.yaml when pyyaml is installed)
      run.json             experiment, budget, overrides, seed, versions
      metrics.json         final metrics (written atomically, last)
      history.jsonl        one line per evaluation: {"step": ..., "metrics": {...}}
      checkpoints/last.ckpt, checkpoints/best.ckpt
      logs/                CSV and TensorBoard logs
      plots/*.png
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["RunDir", "RunExistsError", "read_json", "write_json_atomic"]


class RunExistsError(FileExistsError):
    """The run directory already holds a run (pass ``--resume`` or ``--overwrite``)."""


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (temporary file, fsync, ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=False, default=_json_default)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, (tuple, set)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def read_json(path: str | Path) -> Any:
    """Read a JSON file."""
    with open(path) as f:
        return json.load(f)


class RunDir:
    """Paths of one run directory.

    Example:
        >>> run = RunDir("/tmp/simplexity-doctest-run")
        >>> run.last_checkpoint.name, run.metrics.name
        ('last.ckpt', 'metrics.json')
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    config = property(lambda self: self.root / "config.json")
    config_yaml = property(lambda self: self.root / "config.yaml")
    info = property(lambda self: self.root / "run.json")
    metrics = property(lambda self: self.root / "metrics.json")
    history = property(lambda self: self.root / "history.jsonl")
    checkpoints = property(lambda self: self.root / "checkpoints")
    last_checkpoint = property(lambda self: self.root / "checkpoints" / "last.ckpt")
    best_checkpoint = property(lambda self: self.root / "checkpoints" / "best.ckpt")
    logs = property(lambda self: self.root / "logs")
    plots = property(lambda self: self.root / "plots")

    def holds_run(self) -> bool:
        """Whether a run was started here (a config or a checkpoint exists)."""
        return self.config.exists() or self.last_checkpoint.exists() or self.metrics.exists()

    def prepare(
        self,
        config: dict[str, Any],
        *,
        resume: bool,
        overwrite: bool = False,
        defaults: dict[str, Any] | None = None,
    ) -> bool:
        """Create the directory and write the config; returns whether to resume from a checkpoint.

        ``defaults`` (field defaults of the config class) stand in for keys that a config saved by
        an earlier version lacks: such a run resumes if the new key has its default value.

        Raises:
            RunExistsError: the directory holds a run and neither ``resume`` nor ``overwrite``.
            ValueError: ``resume`` with a config that differs from the saved one.
        """
        if self.holds_run() and not resume:
            if not overwrite:
                raise RunExistsError(
                    f"{self.root} already holds a run; pass --resume to continue it, "
                    "--overwrite to start again, or --name to choose another directory"
                )
            self.clear()
        if resume and self.config.exists():
            saved = read_json(self.config)
            added = {k: v for k, v in (defaults or {}).items() if k in config and k not in saved}
            saved = {**added, **saved}
            saved = json.loads(json.dumps(saved, default=_json_default))
            current = json.loads(json.dumps(config, default=_json_default))
            if saved != current:
                diff = sorted(
                    k
                    for k in set(saved) | set(current)
                    if k not in saved or k not in current or saved[k] != current[k]
                )
                raise ValueError(
                    f"cannot resume {self.root}: its config differs in {', '.join(diff)} "
                    "(use the same --set values, or another --name)"
                )
        for sub in (self.root, self.checkpoints, self.logs, self.plots):
            sub.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.config, config)
        try:
            import yaml

            self.config_yaml.write_text(yaml.safe_dump(config, sort_keys=False))
        except ImportError:  # optional extra
            pass
        return resume and self.last_checkpoint.exists()

    def clear(self) -> None:
        """Remove the files a run writes (``--overwrite``)."""
        import shutil

        for sub in (self.checkpoints, self.logs, self.plots):
            shutil.rmtree(sub, ignore_errors=True)
        for f in (self.config, self.config_yaml, self.info, self.metrics, self.history):
            if f.exists():
                f.unlink()

    def append_history(self, step: int, metrics: dict[str, float]) -> None:
        """Append one evaluation to ``history.jsonl``."""
        with open(self.history, "a") as f:
            f.write(json.dumps({"step": int(step), "metrics": metrics}, default=_json_default))
            f.write("\n")
            f.flush()

    def read_history(self) -> list[dict[str, Any]]:
        """The evaluations in ``history.jsonl`` (a torn last line is skipped)."""
        if not self.history.exists():
            return []
        out = []
        for line in self.history.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

    def truncate_history(self, last_step: int) -> None:
        """Keep only the evaluations at steps ``<= last_step`` (on resume)."""
        kept = [h for h in self.read_history() if h["step"] <= last_step]
        tmp = self.history.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(h) + "\n" for h in kept))
        os.replace(tmp, self.history)

    def __repr__(self) -> str:
        return f"RunDir({str(self.root)!r})"
