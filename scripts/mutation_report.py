"""Mutation-testing bookkeeping for ``scripts/mutation``: mutant selection, the report, its freshness.

mutmut keeps its state in ``mutants/`` (one ``<file>.meta`` JSON per mutated source file, mapping each
mutant's name to the exit code of its test run). This script reads that state; it never edits it.

Commands (run from the repository root with the project's Python):

- ``generate``: write ``mutants/`` (a mutated copy of ``src/``) without running any test, so that the
  mutants of a module can be named before mutmut runs them.
- ``snapshot MODULE...``: record the SHA-256 of the library's source files as the versions mutmut
  now mutates (in ``mutants/simplexity-measured.json``, with the date and the git commit); the date
  moves for the given modules and for changed files only.
- ``names [--retest] MODULE...``: print the mutants of these modules that have no verdict yet (with
  ``--retest`` also the survivors not listed as equivalent, to judge them again after tests were
  added).
- ``write``: rewrite the generated part of ``docs/quality.md`` from the state in ``mutants/``.
- ``check``: exit 1, naming the modules, if a module's source changed since ``docs/quality.md``
  measured it (needs neither mutmut nor ``mutants/``).
- ``files MODULE...``: expand module arguments (``normalizers``, ``normalizers/ev_softmax.py``,
  ``simplexity.flows.rad``) into the library's source files.
"""

from __future__ import annotations

import argparse
import datetime
import fnmatch
import hashlib
import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "docs" / "quality.md"
MEASURED = ROOT / "mutants" / "simplexity-measured.json"
LIBRARY = ROOT / "src" / "simplexity"
BEGIN, END = "<!-- mutation-report:begin -->", "<!-- mutation-report:end -->"
EQUIVALENT_HEADING = "## Equivalent mutants"

# mutmut's exit-code vocabulary (mutmut.stats.status_by_exit_code), folded into the report's columns.
STATUS = {
    1: "killed",
    3: "killed",
    0: "survived",
    5: "no tests",
    33: "no tests",
    34: "skipped",
    35: "suspicious",
    36: "timeout",
    24: "timeout",
    -24: "timeout",
    152: "timeout",
    255: "timeout",
    -11: "segfault",
    -9: "segfault",
    37: "type check",
    None: "not checked",
}


def _config() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["tool"]["mutmut"]


def library_files() -> list[str]:
    """The source files mutmut mutates (``only_mutate`` minus ``do_not_mutate``), relative to ROOT."""
    cfg = _config()
    files = []
    for path in sorted(LIBRARY.rglob("*.py")):
        rel = str(path.relative_to(ROOT))
        if any(fnmatch.fnmatch(rel, p) for p in cfg.get("only_mutate", ["*"])) and not any(
            fnmatch.fnmatch(rel, p) for p in cfg.get("do_not_mutate", [])
        ):
            files.append(rel)
    return files


def expand(modules: list[str]) -> list[str]:
    """Source files named by module arguments; all library files for none. Unknown names exit 2."""
    files = library_files()
    if not modules:
        return files
    chosen: list[str] = []
    for module in modules:
        key = module.removeprefix("src/").removeprefix("simplexity/").removeprefix("simplexity.")
        key = key.removesuffix(".py").replace(".", "/").strip("/")
        hits = [
            f
            for f in files
            if f == f"src/simplexity/{key}.py" or f.startswith(f"src/simplexity/{key}/")
        ]
        if not hits:
            print(
                f"scripts/mutation: unknown module {module!r}; expected a package or file of "
                f"src/simplexity, e.g. normalizers or normalizers/ev_softmax.py",
                file=sys.stderr,
            )
            sys.exit(2)
        chosen += [f for f in hits if f not in chosen]
    return chosen


def sha256(path: str) -> str:
    return hashlib.sha256((ROOT / path).read_bytes()).hexdigest()


def _meta(path: str) -> dict[str, int | None]:
    meta = ROOT / "mutants" / f"{path}.meta"
    if not meta.exists():
        return {}
    return json.loads(meta.read_text())["exit_code_by_key"]


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()


