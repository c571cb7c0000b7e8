"""The results pages, regenerated from the kept runs: ``simplexity report PAGE``.

Each page (:data:`PAGES`: ``igr``, ``evsoftmax``, ``flows``, ``estimators``, ``benchmarks``) is a module that
registers a :class:`~simplexity_lab.report.page.Page`; :func:`build_page` writes its tables and
figures from the results kept in the repository (``docs/results/<page>/runs/``; the benchmark
records in ``docs/benchmarks/``), after keeping those of new runs when asked (:func:`keep_runs`).
"""

from __future__ import annotations

# isort: off
from simplexity_lab.report.page import KEPT_FILES, PAGES, Page, PageBuild, build_page, keep_runs
from simplexity_lab.report import benchmarks, estimators, evsoftmax, flows, igr

# isort: on

__all__ = [
    "KEPT_FILES",
    "PAGES",
    "Page",
    "PageBuild",
    "benchmarks",
    "build_page",
    "estimators",
    "evsoftmax",
    "flows",
    "igr",
    "keep_runs",
]
