"""Tests of ``simplexity report``: every results page regenerates its committed tables byte for byte
from the kept runs, keeping runs copies the right files (and never a file onto itself), figures are
deterministic, and a changed kept result shows up as a difference."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from simplexity_lab.cli import main
from simplexity_lab.report import KEPT_FILES, PAGES, build_page, keep_runs

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "results"

# the tables each page must regenerate (at least these: a page that silently wrote nothing fails)
TABLES = {
    "igr": {
        "igr-vae",
        "igr-vae-select",
        "discrete-approx",
        "sop",
        "sop-selected",
        "sop-select",
        "relaxation-timing",
    },
    "evsoftmax": {
        "cvae-paper",
        "cvae-reference",
        "ssvae",
        "vqvae",
        "translation",
        "translation-diagnostics",
    },
    "flows": {"maxent-dirichlet"},
    "estimators": {
        "gradient-quality",
        "gradient-quality-runs",
        "vae-igr-20x10-selected",
        "vae-igr-20x10",
        "vae-reinmax-8x4-selected",
        "vae-reinmax-8x4",
        "vae-reinmax-4x24-selected",
        "vae-reinmax-4x24",
    },
    "benchmarks": {
        "runs",
        "normalizers",
        "normalizers-rounds",
        "normalizers-targets",
        "relaxations",
        "engine-overhead",
        "attention",
    },
}


def _differences(written: list[Path], out: Path, results: Path) -> list[str]:
    """The written files (tables and pages) that differ from, or are missing in, ``results``."""
    bad = []
    for path in written:
        committed = results / path.relative_to(out)
        if not committed.is_file():
            bad.append(f"{committed} is not committed")
        elif committed.read_bytes() != path.read_bytes():
            bad.append(f"{committed} differs from its regeneration")
    return bad


def test_pages_registered() -> None:
    assert set(TABLES) <= set(PAGES.names())
    with pytest.raises(ValueError, match="unknown results page 'nope'; expected one of: "):
        build_page("nope", RESULTS)


@pytest.mark.parametrize("page", sorted(TABLES))
def test_tables_regenerate_byte_for_byte(page: str, tmp_path: Path) -> None:
    results = REPO / PAGES[page].results  # docs/results, or docs for the benchmarks
    written = build_page(page, results, out=tmp_path, figures=False)
    tables = {p.stem for p in written if p.parent == tmp_path / page and p.suffix == ".md"}
    assert TABLES[page] <= tables
    assert tmp_path / f"{page}.md" in written  # the page itself, with its tables embedded
    assert not any(p.suffix == ".png" for p in written)
    assert _differences(written, tmp_path, results) == []


def _copy_page(page: str, dst: Path) -> Path:
    dst.mkdir(parents=True)
    shutil.copyfile(RESULTS / f"{page}.md", dst / f"{page}.md")
    shutil.copytree(RESULTS / page / "runs", dst / page / "runs")
    return dst


def test_a_changed_kept_result_is_a_difference(tmp_path: Path) -> None:
    results = _copy_page("flows", tmp_path / "results")
    metrics = next((results / "flows" / "runs" / "maxent-dirichlet").rglob("metrics.json"))
    record = json.loads(metrics.read_text())
    record["metrics"]["test/entropy"] += 0.01
    metrics.write_text(json.dumps(record))
    out = tmp_path / "out"
    bad = _differences(build_page("flows", results, out=out), out, RESULTS)
    assert set(bad) == {
        f"{RESULTS / 'flows' / 'maxent-dirichlet.md'} differs from its regeneration",
        f"{RESULTS / 'flows.md'} differs from its regeneration",
    }


def _fake_run(root: Path, seed: int, *, experiment: str = "maxent-dirichlet") -> Path:
    run = root / experiment / f"target=x:1-seed{seed}"
    (run / "plots").mkdir(parents=True)
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.ckpt").write_bytes(b"weights")
    config = {"seed": seed, "alpha": [1.0, 2.0, 3.0]}
    record = {"experiment": experiment, "config": config, "metrics": {"test/entropy": -1.0 - seed}}
    (run / "metrics.json").write_text(json.dumps(record))
    (run / "config.json").write_text(json.dumps(config))
    (run / "run.json").write_text("{}")
    (run / "history.jsonl").write_text("")
    (run / "plots" / "maxent.png").write_bytes(b"png")
    return run


def test_keep_runs_copies_results_not_weights(tmp_path: Path) -> None:
    runs, results = tmp_path / "runs", tmp_path / "results"
    for seed in (0, 1):
        _fake_run(runs, seed)
    (runs / "maxent-dirichlet" / "unfinished").mkdir()  # no metrics.json: not kept
    written = keep_runs(PAGES["flows"], runs, results)
    kept = results / "flows" / "runs" / "maxent-dirichlet"
    assert sorted(p.name for p in kept.iterdir()) == ["target=x_1-seed0", "target=x_1-seed1"]
    for run in kept.iterdir():
        assert sorted(p.name for p in run.iterdir()) == sorted(KEPT_FILES)
    # the page's snapshot: seed 0's plots only
    snapshots = [p for p in written if p.suffix == ".png"]
    assert snapshots == [results / "flows" / "maxent-dirichlet-target=x:1-seed0-maxent.png"]
    # keeping the kept folder itself, or a folder above it, copies nothing onto itself or below
    for again in (results / "flows" / "runs", results):
        assert keep_runs(PAGES["flows"], again, results) == []
    assert sorted(p.name for p in kept.iterdir()) == ["target=x_1-seed0", "target=x_1-seed1"]
    with pytest.raises(FileNotFoundError, match="not a folder of runs"):
        keep_runs(PAGES["flows"], tmp_path / "missing", results)


def test_report_keeps_then_tabulates(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    (results / "flows.md").write_text(
        "# page\n<!-- begin table maxent-dirichlet -->\n<!-- end table maxent-dirichlet -->\n"
    )
    runs = tmp_path / "runs"
    for seed in (0, 1, 2):
        _fake_run(runs, seed)
    assert main(["report", "flows", "--results", str(results), "--runs", str(runs)]) == 0
    table = (results / "flows" / "maxent-dirichlet.md").read_text()
    assert "| maxent-dirichlet | 3 | -2 ± 0.58 |" in table
    assert table in (results / "flows.md").read_text()
    # rerun in place from the kept copy alone: nothing changes, no SameFileError
    before = (results / "flows.md").read_bytes()
    keep = str(results / "flows" / "runs")
    assert main(["report", "flows", "--results", str(results), "--runs", keep]) == 0
    assert (results / "flows.md").read_bytes() == before


def test_report_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "nope"]) == 2
    assert "unknown results page 'nope'" in capsys.readouterr().err
    assert main(["report", "igr", "--results", str(tmp_path)]) == 2
    assert "no results page" in capsys.readouterr().err


@pytest.mark.slow
def test_figures_are_deterministic(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    first = build_page("evsoftmax", RESULTS, out=tmp_path / "a")
    second = build_page("evsoftmax", RESULTS, out=tmp_path / "b")
    figures = [p for p in first if p.suffix == ".png"]
    assert len(figures) == 4
    for path in figures:
        assert path.read_bytes() == (tmp_path / "b" / path.relative_to(tmp_path / "a")).read_bytes()
    assert len(second) == len(first)


BENCHMARKS = REPO / "docs" / "benchmarks"


def test_benchmark_tables_follow_their_records(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    (docs / "benchmarks").mkdir(parents=True)
    shutil.copyfile(REPO / "docs" / "benchmarks.md", docs / "benchmarks.md")
    for record in BENCHMARKS.glob("*.json"):
        shutil.copyfile(record, docs / "benchmarks" / record.name)
    # one raw sample of the relaxations changes: their table and the page differ, nothing else
    path = docs / "benchmarks" / "relaxations.json"
    record = json.loads(path.read_text())
    samples = record["results"][0]["seconds_per_step"]["IGR-I"]
    samples[:] = [10 * t for t in samples]
    path.write_text(json.dumps(record))
    (docs / "benchmarks" / "engine_overhead.json").unlink()  # a missing record: a note, no table
    out = tmp_path / "out"
    bad = _differences(build_page("benchmarks", docs, out=out), out, REPO / "docs")
    assert set(bad) == {
        f"{BENCHMARKS / 'relaxations.md'} differs from its regeneration",
        f"{BENCHMARKS / 'engine-overhead.md'} differs from its regeneration",
        f"{BENCHMARKS / 'runs.md'} differs from its regeneration",
        f"{REPO / 'docs' / 'benchmarks.md'} differs from its regeneration",
    }
    note = (out / "benchmarks" / "engine-overhead.md").read_text()
    assert note.startswith("*No record kept: `docs/benchmarks/engine_overhead.json` is missing")
    assert "| IGR-I |" in (out / "benchmarks" / "relaxations.md").read_text()


def test_report_benchmarks_defaults_to_docs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)  # the default results folder is relative: docs for this page
    assert main(["report", "benchmarks", "--out", str(tmp_path), "--no-figures"]) == 0
    written = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    assert tmp_path / "benchmarks.md" in written
    assert _differences(written, tmp_path, REPO / "docs") == []
