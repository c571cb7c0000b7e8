r"""Maximum-entropy flows trained with an augmented Lagrangian (Loaiza-Ganem et al. 2017).

Solve :math:`\max_p H(p)` subject to :math:`\mathbb{E}_p[T(z)] = 0` over a family of flows
:math:`p` (any base — Gaussian or a mixture — and any transforms, followed by a fixed bijection onto
the support). With :math:`R = \mathbb{E}_p[T(z)]`, each outer iteration minimizes

.. math::
    L(\theta) = -H(p_\theta) + \lambda^\top R(\theta) + \frac{c}{2}\|R(\theta)\|^2

by SGD, with :math:`H` estimated by :math:`-\frac1B\sum_i \log p(z_i)` on reparameterized samples
and the penalty gradient :math:`c\,(\nabla R)^\top R` estimated without bias by splitting the batch
in halves (:math:`\frac{c}{2} \hat R_1^\top \hat R_2`, whose expectation is
:math:`\frac{c}{2}\|R\|^2`). After the inner loop, :math:`\lambda \leftarrow \lambda + c\hat R` on
fresh samples, and :math:`c \leftarrow \beta c` when :math:`\|\hat R\|` did not fall below
:math:`\gamma` times its previous value.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from simplexity._checks import check_floating, check_int, check_positive

__all__ = [
    "AugmentedLagrangian",
    "MaxEntTrainer",
    "augmented_lagrangian_loss",
    "dirichlet_constraints",
    "dirichlet_entropy",
    "update_multipliers",
]


@dataclass(frozen=True)
class AugmentedLagrangian:
    r"""Settings of the augmented-Lagrangian trainer (defaults of the paper's Dirichlet notebook).

    Args:
        outer: outer iterations (:math:`\lambda`, :math:`c` updates).
        inner: SGD steps per outer iteration.
        batch: samples per step (even; split in halves for the penalty).
        lr: Adam learning rate.
        c0: initial penalty coefficient :math:`c`.
        gamma: :math:`c` grows unless :math:`\|R\|` fell below ``gamma`` times its last value.
        beta: growth factor of :math:`c`.
        eval_samples: fresh samples for the :math:`\lambda` update and the reported values.
        lr_decay: the learning rate is multiplied by this factor after each outer iteration
            (1 = constant, as in the paper; < 1 lets the last iterations settle, which lowers the
            final residual that Adam's noise otherwise keeps at a few hundredths).
        estimator_kwargs: passed to the model's ``rsample_and_log_prob`` (e.g.
            ``{"estimator": "nested_own", "num_inner": 16}`` for a mixture base).
    """

    outer: int = 10
    inner: int = 3000
    batch: int = 300
    lr: float = 1e-3
    c0: float = 0.05
    gamma: float = 0.25
    beta: float = 4.0
    eval_samples: int = 10000
    lr_decay: float = 1.0
    estimator_kwargs: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        for name in ("outer", "inner", "batch", "eval_samples"):
            check_int(name, getattr(self, name), min=1)
        if self.batch % 2:
            raise ValueError(f"batch must be even (it is split in halves), got {self.batch}")
        for name in ("lr", "c0", "beta"):
            check_positive(name, getattr(self, name))
        if not 0 < self.lr_decay <= 1:
            raise ValueError(f"lr_decay must be in (0, 1], got {self.lr_decay}")
        if not 0 < self.gamma < 1:
            raise ValueError(f"gamma must be in (0, 1), got {self.gamma}")


class MaxEntTrainer:
    r"""Train a flow to maximize entropy under moment constraints :math:`\mathbb{E}[T(z)] = 0`.

    Args:
        model: a module whose ``forward()`` returns a distribution with ``rsample_and_log_prob``
            (e.g. a :class:`~simplexity.flows.flow.LazyFlow` ending in a fixed support bijection).
        constraint: :math:`T`, mapping samples ``(..., D)`` to ``(..., m)``.
        config: the :class:`AugmentedLagrangian` settings.

    References:
        Loaiza-Ganem, Gao, Cunningham. Maximum Entropy Flow Networks. ICLR 2017.

    Example:
        >>> from simplexity.flows import GaussianBase, LazyFlow, Planar, SimplexTransform
        >>> model = LazyFlow(GaussianBase(2), [Planar(2), SimplexTransform()])
        >>> T = dirichlet_constraints(torch.tensor([1.0, 2.0, 3.0]))
        >>> cfg = AugmentedLagrangian(outer=2, inner=5, batch=20, eval_samples=50)
        >>> history = MaxEntTrainer(model, T, cfg).fit()
        >>> len(history), sorted(history[-1])[:3]
        (2, ['c', 'entropy', 'lambda'])
    """

    def __init__(
        self,
        model: nn.Module,
        constraint: Callable[[Tensor], Tensor],
        config: AugmentedLagrangian | None = None,
    ) -> None:
        self.model = model
        self.constraint = constraint
        self.config = config or AugmentedLagrangian()
        self.optimizer = torch.optim.Adam(model.parameters(), lr=self.config.lr)
        self.lam: Tensor | None = None
        self.c = self.config.c0
        self.last_norm = float("inf")

    def _sample(self, num: int) -> tuple[Tensor, Tensor]:
        kwargs = self.config.estimator_kwargs or {}
        return self.model().rsample_and_log_prob((num,), **kwargs)

    def _constraint_values(self, z: Tensor) -> Tensor:
        """The constraint at each sample, checked to be of shape (N, m)."""
        t = self.constraint(z)
        if t.dim() != 2:
            raise ValueError(f"constraint must return shape (N, m), got {tuple(t.shape)}")
        return t

    def _residual(self, z: Tensor) -> Tensor:
        return self._constraint_values(z).mean(0)

    def loss(self) -> Tensor:
        r"""The augmented Lagrangian of a fresh batch at the current :math:`\lambda` and :math:`c`
        (what :meth:`step` minimizes; a training loop of one's own can minimize it instead)."""
        z, log_p = self._sample(self.config.batch)
        t = self._constraint_values(z)
        if self.lam is None:
            self.lam = torch.zeros(t.shape[-1], dtype=t.dtype, device=t.device)
        return augmented_lagrangian_loss(log_p, t, self.lam, self.c)

    def step(self) -> Tensor:
        """One SGD step on the augmented Lagrangian; returns the loss (detached)."""
        loss = self.loss()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    @torch.no_grad()
    def evaluate(self, num: int | None = None) -> tuple[Tensor, Tensor]:
        """Entropy estimate and constraint residual :math:`\\hat R` on ``num`` fresh samples."""
        z, log_p = self._sample(num or self.config.eval_samples)
        return -log_p.mean(), self._residual(z)

    def fit(self, callback: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
        """Run the outer loop; return one record per outer iteration (also passed to callback)."""
        history = []
        start = time.perf_counter()
        for outer in range(self.config.outer):
            for _ in range(self.config.inner):
                self.step()
            record = {"outer": outer, **self.update(), "seconds": time.perf_counter() - start}
            for group in self.optimizer.param_groups:
                group["lr"] *= self.config.lr_decay
            history.append(record)
            if callback is not None:
                callback(record)
        return history

    @torch.no_grad()
    def update(self) -> dict[str, Any]:
        r"""The outer update after an inner loop: :math:`\lambda \leftarrow \lambda + c\hat R` and
        :math:`c \leftarrow \beta c` unless :math:`\|\hat R\|` fell below :math:`\gamma` times its
        last value (:func:`update_multipliers`), with :math:`\hat R` on ``eval_samples`` fresh
        samples.

        Returns:
            ``{"entropy", "residual", "residual_norm", "lambda", "c"}``: the entropy estimate and
            residual of those samples, the new multipliers and the :math:`c` of the inner loop
            that just ended.
        """
        entropy, residual = self.evaluate()
        if self.lam is None:
            self.lam = torch.zeros_like(residual)
        norm = float(residual.norm())
        c = self.c
        self.lam, self.c = update_multipliers(
            self.lam, c, residual, self.last_norm, gamma=self.config.gamma, beta=self.config.beta
        )
        self.last_norm = norm
        return {"entropy": float(entropy), "residual": residual.tolist(), "residual_norm": norm,
                "lambda": self.lam.tolist(), "c": c}  # fmt: skip

    def state_dict(self) -> dict[str, Any]:
        """The multipliers, the penalty coefficient and the last residual norm (to resume)."""
        return {"lam": self.lam, "c": self.c, "last_norm": self.last_norm}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.lam, self.c, self.last_norm = (
            state["lam"],
            float(state["c"]),
            float(state["last_norm"]),
        )

    def state(self) -> dict[str, Any]:
        """The trainer's settings and multipliers (for logging)."""
        lam = None if self.lam is None else self.lam.tolist()
        return {"config": asdict(self.config), "lambda": lam, "c": self.c}


def augmented_lagrangian_loss(log_p: Tensor, t: Tensor, lam: Tensor, c: float | Tensor) -> Tensor:
    r"""The augmented Lagrangian of one batch, with the split-batch penalty.

    .. math::
        \hat L = \frac1B\sum_i \log p(z_i) + \lambda^\top \hat R
        + \frac{c}{2}\,\hat R_1^\top \hat R_2 ,

    where :math:`\hat R` is the mean of :math:`T(z_i)` over the batch and :math:`\hat R_1`,
    :math:`\hat R_2` over its two halves (independent, so the last term is an unbiased estimate
    of :math:`\frac{c}{2}\|R\|^2` and of its gradient). Minimizing it maximizes the entropy
    estimate :math:`-\frac1B\sum_i \log p(z_i)` under the constraints.

    Args:
        log_p: ``(B,)`` log densities (or estimates) of the samples.
        t: ``(B, m)`` constraint values :math:`T(z_i)`; ``B`` even.
        lam: ``(m,)`` Lagrange multipliers :math:`\lambda`.
        c: the penalty coefficient.

    References:
        Loaiza-Ganem, Gao, Cunningham. Maximum Entropy Flow Networks. ICLR 2017.

    Example:
        >>> t = torch.tensor([[1.0], [1.0], [-1.0], [3.0]])
        >>> augmented_lagrangian_loss(torch.zeros(4), t, torch.tensor([0.5]), 2.0)
        tensor(1.5000)
    """
    if t.dim() != 2 or t.shape[0] != log_p.shape[0]:
        raise ValueError(
            f"t must have shape (B, m) with B = {log_p.shape[0]} samples, got {tuple(t.shape)}"
        )
    if t.shape[0] % 2:
        raise ValueError(f"the batch must be even (it is split in halves), got {t.shape[0]}")
    half = t.shape[0] // 2
    residual = t.mean(0)
    penalty = 0.5 * c * (t[:half].mean(0) * t[half:].mean(0)).sum()
    return log_p.mean() + (lam * residual).sum() + penalty


def update_multipliers(
    lam: Tensor,
    c: float,
    residual: Tensor,
    last_norm: float,
    *,
    gamma: float = 0.25,
    beta: float = 4.0,
) -> tuple[Tensor, float]:
    r"""The outer update of the augmented Lagrangian: :math:`\lambda \leftarrow \lambda + c\hat R`,
    and :math:`c \leftarrow \beta c` unless :math:`\|\hat R\| \le \gamma` times ``last_norm``.

    Args:
        lam: ``(m,)`` multipliers.
        c: the penalty coefficient used in the inner loop that just ended.
        residual: ``(m,)`` residual :math:`\hat R` on fresh samples.
        last_norm: :math:`\|\hat R\|` of the previous outer iteration (``inf`` at the first).
        gamma, beta: see :class:`AugmentedLagrangian`.

    Returns:
        The new ``(lam, c)``.

    Example:
        >>> lam, c = update_multipliers(torch.zeros(2), 1.0, torch.tensor([0.3, 0.4]), 1.0)
        >>> lam.tolist(), c
        ([0.30000001192092896, 0.4000000059604645], 4.0)
    """
    new_lam = lam + c * residual
    norm = float(residual.norm())
    return new_lam, c * beta if norm > gamma * last_norm else c


def dirichlet_constraints(alpha: Tensor) -> Callable[[Tensor], Tensor]:
    r"""Moment constraints whose maximum-entropy solution on the simplex is Dirichlet(alpha).

    .. math::
        T(z)_i = \log z_i - (\psi(\alpha_i) - \psi(\alpha_0)), \qquad \alpha_0 = \sum_i \alpha_i .

    Example:
        >>> T = dirichlet_constraints(torch.tensor([1.0, 2.0, 3.0]))
        >>> z = torch.distributions.Dirichlet(torch.tensor([1.0, 2.0, 3.0])).sample((20000,))
        >>> bool(T(z).mean(0).abs().max() < 0.05)
        True
    """
    check_floating("alpha", alpha)
    if alpha.dim() != 1 or alpha.shape[0] < 2:
        raise ValueError(f"alpha must be a vector of length >= 2, got {tuple(alpha.shape)}")
    check_positive("alpha", alpha)
    target = torch.special.digamma(alpha) - torch.special.digamma(alpha.sum())

    def constraint(z: Tensor) -> Tensor:
        return z.log() - target.to(z.dtype)

    return constraint


def dirichlet_entropy(alpha: Tensor) -> Tensor:
    r"""Entropy of :math:`\mathrm{Dirichlet}(\alpha)` (w.r.t. the first :math:`D-1` coordinates).

    Example:
        >>> round(float(dirichlet_entropy(torch.tensor([1.0, 2.0, 3.0]))), 4)
        -1.2443
    """
    return torch.distributions.Dirichlet(alpha).entropy()
