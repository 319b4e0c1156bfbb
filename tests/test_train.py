import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, run_cli, textured_bgr

torch = pytest.importorskip("torch")

from edge_sr.checkpoint import load_checkpoint  # noqa: E402
from edge_sr.imageio import write_image  # noqa: E402


@pytest.fixture(scope="module")
def hr_folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("hr")
    for i in range(6):
        write_image(d / f"img{i}.png", textured_bgr(64 + 4 * i, 72, seed=i))
    return d


def _args(hr, out, **kw):
    from edge_sr.train.loop import TrainArgs

    base = dict(data=[str(hr)], out=str(out), val=str(hr), epochs=2, steps_per_epoch=4, batch=4, patch=16,
                warmup_steps=2, threads=1)
    base.update(kw)
    return TrainArgs(**base)


def test_training_learns_and_logs(hr_folder, tmp_path):
    from edge_sr.train.loop import train

    res = train(_args(hr_folder, tmp_path / "run", epochs=3), progress=False)
    assert res["step"] == 12 and res["epoch"] == 3
    lines = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2, 3]
    assert all({"loss", "val_psnr", "lr", "wall_s"} <= set(r) for r in lines)
    cfg, w, info = load_checkpoint(tmp_path / "run" / "best.safetensors")
    assert cfg.preset == "compact" and info["step"] in (4, 8, 12)


def test_resume_is_exact(hr_folder, tmp_path):
    from edge_sr.train.loop import train

    train(_args(hr_folder, tmp_path / "straight"), progress=False)
    train(_args(hr_folder, tmp_path / "split"), progress=False, max_steps=3)  # stops mid-epoch
    train(_args(hr_folder, tmp_path / "split"), resume=True, progress=False)
    _, a, _ = load_checkpoint(tmp_path / "straight" / "last.safetensors")
    _, b, _ = load_checkpoint(tmp_path / "split" / "last.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_cli_train_and_bad_inputs(hr_folder, tmp_path):
    r = run_cli("train", "--data", str(hr_folder), "--val", str(hr_folder), "--out", str(tmp_path / "c"), "--epochs", "1",
                "--steps-per-epoch", "2", "--batch", "2", "--patch", "16", "--no-progress", "--threads", "1")
    assert r.returncode == 0, r.stderr
    assert "best val" in r.stdout
    empty = tmp_path / "empty"
    empty.mkdir()
    r = run_cli("train", "--data", str(empty), "--out", str(tmp_path / "e"), "--val", str(hr_folder))
    assert r.returncode != 0 and "no training images" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("train", "--data", str(hr_folder), "--out", str(tmp_path / "big"), "--patch", "200", "--val", str(hr_folder))
    assert r.returncode != 0 and "smaller than one patch" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "n"))
    assert r.returncode != 0 and "not found" in r.stderr
    r = run_cli("train", "--data", str(hr_folder), "--out", str(tmp_path / "r"), "--resume", "--val", str(hr_folder))
    assert r.returncode != 0 and "no state.pt" in r.stderr


@pytest.mark.slow
def test_torchrun_two_cpu_processes(hr_folder, tmp_path):
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun not found")
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1", MASTER_ADDR="127.0.0.1")
    r = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "edge_sr.train", "--data", str(hr_folder), "--val", str(hr_folder),
         "--out", str(out), "--epochs", "1", "--steps-per-epoch", "3", "--batch", "2", "--patch", "16", "--no-progress",
         "--threads", "1"],
        capture_output=True, text=True, timeout=240, env=env, cwd=str(REPO),
    )
    assert r.returncode == 0, r.stderr[-2000:]
    cfg, w, info = load_checkpoint(out / "last.safetensors")
    assert info["world_size"] == 2 and info["step"] == 3
    rec = json.loads((out / "log.jsonl").read_text().splitlines()[-1])
    assert rec["patches"] == 3 * 2 * 2  # steps x batch x processes
    state = torch.load(out / "state.pt", weights_only=True)
    assert isinstance(state["sampler"], list) and len(state["sampler"]) == 2
    assert state["sampler"][0] != state["sampler"][1]  # each rank draws its own patches


@pytest.mark.gpu
def test_cuda_training_resumes_a_cpu_run(hr_folder, tmp_path):
    """A run started on the CPU continues on CUDA (and the weights stay usable on the CPU)."""
    if not torch.cuda.is_available():
        pytest.skip("torch sees no CUDA device")
    from edge_sr.train.loop import train

    from edge_sr.model import DCSCN

    run = tmp_path / "run"
    train(_args(hr_folder, run, epochs=4, device="cpu"), progress=False, max_steps=6)
    res = train(_args(hr_folder, run, epochs=4, device="cuda"), resume=True, progress=False)
    assert res["step"] == 16 and res["epoch"] == 4
    lines = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2, 3, 4] and all(np.isfinite(r["loss"]) for r in lines)
    cfg, w, _ = load_checkpoint(run / "last.safetensors")
    m = DCSCN(cfg)
    m.load_state_dict({k: torch.from_numpy(v) for k, v in w.items()}, strict=True)
    x = torch.rand(1, 1, 24, 20)
    with torch.no_grad():
        a = m(x)
        b = m.cuda()(x.cuda()).cpu()
    assert torch.allclose(a, b, atol=1e-4)


