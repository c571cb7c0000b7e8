"""The baselines, the registry and the evidential filter: exact values on batches and every argument path.

Batches have more than one row and a row count different from the number of classes, so that a
reduction over the wrong dimension or a dropped ``keepdim`` changes the result instead of broadcasting
into the same one; the reference values come from the definitions (a sorting sparsemax, the
Fenchel–Young loss formula, Dempster's rule by enumeration).

References:
    Martins & Astudillo. "From Softmax to Sparsemax", ICML 2016.
    Blondel, Martins, Niculae. "Learning with Fenchel-Young Losses", JMLR 2020.
    Itkina, Ivanovic, Senanayake, Kochenderfer, Pavone. "Evidential Sparsification of Multimodal Latent
    Spaces in Conditional Variational Autoencoders", NeurIPS 2020.
"""

from __future__ import annotations

import math

import entmax
import pytest
import torch

from simplexity.normalizers import (
    baselines,
    evidence_weights,
    evidential_support,
    get,
    names,
    posthoc_evidential,
    singleton_log_masses,
)
from test_evidential import dempster_singletons

X = torch.tensor(
    [[2.0, -0.5, 1.25, -3.0], [1.5, 0.25, -1.0, 0.75], [0.75, -2.5, -1.75, 3.5]],
    dtype=torch.float64,
)
Y = torch.tensor([2, 3, 0])


def sparsemax_by_sorting(v: list[float]) -> list[float]:
    """Martins & Astudillo (2016), Algorithm 1."""
    z = sorted(v, reverse=True)
    k = max(k for k in range(1, len(z) + 1) if 1 + k * z[k - 1] > sum(z[:k]))
    tau = (sum(z[:k]) - 1) / k
    return [max(x - tau, 0.0) for x in v]


def sparsemax_loss_definition(v: list[float], y: int) -> float:
    """Fenchel–Young loss of Omega(p) = (|p|^2 - 1) / 2: <p, v> - Omega(p) - v_y, p = sparsemax(v)."""
    p = sparsemax_by_sorting(v)
    return sum(a * b for a, b in zip(p, v)) - (sum(a * a for a in p) - 1) / 2 - v[y]


def entmax15_loss_definition(v: torch.Tensor, y: int) -> torch.Tensor:
    """<p, v> - Omega(p) - v_y with the Tsallis 1.5 entropy Omega(p) = 4/3 sum(p^1.5 - p)."""
    p = baselines.entmax15(v[None])[0]
    return (p * v).sum() - 4 / 3 * (p**1.5 - p).sum() - v[y]


def test_sparsemax_matches_the_sorting_algorithm_along_any_dim():
    want = torch.tensor([sparsemax_by_sorting(r) for r in X.tolist()], dtype=torch.float64)
    torch.testing.assert_close(baselines.sparsemax(X), want)
    torch.testing.assert_close(baselines.sparsemax(X.T, 0), want.T)
    torch.testing.assert_close(get("sparsemax").module(0)(X.T), want.T)


@pytest.mark.parametrize("name", ["sparsemax", "entmax15", "entmax_bisect"])
def test_fenchel_young_losses_default_to_the_mean_without_smoothing(name):
    if name == "sparsemax":
        each = torch.tensor([sparsemax_loss_definition(r, y) for r, y in zip(X.tolist(), Y)])
        each = each.double()
    else:
        each = torch.stack([entmax15_loss_definition(r, int(y)) for r, y in zip(X, Y)])
    loss = getattr(baselines, f"{name}_loss")
    atol = 1e-5 if name == "entmax_bisect" else 1e-7
    torch.testing.assert_close(loss(X, Y), each.mean(), atol=atol, rtol=0)
    torch.testing.assert_close(get(name).loss(X, Y), each.mean(), atol=atol, rtol=0)
    torch.testing.assert_close(loss(X, Y, reduction="sum"), each.sum(), atol=atol, rtol=0)
    torch.testing.assert_close(loss(X, Y, reduction="none"), each, atol=atol, rtol=0)
    # ignored positions contribute 0 and leave the mean
    ignored = torch.tensor([2, -1, 0])
    torch.testing.assert_close(
        loss(X, ignored, ignore_index=-1), each[[0, 2]].mean(), atol=atol, rtol=0
    )
    # smoothing adds lambda (v_y - mean v)
    lam = 0.4
    gap = X.gather(1, Y[:, None]).squeeze(1) - X.mean(1)
    torch.testing.assert_close(
        loss(X, Y, label_smoothing=lam), (each + lam * gap).mean(), atol=atol, rtol=0
    )


