r"""``gradient-quality``: bias and variance of every categorical gradient estimator against the exact
gradient, computed by enumeration, on a tiny discrete VAE and on a quadratic toy.

**Models.** ``model=vae``: :math:`N` categorical latents of :math:`K` categories (``N^K`` small
enough to enumerate), the IGR paper's nonlinear networks, a Bernoulli decoder, trained on a
binarized MNIST with the *exact* gradient of the discrete ELBO (the :math:`K^N` latent
configurations enumerated), so no estimator gets a home advantage. ``model=toy``: logits
:math:`\theta \in \mathbb{R}^{N\times K}` and :math:`f(D) = -\frac12\|W\operatorname{vec}(D) - c\|^2`
(:math:`W, c` standard normal, 8 rows), trained the same way.

**What is measured.** At the initial and at the trained parameters (``stages``), on
``num_points`` test images, the gradient of the reconstruction term
:math:`\mathbb{E}_{q}[\log p(x \mid D)]` (for the toy, of :math:`\mathbb{E}[f(D)]`) and of the
ELBO with respect to the encoder's outputs (the raw parameters of :math:`q`, as the relaxation
registry lays them out: the :math:`K` logits, or IGR-I's :math:`2(K-1)` location and scale
parameters). The exact gradient comes from enumerating the :math:`K^N` configurations; for IGR-I
the discrete distribution is its zero-temperature pmf
(:func:`~simplexity.distributions.igr_zero_temperature_probs`, quadrature, differentiable), at parameters matched to the same
discrete posterior. Every method gets ``evaluations`` decoder evaluations per estimate (``S``):
the single-sample estimators average ``S`` draws, RLOO uses ``S`` samples.

The Gumbel-softmax and IGR-I rows are gradients of a *relaxed* objective (the decoder sees a
relaxed sample, the KL is the relaxed one the training loss uses); the straight-through family's
are biased estimators of the discrete objective; REINFORCE and RLOO are unbiased.

**Metrics** (over ``estimates`` independent estimates :math:`\hat g_m`, the mean :math:`\bar g`,
the exact :math:`g`, all flattened over data points, variables and parameters):

- ``cosine``: :math:`\cos(\bar g, g)`;
- ``scale``: :math:`\|\bar g\| / \|g\|` (a mean estimate that vanishes has a cosine but no use);
- ``rel_error``: :math:`\|\bar g - g\| / \|g\|` (includes the Monte Carlo error of
  :math:`\bar g`, whose expected size is ``noise_floor``);
- ``rel_bias``: :math:`\sqrt{\max(0, \|\bar g - g\|^2 - \operatorname{tr}\hat\Sigma/M)}/\|g\|`,
  the bias with the Monte Carlo error removed (0 for an unbiased estimator up to noise);
- ``rel_variance``: :math:`\operatorname{tr}\hat\Sigma / \|g\|^2` of one estimate (``S``
  evaluations);
- ``rel_rmse``: :math:`\sqrt{\text{rel\_bias}^2 + \text{rel\_variance}}`, the error of one
  estimate: what stochastic gradient descent feels.

Rows for every method × temperature go to ``summary["rows"]``; ``metrics`` keeps, per stage,
target and method, the least biased temperature (the largest ``cosine`` among the temperatures
whose mean estimate keeps ``scale >= 0.1``) and its numbers, and flags one on the edge of the grid
(``test/.../tau_on_edge``). The bias is the criterion because averaging over steps removes
variance but not bias; ``rel_rmse`` would favour a temperature at which the estimate vanishes (a
zero estimate has ``rel_rmse`` 1). ``python -m
simplexity_lab.experiments.gradient_quality report RUN...`` writes the markdown tables.

Excluded: IGR-Planar and IGR-SB, whose zero-temperature pmf has no differentiable closed form or
quadrature (only sample frequencies), so the exact gradient of their discrete objective is not
available by enumeration; ``gumbel_softmax_st`` (its reconstruction gradient is ``st_gumbel``'s).

Usage::

    simplexity run gradient-quality --budget smoke
    simplexity run gradient-quality --budget paper --set num_variables=3 --set num_categories=4
    simplexity run gradient-quality --budget paper --set model=toy
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import OneHotCategorical

from simplexity.distributions import (
    igr_zero_temperature_probs,
    relaxations,
    score_function_surrogate,
)
from simplexity_lab.engine.experiment import Experiment, register
from simplexity_lab.engine.task import StepBatches, Task, TrainConfig, derived_seed
from simplexity_lab.experiments._data import eval_subset, load_split
from simplexity_lab.models.discrete_vae import DiscreteVAE

__all__ = [
    "METHODS",
    "GradientQualityConfig",
    "GradientQualityTask",
    "gradient_metrics",
    "report",
]

METHODS: tuple[str, ...] = (
    "straight_through",
    "st_gumbel",
    "gumbel_rao",
    "reinmax",
    "decoupled_st",
    "gumbel_softmax",
    "igr_i",
    "reinforce",
    "rloo",
)
"""The methods measured: the straight-through family, the two relaxations whose exact discrete
gradient is computable, and the score-function estimators."""

_SCORE_FUNCTION = {"reinforce": None, "rloo": "rloo"}
_RELAXED = ("gumbel_softmax", "igr_i")


@dataclass(frozen=True)
class GradientQualityConfig(TrainConfig):
    """Config of ``gradient-quality`` (fields of :class:`TrainConfig` plus these).

    Attributes:
        model: ``"vae"`` (binarized MNIST) or ``"toy"`` (the quadratic).
        dataset: the VAE's data set.
        net: the VAE's networks.
        num_variables, num_categories: N and K (K^N configurations are enumerated).
        num_points: test images at which the VAE's gradient is measured.
        evaluations: decoder (or f) evaluations per estimate, S.
        estimates: independent estimates M per method and temperature.
        temperatures: the temperature grid.
        methods: names in :data:`METHODS`.
        decoupled_forward: forward temperatures of ``decoupled_st`` (its grid is the backward one).
        rao_draws: conditional Gumbel draws of ``gumbel_rao``.
        stages: ``"init"`` (parameters at initialization) and/or ``"trained"`` (after ``steps``).
        chunk: estimates computed at once (memory).
    """

    steps: int = 2000
    batch_size: int = 100
    lr: str = "1e-3"
    val_every: int = 1000
    checkpoint_every: int = 1000
    eval_size: int | None = 1000
    model: Literal["vae", "toy"] = "vae"
    dataset: str = "binarized_mnist"
    net: Literal["linear", "nonlinear"] = "nonlinear"
    num_variables: int = 3
    num_categories: int = 4
    num_points: int = 10
    evaluations: int = 4
    estimates: int = 500
    temperatures: tuple[float, ...] = (0.1, 0.2, 0.35, 0.5, 0.7, 1.0, 1.4, 2.0, 3.0, 5.0)
    methods: tuple[str, ...] = METHODS
    decoupled_forward: tuple[float, ...] = (1.0, 2.0)
    rao_draws: int = 10
    stages: tuple[str, ...] = ("init", "trained")
    chunk: int = 100

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("num_variables", "num_points", "evaluations", "estimates", "rao_draws"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_categories < 2:
            raise ValueError(f"num_categories must be >= 2, got {self.num_categories}")
        if self.num_categories**self.num_variables > 4096:
            raise ValueError(
                f"K^N = {self.num_categories}^{self.num_variables} configurations are too many to "
                "enumerate (at most 4096)"
            )
        if self.estimates < 2:
            raise ValueError(f"estimates must be >= 2 (a variance), got {self.estimates}")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ValueError(f"methods must be names in {', '.join(METHODS)}, got {unknown}")
        if "rloo" in self.methods and self.evaluations < 2:
            raise ValueError("rloo needs evaluations >= 2")
        for name in ("temperatures", "decoupled_forward"):
            values = getattr(self, name)
            if not values or any(not t > 0 for t in values):
                raise ValueError(f"{name} must be positive numbers, got {values}")
        bad = [s for s in self.stages if s not in ("init", "trained")]
        if bad or not self.stages:
            raise ValueError(f"stages must be 'init' and/or 'trained', got {self.stages}")
        if self.chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {self.chunk}")


# ------------------------------------------------------------------------------------ the metrics


def gradient_metrics(estimates: Tensor, exact: Tensor) -> dict[str, float]:
    r"""Bias and variance of ``estimates`` ``(M, P)`` against ``exact`` ``(P,)`` (see module doc).

    Example:
        >>> _ = torch.manual_seed(0)
        >>> exact = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
        >>> m = gradient_metrics(exact + 0.1 * torch.randn(4000, 3, dtype=torch.float64), exact)
        >>> round(m["cosine"], 3), m["rel_bias"] < 0.01, round(m["rel_variance"], 3)
        (1.0, True, 0.006)
    """
    estimates = estimates.to(torch.float64)
    exact = exact.to(torch.float64)
    num = estimates.shape[0]
    mean = estimates.mean(0)
    trace = float(estimates.var(0).sum())  # tr Σ of one estimate (unbiased variances)
    norm2 = float(exact.pow(2).sum())
    error2 = float((mean - exact).pow(2).sum())
    cosine = float(F.cosine_similarity(mean, exact, dim=0))
    bias2 = max(0.0, error2 - trace / num)
    return {
        "cosine": cosine,
        "scale": float(mean.norm()) / math.sqrt(norm2),
        "rel_error": math.sqrt(error2 / norm2),
        "noise_floor": math.sqrt(trace / num / norm2),
        "rel_bias": math.sqrt(bias2 / norm2),
        "rel_variance": trace / norm2,
        "rel_rmse": math.sqrt((bias2 + trace) / norm2),
    }


# -------------------------------------------------------------------------------- the objectives


def _configurations(num_variables: int, num_categories: int) -> Tensor:
    """All K^N one-hot latent configurations, ``(K^N, N, K)``."""
    index = torch.tensor(list(itertools.product(range(num_categories), repeat=num_variables)))
    return F.one_hot(index, num_categories).to(torch.get_default_dtype())


class _Objective:
    r"""The function of the latents being differentiated, two ways.

    ``f(z)``: latents ``(..., B, N, K)`` (one per data point) -> ``(..., B)``; ``table(h)``:
    the configurations ``(C, N, K)`` -> ``(C, B)``, every data point at every configuration.
    """

    def __init__(self, f: Callable[[Tensor], Tensor], table: Callable[[Tensor], Tensor]) -> None:
        self.f = f
        self.table = table

    def exact(self, log_probs: Tensor, configurations: Tensor) -> Tensor:
        r""":math:`\sum_h \prod_n \pi_n(h_n) f(h)` per data point, for :math:`\log\pi` ``(B, N, K)``."""
        log_q = torch.einsum("bnk,cnk->bc", log_probs, configurations)
        return (log_q.exp() * self.table(configurations).T).sum(-1)


def _uniform_kl(log_probs: Tensor) -> Tensor:
    r"""KL(π || uniform) summed over the variables, ``(B,)``, from finite :math:`\log\pi`.

    From log-probabilities so that a probability that underflows to 0 has a finite gradient
    (``p log p`` written with ``p`` would give ``0 * inf``).
    """
    k = log_probs.shape[-1]
    return (log_probs.exp() * (log_probs + math.log(k))).sum((-1, -2))


# --------------------------------------------------------------------------------------- methods


@dataclass(frozen=True)
class _Method:
    """One row family of the table: a name, its options and how to build it."""

    name: str
    label: str
    relaxation: str | None = None  # a relaxation-registry name (pathwise methods)
    options: tuple[tuple[str, Any], ...] = ()
    forward_temperature: float = 1.0  # decoupled_st: raw = τ_f θ, so π = softmax(raw / τ_f)
    uses_temperature: bool = True


def _methods(config: GradientQualityConfig) -> list[_Method]:
    out = []
    for name in config.methods:
        if name in _SCORE_FUNCTION:
            out.append(_Method(name, name, uses_temperature=False))
        elif name == "decoupled_st":
            for tau_f in config.decoupled_forward:
                options = (("forward_temperature", tau_f),)
                out.append(_Method(name, f"decoupled_st(tau_f={tau_f:g})", name, options, tau_f))
        elif name == "gumbel_rao":
            options = (("num_draws", config.rao_draws),)
            out.append(_Method(name, f"gumbel_rao(n={config.rao_draws})", name, options))
        else:
            out.append(_Method(name, name, name))
    return out


def _igr_raw(
    probs: Tensor, min_scale: float = 1e-4, bound: float = 6.0, floor: float = 1e-6
) -> tuple[Tensor, float]:
    r"""IGR-I raw outputs ``(loc, pre)`` whose zero-temperature pmf matches ``probs`` ``(..., K)``.

    The scale is fixed at 1 (``pre`` = softplus⁻¹(1 - min_scale)) and the K-1 locations,
    :math:`\mu = b \tanh u` with :math:`b` = ``bound`` (the quadrature stays finite), minimize
    :math:`\mathrm{KL}(\tilde\pi \,\|\, \mathrm{pmf}(\mu, 1))` by Adam then L-BFGS, where
    :math:`\tilde\pi` is ``probs`` with a ``floor``. The match need not be exact (the exact gradient
    of IGR-I is taken at its own pmf); returns the raw tensor ``(..., 2(K-1))`` and the largest
    total-variation distance between that pmf and ``probs``.
    """
    target = probs.detach().to(torch.float64).clamp_min(floor)
    target = target / target.sum(-1, keepdim=True)
    k = target.shape[-1]
    log_ratio = (target[..., :-1] / target[..., -1:]).log()
    u = torch.atanh((0.5 * log_ratio / bound).clamp(-0.95, 0.95)).requires_grad_()
    scale = torch.ones_like(log_ratio)

    def loss_of(u: Tensor) -> Tensor:
        pmf = igr_zero_temperature_probs(bound * torch.tanh(u), scale, num_nodes=128)
        return (target * (target.log() - pmf.clamp_min(1e-300).log())).sum()

    with torch.enable_grad():
        adam = torch.optim.Adam([u], lr=0.05)
        for _ in range(300):
            adam.zero_grad()
            loss_of(u).backward()
            adam.step()
        before = u.detach().clone()
        lbfgs = torch.optim.LBFGS([u], max_iter=100, line_search_fn="strong_wolfe")

        def closure() -> Tensor:
            lbfgs.zero_grad()
            loss = loss_of(u)
            loss.backward()
            return loss

        lbfgs.step(closure)
        with torch.no_grad():
            polished = loss_of(u)
            if not torch.isfinite(polished) or polished > loss_of(before):
                u.copy_(before)  # keep the Adam solution if L-BFGS did not improve it
    with torch.no_grad():
        loc = bound * torch.tanh(u)
        pmf = igr_zero_temperature_probs(loc, scale, num_nodes=128)
        tv = float(0.5 * (pmf - probs.to(torch.float64)).abs().sum(-1).max())
    pre = math.log(math.expm1(1.0 - min_scale))
    raw = torch.cat((loc, torch.full_like(loc, pre)), dim=-1).to(probs.dtype)
    assert raw.shape[-1] == 2 * (k - 1)
    return raw, tv


def _discrete_log_probs(method: _Method, raw: Tensor, k: int) -> Tensor:
    r""":math:`\log\pi` of the discrete distribution the method's raw parameters define."""
    if method.name == "igr_i":
        loc, pre = raw.split(k - 1, dim=-1)
        probs = igr_zero_temperature_probs(loc, F.softplus(pre) + 1e-4, num_nodes=128)
        return probs.clamp_min(torch.finfo(probs.dtype).tiny).log().to(raw.dtype)
    return torch.log_softmax(raw / method.forward_temperature, -1)


