"""The pycuda path of the TensorRT backend against a double that models pycuda's context semantics
(tests/fake_pycuda.py: per-thread stack that aborts when a thread ends with a context pushed, static
pop, out-of-thread detach that leaks the retain, out-of-thread frees that leak), and the choice of
binding. The same pattern with real device memory: tests/test_cuda_gpu.py (`gpu`)."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from fake_pycuda import install_fake_pycuda
from fake_tensorrt import make_fake_trt, write_fake_engine

import edge_sr.backends.tensorrt as bt
from edge_sr.errors import DeviceError, MissingDependency

HERE = Path(__file__).resolve().parent


@pytest.fixture
def drv(monkeypatch):
    """Fake pycuda as the only binding, and a fake tensorrt; afterwards nothing may be left pushed,
    retained or leaked."""
    d = install_fake_pycuda(monkeypatch.setitem)
    monkeypatch.setitem(sys.modules, "tensorrt", make_fake_trt("10.3.0"))
    monkeypatch.setattr(bt, "BINDINGS", (bt._PyCuda,))
    yield d
    assert d.aborts == [], f"threads ended with a pycuda context pushed (pycuda aborts the process): {d.aborts}"
    assert not d.thread_stack(), "the main thread's context stack is not empty"


@pytest.fixture
def engine(tmp_path):
    p = tmp_path / "m.engine"
    write_fake_engine(p, min_shape=(8, 8), max_shape=(32, 48))
    return p


def _ref(y):
    return np.kron(y, np.ones((2, 2), np.float32))


def test_infer_on_a_worker_thread_leaves_no_context_pushed(drv, engine):
    """The stream: open on the main thread, infer on the upscale thread, stop, join, close."""
    up = bt.TensorRTUpscaler(engine)
    y = np.random.default_rng(0).random((16, 24), dtype=np.float32)
    out, errors = [], []

    def worker():
        try:
            for _ in range(3):
                out.append(up.infer(y))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    th = threading.Thread(target=worker, name="edge-sr-upscale")
    th.start()
    th.join()
    assert not errors, errors
    np.testing.assert_array_equal(out[-1], _ref(y))
    # copies and synchronisation ran on the worker, with the context current there
    assert {w for w, t in drv.calls if t == "edge-sr-upscale"} == {"memcpy_htod_async", "memcpy_dtoh_async",
                                                                  "synchronize"}
    assert drv.aborts == []  # the worker ended with an empty context stack
    up.close()
    assert drv.retains == 0 and drv.leaks == []


def test_two_upscalers_in_one_thread_close_in_any_order(drv, engine):
    """Context.pop() is static: with a context per upscaler left pushed, closing the first-opened
    popped the other's and the second close failed. Both orders, and interleaved inference."""
    y = np.ones((8, 8), np.float32)
    for order in ((0, 1), (1, 0)):
        ups = [bt.TensorRTUpscaler(engine), bt.TensorRTUpscaler(engine)]
        assert drv.retains == 1  # one retained primary context per process
        ups[1].infer(y)
        ups[order[0]].close()
        np.testing.assert_array_equal(ups[order[1]].infer(y), _ref(y))
        ups[order[1]].close()
        assert drv.retains == 0 and drv.leaks == [] and not drv.thread_stack()


def test_close_from_another_thread_releases_the_retain(drv, engine):
    """pycuda's detach() from a thread that did not make the context, while it is not current, releases
    nothing: the primary context's retain leaked, and the buffers' frees warned and leaked."""
    up = bt.TensorRTUpscaler(engine)
    up.infer(np.ones((8, 8), np.float32))
    th = threading.Thread(target=up.close, name="closer")
    th.start()
    th.join()
    assert drv.retains == 0, "the primary context's retain leaked"
    assert drv.leaks == []
    up.close()  # idempotent


def test_open_on_a_worker_close_on_main(drv, engine):
    box = []
    th = threading.Thread(target=lambda: box.append(bt.TensorRTUpscaler(engine)), name="opener")
    th.start()
    th.join()
    np.testing.assert_array_equal(box[0].infer(np.ones((8, 8), np.float32)), _ref(np.ones((8, 8), np.float32)))
    box[0].close()
    assert drv.retains == 0 and drv.leaks == []


def test_failed_open_releases_everything(drv, engine, monkeypatch):
    trt = sys.modules["tensorrt"]
    monkeypatch.setattr(trt.ICudaEngine, "create_execution_context", lambda self: None)
    with pytest.raises(DeviceError, match="execution context"):
        bt.TensorRTUpscaler(engine)
    assert drv.retains == 0 and drv.leaks == []


