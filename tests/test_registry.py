"""Tests of the one registry type (``simplexity._registry.Registry``): entries, order, errors."""

from __future__ import annotations

import pytest

from simplexity._registry import Registry


def test_entries_by_name_in_registration_order() -> None:
    reg: Registry[object] = Registry("colour")
    red, blue = object(), object()
    assert reg.add("red", red) is red
    assert reg.register("blue")(blue) is blue  # the decorator form returns the entry itself
    assert reg["red"] is red and reg["blue"] is blue
    assert reg.names() == ["red", "blue"] and list(reg) == ["red", "blue"] and len(reg) == 2
    assert "red" in reg and "green" not in reg and 3 not in reg
    assert reg.check("blue") == "blue"
    assert repr(reg) == "Registry('colour', names=['red', 'blue'])"
    assert reg.kind == "colour" and len(Registry("empty")) == 0


def test_errors_name_the_argument_and_the_expected_form() -> None:
    reg: Registry[int] = Registry("colour")
    reg.add("red", 1)
    cases = [
        (lambda: Registry(""), TypeError, r"^kind must be a non-empty str, got ''$"),
        (lambda: Registry(3), TypeError, r"^kind must be a non-empty str, got 3$"),
        (lambda: reg.add("", 2), TypeError, r"^a colour name must be a non-empty str, got ''$"),
        (lambda: reg.add(5, 2), TypeError, r"^a colour name must be a non-empty str, got 5$"),
        (lambda: reg.add("red", 2), ValueError, r"^a colour named 'red' is already registered$"),
        (lambda: reg.register("red")(2), ValueError, r"^a colour named 'red' is already"),
        (lambda: reg.check(5), TypeError, r"^a colour name must be a str, got int$"),
        (lambda: reg["blue"], ValueError, r"^unknown colour 'blue'; expected one of: red$"),
    ]
    for call, error, message in cases:
        with pytest.raises(error, match=message):
            call()
    assert reg["red"] == 1 and reg.names() == ["red"]  # a refused entry leaves no trace
    reg.add("green", 2)
    with pytest.raises(ValueError, match=r"^unknown colour 'blue'; expected one of: red, green$"):
        reg.check("blue")