def test_init_fine_tunes_from_a_checkpoint(hr_folder, tmp_path):
    from edge_sr.train.loop import train

    train(_args(hr_folder, tmp_path / "base", epochs=1), progress=False)
    base = tmp_path / "base" / "last.safetensors"
    # one step at learning rate 0 after init: the weights are the checkpoint's, bit for bit
    train(_args(hr_folder, tmp_path / "ft", epochs=1, init=str(base), lr=0.0, lr_min=0.0), progress=False, max_steps=1)
    _, a, _ = load_checkpoint(base)
    _, b, _ = load_checkpoint(tmp_path / "ft" / "last.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    # a checkpoint of another network is refused in one line, nothing written
    r = run_cli("train", "--data", str(hr_folder), "--out", str(tmp_path / "bad"), "--preset", "normal",
                "--init", str(base), "--patch", "16", "--batch", "2", "--epochs", "1", "--steps-per-epoch", "1",
                "--no-progress")
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1 and "compact x2" in r.stderr, r.stderr


def test_init_across_scales_keeps_all_but_the_last_conv(hr_folder, tmp_path):
    """x2 weights start an x3 run: every tensor but the last conv is the x2 file's, bit for bit (one step at
    learning rate 0); the last conv has x3's shape and is the fresh initialisation, not some slice of x2's."""
    import torch

    from edge_sr.model import DCSCN
    from edge_sr.train.loop import train

    train(_args(hr_folder, tmp_path / "x2", epochs=1), progress=False)
    base = tmp_path / "x2" / "last.safetensors"
    train(_args(hr_folder, tmp_path / "x3", epochs=1, scale=3, init=str(base), lr=0.0, lr_min=0.0),
          progress=False, max_steps=1)
    _, a, _ = load_checkpoint(base)
    cfg3, b, _ = load_checkpoint(tmp_path / "x3" / "last.safetensors")
    assert cfg3.scale == 3 and a.keys() == b.keys()
    for k in a:
        if k == "last.weight":
            continue
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert b["last.weight"].shape[0] == 9 and a["last.weight"].shape[0] == 4
    torch.manual_seed(_args(hr_folder, tmp_path).seed)
    fresh = DCSCN(cfg3).state_dict()["last.weight"].numpy()
    np.testing.assert_array_equal(b["last.weight"], fresh)


def test_init_prelu_to_relu_keeps_the_convs(hr_folder, tmp_path):
    """A PReLU checkpoint starts a --activation relu run: every conv tensor carries over bit for bit (one step at
    learning rate 0), the slopes are dropped, and the run's checkpoint is a ReLU network. The other way is refused."""
    from edge_sr.train.loop import train

    train(_args(hr_folder, tmp_path / "p", epochs=1), progress=False)
    base = tmp_path / "p" / "last.safetensors"
    train(_args(hr_folder, tmp_path / "r", epochs=1, init=str(base), lr=0.0, lr_min=0.0, activation="relu"),
          progress=False, max_steps=1)
    _, a, _ = load_checkpoint(base)
    cfg, b, _ = load_checkpoint(tmp_path / "r" / "last.safetensors")
    assert cfg.activation == "relu"
    dropped = set(a) - set(b)
    assert dropped and not set(b) - set(a) and all(a[k].ndim == 1 for k in dropped)
    assert len(dropped) == len(cfg.feature_filters) + 3  # one slope per conv but the last
    for k in b:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    r = run_cli("train", "--data", str(hr_folder), "--out", str(tmp_path / "bad"), "--init",
                str(tmp_path / "r" / "last.safetensors"), "--patch", "16", "--batch", "2", "--epochs", "1",
                "--steps-per-epoch", "1", "--no-progress")
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1 and "relu" in r.stderr, r.stderr


def test_distillation_pulls_the_student_towards_the_teacher(hr_folder, tmp_path):
    """--teacher: with --distill 1 the teacher's output is the only target. A teacher made to answer wrongly
    (its residual 8x too strong) must pull the student's output towards itself, where the same steps without
    a teacher leave it near the HR images; a teacher of another scale is refused in one line."""
    import torch

    from edge_sr.checkpoint import save_checkpoint
    from edge_sr.model import DCSCN
    from edge_sr.train.loop import train

    train(_args(hr_folder, tmp_path / "base", epochs=2), progress=False)
    cfg, w, _ = load_checkpoint(tmp_path / "base" / "last.safetensors")
    w = dict(w, **{"last.weight": w["last.weight"] * 8.0})
    save_checkpoint(tmp_path / "teacher.safetensors", cfg, w)
    base = str(tmp_path / "base" / "last.safetensors")
    kw = dict(epochs=10, init=base, lr=5e-3, val=None)
    train(_args(hr_folder, tmp_path / "plain", **kw), progress=False)
    train(_args(hr_folder, tmp_path / "dist", teacher=str(tmp_path / "teacher.safetensors"), distill=1.0, **kw),
          progress=False)

    def net(path):
        c, ws, _ = load_checkpoint(path)
        m = DCSCN(c)
        m.load_state_dict({k: torch.from_numpy(v) for k, v in ws.items()})
        return m.eval()

    from edge_sr.color import y_from_bgr_u8

    x = torch.from_numpy((y_from_bgr_u8(textured_bgr(40, 48, seed=7)) / 255.0).astype(np.float32))[None, None]
    with torch.no_grad():
        t = net(tmp_path / "teacher.safetensors")(x)
        gap = {n: float((net(tmp_path / n / "last.safetensors")(x) - t).abs().mean()) for n in ("plain", "dist")}
    assert gap["dist"] < 0.5 * gap["plain"], gap
    r = run_cli("train", "--data", str(hr_folder), "--out", str(tmp_path / "bad"), "--scale", "3",
                "--teacher", str(tmp_path / "teacher.safetensors"), "--patch", "16", "--batch", "2", "--epochs", "1",
                "--steps-per-epoch", "1", "--val", "none", "--no-progress")
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1 and "x2 network" in r.stderr, r.stderr
