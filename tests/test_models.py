"""The discrete VAE and the CVAE: losses, closed-form KL where it holds, a valid bound."""

from __future__ import annotations

import itertools

import pytest
import torch

from simplexity.distributions import relaxations
from simplexity_lab.models import ConditionalVAE, DiscreteVAE, digit_prior_distances


@pytest.mark.parametrize("relaxation", relaxations.names())
@pytest.mark.parametrize("net", ["linear", "nonlinear"])
def test_discrete_vae_trains_with_every_relaxation(relaxation, net):
    torch.manual_seed(0)
    vae = DiscreteVAE(12, num_variables=3, num_categories=4, relaxation=relaxation, net=net)
    x = torch.rand(6, 12).round()
    loss, logs = vae.loss(x, temperature=0.5, beta=0.5)
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in vae.encoder.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert logs["loss"] == pytest.approx(float(logs["rec"] + 0.5 * logs["kl"]), rel=1e-5)
    # the closed form holds for the IGR family (same map in q and p) and for the straight-through
    # estimators (one-hot samples: the KL of the categoricals), not for the Gumbel-softmax
    assert vae.analytic_kl is (not relaxation.startswith("gumbel_softmax"))


def test_gaussian_likelihood_and_bad_arguments():
    vae = DiscreteVAE(5, num_variables=2, num_categories=3, likelihood="gaussian", net="linear")
    loss, _ = vae.loss(torch.randn(4, 5), 0.5)
    assert torch.isfinite(loss)
    with pytest.raises(ValueError, match="relaxation"):
        DiscreteVAE(5, relaxation="nope")
    with pytest.raises(ValueError, match="net must be"):
        DiscreteVAE(5, net="deep")
    with pytest.raises(ValueError, match="num_categories"):
        DiscreteVAE(5, num_categories=1)


@pytest.mark.parametrize("relaxation", ["gumbel_softmax", "igr_i", "igr_sb"])
def test_iw_bound_is_a_bound_on_the_exact_discrete_log_likelihood(relaxation):
    torch.manual_seed(1)
    n, k = 2, 3
    vae = DiscreteVAE(6, num_variables=n, num_categories=k, relaxation=relaxation, net="linear")
    x = torch.rand(4, 6).round()
    prior = vae.discrete_prior(x, num_samples=20000)
    # exact log p(x) of the discrete model: sum over all k**n latent configurations
    configs = torch.tensor(list(itertools.product(range(k), repeat=n)))
    one_hot = torch.nn.functional.one_hot(configs, k).float()  # (9, n, k)
    with torch.no_grad():
        log_px_h = vae.likelihood(one_hot.unsqueeze(1)).log_prob(x)  # (9, B)
    log_ph = prior.log()[configs].sum(-1)
    exact = torch.logsumexp(log_px_h + log_ph.unsqueeze(-1), 0)
    repeats = 400
    one = vae.iw_bound(x.repeat(repeats, 1), 1, prior_probs=prior).view(repeats, -1).mean(0)
    many = vae.iw_bound(x, 3000, prior_probs=prior)
    assert (one <= exact + 0.05).all()  # E[bound] <= log p(x)
    assert many == pytest.approx(exact, abs=0.05)  # and it tightens with S
    assert (one <= many + 0.05).all()


def test_cvae_losses_and_sparse_priors():
    torch.manual_seed(0)
    x, y = torch.rand(8, 16), torch.tensor([0, 1] * 4)
    for name in ("softmax", "sparsemax", "entmax15", "ev_softmax"):
        model = ConditionalVAE(16, normalizer=name)
        loss, logs = model.loss(x, y, temperature=0.67, beta=2.0)
        loss.backward()
        assert torch.isfinite(loss) and logs["kl"] >= -1e-6
    model = ConditionalVAE(16, normalizer="ev_softmax").eval()
    with torch.no_grad():
        model.prior_net[-1].bias.copy_(torch.linspace(-3, 3, 10))
        model.prior_net[-1].weight.zero_()
    prior = model.prior_probs(torch.tensor([0, 1]))
    assert (prior == 0).sum() > 0 and torch.allclose(prior.sum(-1), torch.ones(2))
    with pytest.raises(ValueError, match="unknown normalizer"):
        ConditionalVAE(16, normalizer="nope")


