"""The ``simplexity`` command line: ``demo``, ``run``, ``list``, ``table``, ``report``,
``select-temperature``.

User mistakes (unknown names, bad overrides, missing data, an existing run) print one line
``simplexity: error: ...`` and exit with status 2; set ``SIMPLEXITY_DEBUG=1`` for the traceback.
"""

from __future__ import annotations

import argparse
import os
import sys

__all__ = ["build_parser", "main"]

RUN_EPILOG = """\
examples:
  simplexity run vae --budget smoke
  simplexity run vae --budget paper --set relaxation=igr_sb --set net=linear --set seed=1
  simplexity run cvae --set normalizer=sparsemax --data-dir ../shared/data
  simplexity run vae --name myrun --resume              # continue an interrupted run
  simplexity run vae --devices 2 --strategy ddp          # two processes (gloo on the CPU)
config keys: `simplexity list --keys EXPERIMENT`; schedules: 0.5, exp:1.0:0.1:5000, linear:..., cosine:...
"""


def _demo(args: argparse.Namespace) -> int:
    from simplexity_lab.demo import run_demo

    run_demo(out=args.out, seed=args.seed, quick=args.quick, data_dir=args.data_dir)
    return 0


def _run(args: argparse.Namespace) -> int:
    import simplexity_lab.experiments  # noqa: F401  (registers the experiments)
    from simplexity_lab.engine.runner import run

    result = run(
        args.experiment,
        budget=args.budget,
        overrides=args.set,
        config_file=args.config,
        name=args.name,
        out=args.out,
        data_dir=args.data_dir,
        resume=args.resume,
        overwrite=args.overwrite,
        devices=args.devices,
        strategy=args.strategy,
        accelerator=args.accelerator,
        progress_bar=False if args.no_progress else None,
        threads=args.threads,
    )
    if result is not None:
        print(f"run: {result.path}")
        width = max(len(k) for k in result.metrics) if result.metrics else 0
        for key, value in result.metrics.items():
            print(f"  {key:<{width}}  {value:.6g}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from simplexity import normalizers
    from simplexity.distributions import relaxations
    from simplexity_lab import experiments

    if args.keys:
        from simplexity_lab.engine.config import config_fields

        exp = experiments.get(args.keys)
        config = exp.make_config("paper")
        print(f"{exp.name} config keys (paper-budget values; budgets: {', '.join(exp.budgets)}):")
        for key in config_fields(exp.config_class):
            print(f"  {key} = {getattr(config, key)!r}")
        return 0
    print("experiments:")
    width = max(map(len, experiments.names()))
    for name in experiments.names():
        exp = experiments.get(name)
        print(f"  {name:<{width}}  {exp.description}  [budgets: {', '.join(exp.budgets)}]")
    from simplexity_lab.report import PAGES

    print("results pages: " + ", ".join(PAGES.names()))
    print("normalizers: " + ", ".join(normalizers.names()))
    print("relaxations: " + ", ".join(relaxations.names()))
    try:
        import simplexity_lab.data as data

        print("data sets: " + ", ".join(data.names()))
    except ImportError:  # pragma: no cover - the data package ships with simplexity
        pass
    return 0


def _table(args: argparse.Namespace) -> int:
    import simplexity_lab.experiments  # noqa: F401  (their config defaults fill older records)
    from simplexity_lab.engine.table import collect, markdown_table

    metrics = [m.strip() for m in args.metrics.split(",")] if args.metrics else None
    text = markdown_table(collect(args.runs), metrics)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text)
    print(text, end="")
    return 0


def _report(args: argparse.Namespace) -> int:
    from simplexity_lab.report import PAGES, build_page

    results = args.results if args.results is not None else PAGES[args.page].results
    for path in build_page(args.page, results, out=args.out, figures=not args.no_figures,
                           keep=args.runs):  # fmt: skip
        print(path)
    return 0