def test_softmax_loss_defaults_and_ignore_index():
    logp = torch.log_softmax(X, 1)
    each = -logp.gather(1, Y[:, None]).squeeze(1)
    torch.testing.assert_close(baselines.softmax_loss(X, Y), each.mean())
    torch.testing.assert_close(get("softmax").loss(X, Y), each.mean())
    ignored = torch.tensor([2, -1, 0])
    torch.testing.assert_close(
        baselines.softmax_loss(X, ignored, ignore_index=-1), each[[0, 2]].mean()
    )
    with pytest.raises(ValueError, match=r"^label_smoothing must be a number in \[0, 1\], got 2"):
        baselines.softmax_loss(X, Y, label_smoothing=2)


def test_entmax_bisect_alpha_and_its_checks():
    # alpha = 2 is sparsemax
    want = torch.tensor([sparsemax_by_sorting(r) for r in X.tolist()], dtype=torch.float64)
    torch.testing.assert_close(baselines.entmax_bisect(X, alpha=2.0), want, atol=1e-6, rtol=0)
    torch.testing.assert_close(get("entmax_bisect", alpha=2.0)(X), want, atol=1e-6, rtol=0)
    for bad in (1.0, 0.5):
        with pytest.raises(ValueError, match=f"alpha must be > 1 for entmax_bisect, got {bad}"):
            baselines.entmax_bisect(X, alpha=bad)
        with pytest.raises(ValueError, match=f"alpha must be > 1 for entmax_bisect, got {bad}"):
            baselines.entmax_bisect_loss(X, Y, alpha=bad)
        with pytest.raises(ValueError, match=f"alpha must be > 1 for entmax_bisect, got {bad}"):
            get("entmax_bisect", alpha=bad)


@pytest.mark.parametrize("name", names())
def test_every_normalizer_honours_dim_mask_and_log(name):
    norm = get(name)
    mask = torch.tensor([[True, True, False, True], [False, True, True, True], [True] * 4])
    p = norm(X, mask=mask)
    assert (p[~mask] == 0).all()
    torch.testing.assert_close(p.sum(-1), torch.ones(3, dtype=torch.float64))
    # the same along dim 0, and through the module (in both modes) and the log
    torch.testing.assert_close(norm(X.T, 0, mask=mask.T), p.T)
    module = norm.module(dim=0)
    torch.testing.assert_close(module.eval()(X.T, mask.T), p.T)
    torch.testing.assert_close(module.train()(X.T, mask.T), norm(X, mask=mask, training=True).T)
    logp = norm.log(X.T, 0, mask=mask.T)
    torch.testing.assert_close(logp.exp(), p.T)
    assert (logp[~mask.T] == -math.inf).all()
    assert repr(module) == f"NormalizerModule({name}, dim=0)"


def test_the_log_of_a_sparse_map_is_minus_infinity_off_its_support():
    logp = get("sparsemax").log(X.T, 0)
    want = torch.tensor([sparsemax_by_sorting(r) for r in X.tolist()], dtype=torch.float64).T
    torch.testing.assert_close(logp.exp(), want)
    assert ((logp == -math.inf) == (want == 0)).all()


# --- the post-hoc evidential filter --------------------------------------------------------------


