"""Experiment 2: sampling-based objectives with a mixture base — each reparam x estimator.

Part A (the numerical version of REFERENCE 3.1's table): for the note's example base (D = 2, K = 8
components on a ring of radius 2, sigma = 0.3, equal weights) and each reparameterization and
temperature, the entropy estimate -E[log p_hat(z0)] of every estimator against the true entropy
of the distribution the samples actually follow (exact for hard choices; for soft choices H(q_tau)
pinned between the nested and nested_own bounds at M = 2048).

Part B (training): (1) reverse-KL fitting of a known 2-D multimodal target and (2) the
maximum-entropy Dirichlet problem, with a flow (mixture base + affine couplings) trained with each
reparam x estimator. Reported: the objective the optimizer saw (its own estimate), the true
objective of the trained model (computed with the exact density, or the tight nested bracket for
soft samples), and their gap.

    python benchmarks/flows_objectives.py --out docs/results/flows --resume   # full
    python benchmarks/flows_objectives.py --out /tmp/flows --quick            # smoke test
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from simplexity.distributions import MixtureOfGaussians
from simplexity.flows import (
    AffineCoupling,
    AugmentedLagrangian,
    LazyFlow,
    MaxEntTrainer,
    MixtureBase,
    SimplexTransform,
    dirichlet_constraints,
    dirichlet_entropy,
)

HARD = ("pathwise", "gumbel_straight_through")
REPARAMS = ("pathwise", "gumbel_straight_through", "gumbel_softmax", "igr")
ESTIMATORS = ("exact", "nested", "nested_own", "joint")
ALPHA = (1.0, 2.0, 3.0)


def ring_base(reparam: str, tau: float | None) -> MixtureOfGaussians:
    angle = torch.arange(8) * 2 * math.pi / 8
    loc = 2.0 * torch.stack([angle.cos(), angle.sin()], -1)
    return MixtureOfGaussians(
        torch.zeros(8), loc, torch.full((8, 2), 0.3), reparam=reparam, temperature=tau
    )


def target() -> MixtureOfGaussians:
    angle = torch.arange(6) * 2 * math.pi / 6
    loc = 3.0 * torch.stack([angle.cos(), angle.sin()], -1)
    weights = torch.tensor([1.0, 2.0, 3.0, 1.0, 2.0, 3.0])
    return MixtureOfGaussians(weights.log(), loc, torch.full((6, 2), 0.35))


def estimate(dist, n: int, seed: int, chunk: int = 250, **kwargs) -> tuple[torch.Tensor, ...]:
    """Sample n points in chunks with fixed seeds (the same z for any estimator)."""
    zs, lps = [], []
    with torch.no_grad():
        for i, start in enumerate(range(0, n, chunk)):
            torch.manual_seed(seed * 100003 + i)
            z, lp = dist.rsample_and_log_prob((min(chunk, n - start),), **kwargs)
            zs.append(z)
            lps.append(lp)
    return torch.cat(zs), torch.cat(lps)


def true_log_q(dist, reparam: str, n: int, seed: int, big_m: int) -> tuple:
    """log q of the sampling distribution: exact (hard) or the nested bracket (soft)."""
    if reparam in HARD:
        z, lp = estimate(dist, n, seed, estimator="exact")
        return z, lp, torch.zeros_like(lp)
    z, upper = estimate(dist, n, seed, estimator="nested_own", num_inner=big_m)
    _, lower = estimate(dist, n, seed, estimator="nested", num_inner=big_m)
    return z, 0.5 * (upper + lower), 0.5 * (upper - lower)


# --------------------------------------------------------------------------- part A
def part_a(args: argparse.Namespace) -> list[dict]:
    rows = []
    ms = (1, 4, 16, 64, 256)
    for reparam in REPARAMS:
        for tau in (None,) if reparam == "pathwise" else args.taus:
            dist = ring_base(reparam, tau)
            _, lq, half = true_log_q(dist, reparam, args.n_a, 0, args.big_m)
            truth, truth_half = float(-lq.mean()), float(half.mean())
            entries = [("exact", None), ("joint", None)]
            entries += [(e, m) for e in ("nested", "nested_own") for m in ms]
            for est, m in entries:
                _, lp = estimate(dist, args.n_a, 0, estimator=est, num_inner=m)
                value = float(-lp.mean())
                rows.append(
                    {
                        "reparam": reparam,
                        "tau": tau,
                        "estimator": est,
                        "num_inner": m,
                        "estimate": value,
                        "truth": truth,
                        "truth_halfwidth": truth_half,
                        "gap": value - truth,
                        "se": float(lp.std() / math.sqrt(lp.numel())),
                    }
                )
            print(f"  part A {reparam} tau={tau}: H={truth:.3f} ± {truth_half:.3f}", flush=True)
    return rows


# --------------------------------------------------------------------------- part B
def flow_model(reparam: str, tau: float | None, simplex: bool) -> LazyFlow:
    transforms: list = [AffineCoupling(2, i % 2, hidden=(32, 32)) for i in range(4)]
    if simplex:
        transforms.append(SimplexTransform())
    base = MixtureBase(2, 4 if simplex else 8, reparam=reparam, temperature=tau, spread=1.5)
    return LazyFlow(base, transforms)


def kwargs_of(estimator: str, m: int | None) -> dict:
    return {"estimator": estimator, "num_inner": m if estimator.startswith("nested") else None}


def train_reverse_kl(cell: dict, args: argparse.Namespace) -> dict:
    torch.manual_seed(cell["seed"])
    model = flow_model(cell["reparam"], cell["tau"], simplex=False)
    p = target()
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    kw = kwargs_of(cell["estimator"], cell["num_inner"])
    seen = []
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(args.steps):
        z, lq = model().rsample_and_log_prob((args.batch,), **kw)
        loss = (lq - p.log_prob(z)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        seen.append(float(loss))
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu
    flow = model()
    z, est = estimate(flow, args.n_b, 1, **kw)
    _, lq, half = true_log_q(flow, cell["reparam"], args.n_b, 1, args.big_m)
    # The same z for the optimizer's view and the truth (same seeds).
    log_target = p.log_prob(z)
    return {
        **cell,
        "estimate": float((est - log_target).mean()),
        "truth": float((lq - log_target).mean()),
        "truth_halfwidth": float(half.mean()),
        "train_last100": float(np.mean(seen[-100:])),
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
    }


def train_maxent(cell: dict, args: argparse.Namespace) -> dict:
    torch.manual_seed(cell["seed"])
    model = flow_model(cell["reparam"], cell["tau"], simplex=True)
    kw = kwargs_of(cell["estimator"], cell["num_inner"])
    config = AugmentedLagrangian(
        outer=args.maxent_outer,
        inner=args.maxent_inner,
        batch=args.batch,
        lr=args.lr,
        c0=0.05,
        eval_samples=4000,
        estimator_kwargs=kw,
    )
    start, cpu = time.perf_counter(), time.process_time()
    history = MaxEntTrainer(model, dirichlet_constraints(torch.tensor(ALPHA)), config).fit()
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu
    flow = model()
    z, est = estimate(flow, args.n_b, 1, **kw)
    _, lq, half = true_log_q(flow, cell["reparam"], args.n_b, 1, args.big_m)
    residual = dirichlet_constraints(torch.tensor(ALPHA))(z).mean(0)
    return {
        **cell,
        "estimate": float(-est.mean()),
        "truth": float(-lq.mean()),
        "truth_halfwidth": float(half.mean()),
        "residual_norm": float(residual.norm()),
        "history": history,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
    }


def cells_b(args: argparse.Namespace) -> list[dict]:
    cells = []
    for problem in ("reverse_kl", "maxent"):
        for reparam in REPARAMS:
            tau = None if reparam == "pathwise" else args.tau_b
            for est in ESTIMATORS:
                m = args.m_b if est.startswith("nested") else None
                cells.append(
                    {
                        "problem": problem,
                        "reparam": reparam,
                        "tau": tau,
                        "estimator": est,
                        "num_inner": m,
                        "seed": 0,
                    }
                )
    # Sweeps for reverse KL: num_inner (pathwise) and tau (gumbel_softmax).
    for m in args.sweep_m:
        for est in ("nested", "nested_own"):
            cells.append(
                {
                    "problem": "reverse_kl",
                    "reparam": "pathwise",
                    "tau": None,
                    "estimator": est,
                    "num_inner": m,
                    "seed": 0,
                }
            )
    for tau in args.sweep_tau:
        for est in ("exact", "nested_own"):
            m = args.m_b if est == "nested_own" else None
            cells.append(
                {
                    "problem": "reverse_kl",
                    "reparam": "gumbel_softmax",
                    "tau": tau,
                    "estimator": est,
                    "num_inner": m,
                    "seed": 0,
                }
            )
    unique, seen = [], set()
    for c in cells:
        key = json.dumps(c, sort_keys=True)
        if key not in seen:
            seen.add(key)
            unique.append(c)
    return unique


# --------------------------------------------------------------------------- output
def fmt_tau(t: float | None) -> str:
    return "–" if t is None else f"{t:g}"


def num(x: float) -> str:
    return f"{x:.3f}" if abs(x) < 1e4 else f"{x:.2e}"


def truth_cell(r: dict) -> str:
    """The true value, or its bracket [nested_own, nested] where the bracket is not tight."""
    t, h = r["truth"], r["truth_halfwidth"]
    if h <= 0.05:
        return f"{t:.3f} ± {h:.3f}"
    return f"in [{num(t - h)}, {num(t + h)}] (bracket not tight)"


def gap_cell(r: dict) -> str:
    t, h, e = r["truth"], r["truth_halfwidth"], r["estimate"]
    if h <= 0.05:
        return f"{e - t:+.3f}"
    return f"[{num(e - t - h)}, {num(e - t + h)}]"


def tables(a_rows: list[dict], b_rows: list[dict]) -> str:
    out = [
        "### Part A: entropy estimates of the ring base (nats); truth = entropy of what is sampled",
        "",
        "| reparam | τ | true H | exact (eq. 1) | joint (eq. 2) | nested M=1 | M=16 | M=256 "
        "| nested_own M=1 | M=16 | M=256 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    keys = sorted(
        {(r["reparam"], r["tau"] or 0.0) for r in a_rows},
        key=lambda k: (REPARAMS.index(k[0]), k[1]),
    )
    for reparam, tau in keys:
        rows = [r for r in a_rows if r["reparam"] == reparam and (r["tau"] or 0.0) == tau]

        def g(est: str, m: int | None, rows: list[dict] = rows) -> str:
            r = next(x for x in rows if x["estimator"] == est and x["num_inner"] == m)
            return f"{r['gap']:+.2f}"

        t = rows[0]
        out.append(
            f"| {reparam} | {fmt_tau(t['tau'])} | {t['truth']:.3f} ± {t['truth_halfwidth']:.3f} | "
            f"{g('exact', None)} | {g('joint', None)} | {g('nested', 1)} | {g('nested', 16)} | "
            f"{g('nested', 256)} | {g('nested_own', 1)} | {g('nested_own', 16)} | "
            f"{g('nested_own', 256)} |"
        )
    out += ["", "(columns after 'true H': estimate − truth; + over-estimates the entropy)", ""]
    for problem, label in (
        ("reverse_kl", "reverse KL(q‖p*) (lower is better)"),
        ("maxent", "max-entropy Dirichlet(1,2,3): entropy (truth −1.2443)"),
    ):
        rows = [r for r in b_rows if r["problem"] == problem]
        if not rows:
            continue
        extra = " ‖R‖ |" if problem == "maxent" else ""
        out += [
            f"### Part B: {label}",
            "",
            "| reparam | τ | estimator | M | optimizer's estimate | true value | gap | "
            f"CPU (s) |{extra}",
            "|---|---|---|---|---|---|---|---|" + ("---|" if extra else ""),
        ]
        for r in rows:
            res = f" {r['residual_norm']:.3f} |" if problem == "maxent" else ""
            out.append(
                f"| {r['reparam']} | {fmt_tau(r['tau'])} | {r['estimator']} | "
                f"{r['num_inner'] or '–'} | {num(r['estimate'])} | {truth_cell(r)} | "
                f"{gap_cell(r)} | {r.get('cpu_seconds', r['seconds']):.0f} |{res}"
            )
        out.append("")
    return "\n".join(out)


def cell_label(r: dict) -> str:
    tau = "" if r["tau"] is None else f" τ{r['tau']:g}"
    m = "" if r["num_inner"] is None else str(r["num_inner"])
    return f"{r['reparam'][:9]}{tau}\n{r['estimator']}{m}"


def plot(a_rows: list[dict], b_rows: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    ax = axes[0]
    for i, (reparam, tau) in enumerate(
        sorted(
            {(r["reparam"], r["tau"] or 0.0) for r in a_rows},
            key=lambda k: (REPARAMS.index(k[0]), k[1]),
        )
    ):
        rows = [r for r in a_rows if r["reparam"] == reparam and (r["tau"] or 0.0) == tau]
        label = reparam if reparam == "pathwise" else f"{reparam} τ={tau:g}"
        for est, ls in (("nested", "-"), ("nested_own", "--")):
            sel = sorted((r for r in rows if r["estimator"] == est), key=lambda r: r["num_inner"])
            ax.plot(
                [r["num_inner"] for r in sel],
                [r["gap"] for r in sel],
                ls,
                color=f"C{i}",
                marker="o",
                ms=3,
                label=label if est == "nested" else None,
            )
    ax.set_xscale("log")
    ax.set_yscale("symlog", linthresh=0.1)
    ax.axhline(0, color="k", lw=0.8)
    ax.set(
        xlabel="num_inner M",
        ylabel="entropy estimate − truth (nats)",
        title="A: nested (solid) / nested_own (dashed)",
    )
    ax.legend(fontsize=6)
    for ax, problem in zip(axes[1:], ("reverse_kl", "maxent")):
        rows = [r for r in b_rows if r["problem"] == problem and r["seed"] == 0]
        labels = [cell_label(r) for r in rows]
        x = np.arange(len(rows))
        ax.bar(x - 0.2, [r["estimate"] for r in rows], 0.4, label="optimizer's estimate")
        ax.bar(
            x + 0.2,
            [r["truth"] for r in rows],
            0.4,
            yerr=[r["truth_halfwidth"] for r in rows],
            label="true value (bar: nested bracket)",
        )
        if problem == "maxent":
            ax.axhline(float(dirichlet_entropy(torch.tensor(ALPHA))), color="k", ls="--")
        ax.set_xticks(x, labels, rotation=90, fontsize=4)
        ax.set_yscale("symlog", linthresh=1.0)
        ax.set_title("B: reverse KL" if problem == "reverse_kl" else "B: max-entropy (entropy)")
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out / "objectives.png", dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/results/flows"))
    parser.add_argument("--quick", action="store_true", help="tiny budget (smoke test)")
    parser.add_argument("--taus", type=float, nargs="+", default=[0.1, 0.5, 1.0])
    parser.add_argument("--n-a", type=int, default=4000)
    parser.add_argument("--big-m", type=int, default=2048)
    parser.add_argument("--n-b", type=int, default=2000)
    parser.add_argument("--tau-b", type=float, default=0.5)
    parser.add_argument("--m-b", type=int, default=16)
    parser.add_argument("--sweep-m", type=int, nargs="+", default=[1, 128])
    parser.add_argument("--sweep-tau", type=float, nargs="+", default=[0.1, 1.0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--maxent-outer", type=int, default=3)
    parser.add_argument("--maxent-inner", type=int, default=500)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--resume", action="store_true", help="skip parts/cells already done")
    args = parser.parse_args(argv)
    if args.quick:
        args.n_a, args.big_m, args.n_b, args.steps = 200, 64, 200, 20
        args.maxent_outer, args.maxent_inner, args.taus = 1, 20, [0.5]
        args.sweep_m, args.sweep_tau = [1], [1.0]
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / ("objectives_quick.json" if args.quick else "objectives.json")
    state = json.loads(path.read_text()) if args.resume and path.exists() else {}
    meta = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}

    def save() -> None:
        path.write_text(json.dumps({"args": meta, **state}, indent=1))

    start = time.perf_counter()
    if "part_a" not in state:
        print("part A", flush=True)
        t0 = time.perf_counter()
        state["part_a"] = part_a(args)
        state["part_a_seconds"] = time.perf_counter() - t0
        save()
    b_rows = state.setdefault("part_b", [])
    done = {
        json.dumps(
            {k: r[k] for k in ("problem", "reparam", "tau", "estimator", "num_inner", "seed")},
            sort_keys=True,
        )
        for r in b_rows
    }
    for cell in cells_b(args):
        if json.dumps(cell, sort_keys=True) in done:
            continue
        print(f"part B {cell}", flush=True)
        fn = train_reverse_kl if cell["problem"] == "reverse_kl" else train_maxent
        b_rows.append(fn(cell, args))
        r = b_rows[-1]
        print(
            f"  -> estimate {r['estimate']:.3f} truth {r['truth']:.3f} ({r['seconds']:.0f}s)",
            flush=True,
        )
        save()
    text = tables(state["part_a"], b_rows)
    wall = state["part_a_seconds"] + sum(r["seconds"] for r in b_rows)
    (args.out / ("objectives_quick.md" if args.quick else "objectives.md")).write_text(
        f"Training + evaluation time (part A, and training in part B): {wall:.0f} s; this "
        f"invocation {time.perf_counter() - start:.0f} s.\n\n{text}\n"
    )
    print(text)
    if not args.quick:
        plot(state["part_a"], b_rows, args.out)


if __name__ == "__main__":
    main()
