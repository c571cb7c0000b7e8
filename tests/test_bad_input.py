"""Bad input anywhere in the public API: an error that names the argument, raised where it is given.

A property test (hypothesis) over the public entry points: for each argument of each entry point, any
value drawn from a strategy of bad values for it (wrong type, wrong dtype, wrong shape, out of
range, NaN, infinite) must raise ``ValueError`` or ``TypeError`` (``IndexError`` for an out-of-range
``dim``, torch's convention) whose message names the argument — never a silent NaN, a wrong shape
or an error from deep inside. Each entry point is one :class:`Entry` of :data:`ENTRIES`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simplexity.distributions import (
    IGR,
    ExpGumbelSoftmax,
    GumbelSoftmax,
    IGRPlanar,
    IGRStickBreaking,
    MixtureOfGaussians,
    PlanarFlows,
    PlanarTransform,
    SoftmaxPlusPlusTransform,
    igr_uniform_prior_loc,
    igr_zero_temperature_probs,
    monte_carlo_kl,
    relaxations,
    stick_breaking_truncation,
    zero_temperature_limit,
)
from simplexity.distributions.mixture import kmeans_plusplus, kmeans_plusplus_init
from simplexity.flows import (
    RAD,
    Flow,
    GaussianBase,
    LazyFlow,
    MixtureBase,
    Planar,
    RADDistribution,
    Radial,
    RadialTransform,
    RADLayer,
)
from simplexity.nn import MLP
from simplexity.normalizers import ev_softmax, get, log_ev_softmax, names

D64 = torch.float64
NAN, INF = math.nan, math.inf

# ---------------------------------------------------------------- strategies of bad values
not_a_tensor = st.one_of(
    st.none(),
    st.integers(-3, 3),
    st.floats(-2, 2),
    st.text(max_size=3),
    st.lists(st.floats(0, 1), max_size=3),
)
integer_tensor = st.integers(1, 4).map(lambda n: torch.arange(n))
bad_tensor = st.one_of(not_a_tensor, integer_tensor)
bad_positive = st.one_of(
    st.floats(max_value=0.0),
    st.sampled_from([NAN, INF, -INF]),
    st.booleans(),
    st.text(max_size=2),
    st.none(),
)
non_positive_tensor = st.lists(st.floats(-5, 0), min_size=1, max_size=1).map(
    lambda v: torch.tensor(v[0], dtype=D64)
)


def bad_int(minimum: int, maximum: int | None = None) -> st.SearchStrategy:
    bad = [st.integers(max_value=minimum - 1), st.floats(allow_nan=True), st.booleans()]
    if maximum is not None:
        bad.append(st.integers(min_value=maximum + 1))
    return st.one_of(*bad, st.text(max_size=2))


def not_in(choices: list[str]) -> st.SearchStrategy:
    return st.one_of(
        st.text(max_size=8).filter(lambda s: s not in choices), st.integers(), st.none()
    )


# ---------------------------------------------------------------- the entry points
def _x() -> torch.Tensor:
    return torch.tensor([[1.0, -0.5, 0.2], [0.3, 0.3, -1.0]], dtype=D64)


def _mixture_args() -> dict[str, Any]:
    return {
        "logits": torch.zeros(3, dtype=D64),
        "loc": torch.zeros(3, 2, dtype=D64),
        "scale": torch.ones(3, 2, dtype=D64),
    }


def _igr_args() -> dict[str, Any]:
    return {"loc": torch.zeros(2, dtype=D64), "scale": torch.ones(2, dtype=D64), "temperature": 0.5}


def _planar() -> PlanarTransform:
    return PlanarTransform(
        torch.ones(2, dtype=D64), torch.ones(2, dtype=D64), torch.tensor(0.0, dtype=D64)
    )


def _igr() -> IGR:
    return IGR(**_igr_args())


@dataclass(frozen=True)
class Entry:
    """A public entry point: ``call(**(valid | {argument: bad}))`` must fail naming ``argument``."""

    name: str
    call: Callable[..., Any]
    valid: Callable[[], dict[str, Any]]
    bad: dict[str, st.SearchStrategy] = field(default_factory=dict)
    match: dict[str, str] = field(default_factory=dict)  # message pattern, if not the argument


def _normalize(name: str) -> Callable[..., Any]:
    def call(x: Any, dim: Any = -1, mask: Any = None) -> Any:
        return get(name)(x, dim, mask=mask)

    return call


_X_BAD = {
    "x": bad_tensor,
    "dim": st.one_of(st.integers(2, 9), st.integers(-9, -3), st.floats(), st.text(max_size=2)),
    "mask": st.one_of(
        st.just(torch.ones(2, 3)),  # not boolean
        st.just(torch.ones(3, 2, dtype=torch.bool)),  # wrong shape
        st.text(max_size=2),
    ),
}

ENTRIES = [
    *(Entry(f"normalizer:{n}", _normalize(n), lambda: {"x": _x()}, _X_BAD) for n in names()),
    Entry(
        "ev_softmax",
        lambda x, eps=0.0: ev_softmax(x, eps=eps),
        lambda: {"x": _x()},
        {
            "eps": st.one_of(
                st.floats(max_value=-1e-9), st.sampled_from([NAN, INF]), st.text(max_size=2)
            )
        },
    ),
    Entry(
        "log_ev_softmax",
        lambda x, eps=0.0: log_ev_softmax(x, eps=eps),
        lambda: {"x": _x()},
        {"x": bad_tensor, "eps": st.one_of(st.floats(max_value=-1e-9), st.just(NAN))},
    ),
    *(
        Entry(
            cls.__name__,
            cls,
            lambda: {"temperature": 0.5, "logits": torch.zeros(2, 3, dtype=D64)},
            {
                "temperature": st.one_of(
                    bad_positive,
                    non_positive_tensor,
                    st.just(torch.ones(2, 3, dtype=D64)),  # one per category: no density
                    st.just(torch.ones(4, dtype=D64)),  # does not broadcast with the batch
                    st.just(torch.tensor(0.5)),  # float32 beside float64 logits
                ),
                "logits": st.one_of(
                    bad_tensor,
                    st.just(torch.zeros(2, 1, dtype=D64)),  # K = 1
                    st.just(torch.tensor(0.0, dtype=D64)),
                ),
            },
        )
        for cls in (GumbelSoftmax, ExpGumbelSoftmax)
    ),
    *(
        Entry(
            cls.__name__,
            cls,
            _igr_args,
            {
                "loc": st.one_of(bad_tensor, st.just(torch.tensor(0.0, dtype=D64))),
                "scale": st.one_of(
                    bad_tensor,
                    st.just(torch.ones(3, dtype=D64)),  # K - 1 differs from loc's
                    st.just(-torch.ones(2, dtype=D64)),
                    st.just(torch.tensor([1.0, NAN], dtype=D64)),
                ),
                "temperature": st.one_of(bad_positive, non_positive_tensor),
                "delta": st.one_of(bad_positive, non_positive_tensor),
            },
        )
        for cls in (IGR, IGRStickBreaking)
    ),
    Entry(
        "IGRPlanar",
        IGRPlanar,
        lambda: _igr_args() | {"flows": [_planar()]},
        {
            "flows": st.one_of(
                st.lists(st.one_of(st.integers(), st.text(max_size=2)), min_size=1, max_size=2),
                st.just([PlanarTransform(torch.ones(3), torch.ones(3), torch.tensor(0.0))]),
            )
        },
    ),
    Entry(
        "MixtureOfGaussians",
        MixtureOfGaussians,
        _mixture_args,
        {
            "logits": st.one_of(bad_tensor, st.just(torch.zeros(4, dtype=D64))),
            "loc": st.one_of(bad_tensor, st.just(torch.zeros(3, dtype=D64))),
            "scale": st.one_of(
                bad_tensor,
                st.just(-torch.ones(3, 2, dtype=D64)),
                st.just(torch.ones(3, 1, dtype=D64)),
            ),
            "reparam": not_in(["pathwise"]),
            "temperature": st.one_of(st.floats(0.1, 2.0), st.just(torch.tensor(1.0, dtype=D64))),
        },
    ),
    Entry(
        "MixtureOfGaussians(relaxed)",
        MixtureOfGaussians,
        lambda: _mixture_args() | {"reparam": "igr", "temperature": 0.5},
        {"temperature": st.one_of(bad_positive, non_positive_tensor)},
    ),
    Entry(
        "kmeans_plusplus",
        kmeans_plusplus,
        lambda: {"data": torch.randn(5, 2, dtype=D64), "num_clusters": 2},
        {
            "data": st.one_of(
                bad_tensor,
                st.just(torch.randn(5, dtype=D64)),
                st.just(torch.tensor([[0.0, INF], [1.0, 1.0]], dtype=D64)),
            ),
            "num_clusters": st.one_of(bad_int(1), st.integers(6, 40)),
        },
    ),
    Entry(
        "kmeans_plusplus_init",
        kmeans_plusplus_init,
        lambda: {"data": torch.randn(20, 2, dtype=D64), "num_components": 2},
        {
            "data": st.one_of(
                bad_tensor,
                st.just(torch.randn(20, dtype=D64)),
                st.just(torch.full((20, 2), NAN, dtype=D64)),
            ),
            "num_components": st.one_of(bad_int(1), st.integers(21, 40)),
            "iterations": bad_int(0),
            "min_scale": bad_positive,
        },
    ),
    Entry(
        "SoftmaxPlusPlusTransform",
        SoftmaxPlusPlusTransform,
        lambda: {"temperature": 0.5},
        {"temperature": bad_positive, "delta": bad_positive},
    ),
    Entry(
        "PlanarTransform",
        PlanarTransform,
        lambda: {"u": torch.ones(2), "w": torch.ones(2), "b": torch.tensor(0.0)},
        {"u": bad_tensor, "w": st.one_of(bad_tensor, st.just(torch.ones(3))), "b": bad_tensor},
    ),
    Entry(
        "RadialTransform",
        RadialTransform,
        lambda: {
            "center": torch.zeros(2),
            "alpha_raw": torch.tensor(0.0),
            "beta_raw": torch.tensor(0.0),
        },
        {"center": bad_tensor, "alpha_raw": bad_tensor, "beta_raw": bad_tensor},
    ),
    Entry(
        "igr_uniform_prior_loc",
        igr_uniform_prior_loc,
        lambda: {"num_categories": 4},
        {"num_categories": bad_int(2), "scale": bad_positive},
    ),
    Entry(
        "igr_zero_temperature_probs",
        igr_zero_temperature_probs,
        lambda: {"loc": torch.zeros(2), "scale": torch.ones(2)},
        {"loc": bad_tensor, "scale": bad_tensor, "num_nodes": bad_int(2)},
    ),
    Entry(
        "zero_temperature_limit",
        zero_temperature_limit,
        lambda: {"dist": IGRStickBreaking(**_igr_args())},
        {"dist": not_a_tensor, "num_samples": bad_int(1)},
    ),
    Entry(
        "monte_carlo_kl",
        monte_carlo_kl,
        lambda: {"q": _igr(), "p": _igr()},
        {"q": not_a_tensor, "p": not_a_tensor, "num_samples": bad_int(1)},
    ),
    Entry(
        "stick_breaking_truncation",
        stick_breaking_truncation,
        lambda: {"sticks": torch.tensor([[0.5, 0.3, 0.1]])},
        {
            "sticks": bad_tensor,
            "threshold": st.one_of(
                st.floats(max_value=0.0), st.floats(min_value=1.0), st.just(NAN)
            ),
            "percentile": st.one_of(
                st.floats(max_value=-1e-6), st.floats(min_value=100.001), st.just(NAN)
            ),
        },
    ),
    Entry(
        "relaxations.get",
        relaxations.get,
        lambda: {"name": "igr_i"},
        {"name": not_in(relaxations.names())},
        {"name": r"relaxation"},  # the registry's error: unknown relaxation 'x'; expected one of
    ),
    Entry(
        "Relaxation.prior",
        lambda name="igr_i", num_categories=3, temperature=0.5: relaxations.get(name).prior(
            num_categories, temperature
        ),
        lambda: {},
        {"num_categories": bad_int(2), "temperature": bad_positive},
    ),
    Entry(
        "Relaxation.forward",
        lambda raw=None, temperature=0.5: relaxations.get("igr_i")(raw, temperature),
        lambda: {"raw": torch.zeros(4, dtype=D64)},
        {
            "raw": st.one_of(bad_tensor, st.just(torch.zeros(3, dtype=D64))),
            "temperature": bad_positive,
        },
    ),
    Entry(
        "Flow",
        Flow,
        lambda: {"base": GaussianBase(2)(), "transforms": []},
        {
            "base": st.one_of(not_a_tensor, st.just(torch.distributions.Normal(0.0, 1.0))),
            "transforms": st.lists(
                st.one_of(st.integers(), st.text(max_size=2)), min_size=1, max_size=2
            ),
        },
    ),
    Entry(
        "Flow.log_prob",
        lambda value: Flow(GaussianBase(2)(), []).log_prob(value),
        lambda: {"value": torch.zeros(2)},
        {"value": st.one_of(not_a_tensor, st.just(torch.zeros(4, 3)), st.just(torch.tensor(0.0)))},
    ),
    Entry(
        "RADDistribution",
        RADDistribution,
        lambda: {"base": GaussianBase(1)(), "layers": [RADLayer(1, 3)]},
        {
            "base": not_a_tensor,
            "layers": st.one_of(
                st.lists(st.integers(), min_size=1, max_size=2), st.just([RADLayer(2, 3)])
            ),
        },
    ),
    Entry(
        "RAD",
        RAD,
        lambda: {"base": GaussianBase(1), "layers": [RADLayer(1, 3)]},
        {"base": not_a_tensor, "layers": st.lists(st.integers(), min_size=1, max_size=2)},
    ),
    Entry(
        "LazyFlow",
        LazyFlow,
        lambda: {"base": GaussianBase(2), "transforms": []},
        {"base": not_a_tensor, "transforms": st.lists(st.integers(), min_size=1, max_size=2)},
    ),
    Entry("GaussianBase", GaussianBase, lambda: {"features": 2}, {"features": bad_int(1)}),
    Entry(
        "MixtureBase",
        MixtureBase,
        lambda: {"features": 2, "num_components": 3},
        {
            "features": bad_int(1),
            "num_components": bad_int(1),
            "reparam": not_in(["pathwise"]),
            "temperature": st.floats(0.1, 2.0),  # pathwise takes none
            "spread": bad_positive,
            "min_scale": bad_positive,
        },
    ),
    Entry(
        "MixtureBase(relaxed)",
        MixtureBase,
        lambda: {
            "features": 2,
            "num_components": 3,
            "reparam": "gumbel_softmax",
            "temperature": 0.5,
        },
        {"temperature": bad_positive},
    ),
    Entry("Radial", Radial, lambda: {"features": 2}, {"features": bad_int(1)}),
    Entry("Planar", Planar, lambda: {"features": 2}, {"features": bad_int(1)}),
    Entry(
        "PlanarFlows",
        PlanarFlows,
        lambda: {"dim": 2, "num_flows": 2},
        {"dim": bad_int(1), "num_flows": bad_int(0), "cache_size": bad_int(0, 1)},
    ),
    Entry(
        "MLP",
        MLP,
        lambda: {"in_features": 2, "out_features": 3, "hidden": (4,)},
        {
            "in_features": bad_int(1),
            "out_features": bad_int(1),
            "hidden": st.one_of(
                st.integers(), st.text(max_size=3), st.lists(bad_int(1), min_size=1, max_size=2)
            ),
            "activation": st.one_of(st.integers(), st.text(max_size=3), st.none()),
        },
    ),
    Entry(
        "RADLayer",
        RADLayer,
        lambda: {"features": 2, "num_pieces": 3},
        {"features": bad_int(1, 2), "num_pieces": bad_int(2), "dim": bad_int(0, 1)},
    ),
]
CASES = [(entry, argument) for entry in ENTRIES for argument in entry.bad]


@pytest.mark.parametrize(("entry", "argument"), CASES, ids=[f"{e.name}-{a}" for e, a in CASES])
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_bad_argument_raises_an_error_naming_it(entry: Entry, argument: str, data) -> None:
    bad = data.draw(entry.bad[argument], label=argument)
    args = entry.valid() | {argument: bad}
    expected = (ValueError, TypeError, IndexError) if argument == "dim" else (ValueError, TypeError)
    with pytest.raises(expected) as info:
        entry.call(**args)
    # the argument's name as a word of the message (not inside another identifier)
    pattern = entry.match.get(argument, rf"(?<!\w){re.escape(argument)}(?!\w)")
    assert re.search(pattern, str(info.value)), (argument, bad, info.value)


@pytest.mark.parametrize("name", names())
def test_normalizers_reject_a_scalar_naming_x(name: str) -> None:
    with pytest.raises((ValueError, TypeError), match="x"):
        get(name)(torch.tensor(1.0, dtype=D64))


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])
def test_valid_arguments_are_accepted(entry: Entry) -> None:
    # the baseline of every property above: the call succeeds with the valid arguments
    entry.call(**entry.valid())


# ---------------------------------------------------------------- edge input that is not bad
@pytest.mark.parametrize("fn", [ev_softmax, log_ev_softmax])
@pytest.mark.parametrize("shape", [(3, 0), (0,), (0, 4)])
def test_ev_softmax_of_an_empty_dimension_is_empty(fn, shape) -> None:
    x = torch.zeros(shape, dtype=D64, requires_grad=True)
    out = fn(x)
    assert out.shape == shape and out.dtype == D64
    out.sum().backward()
    assert x.grad is not None and x.grad.shape == shape
    torch.testing.assert_close(out, torch.softmax(x, -1) if fn is ev_softmax else x.log_softmax(-1))