def evidential_fixture():
    g = torch.Generator().manual_seed(11)
    num_classes, num_features = 3, 2
    weight = torch.randn(num_classes, num_features, generator=g, dtype=torch.float64)
    bias = torch.randn(num_classes, generator=g, dtype=torch.float64)
    mu = torch.tensor([0.3, -0.2], dtype=torch.float64)
    phi = torch.randn(5, num_features, generator=g, dtype=torch.float64) * 2
    return phi, weight, bias, mu


def test_singleton_masses_of_a_batch_match_dempster_row_by_row():
    phi, weight, bias, mu = evidential_fixture()
    w = evidence_weights(phi, weight, bias, mu)  # (5, J, K)
    no_negative = ((-w).clamp_min(0).sum(-2) == 0).any(-1)
    assert no_negative.any() and not no_negative.all()  # both cases of the product term occur
    want = torch.tensor([dempster_singletons(w_row)[0] for w_row in w], dtype=torch.float64)
    got = singleton_log_masses(phi, weight, bias, mu)
    assert got.shape == (5, 3)
    torch.testing.assert_close(got.exp(), want)
    assert ((got == -math.inf) == (want == 0)).all()
    assert (evidential_support(phi, weight, bias, mu) == (want > 0)).all()
    # one row at a time gives the same rows
    for i in range(5):
        torch.testing.assert_close(singleton_log_masses(phi[i], weight, bias, mu), got[i])


def test_posthoc_filter_on_a_batch_of_sequences():
    phi, weight, bias, mu = evidential_fixture()
    seq = torch.stack([phi, phi.flip(0)])  # (2, 5, J): the filter acts on the last dim only
    p = posthoc_evidential(seq, weight, bias, mu)
    assert p.shape == (2, 5, 3)
    for b in range(2):
        for t in range(5):
            row = seq[b, t]
            keep = evidential_support(row, weight, bias, mu)
            logits = weight @ row + bias
            want = torch.softmax(logits.masked_fill(~keep, -math.inf), -1)
            torch.testing.assert_close(p[b, t], want)