def generate() -> None:
    """Write mutants/ as the first step of ``mutmut run`` does, without running tests."""
    import mutmut.__main__ as mm  # the steps of mutmut.__main__._run before its test runs (3.8)
    from mutmut.mutation.trampoline import set_mutant_under_test

    set_mutant_under_test("mutant_generation")
    os.makedirs("mutants", exist_ok=True)
    mm.copy_src_dir()
    mm.copy_also_copy_files()
    mm.setup_source_paths()
    mm.create_mutants(2)


def snapshot(files: list[str]) -> None:
    measured = json.loads(MEASURED.read_text()) if MEASURED.exists() else {}
    head = _git("rev-parse", "--short=10", "HEAD")
    dirty = set(_git("status", "--porcelain", "--", "src/simplexity").splitlines())
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    for f in library_files():  # mutmut regenerates every changed file at each run, selected or not
        if f in files or measured.get(f, {}).get("sha256") != sha256(f):
            measured[f] = {
                "sha256": sha256(f),
                "date": now,
                "commit": head + ("+" if any(line.endswith(f) for line in dirty) else ""),
                # a restricted test selection makes the score a lower bound: the report says so
                "tests": " ".join(
                    f"{var}={os.environ[var]}"
                    for var in ("MUTATION_TESTS", "MUTATION_IGNORE")
                    if os.environ.get(var)
                ),
            }
    MEASURED.write_text(json.dumps(measured, indent=1, sort_keys=True))


def names(files: list[str], retest: bool) -> list[str]:
    wanted = {None, 0, 5, 33} if retest else {None}
    equivalent = equivalents()  # survivors listed as equivalent are not run again
    return [
        k
        for f in files
        for k, v in _meta(f).items()
        if v in wanted and (v is None or k not in equivalent)
    ]


def equivalents() -> dict[str, str]:
    """Mutant name -> reason, from the hand-written list under EQUIVALENT_HEADING in the report."""
    if not REPORT.exists():
        return {}
    text = REPORT.read_text()
    start = text.find(EQUIVALENT_HEADING)
    if start < 0:
        return {}
    section = text[start + len(EQUIVALENT_HEADING) :]
    section = section[: section.find("\n## ")] if "\n## " in section else section
    return dict(re.findall(r"^- `([^`]+)`:?\s*(.*)$", section, flags=re.MULTILINE))


def _module(path: str) -> str:
    return path.removeprefix("src/simplexity/")


