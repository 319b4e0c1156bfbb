"""What the product promises, each checked against a reference that does not come from the code under test:
training learns; the model is fed the BT.601 luma (the standard's own values); a checkpoint is refused
unless it is one of ours; `--init` loads strictly. scripts/mutants.sh breaks each on purpose."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import run_cli

# ITU-R BT.601 studio-range luma of the primaries, black and white, as the standard (and MATLAB's
# rgb2ycbcr documentation) gives them: Y = 16 + 65.481 R + 128.553 G + 24.966 B, R, G, B in [0, 1].
# Written out here as numbers, not computed from edge_sr.color's matrix.
BT601_Y = {
    "black": ((0, 0, 0), 16.0),
    "white": ((255, 255, 255), 235.0),
    "red": ((255, 0, 0), 81.481),
    "green": ((0, 255, 0), 144.553),
    "blue": ((0, 0, 255), 40.966),
}


def _solid_bgr(rgb, h=12, w=14):
    frame = np.empty((h, w, 3), np.uint8)
    frame[:] = rgb[::-1]  # BGR, as cameras and OpenCV give frames
    return frame


# -- the luma --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(BT601_Y))
def test_luma_functions_are_bt601(name):
    from edge_sr.color import bgr_to_ycbcr, y_from_bgr_u8, y_from_rgb

    rgb, y = BT601_Y[name]
    frame = _solid_bgr(rgb)
    assert y_from_bgr_u8(frame) == pytest.approx(np.full(frame.shape[:2], y), abs=2e-3)
    assert y_from_rgb(frame[..., ::-1]) == pytest.approx(np.full(frame.shape[:2], y), abs=1e-9)
    assert bgr_to_ycbcr(frame)[..., 0] == pytest.approx(np.full(frame.shape[:2], y), abs=1e-9)


def _recording(up):
    """Wrap an upscaler's residual() to record the LR luma each call receives (the real model still runs)."""
    seen = []
    real = up.residual

    def residual(y_lr_f32):
        seen.append(np.array(y_lr_f32, copy=True))
        return real(y_lr_f32)

    up.residual = residual
    return seen


@pytest.mark.parametrize("path", ["pipeline", "stream"])
def test_the_model_is_fed_the_bt601_luma(path):
    """Every path from a colour frame to the model feeds it Y / 255 by BT.601, not a mean of B, G, R."""
    from edge_sr.backends import open_upscaler
    from edge_sr.stream import upscale_timed

    with open_upscaler("compact") as up:
        seen = _recording(up)
        for name, (rgb, y) in BT601_Y.items():
            frame = _solid_bgr(rgb)
            if path == "pipeline":
                out = up.upscale(frame)
            else:
                out, _ = upscale_timed(up, frame)
            assert out.shape == (24, 28, 3)
            assert seen[-1] * 255 == pytest.approx(np.full((12, 14), y), abs=2e-3), name


def test_a_colour_frame_keeps_its_colour_through_the_model():
    """A flat colour frame comes out as the same colour (the residual of a flat frame is ~0)."""
    from edge_sr.backends import open_upscaler

    with open_upscaler("compact") as up:
        for rgb, _ in BT601_Y.values():
            out = up.upscale(_solid_bgr(rgb, 16, 16))
            assert np.abs(out[4:-4, 4:-4].astype(int) - np.array(rgb[::-1])).max() <= 2


# -- training learns -------------------------------------------------------------------------------
def _shapes_image(h, w, seed):
    """Anti-aliased discs and boxes: edges a small network learns to sharpen within a few dozen steps."""
    cv2 = pytest.importorskip("cv2")
    r = np.random.default_rng(seed)
    big = np.zeros((h * 4, w * 4, 3), np.uint8)
    big[:] = r.integers(0, 256, 3)
    for _ in range(12):
        c = tuple(int(x) for x in r.integers(0, 256, 3))
        if r.random() < 0.5:
            centre = (int(r.integers(0, w * 4)), int(r.integers(0, h * 4)))
            cv2.circle(big, centre, int(r.integers(8, 60)), c, -1, cv2.LINE_AA)
        else:
            p = r.integers(0, [w * 4, h * 4], (2, 2))
            cv2.rectangle(big, (int(p[0, 0]), int(p[0, 1])), (int(p[1, 0]), int(p[1, 1])), c, -1)
    return cv2.resize(big, (w, h), interpolation=cv2.INTER_AREA)


TINY = dict(layers=3, filters=16, min_filters=8, gamma=1.2, a_filters=8, b_filters=4, last_kernel=1, preset="tiny")


def _protocol_psnr(ckpt, folder):
    """PSNR by the protocol through the product's colour pipeline (edge_sr.quality), not the loop's validate()."""
    from edge_sr.backends import open_upscaler
    from edge_sr.quality import discover_sets, evaluate

    with open_upscaler(ckpt) as up:
        res = evaluate({"m": lambda lr: up.upscale(lr[..., ::-1])[..., ::-1]}, discover_sets(folder), 2,
                       with_ssim=False, progress=False)
    return res["m"][0].psnr