def _select_temperature(args: argparse.Namespace) -> int:
    import json

    import torch

    from simplexity_lab.experiments.temperature_selection import (
        TEMPERATURE_GRID,
        select_temperature,
    )

    grid: tuple[float, ...] | list[float] = TEMPERATURE_GRID
    if args.grid is not None:
        try:
            grid = [float(t) for t in args.grid.split(",") if t.strip()]
        except ValueError:
            raise ValueError(f"--grid must be comma-separated numbers, got {args.grid!r}") from None
    relaxations = None if args.relaxations is None else args.relaxations.split(",")
    torch.set_num_threads(args.threads)
    record = select_temperature(
        experiment=args.experiment, dataset=args.dataset, net=args.net,
        relaxations=relaxations, grid=grid,
        budget=args.budget, overrides=args.set, out=args.out, data_dir=args.data_dir,
        max_extensions=args.max_extensions,
    )  # fmt: skip
    print(json.dumps(record["selected"], indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="simplexity",
        description="Sparse, relaxed and multimodal distributions on the simplex: demos and experiments.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="train small models of the three papers on built-in data; print a table, write a report",
        description="Discrete VAE (Gumbel-softmax vs IGR), the CVAE's even/odd prior (softmax, "
        "sparsemax, entmax-1.5, ev-softmax) and mixture- vs Gaussian-base flows, on built-in data "
        "(scikit-learn digits, generated 2-D points). Writes report.md and PNG plots.",
    )
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    demo.add_argument("--quick", action="store_true", help="a few steps only (for tests)")
    demo.add_argument("--data-dir", default=None, help=argparse.SUPPRESS)
    demo.set_defaults(func=_demo)

    run = sub.add_parser(
        "run",
        help="train an experiment (Lightning): checkpoints, logs, metrics.json under runs/NAME/",
        description="Train a registered experiment. Writes runs/NAME/ with config.json, "
        "metrics.json, checkpoints/{last,best}.ckpt, logs/ (CSV, TensorBoard) and plots/.",
        epilog=RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("experiment", help="experiment name (see `simplexity list`)")
    run.add_argument(
        "--budget", default="smoke", help="smoke (seconds), demo or paper (default smoke)"
    )
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config value (repeatable)")  # fmt: skip
    run.add_argument("--config", default=None, metavar="FILE", help="YAML or JSON config values")
    run.add_argument("--data-dir", default=None, metavar="D",
                     help="data directory (default $SIMPLEXITY_DATA_DIR, then ~/.cache/simplexity)")  # fmt: skip
    run.add_argument(
        "--out", default="runs", metavar="D", help="parent of run directories (default runs)"
    )
    run.add_argument(
        "--name",
        default=None,
        help="run directory name (default from the experiment, budget, overrides, seed)",
    )
    run.add_argument(
        "--resume", action="store_true", help="continue from the run's last checkpoint"
    )
    run.add_argument(
        "--overwrite", action="store_true", help="delete an existing run of that name first"
    )
    run.add_argument("--devices", default="1", help="number of devices/processes (default 1)")
    run.add_argument(
        "--strategy", default="auto", help="Lightning strategy, e.g. ddp (default auto)"
    )
    run.add_argument("--accelerator", default="auto", help="cpu, gpu or auto (default auto)")
    run.add_argument("--threads", type=int, default=1,
                     help="torch threads per process (default 1: fastest for these small models)")  # fmt: skip
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.set_defaults(func=_run)

    lst = sub.add_parser("list", help="list experiments, normalizers, relaxations and data sets")
    lst.add_argument(
        "--keys", metavar="EXPERIMENT", default=None, help="list the config keys of an experiment"
    )
    lst.set_defaults(func=_list)

    table = sub.add_parser(
        "table",
        help="aggregate runs' metrics.json into a markdown table (mean ± s.e. over seeds)",
        description="Group runs by experiment and config (all but the seed) and print mean ± "
        "standard error over seeds. RUN_DIR may be a run directory or a folder of runs.",
    )
    table.add_argument("runs", nargs="+", metavar="RUN_DIR")
    table.add_argument(
        "--metrics", default=None, help="comma-separated metric columns (default: test/*)"
    )
    table.add_argument(
        "--output", default=None, metavar="FILE", help="also write the table to FILE"
    )
    table.set_defaults(func=_table)

    report = sub.add_parser(
        "report",
        help="regenerate a results page's tables and figures from its kept runs",
        description="Rewrite the tables (RESULTS/PAGE/*.md and the page between its table "
        "markers) and figures of a results page from the runs kept in RESULTS/PAGE/runs/ "
        "(metrics, configs, histories: no checkpoints). With --runs, first keep the results of "
        "the finished runs under that folder.",
    )
    report.add_argument(
        "page", help="the results page: igr, evsoftmax, flows, estimators or benchmarks"
    )
    report.add_argument("--results", default=None, metavar="D",
                        help="the results folder (default docs/results; docs for benchmarks)")  # fmt: skip
    report.add_argument("--runs", default=None, metavar="D",
                        help="keep the finished runs under D first (e.g. runs/igr)")  # fmt: skip
    report.add_argument("--out", default=None, metavar="D",
                        help="write to this folder instead of --results (to compare)")  # fmt: skip
    report.add_argument("--no-figures", action="store_true", help="write the tables only")
    report.set_defaults(func=_report)

    select = sub.add_parser(
        "select-temperature",
        help="pick igr-vae's (or sop's) temperature per relaxation on the validation split",
        description="Train one run (budget `select`) per relaxation and temperature of the grid "
        "under OUT/EXPERIMENT-select-DATASET[-NET]/, pick the temperature with the best "
        "validation criterion (igr-vae: highest valid/iw_bound; sop: lowest valid/nll) and write "
        "selected_temperature.json there (finished runs are reused).",
    )
    select.add_argument("--experiment", default="igr-vae", choices=["igr-vae", "sop"])
    select.add_argument("--dataset", default=None,
                        help="default: the experiment's (mnist; binarized_mnist)")  # fmt: skip
    select.add_argument("--net", default=None, help="igr-vae only (default nonlinear)")
    select.add_argument("--relaxations", default=None, metavar="R,R",
                        help="default: all of the experiment's (igr-vae: gumbel_softmax, igr_i, "
                        "igr_planar, igr_sb)")  # fmt: skip
    select.add_argument("--grid", default=None, metavar="T,T",
                        help="temperatures (default 0.03,0.05,0.1,0.15,0.25,0.5,0.67)")  # fmt: skip
    select.add_argument("--budget", default="select")
    select.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    select.add_argument("--out", default="runs", metavar="D", help="parent folder (default runs)")
    select.add_argument("--data-dir", default=None, metavar="D")
    select.add_argument("--threads", type=int, default=1)
    select.add_argument(
        "--max-extensions", type=int, default=3, metavar="N",
        help="extend a grid whose best value is on its edge at most N times (default 3)",
    )  # fmt: skip
    select.set_defaults(func=_select_temperature)
    return parser


def _devices(value: str) -> int | str:
    return int(value) if value.isdigit() else value


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if hasattr(args, "devices"):
        args.devices = _devices(args.devices)
    try:
        return int(args.func(args))
    except (
        ValueError,
        TypeError,
        FileNotFoundError,
        FileExistsError,
        KeyError,
        ImportError,
    ) as error:
        if os.environ.get("SIMPLEXITY_DEBUG"):
            raise
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"simplexity: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
