"""Models built from the library's distributions and normalizers.

- :class:`DiscreteVAE`: N categorical latents × K categories, relaxation by registry name,
  evaluated with the importance-weighted bound on the discrete model (IGR paper).
- :class:`ConditionalVAE`: the ev-softmax paper's CVAE, prior normalizer by registry name.
"""

from __future__ import annotations

from simplexity_lab.models.cvae import ConditionalVAE, digit_prior_distances
from simplexity_lab.models.discrete_vae import DiscreteVAE
from simplexity_lab.models.networks import NETS

__all__ = ["NETS", "ConditionalVAE", "DiscreteVAE", "digit_prior_distances"]