def test_stream_pattern_survives_thread_exit_in_a_process():
    """In a process of its own, with the double calling abort() as pycuda does: exit code 0.
    (The code before scoped contexts ended with SIGABRT here.)"""
    r = subprocess.run([sys.executable, str(HERE / "cuda_stream_check.py"), "fake-pycuda"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"exit {r.returncode}: {r.stderr[-2000:]}"
    assert r.stdout.strip().splitlines()[-1].startswith("OK fake-pycuda")


# -- choosing the binding ---------------------------------------------------------------------------

class _Working:
    name = "working-stand-in"

    def __init__(self):
        self.closed = False

    def probe(self):
        pass

    def close(self):
        self.closed = True


def test_a_binding_that_imports_but_fails_is_skipped(monkeypatch, caplog):
    """pycuda imports but cuInit fails (driver too old for the pycuda build): the next binding is used,
    with pycuda's reason logged. Before, the first binding that imported was taken and the error escaped."""
    install_fake_pycuda(monkeypatch.setitem, init_error="CUDA driver version is insufficient for CUDA runtime version")
    monkeypatch.setattr(bt, "BINDINGS", (bt._PyCuda, _Working))
    caplog.set_level("INFO", logger="edge_sr.backends.tensorrt")
    api = bt.cuda_api()
    assert isinstance(api, _Working)
    assert "pycuda: cuInit failed: CUDA driver version is insufficient" in caplog.text


def test_a_failing_tiny_allocation_is_skipped(monkeypatch):
    d = install_fake_pycuda(monkeypatch.setitem)

    def no_memory(n):
        raise d.RuntimeError("cuMemAlloc failed: out of memory")

    d.mem_alloc = no_memory
    monkeypatch.setattr(bt, "BINDINGS", (bt._PyCuda, _Working))
    assert isinstance(bt.cuda_api(), _Working)
    assert d.retains == 0 and not d.thread_stack()  # the failed candidate was closed cleanly


def test_no_binding_works_one_error_with_each_reason(monkeypatch, tmp_path):
    """pycuda fails at cuInit, cuda-python (the real package, no driver here) at its first call."""
    pytest.importorskip("cuda.bindings.runtime")
    install_fake_pycuda(monkeypatch.setitem, init_error="no CUDA-capable device is detected")
    monkeypatch.setattr(bt, "BINDINGS", (bt._PyCuda, bt._CudaPython))
    monkeypatch.setattr(bt, "TEGRA_RELEASE", tmp_path / "absent")
    with pytest.raises(DeviceError) as exc:
        bt.cuda_api()
    msg = str(exc.value)
    assert "pycuda: cuInit failed: no CUDA-capable device" in msg
    assert "cuda-python:" in msg and "\n" not in msg


def test_no_binding_importable_is_a_missing_dependency(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pycuda", None)
    monkeypatch.setitem(sys.modules, "pycuda.driver", None)
    monkeypatch.setitem(sys.modules, "cuda.bindings", None)
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", None)
    monkeypatch.setitem(sys.modules, "cuda.cudart", None)
    rel = tmp_path / "nv_tegra_release"
    rel.write_text("# R36 (release), REVISION: 4.0, GCID: 1, BOARD: generic, EABI: aarch64\n")
    monkeypatch.setattr(bt, "TEGRA_RELEASE", rel)
    with pytest.raises(MissingDependency) as exc:
        bt.cuda_api()
    msg = str(exc.value)
    assert "pycuda: not importable" in msg and "cuda-python: not importable" in msg
    assert 'JetPack 6' in msg and '"cuda-python>=12,<13"' in msg


@pytest.mark.parametrize("release,expect", [
    ("# R35 (release), REVISION: 4.1", "JetPack 5 (CUDA 11.4): pip install pycuda"),
    ("# R36 (release), REVISION: 3.0", 'JetPack 6 (CUDA 12): pip install "cuda-python>=12,<13" (13.x needs a CUDA 13 driver)'),
    ("# R32 (release), REVISION: 7.4", "JetPack 4 (CUDA 10.2): pip install pycuda"),
    ("# R38 (release), REVISION: 2.0", 'JetPack 7 (CUDA 13): pip install "cuda-python>=13,<14"'),
])
def test_install_hint_per_jetpack(tmp_path, release, expect):
    rel = tmp_path / "nv_tegra_release"
    rel.write_text(release + ", GCID: 1, BOARD: t186ref, EABI: aarch64, DATE: x\n")
    assert expect in bt.cuda_binding_hint(rel)