# ------------------------------------------------------------------------------------------ task


class GradientQualityTask(Task):
    """Trains the model on the exact objective; the test evaluation measures every estimator."""

    monitor = "valid/loss"
    monitor_mode = "min"

    def __init__(self, config: GradientQualityConfig, *, data_dir: str | None = None) -> None:
        super().__init__(config)
        n, k = config.num_variables, config.num_categories
        self.configurations = _configurations(n, k)
        if config.model == "vae":
            kw = {"data_dir": data_dir, "seed": config.seed, "binarize": "none"}
            self.train_split = load_split(config.dataset, "train", **kw)
            self.splits = {s: load_split(config.dataset, s, **kw) for s in ("valid", "test")}
            self.model = DiscreteVAE(
                self.train_split.data.shape[-1],
                num_variables=n,
                num_categories=k,
                relaxation="straight_through",  # only its networks: K logits per variable
                net=config.net,
            )
        else:
            generator = torch.Generator().manual_seed(derived_seed(config.seed, 21))
            self.register_buffer("weight", torch.randn(8, n * k, generator=generator))
            self.register_buffer("target", torch.randn(8, generator=generator))
            self.theta = nn.Parameter(torch.randn(1, n, k, generator=generator))
            self.train_split = None
        # the parameters at initialization, for the "init" stage (rebuilt identically on resume)
        self._initial = {key: value.detach().clone() for key, value in self.state_dict().items()}
        self.rows: list[dict[str, Any]] = []
        self.igr_match_tv: dict[str, float] = {}

    # ----------------------------------------------------------------------- the objectives

    def _points(self, split: str, num: int | None) -> Tensor:
        x = self.splits[split].data
        return x[eval_subset(len(x), num)]

    def _raw(self, x: Tensor | None) -> Tensor:
        """The encoder's logits ``(B, N, K)`` (the toy's θ)."""
        if self.config.model == "toy":
            return self.theta
        return self.model.encoder(x).view(len(x), self.config.num_variables, -1)

    def _objective(self, x: Tensor | None) -> _Objective:
        if self.config.model == "toy":

            def f(z: Tensor) -> Tensor:  # (..., 1, N, K) -> (..., 1)
                residual = z.flatten(-2) @ self.weight.T - self.target
                return -0.5 * residual.pow(2).sum(-1)

            return _Objective(f, lambda h: f(h.unsqueeze(1)))
        assert x is not None

        def log_likelihood(z: Tensor) -> Tensor:  # (..., B, N, K) -> (..., B)
            logits = self.model.decoder(z.flatten(-2))
            return (x * logits).sum(-1) - F.softplus(logits).sum(-1)

        def table(h: Tensor) -> Tensor:  # (C, N, K) -> (C, B): one decoder pass per configuration
            logits = self.model.decoder(h.flatten(-2))
            return logits @ x.T - F.softplus(logits).sum(-1, keepdim=True)

        return _Objective(log_likelihood, table)

    def exact_elbo(self, x: Tensor | None) -> Tensor:
        """The exact discrete ELBO per data point (the toy: E[f])."""
        log_probs = torch.log_softmax(self._raw(x), -1)
        value = self._objective(x).exact(log_probs, self.configurations)
        return value if self.config.model == "toy" else value - _uniform_kl(log_probs)

    # ---------------------------------------------------------------------------- training

    def train_batches(self) -> StepBatches:
        if self.config.model == "toy":
            return StepBatches(torch.zeros(self.config.batch_size, 1))
        return StepBatches(self.train_split.data, None, seed=self.config.seed)

    def training_loss(self, batch, step):
        x = None if self.config.model == "toy" else batch[0]
        loss = -self.exact_elbo(x).mean()
        return loss, {"loss": loss.detach()}

    # -------------------------------------------------------------------------- measurement

    def _estimates(
        self, method: _Method, tau: float, raw0: Tensor, objective: _Objective
    ) -> tuple[Tensor, Tensor]:
        """``estimates`` independent estimates of the gradients of the reconstruction term and of
        the ELBO with respect to ``raw0`` ``(B, N, P)``: two tensors ``(M, B*N*P)``."""
        config = self.config
        k = config.num_categories
        s = config.evaluations
        rec_out, elbo_out = [], []
        relax = None
        if method.relaxation is not None:
            relax = relaxations.get(method.relaxation, num_categories=k, **dict(method.options))
        for start in range(0, config.estimates, config.chunk):
            m = min(config.chunk, config.estimates - start)
            raw = raw0.detach().expand(m, *raw0.shape).clone().requires_grad_()
            if relax is None:
                q = OneHotCategorical(logits=raw)
                d = q.sample((s,))  # (S, m, B, N, K)
                with torch.no_grad():
                    f = objective.f(d)  # (S, m, B)
                log_q = q.log_prob(d).sum(-1)
                rec = score_function_surrogate(f, log_q, _SCORE_FUNCTION[method.name])
                kl = _uniform_kl(q.logits)  # normalized: log-probabilities
            else:
                t = torch.tensor(tau, dtype=raw.dtype)
                q = relax(raw, t)
                rec = objective.f(q.rsample((s,))).mean(0)  # (m, B)
                prior = relax.prior(k, t, dtype=raw.dtype)
                kl = relax.kl(q, prior, num_samples=1).sum(-1)  # what the training loss uses
            if config.model == "toy":
                kl = torch.zeros_like(rec)  # the toy has no KL term
            (g_rec,) = torch.autograd.grad(rec.sum(), raw, retain_graph=True)
            if kl.requires_grad:
                (g_kl,) = torch.autograd.grad(kl.sum(), raw)
            else:
                g_kl = torch.zeros_like(g_rec)
            rec_out.append(g_rec.flatten(1))
            elbo_out.append((g_rec - g_kl).flatten(1))
        return torch.cat(rec_out), torch.cat(elbo_out)

    def _exact(self, method: _Method, raw: Tensor, objective: _Objective) -> tuple[Tensor, Tensor]:
        raw = raw.detach().clone().requires_grad_()
        log_probs = _discrete_log_probs(method, raw, self.config.num_categories)
        rec = objective.exact(log_probs, self.configurations).sum()
        (g_rec,) = torch.autograd.grad(rec, raw, retain_graph=True)
        if self.config.model == "toy":
            return g_rec.flatten(), g_rec.flatten()
        (g_elbo,) = torch.autograd.grad(rec - _uniform_kl(log_probs).sum(), raw)
        return g_rec.flatten(), g_elbo.flatten()

    def measure(self, stage: str) -> list[dict[str, Any]]:
        """Every method × temperature at the current parameters; rows of :func:`gradient_metrics`."""
        config = self.config
        x = None if config.model == "toy" else self._points("test", config.num_points)
        rows: list[dict[str, Any]] = []
        with torch.no_grad():
            theta = self._raw(x).detach()
            objective = self._objective(x)
            igr_raw, tv = _igr_raw(torch.softmax(theta, -1))
        self.igr_match_tv[stage] = tv
        targets = ("rec",) if config.model == "toy" else ("rec", "elbo")
        for method in _methods(config):
            if method.name == "igr_i":
                raw = igr_raw
            else:
                raw = theta * method.forward_temperature  # decoupled_st: the same π
            exact = self._exact(method, raw, objective)
            temperatures = config.temperatures if method.uses_temperature else (None,)
            for tau in temperatures:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(derived_seed(config.seed, 22, len(rows)))
                    estimates = self._estimates(method, tau or 1.0, raw, objective)
                for target, est, truth in zip(targets, estimates, exact):
                    row = {"stage": stage, "target": target, "method": method.label,
                           "temperature": tau, **gradient_metrics(est, truth)}  # fmt: skip
                    rows.append(row)
        return rows

    def _load(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        current = {key: value.detach().clone() for key, value in self.state_dict().items()}
        self.load_state_dict(state)
        return current

    @torch.no_grad()
    def evaluate(self, split: str) -> dict[str, float]:
        config = self.config
        x = None if config.model == "toy" else self._points(split, config.eval_size)
        out = {f"{split}/loss": float(-self.exact_elbo(x).mean())}
        if split != "test":
            return out
        self.rows = []
        with torch.enable_grad():
            for stage in config.stages:
                if stage == "init":
                    trained = self._load(self._initial)
                    self.rows += self.measure("init")
                    self._load(trained)
                else:
                    self.rows += self.measure("trained")
        out.update(_best_metrics(self.rows, config.temperatures))
        return out

    def summary(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "igr_match_max_tv": self.igr_match_tv,
            "configurations": self.config.num_categories**self.config.num_variables,
        }


MIN_SCALE = 0.1
"""A temperature whose mean estimate is shorter than this fraction of the exact gradient is not
the least biased one, whatever its cosine (the estimate vanishes)."""


def _best_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The least biased row: the largest cosine (then the smallest variance) among the rows with
    ``scale >= MIN_SCALE`` (all rows if none has)."""
    finite = [r for r in rows if math.isfinite(r["cosine"])] or rows
    alive = [r for r in finite if r.get("scale", 1.0) >= MIN_SCALE] or finite
    return max(alive, key=lambda r: (round(r["cosine"], 3), -r["rel_variance"]))


def _best_metrics(rows: list[dict[str, Any]], grid: Sequence[float]) -> dict[str, float]:
    """Per (stage, target, method): the least biased temperature (:func:`_best_row`), its numbers."""
    out: dict[str, float] = {}
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["stage"], row["target"], row["method"]), []).append(row)
    for (stage, target, method), members in groups.items():
        best = _best_row(members)
        prefix = f"test/{stage}/{target}/{method}"
        for key in ("cosine", "scale", "rel_bias", "rel_variance", "rel_rmse"):
            out[f"{prefix}/{key}"] = best[key]
        if best["temperature"] is not None:
            out[f"{prefix}/tau"] = float(best["temperature"])
            out[f"{prefix}/tau_on_edge"] = float(best["temperature"] in (min(grid), max(grid)))
    return out


_EXPERIMENT = Experiment(
    name="gradient-quality",
    description="bias and variance of every categorical gradient estimator vs the exact "
    "gradient (enumeration): tiny discrete VAE or quadratic toy",
    config_class=GradientQualityConfig,
    task_class=GradientQualityTask,
    budgets={
        "smoke": {
            "steps": 4,
            "batch_size": 20,
            "val_every": 4,
            "checkpoint_every": 4,
            "log_every": 2,
            "eval_size": 50,
            "num_variables": 2,
            "num_categories": 3,
            "num_points": 3,
            "evaluations": 2,
            "estimates": 8,
            "chunk": 4,
            "temperatures": (0.5, 1.0),
            "decoupled_forward": (1.0,),
            "rao_draws": 2,
        },
        # 2,000 exact-gradient steps (4 epochs of 50,000 images), 500 estimates of S = 4
        "paper": {"steps": 2000, "estimates": 500, "evaluations": 4, "num_points": 10},
    },
    paper_command=(
        "simplexity run gradient-quality --budget paper --set model=vae "
        "--set num_variables=3 --set num_categories=4"
    ),
)
EXPERIMENT = register(_EXPERIMENT)


# ----------------------------------------------------------------------------------- the report


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "—"
    return f"{value:.{digits}f}"


def report_tables(record: dict[str, Any]) -> str:
    """Markdown tables of one run's ``metrics.json`` record: for each stage and target, each
    method at its least biased temperature, then the full temperature grid."""
    rows = record["summary"]["rows"]
    config = record["config"]
    grid = config["temperatures"]
    lines: list[str] = []
    stages = [s for s in ("init", "trained") if any(r["stage"] == s for r in rows)]
    targets = [t for t in ("rec", "elbo") if any(r["target"] == t for r in rows)]
    for stage in stages:
        for target in targets:
            members = [r for r in rows if r["stage"] == stage and r["target"] == target]
            methods = list(dict.fromkeys(r["method"] for r in members))
            lines.append(f"**{stage}, {target}** (each method at its least biased temperature)")
            lines.append("")
            lines.append(
                "| method | τ | cosine | scale | rel. bias | rel. variance | rel. RMSE | noise floor |"
            )
            lines.append("|---|---|---|---|---|---|---|---|")
            for method in methods:
                group = [r for r in members if r["method"] == method]
                best = _best_row(group)
                tau = best["temperature"]
                edge = " (edge)" if tau is not None and tau in (min(grid), max(grid)) else ""
                lines.append(
                    f"| {method} | {_fmt(tau, 2) if tau is not None else '—'}{edge} | "
                    f"{_fmt(best['cosine'])} | {_fmt(best.get('scale'), 2)} | "
                    f"{_fmt(best['rel_bias'])} | "
                    f"{_fmt(best['rel_variance'])} | {_fmt(best['rel_rmse'])} | "
                    f"{_fmt(best['noise_floor'])} |"
                )
            lines.append("")
            for title, cell in (
                ("cosine / rel. bias", lambda r: f"{r['cosine']:.3f} / {r['rel_bias']:.3f}"),
                ("rel. variance", lambda r: f"{r['rel_variance']:.3g}"),
            ):
                lines += _grid_table(f"{stage}, {target}: {title}", members, methods, grid, cell)
    return "\n".join(lines)


def _grid_table(
    title: str,
    members: list[dict[str, Any]],
    methods: list[str],
    grid: Sequence[float],
    cell: Callable[[dict[str, Any]], str],
) -> list[str]:
    """A collapsed table of ``cell(row)`` for every method (rows) and temperature (columns)."""
    lines = [f"<details><summary>{title} over the temperature grid</summary>", ""]
    lines.append("| method | " + " | ".join(f"τ = {t:g}" for t in grid) + " |")
    lines.append("|---|" + "---|" * len(grid))
    for method in methods:
        group = {r["temperature"]: r for r in members if r["method"] == method}
        if None in group:  # no temperature: the same value in every column
            cells = [cell(group[None])] * len(grid)
        else:
            cells = [cell(group[t]) if t in group else "—" for t in grid]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return [*lines, "", "</details>", ""]


def report(runs: Sequence[str | Path]) -> str:
    """Tables of every run directory (or ``metrics.json``) in ``runs``, each under a heading."""
    parts = []
    for run in runs:
        path = Path(run)
        path = path / "metrics.json" if path.is_dir() else path
        record = json.loads(path.read_text())
        c = record["config"]
        if c["model"] == "toy":
            title = f"Quadratic toy, N = {c['num_variables']}, K = {c['num_categories']}"
        else:
            title = (f"Discrete VAE on {c['dataset']}, N = {c['num_variables']}, "
                     f"K = {c['num_categories']} ({c['net']} net, {c['steps']} exact-gradient "
                     f"steps, {c['num_points']} test images)")  # fmt: skip
        title += f"; S = {c['evaluations']} evaluations per estimate, M = {c['estimates']}"
        parts.append(f"### {title}\n\n{report_tables(record)}")
    return "\n".join(parts)
