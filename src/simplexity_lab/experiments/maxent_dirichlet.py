r"""``maxent-dirichlet``: a maximum-entropy flow on the simplex must recover Dirichlet(α)
(Loaiza-Ganem et al. 2017; experiment 3 of docs/results/flows.md).

Maximize :math:`H(p)` on the simplex subject to
:math:`\mathbb{E}_p[\log z_i] = \psi(\alpha_i) - \psi(\alpha_0)`; the maximum-entropy solution is
:math:`\mathrm{Dirichlet}(\alpha)` (entropy −1.2443 for α = (1, 2, 3)). The model is a flow on
:math:`\mathbb{R}^{K-1}` (a Gaussian or a mixture base, then planar or affine-coupling layers)
followed by the additive-logistic bijection onto the simplex, trained with the augmented
Lagrangian (:mod:`simplexity_lab.experiments._maxent`).

Metrics (exact density on ``eval_samples`` fresh samples): ``test/entropy`` (± ``entropy_se``),
``test/entropy_gap`` (:math:`H - H^*`), ``test/residual_norm`` (:math:`\|\mathbb{E}[T(z)]\|`),
``test/kl_to_dirichlet`` (± ``kl_se``). The validation split is the same on ``update_samples``
samples, once per outer iteration (``history.jsonl``).

Usage::

    simplexity run maxent-dirichlet --budget smoke
    simplexity run maxent-dirichlet --budget paper                      # 10 planar, constant lr
    simplexity run maxent-dirichlet --budget paper --set base=mixture --set transform=coupling \
        --set num_layers=6 --set lr_decay=0.7 --set seed=0
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor

from simplexity_lab.engine.experiment import Experiment, register
from simplexity_lab.engine.task import TrainConfig, derived_seed
from simplexity_lab.experiments._maxent import AugmentedLagrangianConfig, AugmentedLagrangianTask

__all__ = [
    "MaxEntDirichletConfig",
    "MaxEntDirichletTask",
]


@dataclass(frozen=True)
class MaxEntDirichletConfig(AugmentedLagrangianConfig):
    """Config of ``maxent-dirichlet`` (and the options of :class:`AugmentedLagrangianConfig`).

    Attributes:
        alpha: the Dirichlet parameters α (their number is the simplex's K).
        base: ``"gaussian"`` or ``"mixture"``.
        num_components: components of the mixture base; spread: its initial means' scale.
        transform: ``"planar"`` or ``"coupling"`` (affine couplings).
        num_layers: the number of flow layers.
        hidden: width of the couplings' conditioners (two hidden layers).
        eval_samples: fresh samples of the final (test) evaluation.
    """

    steps: int = 30_000
    batch_size: int = 300
    lr: str = "1e-3"
    val_every: int = 3000
    checkpoint_every: int = 1000
    log_every: int = 100
    inner: int = 3000
    update_samples: int = 20_000
    alpha: tuple[float, ...] = (1.0, 2.0, 3.0)
    base: Literal["gaussian", "mixture"] = "gaussian"
    num_components: int = 4
    spread: float = 0.5
    transform: Literal["planar", "coupling"] = "planar"
    num_layers: int = 10
    hidden: int = 32
    eval_samples: int = 200_000

    minimums: ClassVar[Mapping[str, int]] = {
        "num_components": 1, "num_layers": 1, "hidden": 1, "eval_samples": 2,
    }  # fmt: skip

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.alpha) < 2 or not all(a > 0 for a in self.alpha):
            raise ValueError(f"alpha must be >= 2 positive numbers like 1,2,3, got {self.alpha}")
        if self.transform == "coupling" and len(self.alpha) != 3:
            raise ValueError(
                f"transform=coupling needs a 2-D flow (alpha of length 3), got alpha={self.alpha}"
            )


class MaxEntDirichletTask(AugmentedLagrangianTask):
    """A flow onto the simplex trained to maximum entropy under the Dirichlet moment constraints."""

    monitor = "valid/kl_to_dirichlet"
    monitor_mode = "min"

    def __init__(self, config: MaxEntDirichletConfig, *, data_dir: str | None = None) -> None:
        super().__init__(config)
        from simplexity.flows import (
            AffineCoupling,
            GaussianBase,
            LazyFlow,
            MixtureBase,
            Planar,
            SimplexTransform,
            dirichlet_constraints,
            dirichlet_entropy,
        )

        dim = len(config.alpha) - 1
        if config.base == "gaussian":
            base: torch.nn.Module = GaussianBase(dim)
        else:
            base = MixtureBase(dim, config.num_components, spread=config.spread)
        if config.transform == "planar":
            layers: list[Any] = [Planar(dim) for _ in range(config.num_layers)]
        else:
            hidden = (config.hidden, config.hidden)
            layers = [AffineCoupling(dim, i % 2, hidden=hidden) for i in range(config.num_layers)]
        self.model = LazyFlow(base, [*layers, SimplexTransform()])
        self.register_buffer("alpha", torch.tensor(config.alpha))
        self.constraint = dirichlet_constraints(self.alpha)
        self.estimator_kwargs = {}  # the exact density, for either base
        self.true_entropy = float(dirichlet_entropy(self.alpha))
        self.setup_lagrangian(len(config.alpha))

    @torch.no_grad()
    def measure(self, num: int) -> dict[str, Any]:
        """Entropy, residual and KL to the Dirichlet on ``num`` fresh samples (exact density)."""
        log_p_parts, log_dir_parts, t_sum = [], [], torch.zeros(len(self.config.alpha))
        dirichlet = torch.distributions.Dirichlet(self.alpha)
        for start in range(0, num, 50_000):
            z, log_p = self.sample(min(50_000, num - start))
            t_sum += self.constraint(z).sum(0)
            log_p_parts.append(log_p)
            log_dir_parts.append(dirichlet.log_prob(z.clamp_min(1e-30)))
        log_p, log_dir = torch.cat(log_p_parts), torch.cat(log_dir_parts)
        residual = t_sum / num
        log_ratio = log_p - log_dir
        entropy = -log_p.mean()
        return {
            "entropy": float(entropy),
            "entropy_se": float(log_p.std() / math.sqrt(num)),
            "entropy_gap": float(entropy) - self.true_entropy,
            "residual_norm": float(residual.norm()),
            "residual": residual.tolist(),
            "kl_to_dirichlet": float(log_ratio.mean()),
            "kl_se": float(log_ratio.std() / math.sqrt(num)),
            "loss": float(-entropy + (self.lam * residual).sum()
                          + 0.5 * float(self.penalty) * residual.pow(2).sum()),
        }  # fmt: skip

    @torch.no_grad()
    def evaluate(self, split: str) -> dict[str, float]:
        num = self.config.eval_samples if split == "test" else self.config.update_samples
        measured = self.measure(num)
        out = {f"{split}/{k}": v for k, v in measured.items() if k != "residual"}
        for i, r in enumerate(measured["residual"]):
            out[f"{split}/residual_{i}"] = r
        return out

    def figures(self, history: list[dict[str, Any]]) -> dict[str, Any]:
        from simplexity_lab.plots import _pyplot

        Figure = _pyplot()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derived_seed(self.config.seed, 13))
            samples = self.model().sample((1000,))
            reference = torch.distributions.Dirichlet(self.alpha).sample((2000,))
        ncols = 3 if len(self.config.alpha) == 3 else 2
        fig = Figure(figsize=(4 * ncols, 3.6))
        axes = fig.subplots(1, ncols)
        outer = [h["step"] / self.config.inner for h in history]
        axes[0].plot(outer, [h["metrics"]["valid/entropy"] for h in history], marker="o")
        axes[0].axhline(self.true_entropy, color="k", ls="--", label="Dirichlet")
        axes[0].set(xlabel="outer iteration", ylabel="entropy (nats)")
        axes[0].legend(fontsize=7)
        axes[1].semilogy(outer, [h["metrics"]["valid/residual_norm"] for h in history], marker="o")
        axes[1].axhline(0.01, color="k", ls="--")
        axes[1].set(xlabel="outer iteration", ylabel="constraint residual ||R||")
        if ncols == 3:

            def to_xy(z: Tensor) -> Tensor:  # barycentric -> the triangle in the plane
                return torch.stack([z[:, 1] + 0.5 * z[:, 2], z[:, 2] * math.sqrt(3) / 2], -1)

            ax, ref, xy = axes[2], to_xy(reference), to_xy(samples)
            ax.scatter(ref[:, 0], ref[:, 1], s=1, alpha=0.3, color="gray", label="Dirichlet")
            ax.scatter(xy[:, 0], xy[:, 1], s=1, alpha=0.4, color="C0", label="flow")
            ax.set(aspect="equal", xticks=[], yticks=[])
            ax.legend(fontsize=6, markerscale=5)
        c = self.config
        fig.suptitle(f"{c.base} base + {c.num_layers} {c.transform}, lr decay {c.lr_decay:g}",
                     fontsize=9)  # fmt: skip
        fig.tight_layout()
        return {"maxent": fig}

    def summary(self) -> dict[str, Any]:
        return {
            "true_entropy": self.true_entropy,
            "parameters": sum(p.numel() for p in self.model.parameters()),
            **self.lagrangian_summary(),
        }


EXPERIMENT = register(
    Experiment(
        name="maxent-dirichlet",
        description="max-entropy flow on the simplex must recover Dirichlet(1,2,3); --set base=, transform=",
        config_class=MaxEntDirichletConfig,
        task_class=MaxEntDirichletTask,
        budgets={
            "smoke": TrainConfig.smoke(
                40,
                inner=20,
                batch_size=40,
                update_samples=200,
                eval_samples=2000,
                num_layers=2,
                hidden=8,
            ),
            # the paper notebook's budget: 10 outer x 3,000 inner steps of batch 300, Adam 1e-3
            "paper": {
                "steps": 30_000,
                "inner": 3000,
                "batch_size": 300,
                "lr": "1e-3",
                "update_samples": 20_000,
                "eval_samples": 200_000,
            },
        },
        paper_command=(
            "simplexity run maxent-dirichlet --budget paper --set base=mixture "
            "--set transform=coupling --set num_layers=6 --set lr_decay=0.7 --set seed=S"
        ),
    )
)
