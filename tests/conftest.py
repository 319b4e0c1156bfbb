"""Shared fixtures. Real data comes from $EDGE_SR_DATA (default: ../shared/data beside the repo);
tests that need it skip with the reason when it is absent, except in CI (CI=true), where a missing
data or peer folder is a failure: CI must not go green by skipping the protocol. Hardware markers
skip with a reason. Permission tests run as an unprivileged user when the suite runs as root."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent


# skip reasons that name these mean "the shared data is missing": a failure in CI
SHARED_DATA_MARKERS = ("$EDGE_SR_DATA", "$EDGE_SR_PEERS")


def in_ci() -> bool:
    """True under a CI runner (GitHub Actions, GitLab and most others set CI=true)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def _data_root() -> Path | None:
    env = os.environ.get("EDGE_SR_DATA")
    # a folder named in $EDGE_SR_DATA is the one meant: no silent fallback to another
    cands = [Path(env)] if env else [REPO.parent / "shared" / "data"]
    for c in cands:
        if (c / "val").is_dir():
            return c
    return None


def _has_nvidia_gpu() -> str | None:
    """None when an NVIDIA GPU is present, else the reason (tests needing TensorRT or CUDA torch check those too)."""
    if shutil.which("nvidia-smi") is None and not Path("/etc/nv_tegra_release").exists():
        return "no NVIDIA GPU (nvidia-smi not found)"
    return None


def require_tensorrt():
    """Skip (with the reason) unless TensorRT imports; for `gpu` tests that build engines."""
    try:
        import tensorrt  # noqa: F401
    except Exception as exc:  # pragma: no cover - depends on the machine
        pytest.skip(f"TensorRT not importable ({exc})")


def pytest_collection_modifyitems(config, items):
    reasons = {
        "gpu": _has_nvidia_gpu(),
        "jetson": None if Path("/etc/nv_tegra_release").exists() else "not a Jetson (/etc/nv_tegra_release absent)",
        "pi": None
        if Path("/proc/device-tree/model").exists() and "Raspberry Pi" in Path("/proc/device-tree/model").read_text(errors="ignore")
        else "not a Raspberry Pi",
        "camera": None if any(Path("/dev").glob("video*")) else "no camera (/dev/video* absent)",
    }
    for item in items:
        for mark, reason in reasons.items():
            if reason and mark in item.keywords:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI, a test skipped because the shared data or peer models are missing fails instead."""
    outcome = yield
    rep = outcome.get_result()
    if not (rep.skipped and in_ci()) or hasattr(rep, "wasxfail"):
        return
    reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
    if any(m in reason for m in SHARED_DATA_MARKERS):
        rep.outcome = "failed"
        rep.longrepr = f"CI=true and the shared data is missing: {reason}"


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = _data_root()
    if root is None:
        pytest.skip("data folder absent: set $EDGE_SR_DATA to the folder holding train/ and val/ "
                    "(default ../shared/data beside the repo)")
    return root


@pytest.fixture(scope="session")
def set5(data_root) -> Path:
    return data_root / "val" / "set5"


def relu_compact_checkpoint(path: Path, seed: int) -> Path:
    """A compact x2 ReLU network (``--activation relu``) with deterministic random weights, saved at ``path``."""
    import dataclasses

    import torch

    from edge_sr.checkpoint import save_checkpoint
    from edge_sr.config import preset
    from edge_sr.model import DCSCN

    torch.manual_seed(seed)
    m = DCSCN(dataclasses.replace(preset("compact", 2), activation="relu"))
    with torch.no_grad():  # a visible residual
        m.last.weight.normal_(0, 0.05)
    save_checkpoint(path, m.config, {k: v.numpy() for k, v in m.state_dict().items()})
    return path


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A compact x2 checkpoint with deterministic random weights (no training)."""
    torch = pytest.importorskip("torch")
    from edge_sr.checkpoint import save_checkpoint
    from edge_sr.config import preset
    from edge_sr.model import DCSCN

    torch.manual_seed(0)
    m = DCSCN(preset("compact", 2))
    with torch.no_grad():  # a visible residual so that tests can tell model from bicubic
        m.last.weight.normal_(0, 0.05)
    path = tmp_path_factory.mktemp("ckpt") / "tiny_compact_x2.safetensors"
    save_checkpoint(path, m.config, {k: v.numpy() for k, v in m.state_dict().items()}, {"note": "random test weights"})
    return path


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def textured_bgr(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A deterministic colour test image with edges, gradients and noise."""
    r = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([
        128 + 100 * np.sin(xx / 7.0) * np.cos(yy / 11.0),
        128 + 90 * np.sign(np.sin(xx / 13.0 + yy / 17.0)),
        (xx * 255 / max(1, w - 1)),
    ], axis=-1)
    base += r.normal(0, 12, base.shape)
    return np.clip(base, 0, 255).astype(np.uint8)


def run_cli(*args: str, env: dict | None = None, timeout: float = 300, cwd: Path | None = None,
            unprivileged: bool = False) -> subprocess.CompletedProcess:
    """Run `python -m edge_sr ARGS` in a subprocess, capturing output. ``unprivileged``: as user
    nobody when the suite runs as root (root reads and writes anything: permission tests need a user)."""
    e = dict(os.environ)
    e.update(env or {})
    prefix = unprivileged_prefix() if unprivileged else []
    return subprocess.run([*prefix, sys.executable, "-m", "edge_sr", *args], capture_output=True, text=True, env=e,
                          timeout=timeout, cwd=str(cwd or REPO))


UNPRIVILEGED_UID = 65534  # nobody


def unprivileged_prefix() -> list[str]:
    """The command prefix that drops root to user nobody ([] when not root); skips when it cannot."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root and setpriv (util-linux) is absent: cannot test permissions as a user")
    return [setpriv, f"--reuid={UNPRIVILEGED_UID}", f"--regid={UNPRIVILEGED_UID}", "--clear-groups"]


@pytest.fixture
def user_tmp():
    """A temporary folder the unprivileged user can use (pytest's tmp_path is root's own, mode 0700)."""
    d = Path(tempfile.mkdtemp(prefix="edge-sr-perm-"))
    d.chmod(0o777)
    try:
        yield d
    finally:
        for p in [d, *d.rglob("*")]:  # let root remove what the tests locked
            try:
                p.chmod(0o777)
            except OSError:
                pass
        shutil.rmtree(d, ignore_errors=True)