def _mse_on_images(ckpt, folder):
    """The training loss (MSE of the luma, 0..1 scale) on the whole of each image, computed here with torch
    and the protocol's LR, not read from the loop's log."""
    import torch

    from edge_sr.checkpoint import load_checkpoint
    from edge_sr.color import y_from_rgb
    from edge_sr.model import DCSCN
    from edge_sr.quality import protocol_pair

    cfg, w, _ = load_checkpoint(ckpt)
    m = DCSCN(cfg).eval()
    m.load_state_dict({k: torch.from_numpy(v) for k, v in w.items()}, strict=True)
    errs = []
    for f in sorted(folder.iterdir()):
        hr, lr = protocol_pair(f, 2)
        x = torch.from_numpy((y_from_rgb(lr) / 255).astype(np.float32))[None, None]
        with torch.no_grad():
            sr = m(x)[0, 0].numpy()
        errs.append(((sr - y_from_rgb(hr) / 255) ** 2).mean())
    return float(np.mean(errs))


def test_training_lowers_the_loss_and_raises_psnr(tmp_path):
    """A few dozen steps of a tiny network on a tiny set: the loss on the set falls and its PSNR rises,
    both measured outside the training loop, against the untrained start (one step at learning rate 0)."""
    pytest.importorskip("torch")
    from edge_sr.imageio import write_image
    from edge_sr.train.loop import TrainArgs, train

    hr = tmp_path / "hr"
    hr.mkdir()
    for i in range(6):
        write_image(hr / f"img{i}.png", _shapes_image(64, 80, i))

    def args(out, **kw):
        return TrainArgs(data=[str(hr)], out=str(tmp_path / out), val=str(hr), epochs=2, steps_per_epoch=30,
                         batch=8, patch=16, warmup_steps=2, threads=1, config=TINY, loss="mse", **kw)

    train(args("start", lr=0.0, lr_min=0.0), progress=False, max_steps=1)  # the initial weights, untouched
    train(args("trained", lr=5e-3, lr_min=5e-4), progress=False)
    start, trained = tmp_path / "start" / "last.safetensors", tmp_path / "trained" / "last.safetensors"
    loss0, loss1 = _mse_on_images(start, hr), _mse_on_images(trained, hr)
    p0, p1 = _protocol_psnr(start, hr), _protocol_psnr(trained, hr)
    assert loss1 < 0.95 * loss0, (loss0, loss1)  # measured: about -11 %
    assert p1 > p0 + 0.25, (p0, p1)  # measured: about +0.5 dB


# -- checkpoints -----------------------------------------------------------------------------------
def _write_safetensors(path, weights, metadata):
    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(v, np.float32) for k, v in weights.items()}, str(path), metadata=metadata)


def test_a_foreign_safetensors_file_is_refused(tmp_path, tiny_checkpoint):
    """Same tensors and a valid config, but not our format tag (or none): refused in one line."""
    from safetensors import safe_open

    from edge_sr.backends import open_upscaler
    from edge_sr.checkpoint import load_checkpoint
    from edge_sr.errors import EdgeSRError

    with safe_open(str(tiny_checkpoint), framework="numpy") as f:
        meta = f.metadata()
        weights = {k: f.get_tensor(k) for k in f.keys()}
    assert meta["format"] == "edge-sr-dcscn/1"  # what the fixture wrote: the reference format tag
    for tag in ("someone-else/1", "edge-sr-dcscn/2", None):
        m = {k: v for k, v in meta.items() if k != "format"}
        if tag is not None:
            m["format"] = tag
        p = tmp_path / f"foreign_{tag}.safetensors".replace("/", "_")
        _write_safetensors(p, weights, m)
        with pytest.raises(EdgeSRError, match="not an edge-sr DCSCN checkpoint") as ei:
            load_checkpoint(p)
        assert repr(tag) in str(ei.value) and str(p) in str(ei.value)  # says what it found, and where
        with pytest.raises(EdgeSRError):
            open_upscaler(p)
    from conftest import textured_bgr
    from edge_sr.imageio import write_image

    write_image(tmp_path / "in.png", textured_bgr(16, 16))
    r = run_cli("upscale", str(tmp_path / "in.png"), "-o", str(tmp_path / "o.png"), "--model", str(p))
    assert r.returncode != 0 and "not an edge-sr DCSCN checkpoint" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "o.png").exists()


def _init_run(hr, out, init):
    from edge_sr.train.loop import TrainArgs

    return TrainArgs(data=[str(hr)], out=str(out), val=None, epochs=1, steps_per_epoch=1, batch=2, patch=16,
                     threads=1, init=str(init), lr=0.0, lr_min=0.0)


