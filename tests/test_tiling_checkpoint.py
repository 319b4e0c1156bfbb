import numpy as np
import pytest

from conftest import textured_bgr
from edge_sr.backends import open_upscaler
from edge_sr.checkpoint import load_checkpoint, save_checkpoint
from edge_sr.config import preset
from edge_sr.errors import EdgeSRError
from edge_sr.pipeline import residual_tiled, upscale_frame

torch = pytest.importorskip("torch")


def test_tiled_equals_untiled(tiny_checkpoint):
    up = open_upscaler(tiny_checkpoint)
    y = textured_bgr(70, 90)[..., 1].astype(np.float32) / 255
    full = up.residual(y)
    tiled = residual_tiled(up, y, tile=24)
    b = 2 * up.scale
    assert np.abs(full - tiled)[b:-b, b:-b].max() < 1e-3
    assert np.abs(full - tiled).max() < 1e-3  # context covers the receptive field: even borders agree
    # too little context shows seams: the overlap matters
    seams = residual_tiled(up, y, tile=24, overlap=1)
    assert np.abs(full - seams).max() > 1e-3


def test_tiled_colour_frame_equals_untiled(tiny_checkpoint):
    up = open_upscaler(tiny_checkpoint)
    img = textured_bgr(50, 61)
    a = upscale_frame(up, img, tile=None)
    b = upscale_frame(up, img, tile=20)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_checkpoint_round_trip(tmp_path, tiny_checkpoint):
    cfg, w, info = load_checkpoint(tiny_checkpoint)
    assert cfg == preset("compact", 2) and info["note"] == "random test weights"
    p = tmp_path / "copy.safetensors"
    save_checkpoint(p, cfg, w, {"x": 1})
    cfg2, w2, info2 = load_checkpoint(p)
    assert cfg2 == cfg and info2 == {"x": 1} and all(np.array_equal(w[k], w2[k]) for k in w)
    a, b = open_upscaler(tiny_checkpoint), open_upscaler(p)
    y = np.random.default_rng(0).uniform(0, 1, (16, 16)).astype(np.float32)
    assert np.array_equal(a.residual(y), b.residual(y))


def test_bad_checkpoints_are_refused(tmp_path, tiny_checkpoint):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(EdgeSRError, match="corrupt"):
        load_checkpoint(junk)
    trunc = tmp_path / "trunc.safetensors"
    trunc.write_bytes(tiny_checkpoint.read_bytes()[:5000])
    with pytest.raises(EdgeSRError):
        open_upscaler(trunc)
    # weights that do not fit the config: strict loading refuses
    cfg, w, _ = load_checkpoint(tiny_checkpoint)
    w.pop("last.weight")
    bad = tmp_path / "missing.safetensors"
    save_checkpoint(bad, cfg, w)
    with pytest.raises(EdgeSRError, match="does not match"):
        open_upscaler(bad)
    # a model for another scale
    with pytest.raises(EdgeSRError, match="is for x2, not x3"):
        open_upscaler(tiny_checkpoint, scale=3)
    with pytest.raises(EdgeSRError, match="unknown model file type"):
        open_upscaler(_touch(tmp_path / "m.bin"))


def _touch(p):
    p.write_bytes(b"x")
    return p
