r"""``discrete-approx``: fit a relaxed distribution to a discrete target (the IGR paper's experiment).

A single relaxed categorical variable with free parameters is fitted so that its samples match a
pmf on :math:`\{0, 1, 2, \dots\}`: Poisson(50), and the reference code's other targets (binomial,
geometric, negative binomial). Category :math:`k` stands for the integer :math:`k`.

- ``relaxation=gumbel_softmax`` must fix the truncation :math:`K` in advance (``num_categories`` =
  20, 40 or 100; τ = 0.1);
- ``relaxation=igr_sb`` allocates ``num_categories - 1`` sticks (τ = 0.01) and finds its own
  truncation: the ``sb_percentile`` of the per-sample number of sticks that cover ``sb_threshold``
  of the mass (:func:`~simplexity.distributions.stick_breaking_truncation`).

Objective: :math:`\mathrm{KL}(p_K \,\|\, \frac1S\sum_s z_s)`, the KL from the target truncated to the
categories and renormalized (:math:`p_K`) to the mean of S relaxed samples (S = ``batch_size``).
Metrics: ``test/tv`` — the total-variation distance between the pmf of ``eval_samples``
*discretized* samples (one-hot argmax) and the full target, mass beyond the categories included —
``test/target_mass_outside`` (the target's mass beyond the categories, a floor for ``tv``),
``test/categories_used`` (K for the Gumbel-softmax, the truncation level for IGR-SB),
``test/threshold_met`` and ``test/support_at_threshold`` (the categories that hold
``sb_threshold`` of the discretized mass, for both).

The "valid" and "test" metrics are computed from two independent sample streams: each split draws
its samples from the global RNG seeded with its own seed derived from the run's seed
(:data:`EVAL_STREAMS`), never the seed that training draws from. "valid" (the monitor during
training) is the same stream at every validation; "test" is held out from it, and the run's kept
``discretized_pmf`` is the test stream's pmf.

Usage::

    simplexity run discrete-approx --budget smoke
    simplexity run discrete-approx --budget paper --set relaxation=gumbel_softmax \
        --set num_categories=40 --set target=poisson:50

References:
    Potapczynski, Loaiza-Ganem and Cunningham, *Invertible Gaussian Reparameterization:
    Revisiting the Gumbel-Softmax*, NeurIPS 2020.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from simplexity_lab.engine.experiment import Experiment, register
from simplexity_lab.engine.task import StepBatches, Task, TrainConfig, derived_seed

__all__ = [
    "EVAL_STREAMS",
    "TARGETS",
    "DiscreteApproxConfig",
    "DiscreteApproxTask",
    "parse_target",
    "target_pmf",
    "total_variation",
]

TARGETS: dict[str, tuple[str, ...]] = {
    "poisson": ("rate",),
    "binomial": ("n", "p"),
    "geometric": ("p",),
    "negative_binomial": ("r", "p"),
}
"""Target families and their parameters, written ``name:param:param`` (e.g. ``binomial:100:0.3``)."""

DEFAULT_TEMPERATURE = {"gumbel_softmax": 0.1, "igr_sb": 0.01}

EVAL_STREAMS: dict[str, int] = {"valid": 0, "test": 1}
"""The evaluation splits and their sample streams: split ``s`` draws from the global RNG seeded with
``derived_seed(seed, 13, EVAL_STREAMS[s])`` (training draws from ``seed`` itself)."""


def parse_target(spec: str) -> tuple[str, tuple[float, ...]]:
    """``"poisson:50"`` → ``("poisson", (50.0,))``, with the parameters checked.

    Example:
        >>> parse_target("negative_binomial:10:0.2")
        ('negative_binomial', (10.0, 0.2))
    """
    if not isinstance(spec, str):
        raise TypeError(f"target must be a string like 'poisson:50', got {type(spec).__name__}")
    name, *params = spec.split(":")
    if name not in TARGETS:
        raise ValueError(f"unknown target {name!r}; expected one of {', '.join(TARGETS)}")
    if len(params) != len(TARGETS[name]):
        raise ValueError(
            f"target {name} needs {len(TARGETS[name])} parameter(s) "
            f"({':'.join((name, *TARGETS[name]))}), got {spec!r}"
        )
    try:
        values = tuple(float(p) for p in params)
    except ValueError:
        raise ValueError(f"target parameters must be numbers, got {spec!r}") from None
    named = dict(zip(TARGETS[name], values))
    if "p" in named and not 0 < named["p"] < 1:
        raise ValueError(f"target {name}: p must be in (0, 1), got {named['p']}")
    for key in ("rate", "r", "n"):
        if key in named and not named[key] > 0:
            raise ValueError(f"target {name}: {key} must be > 0, got {named[key]}")
    if name == "binomial" and not float(named["n"]).is_integer():
        raise ValueError(f"target binomial: n must be an integer, got {named['n']}")
    return name, values


def target_pmf(spec: str, num: int) -> Tensor:
    r"""The target pmf at :math:`0, \dots, \mathrm{num}-1` (float64, not renormalized).

    Geometric counts failures before the first success, :math:`p(1-p)^k`; the negative binomial
    counts failures before the ``r``-th success, :math:`\binom{k+r-1}{k} p^r (1-p)^k`.

    Example:
        >>> target_pmf("poisson:2", 3)
        tensor([0.1353, 0.2707, 0.2707], dtype=torch.float64)
    """
    name, params = parse_target(spec)
    k = torch.arange(num, dtype=torch.float64)
    if name == "poisson":
        (rate,) = params
        log_p = k * math.log(rate) - rate - torch.lgamma(k + 1)
    elif name == "binomial":
        n, p = params
        inside = k <= n
        kk = k.clamp(max=n)
        log_p = (
            math.lgamma(n + 1) - torch.lgamma(kk + 1) - torch.lgamma(n - kk + 1)
            + kk * math.log(p) + (n - kk) * math.log1p(-p)
        )  # fmt: skip
        log_p = log_p.masked_fill(~inside, float("-inf"))
    elif name == "geometric":
        (p,) = params
        log_p = math.log(p) + k * math.log1p(-p)
    else:
        r, p = params
        log_p = (
            torch.lgamma(k + r) - torch.lgamma(k + 1) - math.lgamma(r)
            + r * math.log(p) + k * math.log1p(-p)
        )  # fmt: skip
    return log_p.exp()


def total_variation(probs: Tensor, target: Tensor, target_outside: float | Tensor = 0.0) -> Tensor:
    r"""Total variation :math:`\frac12\sum_k |p_k - q_k|` between a pmf on the first categories and
    a target whose mass beyond them is ``target_outside`` (the pmf has none there).

    Example:
        >>> total_variation(torch.tensor([0.5, 0.5]), torch.tensor([0.25, 0.25]), 0.5)
        tensor(0.5000)
    """
    if probs.shape != target.shape:
        raise ValueError(f"probs {tuple(probs.shape)} and target {tuple(target.shape)} differ")
    return 0.5 * ((probs - target).abs().sum(-1) + target_outside)


@dataclass(frozen=True)
class DiscreteApproxConfig(TrainConfig):
    """Config of ``discrete-approx``.

    Attributes:
        target: ``poisson:RATE``, ``binomial:N:P``, ``geometric:P`` or ``negative_binomial:R:P``.
        relaxation: ``"gumbel_softmax"`` or ``"igr_sb"``.
        num_categories: K (the Gumbel-softmax's truncation; IGR-SB: maximum sticks + 1).
        temperature: τ, or ``"auto"`` (0.1 Gumbel-softmax, 0.01 IGR-SB).
        delta: softmax++ offset of IGR-SB.
        sb_threshold, sb_percentile: IGR-SB's truncation policy.
        eval_samples: discretized samples of the evaluated pmf.
    """

    steps: int = 3000
    batch_size: int = 1000
    lr: str = "1e-2"
    val_every: int = 1000
    checkpoint_every: int = 1000
    target: str = "poisson:50"
    relaxation: Literal["gumbel_softmax", "igr_sb"] = "igr_sb"
    num_categories: int = 100
    temperature: str = "auto"
    delta: float = 1.0
    sb_threshold: float = 0.9
    sb_percentile: float = 50.0
    eval_samples: int = 100_000

    minimums: ClassVar[Mapping[str, int]] = {"num_categories": 2, "eval_samples": 1}

    def __post_init__(self) -> None:
        super().__post_init__()
        parse_target(self.target)
        if self.temperature == "auto":
            object.__setattr__(self, "temperature", repr(DEFAULT_TEMPERATURE[self.relaxation]))
        try:
            tau = float(self.temperature)
        except ValueError:
            raise ValueError(
                f"temperature must be a number or auto, got {self.temperature!r}"
            ) from None
        if not tau > 0:
            raise ValueError(f"temperature must be > 0, got {tau}")
        if not 0 < self.sb_threshold < 1:
            raise ValueError(f"sb_threshold must be in (0, 1), got {self.sb_threshold}")
        if not 0 <= self.sb_percentile <= 100:
            raise ValueError(f"sb_percentile must be in [0, 100], got {self.sb_percentile}")


class DiscreteApproxTask(Task):
    """One relaxed categorical variable with free parameters fitted to a target pmf."""

    monitor = "valid/tv"
    monitor_mode = "min"

    def __init__(self, config: DiscreteApproxConfig, *, data_dir: str | None = None) -> None:
        super().__init__(config)
        from simplexity.distributions import relaxations

        k = config.num_categories
        self.tau = float(config.temperature)
        options = {"delta": config.delta} if config.relaxation == "igr_sb" else {}
        self.relaxation = relaxations.get(config.relaxation, num_categories=k, **options)
        if config.relaxation == "gumbel_softmax":
            init = torch.zeros(k)  # uniform over the K categories
        else:
            # sticks of equal expected size: eta_j = 1 / (K - j) at the mean
            j = torch.arange(k - 1, dtype=torch.float32)
            loc = torch.logit(1.0 / (k - j)).clamp(-10, 10)
            init = torch.cat((loc, torch.zeros(k - 1)))
        self.raw = nn.Parameter(init)
        pmf = target_pmf(config.target, k)
        if config.relaxation == "igr_sb":
            pmf[-1] = 0.0  # the softmax++ category is no integer
        self.register_buffer("target", pmf.float())
        self.register_buffer("fit_target", (pmf / pmf.sum()).float())
        # in float64: the target's mass beyond the categories (a floor for the TV)
        self.target_outside = max(0.0, 1.0 - float(pmf.sum()))

    def distribution(self):
        """The relaxed distribution at the run's temperature."""
        return self.relaxation(self.raw, self.tau)

    def train_batches(self) -> StepBatches:
        return StepBatches(torch.zeros(self.config.batch_size, 1), seed=self.config.seed)

    def training_loss(self, batch, step):
        z = self.distribution().rsample((self.config.batch_size,))
        mean = z.mean(0).clamp_min(torch.finfo(z.dtype).tiny)
        p = self.fit_target
        kl = (p * (p.clamp_min(torch.finfo(p.dtype).tiny).log() - mean.log())).sum()
        return kl, {"loss": kl.detach()}

    @torch.no_grad()
    def discretized_pmf(self, num_samples: int) -> Tensor:
        """The pmf of ``num_samples`` discretized samples (one-hot argmax), shape ``(K,)``."""
        counts = torch.zeros(self.config.num_categories, dtype=torch.float64)
        q = self.distribution()
        for s in range(0, num_samples, 10_000):
            z = q.sample((min(10_000, num_samples - s),))
            counts += torch.bincount(z.argmax(-1), minlength=len(counts)).double()
        return counts / num_samples

    def stream_seed(self, split: str) -> int:
        """The seed of the sample stream that evaluates ``split`` (:data:`EVAL_STREAMS`)."""
        if split not in EVAL_STREAMS:
            raise ValueError(f"split must be one of {tuple(EVAL_STREAMS)}, got {split!r}")
        return derived_seed(self.config.seed, 13, EVAL_STREAMS[split])

    @torch.no_grad()
    def evaluate(self, split: str) -> dict[str, float]:
        config = self.config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.stream_seed(split))
            probs = self.discretized_pmf(config.eval_samples)
            if config.relaxation == "igr_sb":
                trunc = self.distribution().truncation(
                    sample_shape=(10_000,), threshold=config.sb_threshold,
                    percentile=config.sb_percentile, warn=False,
                )  # fmt: skip
        target = target_pmf(config.target, config.num_categories)
        if config.relaxation == "igr_sb":
            target[-1] = 0.0
        tv = total_variation(probs, target, self.target_outside)
        cumulative = probs.cumsum(0)
        support = 1 + int((cumulative <= config.sb_threshold).sum())
        if config.relaxation == "igr_sb":
            used, met = trunc.num_sticks, trunc.threshold_met
        else:
            used, met = config.num_categories, support <= config.num_categories
        return {
            f"{split}/tv": float(tv),
            f"{split}/target_mass_outside": self.target_outside,
            f"{split}/categories_used": float(used),
            f"{split}/threshold_met": float(met),
            f"{split}/support_at_threshold": float(support),
            f"{split}/mean": float((probs * torch.arange(len(probs))).sum()),
        }

    def figures(self, history):
        from simplexity_lab.plots import _pyplot

        Figure = _pyplot()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.stream_seed("test"))  # the title's TV is test/tv
            probs = self.discretized_pmf(self.config.eval_samples).numpy()
        k = self.config.num_categories
        wide = target_pmf(self.config.target, max(k, 1000))
        n = max(k, 2 + int(torch.nonzero(wide > 1e-5).max()))  # the target's bulk, even beyond K
        grid = torch.arange(n)
        target = wide[:n].numpy()
        fig = Figure(figsize=(5.5, 3.0))
        ax = fig.subplots()
        ax.bar(grid[: len(probs)].numpy(), probs, width=1.0, alpha=0.6, label="discretized samples")
        ax.plot(grid.numpy(), target, "k.-", ms=3, lw=0.8, label=self.config.target)
        tv = float(
            total_variation(torch.as_tensor(probs), self.target.double(), self.target_outside)
        )
        name = {"gumbel_softmax": "Gumbel-softmax", "igr_sb": "IGR-SB"}[self.config.relaxation]
        ax.set_title(f"{name}, K = {self.config.num_categories}: TV = {tv:.3f}", fontsize=9)
        ax.set_xlabel("k")
        ax.legend(fontsize=7)
        fig.tight_layout()
        return {"histogram": fig}

    def summary(self) -> dict[str, Any]:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.stream_seed("test"))  # the pmf behind test/tv
            probs = self.discretized_pmf(self.config.eval_samples)
        return {
            "temperature": self.tau,
            "objective": "KL(truncated target || mean relaxed sample)",
            "discretized_pmf": [round(float(p), 6) for p in probs],
        }


EXPERIMENT = register(
    Experiment(
        name="discrete-approx",
        description="fit Gumbel-softmax (fixed K) / IGR-SB to Poisson(50) etc.; TV of discretized samples",
        config_class=DiscreteApproxConfig,
        task_class=DiscreteApproxTask,
        budgets={
            "smoke": TrainConfig.smoke(batch_size=100, eval_samples=2000, num_categories=40),
            "paper": {"steps": 3000, "batch_size": 1000, "eval_samples": 100_000},
        },
        paper_command=(
            "simplexity run discrete-approx --budget paper --set relaxation=gumbel_softmax "
            "--set num_categories=K --set target=poisson:50"
        ),
    )
)