@pytest.mark.parametrize("damage", ["missing", "extra", "reshaped"])
def test_init_loads_strictly(tmp_path, tiny_checkpoint, damage):
    """`--init` with a checkpoint of the right config but a missing, extra or mis-shaped tensor is refused."""
    pytest.importorskip("torch")
    from conftest import textured_bgr

    from edge_sr.checkpoint import load_checkpoint, save_checkpoint
    from edge_sr.imageio import write_image
    from edge_sr.train.loop import train

    hr = tmp_path / "hr"
    hr.mkdir()
    write_image(hr / "a.png", textured_bgr(48, 48))
    cfg, w, _ = load_checkpoint(tiny_checkpoint)
    if damage == "missing":
        w.pop("last.weight")
    elif damage == "extra":
        w["features.0.0.extra"] = np.zeros(3, np.float32)
    else:
        w["a1.0.bias"] = np.zeros(w["a1.0.bias"].size + 1, np.float32)
    bad = tmp_path / "bad.safetensors"
    save_checkpoint(bad, cfg, w)
    with pytest.raises(Exception) as ei:
        train(_init_run(hr, tmp_path / "run", bad), progress=False, max_steps=1)
    word = {"missing": "last.weight", "extra": "features.0.0.extra", "reshaped": "a1.0.bias"}[damage]
    assert word in str(ei.value)
    assert not (tmp_path / "run" / "last.safetensors").exists()
    # and the intact checkpoint is taken as it is (the test above is not refusing everything)
    train(_init_run(hr, tmp_path / "ok", tiny_checkpoint), progress=False, max_steps=1)
    _, a, _ = load_checkpoint(tiny_checkpoint)
    _, b, _ = load_checkpoint(tmp_path / "ok" / "last.safetensors")
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_init_refusal_is_one_line(tmp_path, tiny_checkpoint):
    """The CLI turns a damaged --init checkpoint into one line on stderr, not a traceback."""
    pytest.importorskip("torch")
    from conftest import textured_bgr

    from edge_sr.checkpoint import load_checkpoint, save_checkpoint
    from edge_sr.imageio import write_image

    hr = tmp_path / "hr"
    hr.mkdir()
    write_image(hr / "a.png", textured_bgr(48, 48))
    cfg, w, _ = load_checkpoint(tiny_checkpoint)
    w.pop("last.weight")
    bad = tmp_path / "bad.safetensors"
    save_checkpoint(bad, cfg, w)
    r = run_cli("train", "--data", str(hr), "--out", str(tmp_path / "run"), "--init", str(bad), "--patch", "16",
                "--batch", "2", "--epochs", "1", "--steps-per-epoch", "1", "--no-progress", "--threads", "1")
    assert r.returncode != 0, r.stdout
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr[-600:]
    assert "last.weight" in r.stderr


def test_checkpoint_file_details(tmp_path, tiny_checkpoint):
    """Float32 on disk whatever the caller passes; no info -> {}; each refusal names its cause and file;
    file_sha256 is the sha256 of the whole file (chunked reads included)."""
    import hashlib

    from safetensors import safe_open

    from edge_sr.checkpoint import file_sha256, load_checkpoint, save_checkpoint
    from edge_sr.errors import EdgeSRError

    cfg, w, _ = load_checkpoint(tiny_checkpoint)
    p = tmp_path / "f64.safetensors"
    save_checkpoint(p, cfg, {k: v.astype(np.float64) for k, v in w.items()})
    with safe_open(str(p), framework="numpy") as f:
        assert all(f.get_tensor(k).dtype == np.float32 for k in f.keys())
        meta = f.metadata()
    _, _, info = load_checkpoint(p)
    assert info == {}
    bare = tmp_path / "noinfo.safetensors"
    _write_safetensors(bare, w, {k: v for k, v in meta.items() if k != "info"})
    assert load_checkpoint(bare)[2] == {}
    broken = tmp_path / "broken.safetensors"
    _write_safetensors(broken, w, {**meta, "config": '{"layers": "many"'})
    with pytest.raises(EdgeSRError, match="broken config") as ei:
        load_checkpoint(broken)
    assert str(broken) in str(ei.value)
    with pytest.raises(EdgeSRError, match="model file not found") as ei:
        load_checkpoint(tmp_path / "absent.safetensors")
    assert "absent.safetensors" in str(ei.value)
    big = tmp_path / "big.bin"
    data = np.random.default_rng(0).integers(0, 256, (1 << 20) * 2 + 12345, dtype=np.uint8).tobytes()
    big.write_bytes(data)
    assert file_sha256(big) == hashlib.sha256(data).hexdigest()
    assert file_sha256(tiny_checkpoint) == hashlib.sha256(tiny_checkpoint.read_bytes()).hexdigest()
