"""One conformance suite over every Distribution that simplexity exports: torch's contract, checked.

Each distribution is one :class:`Case` in :data:`CASES` (a class, a factory of its constructor's
arguments for a batch shape, and the reference measure of its density); every generic check below
runs on every case:

- batch and event shapes of ``sample``, ``rsample`` and ``log_prob``;
- ``sample`` and ``rsample`` draw from the same law (two-sample Kolmogorov-Smirnov per coordinate);
- ``expand``, also on a subclass that does not define its own, and on one with its own
  ``__init__`` and ``expand`` (torch's ``_instance`` protocol);
- ``support`` holds the samples and ``arg_constraints`` the parameters;
- ``validate_args=True`` rejects bad parameters and out-of-support values with a ``ValueError``
  that names the argument;
- ``log_prob`` against the law of ``sample`` by a goodness-of-fit test (the nearest-neighbour
  density test of the ``goftests`` package that ``pyro.distributions.testing.gof`` uses, written
  here; a chi-square test for discrete laws);
- normalization by quadrature over the density's own reference measure (event size K <= 3);
- pickling;
- ``torch.compile(fullgraph=True)`` of ``rsample`` + ``log_prob`` (the eager backend, which finds
  graph breaks without code generation; one test compiles with inductor).

A case that cannot pass a check by its nature says why in the field for that check; a new
distribution joins the suite by being added to :data:`CASES`.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
from scipy import stats
from torch.distributions import Distribution, Independent, Normal, constraints

from simplexity.distributions import (
    IGR,
    DecoupledStraightThrough,
    ExpGumbelSoftmax,
    GumbelRao,
    GumbelSoftmax,
    GumbelStraightThrough,
    IGRPlanar,
    IGRStickBreaking,
    MixtureOfGaussians,
    PlanarTransform,
    ReinMax,
    StraightThrough,
)
from simplexity.flows import (
    AffineCoupling,
    Flow,
    Planar,
    RADDistribution,
    Radial,
    RADLayer,
    SimplexTransform,
)

D64 = torch.float64
Params = Callable[[tuple[int, ...]], dict[str, Any]]


@dataclass(frozen=True)
class Case:
    """One distribution under test.

    Attributes:
        name: test id.
        cls: the Distribution class, built as ``cls(**params(batch_shape))``.
        params: constructor arguments (float64) for a batch shape.
        measure: reference measure of ``log_prob``: ``"simplex"`` (Lebesgue on the first K-1
            coordinates of a point of the simplex), ``"log_ratio"`` (Lebesgue on
            ``x[:-1] - x[-1]`` of a log-simplex point), ``"lebesgue"`` (on R^D) or ``"one_hot"``
            (counting measure on the vertices).
        bad_params: extra ``(argument, bad value)`` pairs, beyond those derived from
            ``arg_constraints``, that ``validate_args=True`` must reject.
        no_gof: why ``log_prob`` is not the density of ``sample`` (skips the goodness of fit).
        no_compile: why ``rsample``/``sample`` + ``log_prob`` cannot compile without graph breaks.
        quadrature_atol: tolerance of the normalization by quadrature (the trapezoid rule's error
            is O(h) where the density jumps, as RAD's does at its folds).
    """

    name: str
    cls: type[Distribution]
    params: Params
    measure: str
    bad_params: tuple[tuple[str, Any], ...] = ()
    no_gof: str | None = None
    no_compile: str | None = None
    quadrature_atol: float = 2e-3

    def build(self, batch_shape: tuple[int, ...] = (), **kwargs: Any) -> Distribution:
        return self.cls(**self.params(batch_shape), **kwargs)


def _randn(*shape: int, seed: int, scale: float = 1.0, shift: float = 0.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return shift + scale * torch.randn(shape, generator=g, dtype=D64)


def _tau(batch: tuple[int, ...], value: float) -> torch.Tensor:
    return torch.full(batch, value, dtype=D64)


# ---------------------------------------------------------------- the cases' fixed parts
_PLANAR_2 = [
    PlanarTransform(
        torch.tensor([1.0, -2.0], dtype=D64),
        torch.tensor([0.6, 0.3], dtype=D64),
        torch.tensor(0.3, dtype=D64),
    )
]


def _randomized(module: torch.nn.Module, seed: int, scale: float = 0.4) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module.requires_grad_(False)


with torch.random.fork_rng(), torch.no_grad():  # fixed layers, the global RNG left alone
    torch.manual_seed(0)
    _FLOW_TRANSFORMS = [
        _randomized(Radial(2).double(), 1)(),
        _randomized(AffineCoupling(2, parity=1, hidden=(8,)).double(), 2)(),
    ]
    _SIMPLEX_FLOW_TRANSFORMS = [_randomized(Planar(2).double(), 3, 0.8)(), SimplexTransform()]
    _RAD_LAYERS = [
        _randomized(RADLayer(2, 3, dim=0, hidden=(8,), gate_hidden=(8,)).double(), 4, 0.2),
        _randomized(RADLayer(2, 3, dim=1, hidden=(8,), gate_hidden=(8,)).double(), 5, 0.2),
    ]


def _gumbel(straight_through: bool = False) -> Params:
    def params(b: tuple[int, ...]) -> dict[str, Any]:
        out = {"temperature": _tau(b, 0.8), "logits": _randn(*b, 3, seed=0)}
        return out | ({"straight_through": True} if straight_through else {})

    return params


def _igr(**extra: Any) -> Params:
    def params(b: tuple[int, ...]) -> dict[str, Any]:
        return {
            "loc": _randn(*b, 2, seed=1, scale=0.5),
            "scale": _randn(*b, 2, seed=2, scale=0.2).abs() + 0.6,
            "temperature": _tau(b, 0.7),
            "delta": _tau(b, 1.3),
            **extra,
        }

    return params


def _mixture(reparam: str) -> Params:
    def params(b: tuple[int, ...]) -> dict[str, Any]:
        return {
            "logits": _randn(*b, 3, seed=3),
            "loc": _randn(*b, 3, 2, seed=4, scale=1.5),
            "scale": _randn(*b, 3, 2, seed=5, scale=0.2).abs() + 0.4,
            "reparam": reparam,
            "temperature": None if reparam == "pathwise" else 0.5,
        }

    return params


def _flow(b: tuple[int, ...]) -> dict[str, Any]:
    return {"base": MixtureOfGaussians(**_mixture("pathwise")(b)), "transforms": _FLOW_TRANSFORMS}


def _gaussian(b: tuple[int, ...], shift: float = 0.0) -> Independent:
    return Independent(Normal(_randn(*b, 2, seed=6, scale=0.3, shift=shift), _tau((*b, 2), 0.8)), 1)


def _simplex_flow(b: tuple[int, ...]) -> dict[str, Any]:
    return {"base": _gaussian(b), "transforms": _SIMPLEX_FLOW_TRANSFORMS}


def _rad(b: tuple[int, ...]) -> dict[str, Any]:
    return {"base": _gaussian(b), "layers": _RAD_LAYERS}


def _straight_through(**temperatures: float) -> Params:
    def params(b: tuple[int, ...]) -> dict[str, Any]:
        out: dict[str, Any] = {"logits": _randn(*b, 3, seed=12)}
        for key, value in temperatures.items():
            out[key] = value if key == "num_draws" else _tau(b, value)
        return out

    return params


_SOFT = "rsample follows the relaxed law q_tau, not the mixture density that log_prob gives"
_PLANAR = "the planar inverse in log_prob stops Newton's method at a data-dependent step"

CASES = [
    Case("gumbel_softmax", GumbelSoftmax, _gumbel(), "simplex"),
    Case(
        "gumbel_softmax_st",
        GumbelSoftmax,
        _gumbel(straight_through=True),
        "simplex",
        no_gof="samples are one-hot; log_prob is the relaxed density of the soft sample behind them",
    ),
    Case("exp_gumbel_softmax", ExpGumbelSoftmax, _gumbel(), "log_ratio"),
    Case("igr", IGR, _igr(), "simplex"),
    Case("igr_planar", IGRPlanar, _igr(flows=_PLANAR_2), "simplex"),
    Case("igr_stick_breaking", IGRStickBreaking, _igr(), "simplex"),
    Case("mixture_pathwise", MixtureOfGaussians, _mixture("pathwise"), "lebesgue"),
    Case(
        "mixture_gumbel_softmax",
        MixtureOfGaussians,
        _mixture("gumbel_softmax"),
        "lebesgue",
        no_gof=_SOFT,
    ),
    Case(
        "mixture_gumbel_straight_through",
        MixtureOfGaussians,
        _mixture("gumbel_straight_through"),
        "lebesgue",
    ),
    Case("mixture_igr", MixtureOfGaussians, _mixture("igr"), "lebesgue", no_gof=_SOFT),
    Case("flow", Flow, _flow, "lebesgue", bad_params=(("base", "normal"), ("transforms", [abs]))),
    Case("flow_simplex", Flow, _simplex_flow, "simplex", no_compile=_PLANAR),
    Case(
        "rad",
        RADDistribution,
        _rad,
        "lebesgue",
        bad_params=(("layers", [Planar(2)]),),
        quadrature_atol=5e-3,
    ),
    # the straight-through family: categoricals (one-hot samples, categorical log_prob)
    Case("straight_through", StraightThrough, _straight_through(temperature=0.8), "one_hot"),
    Case("st_gumbel", GumbelStraightThrough, _straight_through(temperature=0.8), "one_hot"),
    Case("gumbel_rao", GumbelRao, _straight_through(temperature=0.8, num_draws=3), "one_hot"),
    Case("reinmax", ReinMax, _straight_through(temperature=1.3), "one_hot"),
    Case(
        "decoupled_st",
        DecoupledStraightThrough,
        _straight_through(forward_temperature=1.5, backward_temperature=0.7),
        "one_hot",
    ),
]
IDS = [case.name for case in CASES]


# ---------------------------------------------------------------- charts of the reference measures
def to_chart(measure: str, value: torch.Tensor) -> torch.Tensor:
    """Coordinates u in R^d of values (d = K - 1 on the simplex, D on R^D)."""
    if measure == "simplex":
        log_v = value.log()
        return log_v[..., :-1] - log_v[..., -1:]
    if measure == "log_ratio":
        return value[..., :-1] - value[..., -1:]
    return value


def from_chart(measure: str, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The value at coordinates u and the log-Jacobian of the measure's density w.r.t. du."""
    if measure in ("simplex", "log_ratio"):
        log_v = torch.cat([u, torch.zeros_like(u[..., :1])], -1).log_softmax(-1)
        if measure == "log_ratio":
            return log_v, torch.zeros_like(u[..., 0])
        return log_v.exp(), log_v.sum(-1)  # |d y_{1:K-1} / du| = prod_k y_k
    return u, torch.zeros_like(u[..., 0])


def chart_log_density(case: Case, d: Distribution, value: torch.Tensor) -> torch.Tensor:
    """log of the density of the law of ``value`` w.r.t. Lebesgue measure on its chart."""
    log_p = d.log_prob(value)
    if case.measure == "simplex":
        return log_p + value.log().sum(-1)
    return log_p


def nearest_neighbour_gof(u: torch.Tensor, log_density: torch.Tensor) -> float:
    r"""p-value of "``u`` (N, d) are draws from the density ``exp(log_density)`` at them".

    With :math:`r_i` the distance from :math:`u_i` to its nearest neighbour and :math:`V_d(r)` the
    volume of the d-ball, :math:`s_i = (N-1)\,p(u_i)\,V_d(r_i)` is close to Exp(1) when p is the
    density of the draws, so :math:`1 - e^{-s_i}` is close to uniform (Kolmogorov-Smirnov). A wrong
    normalization or shape of p moves the :math:`s_i` away (the nearest-neighbour test of
    Obermeyer's ``goftests``, behind ``pyro.distributions.testing.gof.auto_goodness_of_fit``).
    """
    n, dim = u.shape
    dist = torch.cdist(u, u)
    dist.fill_diagonal_(math.inf)
    r = dist.min(-1).values
    log_ball = 0.5 * dim * math.log(math.pi) - math.lgamma(0.5 * dim + 1) + dim * r.log()
    s = (n - 1) * (log_density + log_ball).exp()
    return float(stats.kstest((-torch.expm1(-s)).numpy(), "uniform").pvalue)


def chi_square_gof(sample: torch.Tensor, d: Distribution) -> float:
    """p-value of one-hot ``sample`` (N, K) against the masses ``exp(log_prob(e_k))``."""
    k = sample.shape[-1]
    probs = d.log_prob(torch.eye(k, dtype=sample.dtype)).exp()
    counts = sample.sum(0)
    return float(stats.chisquare(counts.numpy(), (probs * sample.shape[0]).numpy()).pvalue)


def quadrature(case: Case, d: Distribution, u: torch.Tensor, n: int = 300) -> float:
    """Integral of the density over its chart: trapezoid rule on a box around the draws ``u``.

    The box is three times as wide as the draws' range; draws with no chart coordinates (one-hot
    samples of a relaxed density) fall back to the box [-30, 30]^d.
    """
    u = u[u.isfinite().all(-1)]
    if u.shape[0] < 10:
        u = torch.tensor([[-10.0], [10.0]], dtype=D64).expand(2, u.shape[-1])
    lo, hi = u.min(0).values, u.max(0).values
    lo, hi = lo - (hi - lo), hi + (hi - lo)
    axes = [torch.linspace(float(a), float(b), n if u.shape[-1] > 1 else 20 * n, dtype=D64)
            for a, b in zip(lo, hi)]  # fmt: skip
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1)
    value, log_jac = from_chart(case.measure, grid)
    with torch.no_grad():
        density = (d.log_prob(value) + log_jac).exp()
    for axis in reversed(axes):
        density = torch.trapezoid(density, axis, dim=-1)
    return float(density)


