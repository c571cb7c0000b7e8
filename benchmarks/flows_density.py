"""Experiment 1: density estimation on 2-D multimodal toys — Gaussian base vs mixture base vs RAD.

The same Real NVP flow (affine couplings) with (a) a standard normal base, (b) a trainable
mixture-of-Gaussians base initialized by k-means++, and (c) RAD: two piecewise-affine RAD layers
(5 pieces, gated) in front of a Real NVP whose width is reduced so that the total parameter count
matches (within 2%). Maximum likelihood with Adam; the metric is the test log-likelihood on fresh
samples, mean ± standard error over seeds; density plots for seed 0.

    python benchmarks/flows_density.py --out docs/results/flows --resume      # full
    python benchmarks/flows_density.py --out /tmp/flows --quick               # smoke test
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from simplexity.data.toy2d import sample
from simplexity.flows import RAD, AffineCoupling, GaussianBase, LazyFlow, MixtureBase, RADLayer

DATASETS = ("8gaussians", "moons", "rings", "checkerboard", "pinwheel", "2spirals")
MODELS = ("gaussian", "mixture", "rad")
GRID = 120
LIM = 4.5


def couplings(layers: int, hidden: int) -> list[AffineCoupling]:
    return [AffineCoupling(2, i % 2, hidden=(hidden, hidden)) for i in range(layers)]


def build(model: str, data: torch.Tensor, args: argparse.Namespace) -> torch.nn.Module:
    if model == "gaussian":
        return LazyFlow(GaussianBase(2), couplings(args.layers, args.hidden))
    if model == "mixture":
        base = MixtureBase(2, args.components).initialize_from_data(data[:4096])
        return LazyFlow(base, couplings(args.layers, args.hidden))
    rad_layers = [
        RADLayer(2, args.pieces, dim=1, hidden=(16, 16), gate_hidden=(16, 16), spread=1.5),
        RADLayer(2, args.pieces, dim=0, hidden=(16, 16), gate_hidden=(16, 16), spread=1.5),
    ]
    return RAD(LazyFlow(GaussianBase(2), couplings(args.layers, args.rad_hidden)), rad_layers)


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def run(cell: dict, args: argparse.Namespace) -> tuple[dict, np.ndarray | None]:
    g = torch.Generator().manual_seed(1000 + cell["seed"])
    torch.manual_seed(cell["seed"])
    train = sample(cell["dataset"], args.train, generator=g)
    test = sample(cell["dataset"], args.test, generator=g)
    model = build(cell["model"], train, args)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.steps)
    start, cpu = time.perf_counter(), time.process_time()
    for step in range(args.steps):
        idx = torch.randint(train.shape[0], (args.batch,), generator=g)
        loss = -model().log_prob(train[idx]).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        sched.step()
        if (step + 1) % max(1, args.steps // 4) == 0:
            print(f"    step {step + 1}: train nll {loss.item():.3f}", flush=True)
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu
    with torch.no_grad():
        lp = torch.cat([model().log_prob(chunk) for chunk in test.split(4096)])
        grid = None
        if cell["seed"] == 0:
            axis = torch.linspace(-LIM, LIM, GRID)
            xx, yy = torch.meshgrid(axis, axis, indexing="xy")
            pts = torch.stack([xx, yy], -1).reshape(-1, 2)
            grid = model().log_prob(pts).exp().reshape(GRID, GRID).numpy()
    finite = torch.isfinite(lp)
    result = {
        **cell,
        "test_ll": float(lp[finite].mean()),
        "test_ll_se": float(lp[finite].std() / math.sqrt(int(finite.sum()))),
        "nonfinite": int((~finite).sum()),
        "parameters": count(model),
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "steps": args.steps,
    }
    return result, grid


def summarize(results: list[dict]) -> str:
    lines = [
        "| dataset | " + " | ".join(f"{m} (params)" for m in MODELS) + " |",
        "|---|" + "---|" * len(MODELS),
    ]
    for d in DATASETS:
        row = [d]
        for m in MODELS:
            vals = [r["test_ll"] for r in results if r["dataset"] == d and r["model"] == m]
            params = [r["parameters"] for r in results if r["dataset"] == d and r["model"] == m]
            if not vals:
                row.append("–")
                continue
            se = np.std(vals, ddof=1) / math.sqrt(len(vals)) if len(vals) > 1 else float("nan")
            row.append(f"{np.mean(vals):.3f} ± {se:.3f} (n={len(vals)}, {params[0]})")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def plot(results: list[dict], cache: Path, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(DATASETS), 1 + len(MODELS), figsize=(7, 1.8 * len(DATASETS)))
    g = torch.Generator().manual_seed(0)
    for i, d in enumerate(DATASETS):
        x = sample(d, 20000, generator=g)
        axes[i, 0].hist2d(x[:, 0], x[:, 1], bins=GRID, range=[[-LIM, LIM], [-LIM, LIM]])
        axes[i, 0].set_ylabel(d, fontsize=8)
        for j, m in enumerate(MODELS):
            path = cache / f"{d}_{m}.npy"
            ax = axes[i, j + 1]
            if path.exists():
                ax.imshow(np.load(path), origin="lower", extent=[-LIM, LIM, -LIM, LIM])
                ll = [r["test_ll"] for r in results if r["dataset"] == d and r["model"] == m]
                ax.set_title(f"{m}: {np.mean(ll):.2f}", fontsize=7)
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_title("data", fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "density_2d.png", dpi=55)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/results/flows"))
    parser.add_argument("--cache", type=Path, default=Path("runs/flows_density"))
    parser.add_argument("--quick", action="store_true", help="tiny budget (smoke test)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--train", type=int, default=50000)
    parser.add_argument("--test", type=int, default=20000)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--rad-hidden", type=int, default=28)
    parser.add_argument("--components", type=int, default=8)
    parser.add_argument("--pieces", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--resume", action="store_true", help="skip cells already in the JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.seeds, args.train, args.test = 30, [0], 2000, 2000
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    args.cache.mkdir(parents=True, exist_ok=True)
    stem = "density_2d_quick" if args.quick else "density_2d"
    path = args.out / f"{stem}.json"
    results = json.loads(path.read_text())["results"] if args.resume and path.exists() else []
    finished = {(r["dataset"], r["model"], r["seed"]) for r in results}
    total = time.perf_counter()
    for seed in args.seeds:
        for d in args.datasets:
            for m in MODELS:
                if (d, m, seed) in finished:
                    print(f"skip {d}/{m}/s{seed} (done)")
                    continue
                print(f"run {d}/{m}/s{seed}", flush=True)
                result, grid = run({"dataset": d, "model": m, "seed": seed}, args)
                if grid is not None:
                    np.save(args.cache / f"{d}_{m}.npy", grid.astype(np.float32))
                results.append(result)
                print(
                    f"  -> test ll {result['test_ll']:.3f} ({result['parameters']} params, "
                    f"{result['seconds']:.0f}s)",
                    flush=True,
                )
                meta = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
                path.write_text(json.dumps({"args": meta, "results": results}, indent=1))
    table = summarize(results)
    wall = sum(r["seconds"] for r in results)
    cpu = sum(r.get("cpu_seconds", r["seconds"]) for r in results)
    (args.out / f"{stem}.md").write_text(
        f"Test log-likelihood (nats, higher is better), mean ± s.e. over seeds; training time "
        f"summed over cells: {wall:.0f} s wall, {cpu:.0f} s CPU (cells run before CPU time was "
        f"recorded count their wall time); this invocation: {time.perf_counter() - total:.0f} s."
        f"\n\n{table}\n"
    )
    print(table)
    if not args.quick:
        plot(results, args.cache, args.out)


if __name__ == "__main__":
    main()
