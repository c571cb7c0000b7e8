r"""Sampling-based objectives with a mixture base: what each reparameterization × density estimator
reports against the truth (experiment 2 of docs/results/flows.md).

Two experiments:

- ``mixture-entropy`` (part A): no training. For a ring base (D = 2, K = 8 equal
  components on a ring of radius 2, σ = 0.3) with one reparameterization and temperature, the
  entropy estimate :math:`-\mathbb{E}\log\hat p(z_0)` of every estimator (``exact``, ``joint``,
  ``nested`` and ``nested_own`` at M = 1, 4, 16, 64, 256) against the true entropy of the
  distribution the samples follow: exact for hard choices; for soft ones :math:`H(q_\tau)`, pinned
  between the ``nested_own`` and ``nested`` bounds at M = ``truth_inner``. Metrics:
  ``test/truth``, ``test/truth_halfwidth``, ``test/gap_<estimator>`` and
  ``test/gap_<estimator>_M<M>`` (estimate − truth; + over-estimates the entropy).
- ``flow-objectives`` (part B): a flow (mixture base + affine couplings) trained with one
  reparameterization × estimator on ``problem=reverse_kl`` (reverse KL to a known 6-component
  2-D mixture) or ``problem=maxent`` (the maximum-entropy Dirichlet(1, 2, 3) problem, augmented
  Lagrangian). Metrics: ``test/estimate`` (the trained model's objective as its own estimator
  computes it), ``test/truth`` (with the exact density for hard samples, else the middle of the
  nested bracket at M = ``truth_inner``, half-width ``test/truth_halfwidth``), ``test/gap``
  (estimate − truth) and, for ``maxent``, ``test/residual_norm``.

Usage::

    simplexity run mixture-entropy --budget paper --set reparam=igr --set temperature=0.5
    simplexity run flow-objectives --budget paper --set problem=reverse_kl \
        --set reparam=pathwise --set estimator=nested --set num_inner=16

References:
    Jang, Gu and Poole, *Categorical Reparameterization with Gumbel-Softmax*, ICLR 2017. Yin and
    Zhou, *Semi-Implicit Variational Inference*, ICML 2018 (the sample's own component among the
    nested terms: ``nested_own``). Loaiza-Ganem, Gao and Cunningham, *Maximum Entropy Flow
    Networks*, ICLR 2017.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from simplexity_lab.engine.experiment import Experiment, register
from simplexity_lab.engine.task import StepBatches, Task, TrainConfig
from simplexity_lab.experiments._maxent import AugmentedLagrangianConfig, AugmentedLagrangianTask

__all__ = [
    "FlowObjectivesConfig",
    "FlowObjectivesTask",
    "MixtureEntropyConfig",
    "MixtureEntropyTask",
    "estimate_in_chunks",
    "reverse_kl_target",
    "ring_parameters",
    "sampling_log_density",
]

HARD = ("pathwise", "gumbel_straight_through")
Reparam = Literal["pathwise", "gumbel_softmax", "gumbel_straight_through", "igr"]
Estimator = Literal["exact", "nested", "nested_own", "joint"]
PART_A_INNER = (1, 4, 16, 64, 256)
ALPHA = (1.0, 2.0, 3.0)


def ring_parameters(
    num_components: int, radius: float, scale: float, weights: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """``(logits, loc, scale)`` of a 2-D mixture of ``num_components`` Gaussians on a ring
    (component ``k`` at angle :math:`2\\pi k / K`), isotropic ``scale``, ``weights`` (default
    equal).

    Example:
        >>> [tuple(t.shape) for t in ring_parameters(8, 2.0, 0.3)]
        [(8,), (8, 2), (8, 2)]
    """
    angle = torch.arange(num_components) * 2 * math.pi / num_components
    loc = radius * torch.stack([angle.cos(), angle.sin()], -1)
    logits = torch.zeros(num_components) if weights is None else weights.log()
    return logits, loc, torch.full((num_components, 2), scale)


def reverse_kl_target():
    """The target of ``problem=reverse_kl``: 6 components on a ring of radius 3, σ = 0.35,
    weights ∝ (1, 2, 3, 1, 2, 3)."""
    from simplexity.distributions import MixtureOfGaussians

    weights = torch.tensor([1.0, 2.0, 3.0, 1.0, 2.0, 3.0])
    return MixtureOfGaussians(*ring_parameters(6, 3.0, 0.35, weights))


@torch.no_grad()
def estimate_in_chunks(
    dist: Any, num: int, seed: int, chunk: int = 250, **estimator: Any
) -> tuple[Tensor, Tensor]:
    """``num`` samples and log-density estimates, in chunks drawn with fixed seeds (chunk ``i``
    from ``torch.manual_seed(seed * 100003 + i)``), so every estimator sees the same z.

    Reseeds the global RNG: call it inside ``torch.random.fork_rng`` (the engine's evaluation
    does).
    """
    zs, lps = [], []
    for i, start in enumerate(range(0, num, chunk)):
        torch.manual_seed(seed * 100003 + i)
        z, lp = dist.rsample_and_log_prob((min(chunk, num - start),), **estimator)
        zs.append(z)
        lps.append(lp)
    return torch.cat(zs), torch.cat(lps)


def sampling_log_density(
    dist: Any, reparam: str, num: int, seed: int, num_inner: int
) -> tuple[Tensor, Tensor, Tensor]:
    """``(z, log q(z), half-width)`` for the distribution the samples follow: exact for hard
    choices (half-width 0); for soft ones the middle of the bracket between ``nested_own``
    (above) and ``nested`` (below) at M = ``num_inner``, on the same z."""
    if reparam in HARD:
        z, log_q = estimate_in_chunks(dist, num, seed, estimator="exact")
        return z, log_q, torch.zeros_like(log_q)
    z, upper = estimate_in_chunks(dist, num, seed, estimator="nested_own", num_inner=num_inner)
    _, lower = estimate_in_chunks(dist, num, seed, estimator="nested", num_inner=num_inner)
    return z, 0.5 * (upper + lower), 0.5 * (upper - lower)


def _check_reparam(reparam: str, temperature: float | None) -> None:
    if reparam == "pathwise" and temperature is not None:
        raise ValueError(f"reparam=pathwise takes no temperature, got temperature={temperature}")
    if reparam != "pathwise" and (temperature is None or not temperature > 0):
        raise ValueError(
            f"reparam={reparam} needs a temperature > 0 (e.g. temperature=0.5), got {temperature}"
        )


# ------------------------------------------------------------------------ part A: mixture-entropy


@dataclass(frozen=True)
class MixtureEntropyConfig(TrainConfig):
    """Config of ``mixture-entropy`` (nothing is trained: ``steps=1`` at ``lr=0``).

    Attributes:
        reparam: the base's reparameterization.
        temperature: τ of the relaxed ones (``none`` for ``pathwise``).
        num_components, radius, scale: the ring base.
        eval_samples: samples per estimate.
        truth_inner: M of the nested bracket that pins the truth for soft samples.
    """

    steps: int = 1
    lr: str = "0"
    val_every: int = 1
    checkpoint_every: int = 1
    log_every: int = 1
    batch_size: int = 256
    reparam: Reparam = "pathwise"
    temperature: float | None = None
    num_components: int = 8
    radius: float = 2.0
    scale: float = 0.3
    eval_samples: int = 4000
    truth_inner: int = 2048

    minimums: ClassVar[Mapping[str, int]] = {"num_components": 1, "eval_samples": 2,
                                             "truth_inner": 1}  # fmt: skip

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.steps != 1 or self.lr not in ("0", "0.0"):
            raise ValueError(
                f"mixture-entropy trains nothing: steps must be 1 and lr 0, got steps={self.steps}"
                f", lr={self.lr!r}"
            )
        _check_reparam(self.reparam, self.temperature)
        if not self.radius >= 0 or not self.scale > 0:
            raise ValueError(f"radius must be >= 0 and scale > 0, got {self.radius}, {self.scale}")


class MixtureEntropyTask(Task):
    """The entropy estimates of every estimator for a fixed ring-mixture base (part A)."""

    monitor = "valid/loss"
    monitor_mode = "min"

    def __init__(self, config: MixtureEntropyConfig, *, data_dir: str | None = None) -> None:
        super().__init__(config)
        logits, loc, scale = ring_parameters(config.num_components, config.radius, config.scale)
        # the engine needs parameters to step; at lr 0 they never move
        self.logits, self.loc, self.scale = (nn.Parameter(t) for t in (logits, loc, scale))
        self.last_test: dict[str, float] = {}

    def base(self):
        """The ring mixture with the run's reparameterization."""
        from simplexity.distributions import MixtureOfGaussians

        c = self.config
        return MixtureOfGaussians(self.logits, self.loc, self.scale, reparam=c.reparam,
                                  temperature=c.temperature)  # fmt: skip

    def train_batches(self) -> StepBatches:
        return StepBatches(torch.zeros(self.config.batch_size, 1), seed=self.config.seed)

    def training_loss(self, batch, step):
        _, log_p = self.base().rsample_and_log_prob((self.config.batch_size,))
        loss = log_p.mean()  # minus the entropy estimate of eq. (1); lr 0: nothing moves
        return loss, {"loss": loss.detach()}

    @torch.no_grad()
    def evaluate(self, split: str) -> dict[str, float]:
        c = self.config
        dist = self.base()
        seed = c.seed
        if split != "test":  # cheap: the cross-entropy of eq. (1) only
            _, lp = estimate_in_chunks(dist, min(c.eval_samples, 1000), seed, estimator="exact")
            return {f"{split}/loss": float(-lp.mean())}
        _, log_q, half = sampling_log_density(dist, c.reparam, c.eval_samples, seed, c.truth_inner)
        truth = float(-log_q.mean())
        out = {"test/loss": truth, "test/truth": truth, "test/truth_halfwidth": float(half.mean())}
        entries = [("exact", None), ("joint", None)]
        entries += [(e, m) for e in ("nested", "nested_own") for m in PART_A_INNER]
        for name, m in entries:
            _, lp = estimate_in_chunks(dist, c.eval_samples, seed, estimator=name, num_inner=m)
            key = name if m is None else f"{name}_M{m}"
            value = float(-lp.mean())
            out[f"test/estimate_{key}"] = value
            out[f"test/gap_{key}"] = value - truth
            out[f"test/se_{key}"] = float(lp.std() / math.sqrt(lp.numel()))
        self.last_test = out
        return out

    def figures(self, history: list[dict[str, Any]]) -> dict[str, Any]:
        from simplexity_lab.plots import _pyplot

        if not self.last_test:
            return {}
        Figure = _pyplot()
        fig = Figure(figsize=(4.5, 3.4))
        ax = fig.subplots()
        for name, style in (("nested", "o-"), ("nested_own", "s--")):
            gaps = [self.last_test[f"test/gap_{name}_M{m}"] for m in PART_A_INNER]
            ax.plot(PART_A_INNER, gaps, style, ms=3, label=name)
        for name, color in (("exact", "C2"), ("joint", "C3")):
            ax.axhline(self.last_test[f"test/gap_{name}"], color=color, lw=0.8, label=name)
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xscale("log")
        ax.set_yscale("symlog", linthresh=0.1)
        tau = "" if self.config.temperature is None else f", τ = {self.config.temperature:g}"
        ax.set(xlabel="num_inner M", ylabel="entropy estimate − truth (nats)",
               title=f"{self.config.reparam}{tau}")  # fmt: skip
        ax.legend(fontsize=7)
        fig.tight_layout()
        return {"entropy_gaps": fig}