def test_evidential_argument_checks():
    phi, weight, bias, _ = evidential_fixture()
    with pytest.raises(ValueError, match=r"^feature_mean must have shape \(2,\), got \(3,\)"):
        posthoc_evidential(phi, weight, bias, torch.zeros(3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"^bias must have shape \(3,\), got \(2,\)"):
        evidence_weights(phi, weight, bias[:2])
    with pytest.raises(ValueError, match=r"^features must have shape \(\.\.\., J\) with J = 2"):
        evidence_weights(torch.tensor(1.0, dtype=torch.float64), weight)
    with pytest.raises(ValueError, match=r"^weight must have shape \(K, J\) like nn.Linear.weight"):
        evidence_weights(phi, weight[None])
    with pytest.raises(TypeError, match=r"^feature_mean must be a floating-point tensor"):
        evidence_weights(phi, weight, bias, torch.zeros(2, dtype=torch.long))


def test_support_with_zero_evidence_matches_dempster():
    # w_1 = [0, 2, -1, -1], w_2 = [0, -1, 2, -1] (weight rows centred, features 1): class 0 gets no
    # evidence and is the only class without negative evidence; class 3 has no positive evidence
    four = torch.tensor([[0.0, 0.0], [2.0, -1.0], [-1.0, 2.0], [-1.0, -1.0]], dtype=torch.float64)
    # and a single feature with a logit exactly at the mean: w = [1, 0, -1]
    single = torch.tensor([[1.0], [0.0], [-1.0]], dtype=torch.float64)
    for weight, phi in ((four, torch.ones(1, 2)), (single, torch.ones(1, 1))):
        phi = phi.double()
        w = evidence_weights(phi, weight)[0]
        singles = torch.tensor(dempster_singletons(w)[0], dtype=torch.float64)
        keep = evidential_support(phi, weight)[0]
        assert (keep == (singles > 0)).all()
        torch.testing.assert_close(singleton_log_masses(phi, weight)[0].exp(), singles)
        logits = (phi @ weight.T)[0]
        want = torch.softmax(logits.masked_fill(~keep, -math.inf), -1)
        torch.testing.assert_close(posthoc_evidential(phi, weight)[0], want)
    assert evidential_support(torch.ones(1, 2).double(), four).tolist() == [
        [True, True, True, False]
    ]
    assert evidential_support(torch.ones(1, 1).double(), single).tolist() == [[True, False, False]]


def test_a_vacuous_row_keeps_every_class_beside_informative_rows():
    weight = torch.tensor([[1.0, -0.5], [0.0, 0.5], [-1.0, 0.0]], dtype=torch.float64)
    phi = torch.tensor([[0.0, 0.0], [1.0, 2.0], [-2.0, 0.5]], dtype=torch.float64)
    keep = evidential_support(phi, weight)
    assert keep[0].all()  # no evidence at all: every class
    for i in (1, 2):
        w = evidence_weights(phi[i], weight)
        assert (keep[i] == (torch.tensor(dempster_singletons(w)[0]) > 0)).all()
    assert not keep[1:].all()
    p = posthoc_evidential(phi, weight)
    torch.testing.assert_close(p[0], torch.full((3,), 1 / 3, dtype=torch.float64))


def test_evidential_names_the_bad_argument():
    phi, weight, bias, _ = evidential_fixture()
    for name, args in (
        ("features", (phi.long(), weight)),
        ("weight", (phi, weight.long())),
        ("bias", (phi, weight, bias.long())),
        ("feature_mean", (phi, weight, bias, torch.zeros(2, dtype=torch.long))),
    ):
        message = f"{name} must be a floating-point tensor"
        for fn in (evidence_weights, evidential_support, singleton_log_masses, posthoc_evidential):
            with pytest.raises(TypeError, match=message):
                fn(*args)
    with pytest.raises(ValueError, match=r"^feature_mean must have shape \(2,\), got \(3,\)"):
        evidence_weights(phi, weight, bias, torch.zeros(3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"^bias must have shape \(3,\), got \(2,\)"):
        posthoc_evidential(phi, weight, bias[:2])


def test_entmax_bisect_loss_passes_alpha_and_n_iter():
    each = torch.tensor([sparsemax_loss_definition(r, y) for r, y in zip(X.tolist(), Y)])
    torch.testing.assert_close(
        baselines.entmax_bisect_loss(X, Y, alpha=2.0), each.double().mean(), atol=1e-6, rtol=0
    )
    torch.testing.assert_close(
        get("entmax_bisect", alpha=2.0).loss(X, Y), each.double().mean(), atol=1e-6, rtol=0
    )
    # a few bisection steps leave a visible error: the count is the caller's
    few = baselines.entmax_bisect_loss(X, Y, n_iter=3, reduction="none")
    torch.testing.assert_close(few, entmax.entmax_bisect_loss(X, Y, alpha=1.5, n_iter=3))
    assert not torch.allclose(few, baselines.entmax_bisect_loss(X, Y, reduction="none"))
    torch.testing.assert_close(get("entmax_bisect", n_iter=3).loss(X, Y, reduction="none"), few)
    p = baselines.entmax_bisect(X, n_iter=3)
    torch.testing.assert_close(p, entmax.entmax_bisect(X, alpha=1.5, n_iter=3))


def test_one_class_layer():
    weight = torch.tensor([[0.7, -1.2]], dtype=torch.float64)
    phi = torch.tensor([[1.0, 2.0], [-0.5, 0.25]], dtype=torch.float64)
    torch.testing.assert_close(posthoc_evidential(phi, weight), torch.ones(2, 1).double())
    torch.testing.assert_close(singleton_log_masses(phi, weight), torch.zeros(2, 1).double())


def test_fenchel_young_template_defaults():
    def per_row(rows, labels):
        return torch.tensor(
            [sparsemax_loss_definition(r, int(y)) for r, y in zip(rows.tolist(), labels)],
            dtype=rows.dtype,
        )

    each = per_row(X, Y)
    torch.testing.assert_close(baselines.fenchel_young_loss(per_row, X, Y), each.mean())
    # the mean over the one kept position is that position's loss
    one = torch.tensor([-100, 3, -100])
    torch.testing.assert_close(baselines.fenchel_young_loss(per_row, X, one), each[1])
    torch.testing.assert_close(baselines.sparsemax_loss(X, one), each[1])


def test_resolve_names_what_it_expected():
    from simplexity.normalizers import resolve

    with pytest.raises(TypeError, match=r"^normalizer_options must be a dict or None, got list$"):
        resolve("sparsemax", [1])  # type: ignore[arg-type]
    with pytest.raises(
        ValueError,
        match=r"^normalizer_options can only be given with a normalizer name, not a Normalizer$",
    ):
        resolve(get("sparsemax"), {"alpha": 2})
    with pytest.raises(
        TypeError,
        match=r"^normalizer must be a registry name \(str\) or a simplexity\.normalizers\.Normalizer, got int$",
    ):
        resolve(3)  # type: ignore[arg-type]


def test_fenchel_young_losses_take_index_targets_only():
    probs = torch.full((3, 4), 0.25, dtype=torch.float64)
    message = (
        r"^target must hold integer class indices of shape \(3,\), got \(3, 4\) torch\.float64$"
    )
    for loss in (baselines.sparsemax_loss, baselines.entmax15_loss, baselines.softmax_loss):
        with pytest.raises(ValueError, match=message):
            loss(X, probs)
    for bad in (torch.zeros(3, dtype=torch.float64), torch.zeros(3, dtype=torch.complex64)):
        with pytest.raises(ValueError, match=r"^target must hold integer class indices of shape"):
            baselines.sparsemax_loss(X, bad)


def test_support_when_every_class_has_negative_evidence_beside_a_row_where_one_has_none():
    # phi = (1, 1): w_1 = (2, -1, -1), w_2 = (-1, -1, 2): every class has negative evidence, class 1
    # no positive one, and keeps a mass; phi = (1, 0): class 0 has no negative evidence
    weight = torch.tensor([[2.0, -1.0], [-1.0, -1.0], [-1.0, 2.0]], dtype=torch.float64)
    phi = torch.tensor([[1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    keep = evidential_support(phi, weight)
    for i in range(2):
        singles = torch.tensor(dempster_singletons(evidence_weights(phi[i], weight))[0])
        assert (keep[i] == (singles > 0)).all()
        torch.testing.assert_close(singleton_log_masses(phi, weight)[i].exp(), singles.double())
    assert keep.tolist() == [[True, False, False], [True, True, True]]


def test_softmax_kernel_writes_into_its_buffer_by_default():
    from simplexity.normalizers._softmax_kernels import softmax_kernel

    z = X.clone()
    want = torch.softmax(X, -1)
    p = softmax_kernel("softmax_", z, -1)
    assert p.data_ptr() == z.data_ptr()
    torch.testing.assert_close(p, want)
    public = softmax_kernel("softmax_", X.clone(), -1, private=False)
    torch.testing.assert_close(public, want)


@pytest.mark.parametrize("name", ["softmax", "sparsemax", "entmax15", "entmax_bisect"])
def test_baseline_maps_name_the_bad_argument(name):
    fn = getattr(baselines, name)
    with pytest.raises(TypeError, match=r"^x must be a floating-point tensor"):
        fn(X.long())
    with pytest.raises(IndexError, match=r"^dim=2 is out of range for a tensor with 2 dimension"):
        fn(X, 2)
    with pytest.raises(ValueError, match=r"^mask of shape \(3, 5\) does not broadcast"):
        fn(X, mask=torch.ones(3, 5, dtype=torch.bool))
    with pytest.raises(TypeError, match=r"^mask must be a boolean tensor"):
        fn(X, mask=torch.ones(3, 4))


def test_baseline_maps_reject_a_scalar():
    with pytest.raises(
        ValueError, match=r"^x must have at least one dimension \(the one normalized\)"
    ):
        baselines.sparsemax(torch.tensor(1.0))
