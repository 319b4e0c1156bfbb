"""The cuda-python path of the TensorRT backend against the real ``cuda-bindings`` package (it installs
on x86 and imports without a driver; every runtime call then returns cudaErrorInsufficientDriver, 35):
error mapping, return shapes, the versions named in the message. Where a test needs another answer
from CUDA (an old driver, an allocation failure, a legacy RuntimeError), it wraps the real module and
replaces that one function, keeping the real enums and return shapes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import pytest

rt = pytest.importorskip("cuda.bindings.runtime", reason="cuda-bindings not installed (pip install cuda-bindings)")

import edge_sr.backends.tensorrt as bt  # noqa: E402
from edge_sr.errors import DeviceError  # noqa: E402

HERE = Path(__file__).resolve().parent
NO_DRIVER = rt.cudaDriverGetVersion()[1] == 0  # this machine: no NVIDIA driver
needs_no_driver = pytest.mark.skipif(not NO_DRIVER, reason="an NVIDIA driver is present (these check the no-driver paths)")
PKG = metadata.version("cuda-bindings")


class _Wrapped:
    """The real runtime module with some functions replaced."""

    def __init__(self, **replace):
        self._replace = replace

    def __getattr__(self, name):
        return self._replace.get(name) or getattr(rt, name)


def _named(fn, name):
    fn.__name__ = name
    return fn


@pytest.fixture
def api(monkeypatch, tmp_path):
    monkeypatch.setattr(bt, "TEGRA_RELEASE", tmp_path / "absent")  # not a Jetson: hints by driver version
    return bt._CudaPython()


def test_return_shapes_of_the_real_package(api):
    # (err, value) -> value; the runtime version the package was built for matches its major version
    runtime = api._call(rt.cudaRuntimeGetVersion)
    assert isinstance(runtime, int) and runtime // 1000 == int(PKG.split(".")[0])
    assert isinstance(api._call(rt.cudaDriverGetVersion), int)
    # (err,) of cudaFree and friends: a 1-tuple, not a bare error code
    assert isinstance(rt.cudaFree(0), tuple) and len(rt.cudaFree(0)) == 1
    # a stream object converts to the int handle TensorRT's execute_async_v3 takes
    assert int(rt.cudaStream_t()) == 0


@needs_no_driver
def test_no_driver_is_one_device_error_naming_the_versions(api):
    with pytest.raises(DeviceError) as exc:
        api.probe()
    msg = str(exc.value)
    assert exc.value.exit_code == 4 and "\n" not in msg
    major, minor = (int(v) for v in PKG.split(".")[:2])
    assert f"cuda-bindings {PKG} (CUDA {major}.{minor} runtime)" in msg
    assert "no usable NVIDIA driver" in msg and "cudaErrorInsufficientDriver" in msg and "cudaSetDevice" in msg


def test_driver_too_old_names_both_versions_and_what_to_install(api):
    """cudaErrorInsufficientDriver (35) with a CUDA 11.4 driver (JetPack 5) under a 12.x binding."""
    api.rt = _Wrapped(cudaDriverGetVersion=lambda: (rt.cudaError_t.cudaSuccess, 11040),
                      cudaSetDevice=_named(lambda d: (rt.cudaError_t.cudaErrorInsufficientDriver,), "cudaSetDevice"))
    with pytest.raises(DeviceError) as exc:
        api.probe()
    msg = str(exc.value)
    assert "the NVIDIA driver supports CUDA 11.4, too old for cuda-bindings " + PKG in msg
    assert "for a CUDA 11 driver: pip install pycuda" in msg


def test_driver_too_old_on_jetpack6_hint(api, monkeypatch, tmp_path):
    rel = tmp_path / "nv_tegra_release"
    rel.write_text("# R36 (release), REVISION: 4.0, GCID: 1, BOARD: generic, EABI: aarch64\n")
    monkeypatch.setattr(bt, "TEGRA_RELEASE", rel)
    api.rt = _Wrapped(cudaDriverGetVersion=lambda: (rt.cudaError_t.cudaSuccess, 12060),
                      cudaMalloc=_named(lambda n: (rt.cudaError_t.cudaErrorInsufficientDriver, None), "cudaMalloc"))
    with pytest.raises(DeviceError, match=r'supports CUDA 12\.6.*JetPack 6.*"cuda-python>=12,<13" \(13\.x needs a CUDA 13'):
        api.malloc(16)


def test_legacy_runtime_error_becomes_a_device_error(api):
    """Older cuda-python raised RuntimeError (e.g. libcuda missing) instead of returning an error code."""

    def boom(n):
        raise RuntimeError("Failed to dlopen libcuda.so.1")

    api.rt = _Wrapped(cudaMalloc=_named(boom, "cudaMalloc"))
    with pytest.raises(DeviceError, match=r"cudaMalloc: Failed to dlopen libcuda\.so\.1"):
        api.malloc(16)


def test_other_errors_name_the_call_and_the_code(api):
    api.rt = _Wrapped(cudaMalloc=_named(lambda n: (rt.cudaError_t.cudaErrorMemoryAllocation, None), "cudaMalloc"))
    with pytest.raises(DeviceError, match=r"cudaMalloc failed: cudaErrorMemoryAllocation \(2\)"):
        api.malloc(1 << 40)


def test_success_shapes_device_and_stream(api):
    props = rt.cudaDeviceProp()  # the real struct: name is bytes
    api.rt = _Wrapped(cudaGetDeviceProperties=_named(lambda d: (rt.cudaError_t.cudaSuccess, props),
                                                     "cudaGetDeviceProperties"),
                      cudaStreamCreate=_named(lambda: (rt.cudaError_t.cudaSuccess, rt.cudaStream_t()), "cudaStreamCreate"),
                      cudaStreamDestroy=_named(lambda s: (rt.cudaError_t.cudaSuccess,), "cudaStreamDestroy"))
    name, cc = api.device()
    assert isinstance(name, str) and cc == f"{props.major}.{props.minor}"
    h = api.stream()
    assert h == 0 and h in api._streams
    api.destroy_stream(h)
    assert not api._streams


@needs_no_driver
def test_cuda_api_with_only_cuda_python_raises_device_error(monkeypatch, tmp_path):
    monkeypatch.setattr(bt, "BINDINGS", (bt._CudaPython,))
    monkeypatch.setattr(bt, "TEGRA_RELEASE", tmp_path / "absent")
    with pytest.raises(DeviceError, match=r"no CUDA binding works on this device \(cuda-python: no usable NVIDIA driver"):
        bt.cuda_api()


@needs_no_driver
def test_cli_build_engine_without_a_driver_is_one_line(tmp_path):
    """End to end through the real binding: TensorRT (the fake) imports, no CUDA binding works."""
    import onnx
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Identity", ["y_lr"], ["out"])], "g",
                          [helper.make_tensor_value_info("y_lr", TensorProto.FLOAT, [1, 1, None, None])],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 1, None, None])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    helper.set_model_props(m, {"edge_sr.scale": "2", "edge_sr.output": "residual"})
    model = tmp_path / "m.onnx"
    onnx.save(m, str(model))
    pkg = tmp_path / "site" / "tensorrt"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(textwrap.dedent("""
        import sys
        from fake_tensorrt import make_fake_trt
        sys.modules[__name__] = make_fake_trt("10.3.0")
    """))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path / "site"), str(HERE)]))
    env.pop("EDGE_SR_DEBUG", None)
    r = subprocess.run([sys.executable, "-m", "edge_sr", "build-engine", "--onnx", str(model), "--shape", "16x16",
                        "-o", str(tmp_path / "m.engine")], capture_output=True, text=True, env=env, timeout=120)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 4 and len(lines) == 1, r.stderr
    assert "cuda-python" in lines[0] and "no usable NVIDIA driver" in lines[0]
    assert not list(tmp_path.glob("m.engine*")) and not list(tmp_path.glob("*.cache"))