# ------------------------------------------------------------------------ part B: flow-objectives


@dataclass(frozen=True)
class FlowObjectivesConfig(AugmentedLagrangianConfig):
    """Config of ``flow-objectives`` (the augmented-Lagrangian options apply to ``maxent``).

    Attributes:
        problem: ``"reverse_kl"`` or ``"maxent"``.
        reparam: the mixture base's reparameterization.
        temperature: τ of the relaxed ones (``none`` for ``pathwise``).
        estimator: the density estimator the objective uses.
        num_inner: M of the nested estimators (``none`` for ``exact`` and ``joint``).
        num_components: of the mixture base (``none``: 8 for reverse_kl, 4 for maxent).
        num_layers, hidden: the affine couplings; spread: the initial means' scale.
        grad_clip: ``auto`` is 10 for reverse_kl and none for maxent.
        eval_samples: samples of the final evaluation; truth_inner: M of the truth's bracket.
    """

    steps: int = 1500
    batch_size: int = 256
    lr: str = "2e-3"
    val_every: int = 500
    checkpoint_every: int = 500
    inner: int = 500
    update_samples: int = 4000
    grad_clip: float | Literal["auto"] | None = "auto"  # type: ignore[assignment]
    problem: Literal["reverse_kl", "maxent"] = "reverse_kl"
    reparam: Reparam = "pathwise"
    temperature: float | None = None
    estimator: Estimator = "exact"
    num_inner: int | None = None
    num_components: int | None = None
    num_layers: int = 4
    hidden: int = 32
    spread: float = 1.5
    eval_samples: int = 2000
    truth_inner: int = 2048

    minimums: ClassVar[Mapping[str, int]] = {
        "num_inner": 1, "num_components": 1, "num_layers": 1, "hidden": 1, "truth_inner": 1,
        "eval_samples": 2,
    }  # fmt: skip

    def __post_init__(self) -> None:
        if self.grad_clip == "auto":
            object.__setattr__(self, "grad_clip", 10.0 if self.problem == "reverse_kl" else None)
        if self.num_components is None:
            object.__setattr__(self, "num_components", 8 if self.problem == "reverse_kl" else 4)
        super().__post_init__()
        if self.problem == "reverse_kl" and self.lr_decay != 1:
            raise ValueError(f"lr_decay applies to problem=maxent only, got {self.lr_decay}")
        _check_reparam(self.reparam, self.temperature)
        nested = self.estimator.startswith("nested")
        if nested and self.num_inner is None:
            raise ValueError(
                f"estimator={self.estimator} needs num_inner >= 1 (e.g. num_inner=16), got "
                f"{self.num_inner}"
            )
        if not nested and self.num_inner is not None:
            raise ValueError(
                f"num_inner applies to the nested estimators only; estimator={self.estimator} "
                f"needs num_inner=none, got {self.num_inner}"
            )

    def uses_lagrangian(self) -> bool:
        return self.problem == "maxent"

    def estimator_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``rsample_and_log_prob``."""
        return {"estimator": self.estimator, "num_inner": self.num_inner}


class FlowObjectivesTask(AugmentedLagrangianTask):
    """A mixture-base coupling flow trained against an objective with one estimator (part B)."""

    monitor = "valid/loss"
    monitor_mode = "min"

    def __init__(self, config: FlowObjectivesConfig, *, data_dir: str | None = None) -> None:
        super().__init__(config)
        from simplexity.flows import (
            AffineCoupling,
            LazyFlow,
            MixtureBase,
            SimplexTransform,
            dirichlet_constraints,
        )

        hidden = (config.hidden, config.hidden)
        transforms: list[Any] = [
            AffineCoupling(2, i % 2, hidden=hidden) for i in range(config.num_layers)
        ]
        if config.problem == "maxent":
            transforms.append(SimplexTransform())
        base = MixtureBase(2, config.num_components, reparam=config.reparam,
                           temperature=config.temperature, spread=config.spread)  # fmt: skip
        self.model = LazyFlow(base, transforms)
        self.estimator_kwargs = config.estimator_kwargs()
        if config.problem == "maxent":
            self.register_buffer("alpha", torch.tensor(ALPHA))
            self.constraint = dirichlet_constraints(self.alpha)
            self.setup_lagrangian(len(ALPHA))
        else:
            self.target = reverse_kl_target()

    def training_loss(self, batch, step):
        if self.config.problem == "maxent":
            return super().training_loss(batch, step)
        z, log_q = self.sample(self.config.batch_size)
        loss = (log_q - self.target.log_prob(z)).mean()
        return loss, {"loss": loss.detach()}

    def objective(self, z: Tensor, log_q: Tensor) -> float:
        """The problem's objective from samples and their log densities (KL, or the entropy)."""
        if self.config.problem == "maxent":
            return float(-log_q.mean())
        return float((log_q - self.target.log_prob(z)).mean())

    @torch.no_grad()
    def evaluate(self, split: str) -> dict[str, float]:
        c = self.config
        flow = self.model()
        # the evaluation samples are seeded with seed + 1 (as the runs of docs/results/flows.md)
        seed = c.seed + 1
        if split != "test":  # cheap: the optimizer's own estimate
            z, est = estimate_in_chunks(flow, min(c.eval_samples, 1000), seed,
                                        **self.estimator_kwargs)  # fmt: skip
            value = self.objective(z, est)
            return {f"{split}/loss": -value if c.problem == "maxent" else value,
                    f"{split}/estimate": value}  # fmt: skip
        z, est = estimate_in_chunks(flow, c.eval_samples, seed, **self.estimator_kwargs)
        _, log_q, half = sampling_log_density(flow, c.reparam, c.eval_samples, seed, c.truth_inner)
        estimate, truth = self.objective(z, est), self.objective(z, log_q)
        out = {
            "test/estimate": estimate,
            "test/truth": truth,
            "test/truth_halfwidth": float(half.mean()),
            "test/gap": estimate - truth,
            "test/loss": -truth if c.problem == "maxent" else truth,
        }
        if c.problem == "maxent":
            out["test/residual_norm"] = float(self.constraint(z).mean(0).norm())
        return out

    def figures(self, history: list[dict[str, Any]]) -> dict[str, Any]:
        from simplexity_lab.plots import _pyplot

        Figure = _pyplot()
        c = self.config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(c.seed + 1)
            z = self.model().sample((2000,))
            reference = (
                torch.distributions.Dirichlet(self.alpha).sample((2000,))
                if c.problem == "maxent"
                else self.target.sample((2000,))
            )
        if c.problem == "maxent":  # barycentric -> the triangle in the plane
            z, reference = (
                torch.stack([v[:, 1] + 0.5 * v[:, 2], v[:, 2] * math.sqrt(3) / 2], -1)
                for v in (z, reference)
            )
        fig = Figure(figsize=(4, 4))
        ax = fig.subplots()
        label = "Dirichlet(1, 2, 3)" if c.problem == "maxent" else "target"
        ax.scatter(reference[:, 0], reference[:, 1], s=1, alpha=0.3, color="gray", label=label)
        ax.scatter(z[:, 0], z[:, 1], s=1, alpha=0.4, color="C0", label="flow")
        tau = "" if c.temperature is None else f" τ={c.temperature:g}"
        m = "" if c.num_inner is None else f" M={c.num_inner}"
        ax.set(aspect="equal", xticks=[], yticks=[],
               title=f"{c.problem}: {c.reparam}{tau}, {c.estimator}{m}")  # fmt: skip
        ax.title.set_fontsize(8)
        ax.legend(fontsize=6, markerscale=5)
        fig.tight_layout()
        return {"samples": fig}

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"parameters": sum(p.numel() for p in self.model.parameters())}
        if self.config.problem == "maxent":
            out.update(self.lagrangian_summary())
        return out


