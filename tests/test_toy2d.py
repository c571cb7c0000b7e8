"""Tests of simplexity_lab.data.toy2d: the 2-D toy density generators."""

from __future__ import annotations

import math

import pytest
import torch

from simplexity_lab.data.toy2d import NAMES, sample


@pytest.mark.parametrize("name", NAMES)
def test_shape_dtype_finiteness_and_determinism(name):
    a = sample(name, 500, generator=torch.Generator().manual_seed(0))
    b = sample(name, 500, generator=torch.Generator().manual_seed(0))
    assert a.shape == (500, 2) and a.dtype == torch.float32
    assert torch.isfinite(a).all() and torch.equal(a, b)
    assert a.abs().max() < 8
    assert sample(name, 0).shape == (0, 2)


def test_names():
    assert set(NAMES) >= {"8gaussians", "moons", "rings", "checkerboard", "pinwheel", "2spirals"}
    assert {"circles", "swissroll"} <= set(NAMES)


def test_eight_gaussians_geometry():
    x = sample("8gaussians", 20000, generator=torch.Generator().manual_seed(1))
    radius = x.norm(dim=-1)
    assert radius.mean().item() == pytest.approx(4 / 1.414, abs=0.1)
    angle = torch.atan2(x[:, 1], x[:, 0])
    sector = torch.round(angle / (math.pi / 4)) % 8
    counts = torch.bincount(sector.long(), minlength=8).float() / x.shape[0]
    assert torch.allclose(counts, torch.full((8,), 1 / 8), atol=0.015)


def test_checkerboard_occupies_alternate_squares():
    x = sample("checkerboard", 20000, generator=torch.Generator().manual_seed(2))
    cell = torch.floor(x / 2).long()
    assert x.abs().max() <= 4
    assert ((cell[:, 0] + cell[:, 1]) % 2 == 0).float().mean() > 0.999 or (
        (cell[:, 0] + cell[:, 1]) % 2 == 1
    ).float().mean() > 0.999


def test_rings_radii():
    x = sample("rings", 20000, generator=torch.Generator().manual_seed(3))
    r = x.norm(dim=-1)
    for radius in (0.75, 1.5, 2.25, 3.0):
        assert ((r - radius).abs() < 0.25).float().mean() == pytest.approx(0.25, abs=0.02)


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown toy density"):
        sample("spiral", 10)
    with pytest.raises(ValueError, match="num"):
        sample("moons", -1)
    with pytest.raises(TypeError, match="generator"):
        sample("moons", 3, generator=0)