def test_digit_prior_distances_fix_the_reference_metric():
    target = torch.tensor([[0.2, 0, 0.2, 0, 0.2, 0, 0.2, 0, 0.2, 0]])
    collapse = torch.zeros(1, 10)
    collapse[0, 0] = 1.0
    d = digit_prior_distances(collapse, target)
    assert float(d["tv"]) == pytest.approx(0.8)
    # a one-hot collapse scores 0.16, as sparsemax and entmax do in the CVAE plot of Chen et al. 2021
    assert float(d["paper_w1"]) == pytest.approx(0.16)
    right = digit_prior_distances(target, target)
    assert all(float(v) == pytest.approx(0.0) for v in right.values())
    assert float(digit_prior_distances(target.roll(1, -1), target)["w1"]) == pytest.approx(1.0)


@pytest.mark.parametrize("estimator", ["rloo", "reinforce"])
def test_score_function_vae_gradient_is_the_exact_gradient_by_enumeration(estimator):
    """The encoder's and the decoder's gradients of the score-function loss are unbiased: their mean
    over many draws equals the gradient of the exact expected loss, summed over all K^N latents."""
    torch.manual_seed(3)
    n, k = 2, 3
    vae = DiscreteVAE(5, num_variables=n, num_categories=k, relaxation="straight_through",
                      net="linear", estimator=estimator, score_samples=3).double()  # fmt: skip
    with torch.no_grad():  # unequal logits: no symmetry to hide an error
        for p in vae.parameters():
            p.add_(0.5 * torch.randn_like(p))
    x = torch.tensor([[1.0, 0.0, 1.0, 1.0, 0.0], [0.0, 0.0, 1.0, 0.0, 1.0]], dtype=torch.float64)
    params = list(vae.parameters())
    # exact: E_q[-log p(x|h)] + KL(q || uniform), by enumeration
    configs = torch.tensor(list(itertools.product(range(k), repeat=n)))
    one_hot = torch.nn.functional.one_hot(configs, k).double()  # (9, n, k)
    q = vae.posterior(x, 1.0)
    log_q = q.log_prob(one_hot.unsqueeze(1)).sum(-1)  # (9, B)
    rec = -vae.likelihood(one_hot.unsqueeze(1)).log_prob(x)  # (9, B)
    kl = vae.kl(q, vae.prior(1.0, x)).sum(-1)
    exact_loss = ((log_q.exp() * rec).sum(0) + kl).mean()
    exact = torch.cat([g.flatten() for g in torch.autograd.grad(exact_loss, params)])
    draws = []
    for _ in range(3000):
        loss, _ = vae.loss(x, 1.0)
        draws.append(torch.cat([g.flatten() for g in torch.autograd.grad(loss, params)]))
    draws = torch.stack(draws)
    mean, se = draws.mean(0), draws.std(0) / len(draws) ** 0.5
    assert ((mean - exact).abs() <= 4.5 * se + 1e-9).all()
    assert float(torch.nn.functional.cosine_similarity(mean, exact, 0)) > 0.99
    if estimator == "reinforce":  # the running mean is part of the model's state
        assert int(vae.baseline.count) == 3000 and "baseline.value" in vae.state_dict()


def test_score_function_vae_needs_categorical_samples():
    with pytest.raises(ValueError, match="relaxation must be one of straight_through"):
        DiscreteVAE(5, relaxation="igr_i", estimator="rloo")
    with pytest.raises(ValueError, match=r"^score_samples must be"):
        DiscreteVAE(5, relaxation="reinmax", estimator="rloo", score_samples=1)
    with pytest.raises(ValueError, match=r"^estimator must be one of pathwise, rloo, reinforce"):
        DiscreteVAE(5, relaxation="reinmax", estimator="vimco")
    # evaluation (no gradient) leaves the running mean alone
    vae = DiscreteVAE(5, num_variables=2, num_categories=3, relaxation="straight_through",
                      net="linear", estimator="reinforce")  # fmt: skip
    with torch.no_grad():
        vae.loss(torch.ones(2, 5), 1.0)
    assert int(vae.baseline.count) == 0
