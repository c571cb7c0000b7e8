r"""Planar flows (Rezende & Mohamed 2015) as a flow layer: one trainable layer per module.

:class:`Planar` is the library's one trainable planar flow,
:class:`~simplexity.distributions.planar.PlanarFlows`, holding a single layer: ``Planar(D)()`` returns a
:class:`PlanarTransform` (invertibility constraint on :math:`u`, closed-form log-determinant,
safeguarded-Newton inverse with implicit-function gradients), the transform shared with IGR-Planar and
re-exported here.

References:
    Rezende, Mohamed. "Variational Inference with Normalizing Flows", ICML 2015.
"""

from __future__ import annotations

from simplexity._checks import check_int
from simplexity.distributions.planar import PlanarFlows
from simplexity.distributions.transforms import PlanarTransform

__all__ = ["Planar", "PlanarTransform"]


class Planar(PlanarFlows):
    r"""Trainable planar layer: ``Planar(D)()`` returns a :class:`PlanarTransform` (without a cache).

    Args:
        features: the dimension D.
        init_scale: standard deviation of the random initialization of :math:`u` and :math:`w`.

    Example:
        >>> layer = Planar(3)
        >>> t = layer()
        >>> t(torch.randn(5, 3)).shape
        torch.Size([5, 3])
        >>> x = torch.randn(4, 3)
        >>> torch.allclose(t.inv(t(x)), x, atol=1e-5)  # no cache: the numerical inverse
        True
    """

    def __init__(self, features: int, init_scale: float = 0.1) -> None:
        super().__init__(check_int("features", features, min=1), None, init_scale, cache_size=0)