def interior_values(case: Case, d: Distribution, n: int) -> torch.Tensor:
    """Fresh values (not cached samples) where the density is positive, batch shape ``(n, 1)``."""
    k = d.event_shape[0]
    if case.measure == "one_hot":
        return torch.eye(k, dtype=D64)[torch.arange(n) % k].unsqueeze(1)
    dim = k if case.measure == "lebesgue" else k - 1
    value, _ = from_chart(case.measure, 0.5 * _randn(n, 1, dim, seed=11))
    return value


# ---------------------------------------------------------------- generic checks
@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_shapes(case: Case) -> None:
    d = case.build((2,))
    assert d.batch_shape == (2,) and len(d.event_shape) == 1
    shape = (3, 2, *d.event_shape)
    x = d.sample((3,))
    assert x.shape == shape and d.log_prob(x).shape == (3, 2)
    if d.has_rsample:
        y = d.rsample((3,))
        assert y.shape == shape and d.log_prob(y).shape == (3, 2)
        assert bool(d.log_prob(y).isfinite().all())
    else:
        with pytest.raises(NotImplementedError):
            d.rsample((3,))
    assert d.sample().shape == (2, *d.event_shape)


@pytest.mark.parametrize(
    "case", [c for c in CASES if c.cls.has_rsample is not False], ids=lambda c: c.name
)
def test_sample_and_rsample_agree_in_distribution(case: Case) -> None:
    d = case.build()
    n = 2000
    a, b = d.sample((n,)), d.rsample((n,)).detach()
    for i in range(a.shape[-1]):
        assert stats.ks_2samp(a[:, i].numpy(), b[:, i].numpy()).pvalue > 1e-3, i


