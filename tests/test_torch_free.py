"""The runtime must work on a Raspberry Pi with numpy, OpenCV and ONNX Runtime only: no torch."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

TORCH_ONLY = {"edge_sr.model", "edge_sr.backends.torch_backend"}
NOT_IMPORTABLE = {"edge_sr.__main__"}  # runs the CLI

BLOCKER = "raise ImportError('torch is blocked in this test: the runtime must not need it')\n"


@pytest.fixture(scope="module")
def no_torch_env(tmp_path_factory):
    d = tmp_path_factory.mktemp("notorch")
    for name in ("torch", "torchvision"):
        (d / name).mkdir()
        (d / name / "__init__.py").write_text(BLOCKER)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(d), str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def _run(code_or_args, env, **kw):
    args = [sys.executable, *code_or_args] if isinstance(code_or_args, list) else [sys.executable, "-c", code_or_args]
    return subprocess.run(args, capture_output=True, text=True, env=env, cwd=str(REPO), timeout=120, **kw)


def test_torch_is_really_blocked(no_torch_env):
    r = _run("import torch", no_torch_env)
    assert r.returncode != 0 and "blocked" in r.stderr


def test_every_runtime_module_imports_without_torch(no_torch_env):
    code = (
        "import pkgutil, importlib, edge_sr, sys\n"
        f"skip = {sorted(TORCH_ONLY | NOT_IMPORTABLE)!r}\n"
        "mods = [m.name for m in pkgutil.walk_packages(edge_sr.__path__, 'edge_sr.') if m.name not in skip]\n"
        "for m in mods: importlib.import_module(m)\n"
        "assert 'torch' not in sys.modules\n"
        "print(len(mods))\n"
    )
    r = _run(code, no_torch_env)
    assert r.returncode == 0, r.stderr
    assert int(r.stdout.strip()) >= 15


def test_cli_help_without_torch(no_torch_env):
    r = _run(["-m", "edge_sr", "--help"], no_torch_env)
    assert r.returncode == 0, r.stderr
    commands = [c for c in ("demo", "upscale", "eval", "train", "export", "calibrate", "build-engine", "stream",
                            "service", "bench") if c in r.stdout]
    assert {"demo", "upscale", "eval", "train"} <= set(commands)
    for c in commands:
        rc = _run(["-m", "edge_sr", c, "--help"], no_torch_env)
        assert rc.returncode == 0, (c, rc.stderr)


def test_training_without_torch_says_what_to_install(no_torch_env, tmp_path):
    r = _run(["-m", "edge_sr", "train", "--data", str(tmp_path), "--out", str(tmp_path / "o")], no_torch_env)
    assert r.returncode == 3 and "torch is needed for training" in r.stderr and "Traceback" not in r.stderr


def test_upscale_with_onnx_without_torch(no_torch_env, tmp_path):
    """The Pi path end to end: shipped ONNX model, ONNX Runtime, OpenCV; torch never imported."""
    from edge_sr.backends import shipped_path

    onnx_model = shipped_path("compact", 2, "onnx")
    if not onnx_model.is_file():
        pytest.skip(f"no shipped ONNX model yet ({onnx_model.name})")
    pytest.importorskip("onnxruntime")
    import cv2
    from conftest import textured_bgr

    src = tmp_path / "in.png"
    cv2.imwrite(str(src), textured_bgr(30, 40))
    r = _run(["-m", "edge_sr", "upscale", str(src), "-o", str(tmp_path / "out.png"), "--model", str(onnx_model)], no_torch_env)
    assert r.returncode == 0, r.stderr
    assert cv2.imread(str(tmp_path / "out.png")).shape == (60, 80, 3)
