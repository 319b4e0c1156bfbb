"""The synthetic scene: deterministic, moving, with detail, colour and text."""

from __future__ import annotations

import numpy as np
import pytest

from edge_sr.scene import render_scene


def test_deterministic_shape_and_type():
    a = render_scene(1.25, 240, 320, seed=3)
    b = render_scene(1.25, 240, 320, seed=3)
    assert a.shape == (240, 320, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, render_scene(1.25, 240, 320, seed=4))
    a[:] = 0  # a new array each call: the cached canvas is not touched
    assert np.array_equal(b, render_scene(1.25, 240, 320, seed=3))


def test_moves_over_time_and_has_detail_and_colour():
    f0, f1 = render_scene(0.0, 120, 160), render_scene(2.0, 120, 160)
    assert np.mean(np.abs(f0.astype(int) - f1.astype(int))) > 5  # the scene moves
    g = f0.astype(np.float32).mean(axis=2)
    assert np.mean(np.abs(np.diff(g, axis=1))) > 8  # fine detail / edges
    assert np.std(f0[..., 2].astype(int) - f0[..., 0].astype(int)) > 20  # colour, not gray


@pytest.mark.parametrize("h,w", [(48, 64), (481, 641), (720, 1280)])
def test_odd_and_large_sizes(h, w):
    assert render_scene(7.0, h, w).shape == (h, w, 3)


def test_too_small():
    with pytest.raises(ValueError):
        render_scene(0.0, 4, 4)
