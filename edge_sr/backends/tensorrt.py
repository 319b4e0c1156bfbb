"""TensorRT backend: a serialized engine built on this device by ``edge-sr build-engine``.

Runs with the name-based tensor API (``execute_async_v3``, TensorRT 8.5+) or the binding API
(``execute_async_v2``, TensorRT 8.0/8.2), chosen by feature. Device memory through pycuda, or
cuda-python when pycuda is absent; pinned host buffers; one CUDA stream; everything freed in close().
An engine whose sidecar JSON names another GPU or TensorRT version is refused (engines are not portable).
"""

from __future__ import annotations

import ctypes
import json
import logging
from pathlib import Path

import numpy as np

from ..config import DCSCNConfig
from ..errors import DeviceError, EdgeSRError, MissingDependency
from ..lazy import require
from . import Upscaler

log = logging.getLogger(__name__)

SIDECAR_FORMAT = "edge-sr-engine/1"


def sidecar_path(engine_path) -> Path:
    p = Path(engine_path)
    return p.with_name(p.name + ".json")


# -- CUDA memory: small owner classes over pycuda or cuda-python ----------------------------------

class _PyCuda:
    """pycuda: the primary context of device 0 (the one TensorRT's runtime uses).

    pycuda speaks the driver API, whose current context is per thread: the stream opens the upscaler on
    the main thread and runs it on its upscale thread, so every call first makes the context current in
    the calling thread (pushed once per thread, popped by close() on the threads that pushed it)."""

    name = "pycuda"

    def __init__(self):
        import threading

        self.cuda = require("pycuda.driver", "TensorRT device buffers")
        self.cuda.init()
        self.ctx = self.cuda.Device(0).retain_primary_context()
        self._tls = threading.local()
        self._enter()

    def _enter(self) -> None:
        if not getattr(self._tls, "pushed", False):
            self.ctx.push()
            self._tls.pushed = True

    def device(self) -> tuple[str, str]:
        d = self.cuda.Device(0)
        return d.name(), "%d.%d" % d.compute_capability()

    def malloc(self, nbytes: int):
        self._enter()
        a = self.cuda.mem_alloc(max(1, nbytes))

        def free():
            self._enter()
            a.free()

        return int(a), free

    def host_empty(self, count: int):
        self._enter()
        arr = self.cuda.pagelocked_empty(count, np.float32)

        def free():
            self._enter()
            if hasattr(arr.base, "free"):
                arr.base.free()

        return arr, free

    def stream(self):
        self._enter()
        s = self.cuda.Stream()
        return s.handle, s

    def htod(self, dptr: int, host: np.ndarray, nbytes: int, stream) -> None:
        self._enter()
        self.cuda.memcpy_htod_async(dptr, host[: nbytes // host.itemsize], stream)

    def dtoh(self, host: np.ndarray, dptr: int, nbytes: int, stream) -> None:
        self._enter()
        self.cuda.memcpy_dtoh_async(host[: nbytes // host.itemsize], dptr, stream)

    def sync(self, stream) -> None:
        self._enter()
        stream.synchronize()

    def destroy_stream(self, stream) -> None:
        pass  # pycuda frees the stream with its object

    def close(self) -> None:
        # pop on this thread if it pushed; a worker thread that pushed has ended (or ends) with the context
        # on its stack, which holds no reference: detach() releases the primary context once.
        try:
            if getattr(self._tls, "pushed", False):
                self.ctx.pop()
                self._tls.pushed = False
        finally:
            self.ctx.detach()


class _CudaPython:
    """cuda-python (``cuda.bindings.runtime``, older ``cuda.cudart``), as NVIDIA's TensorRT 10 samples use."""

    name = "cuda-python"

    def __init__(self):
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            cudart = require("cuda.cudart", "TensorRT device buffers")
        self.rt = cudart

    def _ok(self, res):
        err, *rest = res if isinstance(res, tuple) else (res,)
        if int(err) != 0:
            raise DeviceError(f"CUDA call failed: {err}")
        return rest[0] if len(rest) == 1 else rest

    def device(self) -> tuple[str, str]:
        props = self._ok(self.rt.cudaGetDeviceProperties(0))
        name = props.name.decode(errors="replace").rstrip("\0") if isinstance(props.name, bytes) else str(props.name)
        return name, f"{props.major}.{props.minor}"

    def malloc(self, nbytes: int):
        ptr = int(self._ok(self.rt.cudaMalloc(max(1, nbytes))))
        return ptr, (lambda: self._ok(self.rt.cudaFree(ptr)))

    def host_empty(self, count: int):
        ptr = int(self._ok(self.rt.cudaMallocHost(max(1, count * 4))))
        arr = np.ctypeslib.as_array((ctypes.c_float * count).from_address(ptr))
        return arr, (lambda: self._ok(self.rt.cudaFreeHost(ptr)))

    def stream(self):
        s = self._ok(self.rt.cudaStreamCreate())
        return int(s), s

    def htod(self, dptr: int, host: np.ndarray, nbytes: int, stream) -> None:
        self._ok(self.rt.cudaMemcpyAsync(dptr, host.ctypes.data, nbytes,
                                         self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice, stream))

    def dtoh(self, host: np.ndarray, dptr: int, nbytes: int, stream) -> None:
        self._ok(self.rt.cudaMemcpyAsync(host.ctypes.data, dptr, nbytes,
                                         self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream))

    def sync(self, stream) -> None:
        self._ok(self.rt.cudaStreamSynchronize(stream))

    def destroy_stream(self, stream) -> None:
        self._ok(self.rt.cudaStreamDestroy(stream))

    def close(self) -> None:
        pass


def cuda_api():
    """pycuda when it imports, else cuda-python; one clear error when neither does."""
    errors = []
    for cls in (_PyCuda, _CudaPython):
        try:
            return cls()
        except MissingDependency as exc:
            errors.append(str(exc))
    raise MissingDependency("TensorRT needs pycuda or cuda-python for device buffers: "
                            "pip install cuda-python (or pycuda, built on the device)")


class Buffer:
    """A device buffer and its pinned host twin, freed exactly once."""

    def __init__(self, cuda, count: int):
        self.count, self.nbytes = count, count * 4
        self.dptr, self._free_dev = cuda.malloc(self.nbytes)
        self.host, self._free_host = cuda.host_empty(count)

    def free(self) -> None:
        for name in ("_free_dev", "_free_host"):
            f = getattr(self, name, None)
            if f is not None:
                setattr(self, name, None)
                f()


# -- sidecar ---------------------------------------------------------------------------------

def read_sidecar(engine_path) -> dict:
    sc = sidecar_path(engine_path)
    if not sc.is_file():
        raise EdgeSRError(f"{Path(engine_path).name} has no sidecar {sc.name}: its GPU and TensorRT version are "
                          "unknown; rebuild it on this device with edge-sr build-engine --onnx MODEL.onnx ...")
    try:
        meta = json.loads(sc.read_text())
    except (OSError, ValueError) as exc:
        raise EdgeSRError(f"unreadable engine sidecar {sc}: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != SIDECAR_FORMAT:
        raise EdgeSRError(f"{sc} is not an edge-sr engine sidecar (format {meta.get('format') if isinstance(meta, dict) else '?'})")
    return meta


def check_sidecar(meta: dict, trt_version: str, gpu_name: str, compute_capability: str, engine_name: str) -> None:
    """Refuse an engine built for another GPU or another TensorRT version."""
    problems = []
    if meta.get("tensorrt") != trt_version:
        problems.append(f"TensorRT {meta.get('tensorrt')} (this device has {trt_version})")
    if meta.get("gpu") != gpu_name or meta.get("compute_capability") != compute_capability:
        problems.append(f"GPU {meta.get('gpu')} sm {meta.get('compute_capability')} "
                        f"(this device has {gpu_name} sm {compute_capability})")
    if problems:
        src = meta.get("source_onnx") or "MODEL.onnx"
        raise DeviceError(f"engine {engine_name} was built for {' and '.join(problems)}: engines are not portable; "
                          f"rebuild it on this device with edge-sr build-engine --onnx {src} "
                          f"--precision {meta.get('precision', 'fp16')} -o {engine_name}")


# -- the backend ------------------------------------------------------------------------------

class TensorRTUpscaler(Upscaler):
    backend = "tensorrt"

    def __init__(self, path, *, device_check: bool = True, **_ignored):
        trt = require("tensorrt", "running .engine files")
        path = Path(path)
        if not path.is_file():
            raise EdgeSRError(f"engine not found: {path}")
        self.path, self.name = path, path.stem
        meta = read_sidecar(path)
        self.meta = meta
        self._bufs: list[Buffer] = []
        self._cuda = cuda_api()
        self._stream = None
        try:
            if device_check:
                name, cc = self._cuda.device()
                check_sidecar(meta, trt.__version__, name, cc, path.name)
            self._open(trt, path, meta)
        except BaseException:
            self.close()
            raise

    def _open(self, trt, path: Path, meta: dict) -> None:
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise DeviceError(f"TensorRT could not deserialize {path.name} (corrupt, or built by another version): "
                              "rebuild it with edge-sr build-engine")
        self._engine = engine
        self._ctx = engine.create_execution_context()
        self.precision = meta.get("precision", "fp32")
        self.scale = int(meta["scale"])
        self.output_is_residual = meta.get("output", "y") == "residual"
        self.config = DCSCNConfig.from_dict(json.loads(meta["config"])) if meta.get("config") else None
        self.min_lr_shape = tuple(meta["min_shape"])
        self.max_lr_shape = tuple(meta["max_shape"])
        if self.min_lr_shape == self.max_lr_shape:
            self.fixed_lr_shape = self.max_lr_shape
        self._v3 = hasattr(engine, "num_io_tensors")
        if self._v3:
            names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
            ins = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
            outs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        else:  # TensorRT 8.0 / 8.2: bindings
            names = [engine.get_binding_name(i) for i in range(engine.num_bindings)]
            ins = [n for i, n in enumerate(names) if engine.binding_is_input(i)]
            outs = [n for i, n in enumerate(names) if not engine.binding_is_input(i)]
            self._in_idx, self._out_idx = names.index(ins[0]) if ins else 0, names.index(outs[0]) if outs else 1
        if len(ins) != 1 or len(outs) != 1:
            raise EdgeSRError(f"{path.name}: expected one input and one output tensor, found {ins} / {outs}")
        self._in_name, self._out_name = ins[0], outs[0]
        mh, mw = self.max_lr_shape
        self._in = Buffer(self._cuda, mh * mw)
        self._bufs.append(self._in)
        self._out = Buffer(self._cuda, mh * mw * self.scale**2)
        self._bufs.append(self._out)
        self._stream_handle, self._stream = self._cuda.stream()
        if self._v3:
            self._ctx.set_tensor_address(self._in_name, self._in.dptr)
            self._ctx.set_tensor_address(self._out_name, self._out.dptr)

    def check_shape(self, h: int, w: int) -> None:
        (h0, w0), (h1, w1) = self.min_lr_shape, self.max_lr_shape
        if not (h0 <= h <= h1 and w0 <= w <= w1):
            raise EdgeSRError(f"LR input {w}x{h} is outside the engine's profile ({w0}x{h0} .. {w1}x{h1}): "
                              "rebuild with edge-sr build-engine --min-shape/--max-shape covering it")

    def infer(self, y_lr_f32: np.ndarray) -> np.ndarray:
        h, w = y_lr_f32.shape
        self.check_shape(h, w)
        n_in, n_out = h * w, h * w * self.scale**2
        shape = (1, 1, h, w)
        if self._v3:
            if not self._ctx.set_input_shape(self._in_name, shape):
                raise EdgeSRError(f"TensorRT refused input shape {shape}")
        else:
            if not self._ctx.set_binding_shape(self._in_idx, shape):
                raise EdgeSRError(f"TensorRT refused input shape {shape}")
        self._in.host[:n_in] = y_lr_f32.reshape(-1)
        cuda, stream = self._cuda, self._stream
        cuda.htod(self._in.dptr, self._in.host, n_in * 4, stream)
        if self._v3:
            ok = self._ctx.execute_async_v3(self._stream_handle)
        else:
            bindings = [0] * self._engine.num_bindings
            bindings[self._in_idx], bindings[self._out_idx] = self._in.dptr, self._out.dptr
            ok = self._ctx.execute_async_v2(bindings, self._stream_handle)
        if not ok:
            raise DeviceError("TensorRT execution failed (see the TensorRT log)")
        cuda.dtoh(self._out.host, self._out.dptr, n_out * 4, stream)
        cuda.sync(stream)
        return self._out.host[:n_out].reshape(h * self.scale, w * self.scale).copy()

    def close(self) -> None:
        for b in self._bufs:
            b.free()
        self._bufs = []
        if self._stream is not None:
            self._cuda.destroy_stream(self._stream)
            self._stream = None
        for attr in ("_ctx", "_engine", "_runtime"):
            if hasattr(self, attr):
                setattr(self, attr, None)
        cuda, self._cuda = getattr(self, "_cuda", None), None
        if cuda is not None:
            cuda.close()
