"""A results page: what it is made of, the registry of pages, and how one is built.

A page is a markdown file ``<results>/<name>.md`` beside a folder ``<results>/<name>/`` that holds
the kept results of its runs (``runs/``: each run's ``metrics.json``, ``config.json``,
``run.json`` and ``history.jsonl``, no checkpoints), the tables the page includes (``<table>.md``,
also written into the page between ``<!-- begin table <table> -->`` and
``<!-- end table <table> -->``) and its figures. Building a page reads only the kept results, so
a fresh clone regenerates every table byte for byte (``simplexity report PAGE``).

A page registers a :class:`Page` in :data:`PAGES`: a ``build`` function that writes the tables and
figures through a :class:`PageBuild`, and optionally a ``snapshot`` function that copies a run's
own plots (drawn from weights that are not kept) when its results are kept.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simplexity._registry import Registry
from simplexity_lab.engine.runs import read_json
from simplexity_lab.engine.table import embed_table

__all__ = ["KEPT_FILES", "PAGES", "Page", "PageBuild", "build_page", "copy_plots", "keep_runs"]

KEPT_FILES: tuple[str, ...] = ("metrics.json", "config.json", "run.json", "history.jsonl")
"""The files of a finished run that a page keeps (no checkpoints, logs or plots)."""


@dataclass
class PageBuild:
    """One build of a page: where it reads its kept results and where it writes.

    Attributes:
        name: the page's name (``"igr"``).
        source: the results folder read: ``source/<name>.md`` and ``source/<name>/runs/``.
        out: the results folder written (``source`` itself to regenerate in place).
        figures: draw the figures (the tables are always written).
        written: the files written so far.
    """

    name: str
    source: Path
    out: Path
    figures: bool = True
    written: list[Path] = field(default_factory=list)

    @property
    def runs(self) -> Path:
        """The kept results of the page's runs."""
        return self.source / self.name / "runs"

    @property
    def folder(self) -> Path:
        """The folder the tables and figures are written to."""
        return self.out / self.name

    @property
    def page(self) -> Path:
        """The markdown page written (a copy of the source page when ``out`` is elsewhere)."""
        return self.out / f"{self.name}.md"

    def table(self, key: str, text: str) -> Path:
        """Write the markdown table ``key`` to ``<key>.md`` and into the page at its markers."""
        path = self.folder / f"{key}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        self.written.append(path)
        if self.page.is_file() and embed_table(self.page, key, text):
            self.written.append(self.page)
        return path

    def figure(self, filename: str, fig: Any, *, dpi: float) -> Path | None:
        """Save ``fig`` as ``filename`` (PNG) when figures are wanted."""
        if not self.figures:
            return None
        from simplexity_lab.plots import save_png

        path = self.folder / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        save_png(fig, path, dpi=dpi)
        self.written.append(path)
        return path


@dataclass(frozen=True)
class Page:
    """A registered results page.

    Attributes:
        name: the registry name (what ``simplexity report NAME`` takes).
        description: one line.
        build: ``build(page_build)`` writes the tables and figures from the kept results.
        snapshot: ``snapshot(record, run_dir, folder)`` copies plots of a run being kept into
            the page's folder and returns the files written (``None``: the page keeps none).
        results: the page's results folder, relative to the repository root (the default of
            ``simplexity report --results``): ``docs/results``, or ``docs`` for
            ``docs/benchmarks.md``.
    """

    name: str
    description: str
    build: Callable[[PageBuild], None]
    snapshot: Callable[[dict[str, Any], Path, Path], list[Path]] | None = None
    results: str = "docs/results"


PAGES: Registry[Page] = Registry("results page")
"""Every results page by name (filled by importing :mod:`simplexity_lab.report`)."""


def copy_plots(
    run: Path, folder: Path, names: Iterable[str], prefix: str, *, max_bytes: int = 300_000
) -> list[Path]:
    """Copy the plots ``names`` of ``run`` (those under ``max_bytes``) to ``folder/<prefix><name>``;
    returns the files written (a snapshot: a run's plots are drawn from weights that are not kept).
    """
    written = []
    for name in names:
        src = run / "plots" / name
        if src.is_file() and src.stat().st_size < max_bytes:
            dst = folder / f"{prefix}{name}"
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
            written.append(dst)
    return written


def _portable(part: str) -> str:
    """A path component that checks out on every system (``:`` and the like become ``_``)."""
    return re.sub(r'[<>:"|?*\\]', "_", part)


def keep_runs(page: Page, runs: str | Path, results: str | Path) -> list[Path]:
    """Keep the results of the finished runs under ``runs`` in ``results/<page>/runs/``.

    Every run directory below ``runs`` that has a ``metrics.json`` gets its :data:`KEPT_FILES`
    copied to the same relative path under the kept folder (with characters that some systems do
    not allow in paths replaced), and the page's ``snapshot`` copies its plots. A run already in
    the kept folder (``runs`` inside it, or the folder itself) is left as it is.

    Returns:
        The files written.
    """
    runs, results = Path(runs), Path(results)
    if not runs.is_dir():
        raise FileNotFoundError(f"{str(runs)!r} is not a folder of runs")
    kept = results / page.name / "runs"
    kept_resolved = kept.resolve()
    written: list[Path] = []
    for metrics in sorted(runs.rglob("metrics.json")):
        src = metrics.parent
        if src.resolve() == kept_resolved or kept_resolved in src.resolve().parents:
            continue  # already a kept copy
        dst = kept.joinpath(*(_portable(p) for p in src.relative_to(runs).parts))
        record = read_json(metrics)
        if not isinstance(record, dict) or "metrics" not in record:
            continue  # not a run's metrics.json
        dst.mkdir(parents=True, exist_ok=True)
        for name in KEPT_FILES:
            if (src / name).is_file():
                shutil.copyfile(src / name, dst / name)
                written.append(dst / name)
        if page.snapshot is not None:
            written += page.snapshot(record, src, results / page.name)
    return written


def build_page(
    name: str,
    results: str | Path,
    *,
    out: str | Path | None = None,
    figures: bool = True,
    keep: str | Path | None = None,
) -> list[Path]:
    """Regenerate the tables and figures of page ``name`` from its kept results.

    Args:
        name: a name in :data:`PAGES`.
        results: the results folder holding ``<name>.md`` and ``<name>/runs/``
            (``docs/results`` in the repository).
        out: write to this results folder instead (the page is copied there first), e.g. to
            compare a regeneration with the committed files.
        figures: also draw the figures.
        keep: first keep the results of the finished runs under this folder
            (:func:`keep_runs`).

    Returns:
        The files written.
    """
    page = PAGES[name]
    results = Path(results)
    source_page = results / f"{name}.md"
    if not source_page.is_file():
        raise FileNotFoundError(
            f"no results page {str(source_page)!r}: run from the repository root or pass the "
            "results folder"
        )
    written = keep_runs(page, keep, results) if keep is not None else []
    build = PageBuild(name, results, Path(out) if out is not None else results, figures)
    if build.page.resolve() != source_page.resolve():
        build.page.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source_page, build.page)
    page.build(build)
    return written + list(dict.fromkeys(build.written))