_SMOKE_A = {"eval_samples": 200, "truth_inner": 64}
_SMOKE_B = TrainConfig.smoke(
    inner=10,
    batch_size=32,
    update_samples=100,
    eval_samples=200,
    truth_inner=64,
    num_layers=2,
    hidden=8,
)

MIXTURE_ENTROPY = register(
    Experiment(
        name="mixture-entropy",
        description="entropy estimates of a ring mixture base per reparam x estimator vs the truth",
        config_class=MixtureEntropyConfig,
        task_class=MixtureEntropyTask,
        budgets={"smoke": _SMOKE_A, "paper": {"eval_samples": 4000, "truth_inner": 2048}},
        paper_command=(
            "simplexity run mixture-entropy --budget paper --set reparam=R --set temperature=T"
        ),
    )
)

FLOW_OBJECTIVES = register(
    Experiment(
        name="flow-objectives",
        description="flow trained on reverse KL / max-entropy with each reparam x estimator; true vs estimated",
        config_class=FlowObjectivesConfig,
        task_class=FlowObjectivesTask,
        budgets={
            "smoke": _SMOKE_B,
            # reverse KL: 1,500 steps; maxent: 3 outer x 500 inner; Adam 2e-3, batch 256
            "paper": {
                "steps": 1500,
                "inner": 500,
                "batch_size": 256,
                "lr": "2e-3",
                "update_samples": 4000,
                "eval_samples": 2000,
                "truth_inner": 2048,
            },
        },
        paper_command=(
            "simplexity run flow-objectives --budget paper --set problem=P --set reparam=R "
            "--set temperature=T --set estimator=E --set num_inner=M"
        ),
    )
)
