"""Post-hoc evidential sparsification against a brute-force Dempster–Shafer combination."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from simplexity.normalizers import (
    ev_softmax,
    evidence_weights,
    evidential_support,
    posthoc_evidential,
    singleton_log_masses,
)


def dempster_singletons(w: torch.Tensor) -> tuple[list[float], list[float]]:
    """Combine every simple mass function by Dempster's rule over all 2^K subsets (brute force).

    w: (J, K) weights of evidence. Feature j gives {theta_k} the weight w_jk^+ and its complement w_jk^-.
    Returns the normalized singleton masses and the normalized singleton plausibilities.
    """
    num_features, k = w.shape
    full = frozenset(range(k))
    m = {full: 1.0}
    for j, c in itertools.product(range(num_features), range(k)):
        for focal, weight in (
            (frozenset([c]), max(w[j, c], 0.0)),
            (full - {c}, max(-w[j, c], 0.0)),
        ):
            simple = {focal: 1 - math.exp(-weight), full: math.exp(-weight)}
            combined: dict[frozenset, float] = {}
            for (a, ma), (b, mb) in itertools.product(m.items(), simple.items()):
                combined[a & b] = combined.get(a & b, 0.0) + ma * mb
            m = combined
    conflict = m.pop(frozenset(), 0.0)
    m = {a: v / (1 - conflict) for a, v in m.items()}
    singles = [m.get(frozenset([c]), 0.0) for c in range(k)]
    plaus = [sum(v for a, v in m.items() if c in a) for c in range(k)]
    total = sum(singles)
    return [s / total for s in singles], [p / sum(plaus) for p in plaus]


@pytest.mark.parametrize("seed", range(4))
def test_singleton_masses_and_plausibilities_match_dempster(seed):
    g = torch.Generator().manual_seed(seed)
    num_features, k = 2, 3
    weight = torch.randn(k, num_features, generator=g, dtype=torch.float64)
    bias = torch.randn(k, generator=g, dtype=torch.float64)
    phi = torch.randn(num_features, generator=g, dtype=torch.float64)
    mu = torch.randn(num_features, generator=g, dtype=torch.float64) * 0.3
    w = evidence_weights(phi, weight, bias, mu)
    singles, plaus = dempster_singletons(w)
    torch.testing.assert_close(
        singleton_log_masses(phi, weight, bias, mu).exp(),
        torch.tensor(singles, dtype=torch.float64),
    )
    # Denoeux: the normalized plausibilities of the singletons are the softmax of the logits
    logits = weight @ phi + bias
    torch.testing.assert_close(torch.tensor(plaus, dtype=torch.float64), torch.softmax(logits, -1))
    # the support is exactly where the singleton mass is nonzero
    assert (evidential_support(phi, weight, bias, mu) == (torch.tensor(singles) > 0)).all()


def test_evidence_sums_to_the_centred_logits():
    g = torch.Generator().manual_seed(5)
    weight, bias = torch.randn(6, 4, generator=g), torch.randn(6, generator=g)
    phi = torch.randn(10, 4, generator=g)
    logits = phi @ weight.T + bias
    torch.testing.assert_close(
        evidence_weights(phi, weight, bias).sum(-2), logits - logits.mean(-1, keepdim=True)
    )


def test_single_feature_agrees_with_ev_softmax():
    """Theorem 3.1 of the ev-softmax paper: with a linear last layer of one feature they coincide."""
    g = torch.Generator().manual_seed(6)
    weight, bias = torch.randn(10, 1, generator=g), torch.randn(10, generator=g)
    phi = torch.randn(500, 1, generator=g)
    logits = phi @ weight.T + bias
    torch.testing.assert_close(posthoc_evidential(phi, weight, bias), ev_softmax(logits))


def test_many_features_keep_a_superset_of_ev_softmax():
    g = torch.Generator().manual_seed(7)
    weight, bias = torch.randn(10, 16, generator=g), torch.randn(10, generator=g)
    phi = torch.relu(torch.randn(500, 16, generator=g))
    logits = phi @ weight.T + bias
    keep = evidential_support(phi, weight, bias, phi.mean(0))
    ev = ev_softmax(logits) > 0
    assert (keep | ~ev).all()  # every ev-softmax class is kept
    assert (keep & ~ev).any()  # and with J > 1 the filter keeps some classes below the mean
    p = posthoc_evidential(phi, weight, bias, phi.mean(0))
    torch.testing.assert_close(p.sum(-1), torch.ones(500))
    assert ((p > 0) == keep).all()


def test_vacuous_evidence_keeps_everything_and_bad_shapes_raise():
    weight = torch.zeros(4, 2)
    p = posthoc_evidential(torch.zeros(1, 2), weight, torch.zeros(4))
    torch.testing.assert_close(p, torch.full((1, 4), 0.25))
    with pytest.raises(ValueError, match=r"^features"):
        posthoc_evidential(torch.zeros(1, 3), weight)
    with pytest.raises(ValueError, match=r"^bias"):
        posthoc_evidential(torch.zeros(1, 2), weight, torch.zeros(3))
    with pytest.raises(ValueError, match=r"^weight"):
        posthoc_evidential(torch.zeros(1, 2), torch.zeros(2))