def _tagged(parent: type) -> type:
    """A user's subclass with its own ``__init__`` and ``expand``, written as torch asks: its expand
    makes the instance (``_get_checked_instance``) and hands it to the parent's as ``_instance``."""

    class Tagged(parent):
        def __init__(self, tag: str = "mine", **params: Any) -> None:
            self.tag = tag
            super().__init__(**params)

        def expand(self, batch_shape, _instance=None):
            new = self._get_checked_instance(Tagged, _instance)
            new.tag = self.tag
            return super().expand(batch_shape, _instance=new)

    return Tagged


@pytest.mark.parametrize("subclass", ["class", "subclass", "subclass_with_init"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_expand(case: Case, subclass: str) -> None:
    cls = {"class": case.cls, "subclass": type(f"Sub{case.cls.__name__}", (case.cls,), {}),
           "subclass_with_init": _tagged(case.cls)}[subclass]  # fmt: skip
    d = cls(**case.params((2,)))
    e = d.expand((4, 2))
    assert type(e) is cls and e.batch_shape == (4, 2) and e.event_shape == d.event_shape
    assert getattr(e, "tag", None) == getattr(d, "tag", None)
    assert e.sample((3,)).shape == (3, 4, 2, *d.event_shape)
    x = interior_values(case, d, 3).unsqueeze(1)
    torch.testing.assert_close(e.log_prob(x), d.log_prob(x.clone()).expand(3, 4, 2))
    assert e._validate_args == d._validate_args


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_support_holds_samples_and_arg_constraints_hold_parameters(case: Case) -> None:
    d = case.build((2,))
    assert isinstance(d.support, constraints.Constraint) and d.support.event_dim == 1
    assert bool(d.support.check(d.sample((50,))).all())
    assert isinstance(d.arg_constraints, dict)
    for name, constraint in d.arg_constraints.items():
        assert isinstance(constraint, constraints.Constraint), name
        value = getattr(d, name)
        if isinstance(value, torch.Tensor):
            assert bool(constraint.check(value).all()), name


def _bad_value(constraint: constraints.Constraint, value: torch.Tensor) -> torch.Tensor:
    """A value that breaks ``constraint``: negative where it must be positive, NaN otherwise."""
    bad = value.detach().clone()
    if constraint.check(-bad.abs() - 1).any():  # -1 is allowed (a real, a real vector)
        return bad.fill_(math.nan)
    return bad.fill_(-1.0)


def _bad_params(case: Case) -> list[tuple[Case, str, Any]]:
    out = []
    params = case.params((2,))
    for name, constraint in case.cls.arg_constraints.items():
        value = params.get(name)
        if isinstance(value, torch.Tensor):
            out.append((case, name, _bad_value(constraint, value)))
    return out + [(case, name, value) for name, value in case.bad_params]


BAD_PARAMS = [bad for case in CASES for bad in _bad_params(case)]


@pytest.mark.parametrize(
    ("case", "name", "bad"), BAD_PARAMS, ids=[f"{c.name}-{n}" for c, n, _ in BAD_PARAMS]
)
def test_validate_args_rejects_bad_parameters_naming_them(case: Case, name: str, bad: Any) -> None:
    params = case.params((2,)) | {name: bad}
    with pytest.raises((ValueError, TypeError), match=name):
        case.cls(**params, validate_args=True)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_validate_args_rejects_values_outside_the_support(case: Case) -> None:
    d = case.build((2,), validate_args=True)
    x = d.sample((3,))
    candidates = [x.clone().fill_(math.nan), 2 * x + 1, x[..., :-1]]
    rejected = 0
    for bad in candidates:
        if bad.shape == x.shape and bool(d.support.check(bad).all()):
            continue  # inside the support (e.g. 2x + 1 on the real line)
        with pytest.raises(ValueError, match="value"):
            d.log_prob(bad)
        rejected += 1
    assert rejected >= 2
    assert d.log_prob(x).shape == (3, 2)  # valid values pass


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_validate_args_false_checks_nothing(case: Case) -> None:
    """torch's convention: ``validate_args=False`` is kept (also through ``expand``) and a value
    outside the support is not rejected."""
    d = case.build((2,), validate_args=False)
    assert d._validate_args is False and d.expand((3, 2))._validate_args is False
    assert case.build((2,), validate_args=True)._validate_args is True
    if "base" in case.params((2,)):
        return  # a flow's base is the user's, checked by its own flag (as torch's TransformedDistribution)
    x = d.sample((3,))
    d.log_prob(x.clone().fill_(math.nan))  # no error


@pytest.mark.parametrize("case", [c for c in CASES if c.no_gof is None], ids=lambda c: c.name)
def test_log_prob_is_the_density_of_the_samples(case: Case) -> None:
    d = case.build()
    x = d.sample((2000,))
    with torch.no_grad():
        if case.measure == "one_hot":
            p_value = chi_square_gof(x, d)
        else:
            p_value = nearest_neighbour_gof(
                to_chart(case.measure, x), chart_log_density(case, d, x)
            )
    assert p_value > 1e-3


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_density_integrates_to_one_on_its_reference_measure(case: Case) -> None:
    d = case.build()
    if case.measure == "one_hot":
        k = d.event_shape[0]
        total = float(d.log_prob(torch.eye(k, dtype=D64)).exp().sum())
    else:
        total = quadrature(case, d, to_chart(case.measure, d.sample((1000,))))
    assert total == pytest.approx(1.0, abs=case.quadrature_atol)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_pickle_round_trip(case: Case) -> None:
    d = case.build((2,))
    value = interior_values(case, d, 4)
    copy = pickle.loads(pickle.dumps(d))
    assert type(copy) is type(d) and copy.batch_shape == d.batch_shape
    torch.testing.assert_close(copy.log_prob(value), d.log_prob(value))


@pytest.fixture
def without_validation(monkeypatch):
    """Argument validation off, as torch.compile itself leaves it (its first run sets torch's default
    to False: the checks branch on data, which no graph can hold); on again after the test."""
    monkeypatch.setattr(Distribution, "_validate_args", False)


@pytest.mark.usefixtures("without_validation")
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_compiles_without_graph_breaks(case: Case) -> None:
    if case.no_compile is not None:
        pytest.skip(case.no_compile)
    d = case.build((2,))
    draw = d.rsample if d.has_rsample else d.sample

    def f() -> torch.Tensor:
        return d.log_prob(draw((4,)))

    torch._dynamo.reset()
    out = torch.compile(f, backend="eager", fullgraph=True)()
    assert out.shape == (4, 2) and bool(out.isfinite().all())


@pytest.mark.usefixtures("without_validation")
@pytest.mark.parametrize("case", [c for c in CASES if c.no_compile], ids=lambda c: c.name)
def test_compile_exceptions_are_real(case: Case) -> None:
    # a case marked as not compiling must indeed break the graph (else drop the mark)
    d = case.build((2,))
    value = d.sample((4,)).clone()
    torch._dynamo.reset()
    with pytest.raises(Exception, match=r"data-dependent|graph break|Unsupported"):
        torch.compile(d.log_prob, backend="eager", fullgraph=True)(value)


@pytest.mark.usefixtures("without_validation")
def test_inductor_compiled_log_prob_matches_eager() -> None:
    # one real code generation (inductor, CPU): compiled rsample + log_prob run, and log_prob
    # at fixed values equals the eager value
    d = CASES[0].build((2,))
    value = d.sample((4,)).clone()

    def f(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return d.log_prob(d.rsample((4,))), d.log_prob(v)

    torch._dynamo.reset()
    sampled, fixed = torch.compile(f, fullgraph=True)(value)
    assert sampled.shape == (4, 2) and bool(sampled.isfinite().all())
    torch.testing.assert_close(fixed, d.log_prob(value))


# ---------------------------------------------------------------- the tests can fail
def test_goodness_of_fit_rejects_a_wrong_density() -> None:
    # the same test with the density of another temperature, or off by a constant, fails
    case = CASES[0]
    d = case.build()
    x = d.sample((2000,))
    u = to_chart(case.measure, x)
    other = GumbelSoftmax(torch.tensor(1.2, dtype=D64), logits=d.logits)
    assert nearest_neighbour_gof(u, chart_log_density(case, d, x)) > 1e-3
    assert nearest_neighbour_gof(u, chart_log_density(case, other, x)) < 1e-6
    assert nearest_neighbour_gof(u, chart_log_density(case, d, x) + 0.3) < 1e-6


def test_quadrature_sees_a_missing_jacobian() -> None:
    case = next(c for c in CASES if c.name == "exp_gumbel_softmax")
    d = case.build()
    d._validate_args = False  # the wrong chart's points lie off the support; evaluate them anyway
    u = to_chart(case.measure, d.sample((1000,)))
    assert quadrature(case, d, u) == pytest.approx(1.0, abs=3e-3)
    wrong = Case("first_coordinates", ExpGumbelSoftmax, case.params, "simplex")
    assert quadrature(wrong, d, u) < 0.9  # not a density over the simplex's first coordinates


def test_every_exported_distribution_is_a_case() -> None:
    import simplexity.distributions as sd
    import simplexity.flows as sf

    exported = {
        obj
        for module in (sd, sf)
        for obj in vars(module).values()
        if isinstance(obj, type) and issubclass(obj, Distribution)
    }
    # abstract bases (IGRBase, ...) are covered through the classes built on them
    bases = {c for c in exported if any(o is not c and issubclass(o, c) for o in exported)}
    missing = exported - bases - {case.cls for case in CASES}
    assert missing == set(), sorted(c.__name__ for c in missing)


def test_chart_round_trip() -> None:
    u = _randn(5, 2, seed=9)
    for measure in ("simplex", "log_ratio", "lebesgue"):
        value, _ = from_chart(measure, u)
        torch.testing.assert_close(to_chart(measure, value), u)
    assert np.isfinite(quadrature(CASES[3], CASES[3].build(), u))
