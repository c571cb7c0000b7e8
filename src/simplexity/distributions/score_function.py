r"""Score-function (REINFORCE) gradient estimators as a surrogate loss, with their baselines.

For :math:`D_s \sim q_\theta` (:math:`s = 1..S`, drawn without gradient) and values
:math:`f_s = f(D_s)`, the score-function estimator of :math:`\nabla_\theta \mathbb{E}_{q_\theta}[f]` is

.. math::
    \hat\nabla = \frac1S \sum_{s=1}^S (f_s - b_s)\, \nabla_\theta \log q_\theta(D_s),

unbiased whenever the baseline :math:`b_s` does not depend on :math:`D_s` (Williams 1992).
:func:`score_function_surrogate` returns a loss whose gradient is :math:`\hat\nabla` (plus the
ordinary gradient of :math:`f` through its other arguments, e.g. a decoder's weights) and whose
value is the Monte Carlo estimate :math:`\frac1S\sum_s f_s`. Baselines: none, the leave-one-out
mean of the other samples (``"rloo"``, Kool, van Hoof, Welling 2019), or a :class:`RunningMean` of
past values.

References:
    Williams. Simple Statistical Gradient-Following Algorithms for Connectionist Reinforcement
    Learning. Machine Learning, 1992.
    Kool, van Hoof, Welling. Buy 4 REINFORCE Samples, Get a Baseline for Free! ICLR 2019 workshop
    (DeepRLStructPred).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from simplexity._checks import check_dim, check_floating

__all__ = ["RunningMean", "score_function_surrogate"]


class RunningMean(nn.Module):
    r"""An exponential moving average of the objective, used as a score-function baseline.

    The baseline for a batch is the average *before* the batch is seen (zero at first), so it is
    independent of the batch's samples and the estimator stays unbiased; :meth:`update` then folds
    in the batch mean, :math:`m \leftarrow \beta m + (1 - \beta)\bar f` (the first batch sets
    :math:`m = \bar f`). Kept as a buffer, so it is saved with a model's ``state_dict``.

    Args:
        decay: :math:`\beta \in [0, 1)`.

    Example:
        >>> baseline = RunningMean(decay=0.5)
        >>> baseline.update(torch.tensor([2.0, 4.0]))
        tensor(3.)
        >>> baseline.update(torch.tensor([1.0]))
        tensor(2.)
    """

    value: Tensor
    count: Tensor

    def __init__(self, decay: float = 0.9) -> None:
        super().__init__()
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0 <= decay < 1:
            raise ValueError(f"decay must be a number in [0, 1), got {decay!r}")
        self.decay = float(decay)
        self.register_buffer("value", torch.zeros(()))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self, values: Tensor) -> Tensor:
        """Fold the mean of ``values`` into the average and return the new average."""
        check_floating("values", values)
        mean = values.detach().mean().to(self.value)
        if int(self.count) == 0:
            self.value.copy_(mean)
        else:
            self.value.mul_(self.decay).add_((1 - self.decay) * mean)
        self.count.add_(1)
        return self.value.clone()

    def extra_repr(self) -> str:
        return f"decay={self.decay}"


def score_function_surrogate(
    f_values: Tensor,
    log_prob: Tensor,
    baseline: str | RunningMean | None = None,
    *,
    dim: int = 0,
) -> Tensor:
    r"""A surrogate loss whose gradient is the score-function (REINFORCE) estimator.

    .. math::
        \mathcal{S} = \frac1S \sum_{s=1}^S \Big[f_s + \operatorname{stop}(f_s - b_s)
            \big(\log q(D_s) - \operatorname{stop}(\log q(D_s))\big)\Big],

    so :math:`\mathcal{S}` has the value :math:`\frac1S\sum_s f_s` and the gradient
    :math:`\frac1S\sum_s \nabla f_s + (f_s - b_s)\nabla \log q(D_s)` (the first term is the
    gradient of :math:`f` through parameters other than the sample, zero if ``f_values`` carries
    none). Minimize it to minimize :math:`\mathbb{E}[f]`. Baselines:

    - ``None``: :math:`b_s = 0`, plain REINFORCE;
    - ``"rloo"``: :math:`b_s = \frac{1}{S-1}\sum_{j \ne s} f_j`, the leave-one-out mean over the
      sample dimension (needs :math:`S \ge 2`); the estimator equals
      :math:`\frac{1}{S-1}\sum_s (f_s - \bar f)\nabla\log q(D_s)` and stays unbiased;
    - a :class:`RunningMean`: its current average, updated afterwards with this batch's values.

    Args:
        f_values: :math:`f(D_s)`, shape ``(..., S, ...)`` with the samples along ``dim``.
        log_prob: :math:`\log q_\theta(D_s)` of the same shape (the samples themselves drawn without
            gradient, e.g. with ``q.sample()``).
        baseline: ``None``, ``"rloo"`` or a :class:`RunningMean`.
        dim: the sample dimension, averaged over.

    Returns:
        The surrogate, of the shape of ``f_values`` without ``dim``.

    References:
        Williams. Machine Learning, 1992. Kool, van Hoof, Welling. ICLR 2019 workshop.

    Example:
        >>> from torch.distributions import Categorical
        >>> logits = torch.zeros(3, requires_grad=True)
        >>> q = Categorical(logits=logits)
        >>> d = q.sample((8,))
        >>> f = (d == 2).to(torch.float32)  # minimize the probability of category 2
        >>> loss = score_function_surrogate(f, q.log_prob(d), baseline="rloo")
        >>> torch.allclose(loss, f.mean())
        True
        >>> loss.backward()
        >>> logits.grad.shape
        torch.Size([3])
    """
    check_floating("f_values", f_values)
    check_floating("log_prob", log_prob)
    if f_values.shape != log_prob.shape:
        raise ValueError(
            f"f_values and log_prob must have the same shape, got {tuple(f_values.shape)} and "
            f"{tuple(log_prob.shape)}"
        )
    dim = check_dim("dim", dim, f_values.dim())
    if f_values.dim() == 0:
        raise ValueError("f_values must have a sample dimension (shape (S, ...)), got a scalar")
    f = f_values.detach()
    if baseline is None:
        b = torch.zeros_like(f)
    elif isinstance(baseline, str):
        if baseline != "rloo":
            raise ValueError(f"baseline must be None, 'rloo' or a RunningMean, got {baseline!r}")
        num = f.shape[dim]
        if num < 2:
            raise ValueError(
                f"the 'rloo' baseline needs at least 2 samples along dim={dim}, got {num}"
            )
        b = (f.sum(dim, keepdim=True) - f) / (num - 1)
    elif isinstance(baseline, RunningMean):
        b = baseline.value.to(f).expand_as(f).clone()
        baseline.update(f)
    else:
        raise TypeError(
            f"baseline must be None, 'rloo' or a RunningMean, got {type(baseline).__name__}"
        )
    score = log_prob - log_prob.detach()
    return (f_values + (f - b) * score).mean(dim)