def write() -> None:
    measured = json.loads(MEASURED.read_text()) if MEASURED.exists() else {}
    equivalent = equivalents()
    rows, survivors, unmeasured = [], [], []
    totals: dict[str, Counter] = {}
    for f in library_files():
        codes = _meta(f)
        counts = Counter(STATUS.get(v, "suspicious") for v in codes.values())
        if f not in measured or not codes or counts["not checked"] == len(codes):
            unmeasured.append(_module(f))
            continue
        escaped = [k for k, v in codes.items() if STATUS.get(v) in ("survived", "no tests")]
        eq = sum(k in equivalent for k in escaped)
        caught, missed = counts["killed"], len(escaped) - eq
        score = f"{100 * caught / (caught + missed):.1f} %" if caught + missed else "n/a"
        m = measured[f]
        stale = "" if m["sha256"] == sha256(f) else " (stale)"
        rows.append(
            f"| `{_module(f)}` | {len(codes)} | {caught} | {counts['survived']} | "
            f"{counts['no tests']} | {eq} | {counts['timeout']} | "
            f"{counts['suspicious'] + counts['segfault']} | {counts['not checked']} | "
            f"**{score}** | {m['date']}, `{m['commit']}`{stale} | `{m['sha256'][:16]}` |"
        )
        for key in ("all measured", _module(f).rpartition("/")[0] or "(top level)"):
            totals.setdefault(key, Counter()).update(counts + Counter(equivalent=eq))
        survivors += [(f, k, STATUS[codes[k]]) for k in escaped if k not in equivalent]
    lines = [
        BEGIN,
        "<!-- generated by `scripts/mutation --report`; edit the text outside these markers only -->",
        "",
        f"mutmut {_mutmut_version()}; score = killed / (killed + survived + no tests − equivalent).",
        "",
        "| module | mutants | killed | survived | no tests | equivalent | timeout | suspicious "
        "| not run | score | measured (commit; `+`: with uncommitted changes) | source SHA-256 |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|---|",
        *rows,
    ]
    for label, t in sorted(totals.items(), key=lambda item: item[0] == "all measured"):
        caught, missed = t["killed"], t["survived"] + t["no tests"] - t["equivalent"]
        score = f"{100 * caught / (caught + missed):.1f} %" if caught + missed else "n/a"
        lines.append(
            f"| **{label}** | {sum(t.values()) - t['equivalent']} | {caught} | {t['survived']} | "
            f"{t['no tests']} | {t['equivalent']} | {t['timeout']} | "
            f"{t['suspicious'] + t['segfault']} | {t['not checked']} | **{score}** | | |"
        )
    restricted: dict[str, list[str]] = {}
    for f in library_files():
        if measured.get(f, {}).get("tests") and _module(f) not in unmeasured:
            restricted.setdefault(measured[f]["tests"], []).append(f"`{_module(f)}`")
    for selection, modules in restricted.items():
        lines += [
            "",
            f"Measured with a restricted test selection ({selection}; the score is a "
            "lower bound): " + ", ".join(modules) + ".",
        ]
    lines += ["", "Not measured yet: " + (", ".join(f"`{m}`" for m in unmeasured) or "none") + "."]
    lines += [
        "",
        f"Survivors not yet killed nor classified as equivalent ({len(survivors)}; "
        "`.venv/bin/mutmut show NAME` prints one):",
        "",
    ]
    by_module: dict[str, list[str]] = {}
    for f, k, status in survivors:
        by_module.setdefault(_module(f), []).append(
            f"`{k}`" + (" (no tests)" if status == "no tests" else "")
        )
    for module, keys in by_module.items():
        lines.append(f"- `{module}` ({len(keys)}): " + ", ".join(keys))
    lines.append(END)
    text = REPORT.read_text() if REPORT.exists() else f"# Quality\n\n{BEGIN}\n{END}\n"
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    REPORT.write_text(head + "\n".join(lines) + tail)
    print(f"wrote {REPORT.relative_to(ROOT)}: {len(rows)} modules measured, {len(unmeasured)} not")


def _mutmut_version() -> str:
    from importlib.metadata import version

    return version("mutmut")


def check() -> int:
    """Compare each measured module's recorded source hash with the file now; 1 if any differ."""
    text = REPORT.read_text()
    recorded = dict(
        re.findall(r"^\| `([^`]+)` \|.*\| `([0-9a-f]{16})` \|$", text, flags=re.MULTILINE)
    )
    stale = [
        m
        for m, h in recorded.items()
        if not (LIBRARY / m).exists() or sha256(str((LIBRARY / m).relative_to(ROOT)))[:16] != h
    ]
    missing = [_module(f) for f in library_files() if _module(f) not in recorded]
    if missing:
        print("not measured in docs/quality.md: " + ", ".join(missing))
    if stale:
        print(
            "docs/quality.md is older than the code it measured (rerun `scripts/mutation "
            + " ".join(stale)
            + "`): "
            + ", ".join(stale)
        )
        return 1
    print(f"docs/quality.md: {len(recorded)} measured modules match their sources")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "command", choices=["generate", "snapshot", "names", "write", "check", "files"]
    )
    parser.add_argument("args", nargs="*")
    parser.add_argument("--retest", action="store_true")
    a = parser.parse_intermixed_args()
    if a.command == "generate":
        generate()
    elif a.command == "snapshot":
        snapshot(expand(a.args))
    elif a.command == "names":
        print("\n".join(names(expand(a.args), a.retest)))
    elif a.command == "write":
        write()
    elif a.command == "check":
        return check()
    elif a.command == "files":
        print("\n".join(expand(a.args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
