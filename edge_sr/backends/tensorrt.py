"""TensorRT backend: a serialized engine built on this device by ``edge-sr build-engine``.

Runs with the name-based tensor API (``execute_async_v3``, TensorRT 8.5+) or the binding API
(``execute_async_v2``, TensorRT 8.0/8.2), chosen by feature. Device memory through pycuda or
cuda-python, whichever works on this device (each is tried through init, context and a tiny
allocation); pinned host buffers; one CUDA stream; everything freed in close().
An engine whose sidecar JSON names another GPU or TensorRT version is refused (engines are not portable).

CUDA contexts (pycuda): the driver API's current context is per thread, and pycuda keeps its own
per-thread context stack whose destructor calls ``abort()`` when a thread ends with a context still
pushed. So the primary context is pushed for exactly the span of one call (open, one inference,
close), on whichever thread runs it, and popped in ``finally``. ``Context.pop()`` is static (it pops
the calling thread's top), so one process-wide holder owns the one retained primary context.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import json
import logging
import re
import threading
from pathlib import Path

import numpy as np

from ..config import DCSCNConfig
from ..errors import DeviceError, EdgeSRError, MissingDependency
from ..lazy import require
from . import Upscaler

log = logging.getLogger(__name__)

SIDECAR_FORMAT = "edge-sr-engine/1"
TEGRA_RELEASE = Path("/etc/nv_tegra_release")


def sidecar_path(engine_path) -> Path:
    p = Path(engine_path)
    return p.with_name(p.name + ".json")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


# -- TensorRT's logger: one per process ------------------------------------------------------------

_TRT_LOGGER: tuple | None = None  # (tensorrt module, logger)
_TRT_LOGGER_LOCK = threading.Lock()


def trt_logger(trt):
    """The process-wide TensorRT logger.

    TensorRT keeps the first logger given to a Builder or Runtime while any of them lives and
    ignores later ones, so a second logger made per build would never see its errors. One instance
    forwards every message to ``logging`` and copies errors into the buffers of ``capture()``."""
    global _TRT_LOGGER
    with _TRT_LOGGER_LOCK:
        if _TRT_LOGGER is None or _TRT_LOGGER[0] is not trt:
            _TRT_LOGGER = (trt, _make_logger(trt))
        return _TRT_LOGGER[1]


def _make_logger(trt):
    error_level = int(trt.Logger.ERROR)
    warning_level = int(trt.Logger.WARNING)

    class EdgeSRTensorRTLogger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)  # a pybind11 trampoline must be initialised explicitly
            self._buffers: list[list[str]] = []
            self._lock = threading.Lock()

        def log(self, severity, msg):
            level = int(severity)
            if level <= error_level:
                with self._lock:
                    for buf in self._buffers:
                        buf.append(str(msg))
                log.error("TensorRT: %s", msg)
            elif level <= warning_level:
                log.warning("TensorRT: %s", msg)
            else:
                log.debug("TensorRT: %s", msg)

        @contextlib.contextmanager
        def capture(self):
            """Collect the errors TensorRT logs during the block (a build, a deserialization)."""
            buf: list[str] = []
            with self._lock:
                self._buffers.append(buf)
            try:
                yield buf
            finally:
                with self._lock:
                    self._buffers = [b for b in self._buffers if b is not buf]

    return EdgeSRTensorRTLogger()


# -- which CUDA binding to install ------------------------------------------------------------------

def l4t_major(tegra_release: Path | None = None) -> int | None:
    """The L4T major release of a Jetson ('# R36 (release), REVISION: 4.0' -> 36), None elsewhere."""
    try:
        m = re.search(r"R(\d+)", Path(tegra_release or TEGRA_RELEASE).read_text(errors="replace"))
    except OSError:
        return None
    return int(m.group(1)) if m else None


def cuda_binding_hint(tegra_release: Path | None = None, driver_cuda_major: int | None = None) -> str:
    """What to install for TensorRT's device buffers on this machine (JetPack by L4T release)."""
    l4t = l4t_major(tegra_release)
    if l4t is not None and l4t <= 32:
        return "on JetPack 4 (CUDA 10.2): pip install pycuda (built on the device; cuda-python needs CUDA 11 or later)"
    if l4t in (34, 35):
        return ("on JetPack 5 (CUDA 11.4): pip install pycuda (built on the device, with /usr/local/cuda/bin on PATH), "
                "or a cuda-python 11.x that this driver accepts")
    if l4t == 36:
        return ('on JetPack 6 (CUDA 12): pip install "cuda-python>=12,<13" (13.x needs a CUDA 13 driver), '
                "or pycuda built on the device")
    if l4t is not None:
        return 'on JetPack 7 (CUDA 13): pip install "cuda-python>=13,<14", or pycuda built on the device'
    if driver_cuda_major == 11:
        return "for a CUDA 11 driver: pip install pycuda, or cuda-python 11.x"
    if driver_cuda_major:
        return f'for this CUDA {driver_cuda_major} driver: pip install "cuda-python>={driver_cuda_major},<{driver_cuda_major + 1}"'
    return ('pip install "cuda-python>=12,<13" for a CUDA 12 driver ("cuda-python>=13,<14" for CUDA 13), '
            "or pycuda built on the device")


def _cuda_version(v: int) -> str:
    """12020 -> '12.2'; 0 -> 'none'."""
    return f"{v // 1000}.{v % 1000 // 10}" if v else "none"


# -- CUDA memory: small owner classes over pycuda or cuda-python ----------------------------------
#
# Both expose the same calls. Device work (malloc, copies, sync, frees) runs inside ``with api.active():``,
# which the callers open for the span of one operation: construction, one inference, close.


class _PrimaryContext:
    """pycuda: the one retained primary context of device 0 in this process (the context TensorRT's
    runtime uses), shared by every pycuda user and released when the last one closes."""

    def __init__(self, drv):
        self.drv, self.ctx, self.users = drv, None, 0
        self._lock = threading.Lock()

    def acquire(self):
        with self._lock:
            if self.ctx is None:
                self.drv.init()
                self.ctx = self.drv.Device(0).retain_primary_context()
            self.users += 1
            return self.ctx

    def release(self) -> None:
        """Called outside any ``active()`` block. pycuda's ``detach()`` skips the release (and leaks
        the retain) for a context made on another thread unless it is current, so it is pushed first;
        detaching the current context also takes it off pycuda's stack."""
        with self._lock:
            self.users -= 1
            if self.users > 0 or self.ctx is None:
                return
            ctx, self.ctx = self.ctx, None
            ctx.push()
            try:
                ctx.detach()
            except BaseException:
                self.drv.Context.pop()
                raise


_PRIMARY: _PrimaryContext | None = None
_PRIMARY_LOCK = threading.Lock()


def _primary_context(drv) -> _PrimaryContext:
    global _PRIMARY
    with _PRIMARY_LOCK:
        if _PRIMARY is None or _PRIMARY.drv is not drv:
            _PRIMARY = _PrimaryContext(drv)
        return _PRIMARY


class _PyCuda:
    """pycuda (the driver API): the primary context pushed for the span of each operation."""

    name = "pycuda"

    def __init__(self):
        self.drv = importlib.import_module("pycuda.driver")
        self._primary = _primary_context(self.drv)
        self.ctx = self._primary.acquire()
        self._streams: dict[int, object] = {}
        self._closed = False

    @contextlib.contextmanager
    def active(self):
        self.ctx.push()
        try:
            yield self
        finally:
            self.drv.Context.pop()  # static: pops this thread's top, which is ours

    def probe(self) -> None:
        """init + context + a tiny allocation: raises when this binding cannot work here."""
        with self.active():
            self.drv.mem_alloc(1).free()

    def versions(self) -> str:
        built = ".".join(str(v) for v in self.drv.get_version()[:2])
        return f"pycuda (CUDA {built}), driver CUDA {_cuda_version(int(self.drv.get_driver_version()))}"

    def device(self) -> tuple[str, str]:
        d = self.drv.Device(0)
        return d.name(), "%d.%d" % d.compute_capability()

    def malloc(self, nbytes: int):
        a = self.drv.mem_alloc(max(1, nbytes))
        return int(a), a.free

    def host_empty(self, count: int):
        arr = self.drv.pagelocked_empty(count, np.float32)
        alloc = arr.base
        return arr, alloc.free

    def stream(self) -> int:
        s = self.drv.Stream()
        self._streams[int(s.handle)] = s
        return int(s.handle)

    def htod(self, dptr: int, host: np.ndarray, nbytes: int, stream: int) -> None:
        self.drv.memcpy_htod_async(dptr, host[: nbytes // host.itemsize], self._streams[stream])

    def dtoh(self, host: np.ndarray, dptr: int, nbytes: int, stream: int) -> None:
        self.drv.memcpy_dtoh_async(host[: nbytes // host.itemsize], dptr, self._streams[stream])

    def sync(self, stream: int) -> None:
        self._streams[stream].synchronize()

    def destroy_stream(self, stream: int) -> None:
        # pycuda destroys a stream with its object: drop the only reference here, inside active()
        self._streams.pop(stream, None)

    def close(self) -> None:
        """Outside any active() block; from any thread."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._streams:
                with self.active():
                    self._streams.clear()
        finally:
            self._primary.release()


_CUDA_INSUFFICIENT_DRIVER = 35  # cudaErrorInsufficientDriver


class _CudaPython:
    """cuda-python (``cuda.bindings.runtime``, older ``cuda.cudart``), as NVIDIA's TensorRT 10 samples use.

    The runtime API uses the primary context of the thread's device (device 0) on every thread, so
    ``active()`` has nothing to push."""

    name = "cuda-python"

    def __init__(self):
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            cudart = importlib.import_module("cuda.cudart")  # cuda-python before 12.6
        self.rt = cudart
        self._streams: dict[int, object] = {}

    def active(self):
        return contextlib.nullcontext(self)

    def _call(self, fn, *args):
        """Call a runtime function; (err, value...) -> value, or one DeviceError naming the versions."""
        try:
            res = fn(*args)
        except RuntimeError as exc:  # legacy cuda-python (and the driver loader): no usable driver
            raise DeviceError(self._driver_problem(f"{fn.__name__}: {_one_line(exc)}")) from None
        err, *rest = res if isinstance(res, tuple) else (res,)
        code = int(err)
        if code == _CUDA_INSUFFICIENT_DRIVER:
            raise DeviceError(self._driver_problem(f"{fn.__name__}: cudaErrorInsufficientDriver"))
        if code != 0:
            raise DeviceError(f"CUDA call {fn.__name__} failed: {getattr(err, 'name', err)} ({code})")
        return rest[0] if len(rest) == 1 else (tuple(rest) or None)

    def _driver_and_runtime(self) -> tuple[int, int]:
        out = []
        for fn in (self.rt.cudaDriverGetVersion, self.rt.cudaRuntimeGetVersion):
            try:
                err, v = fn()
                out.append(int(v) if int(err) == 0 else 0)
            except Exception:  # noqa: BLE001 - only for the message
                out.append(0)
        return out[0], out[1]

    def _package_version(self) -> str:
        from importlib import metadata

        for dist in ("cuda-bindings", "cuda-python"):  # cuda-python 12.6+ is a metapackage over cuda-bindings
            try:
                return f"{dist} {metadata.version(dist)}"
            except metadata.PackageNotFoundError:
                continue
        return "cuda-python"

    def _driver_problem(self, what: str) -> str:
        drv, rtv = self._driver_and_runtime()
        binding = f"{self._package_version()} (CUDA {_cuda_version(rtv)} runtime)"
        if drv == 0:
            head = f"no usable NVIDIA driver for {binding} ({what})"
        else:
            head = f"the NVIDIA driver supports CUDA {_cuda_version(drv)}, too old for {binding} ({what})"
        return f"{head}: {cuda_binding_hint(driver_cuda_major=drv // 1000 or None)}"

    def probe(self) -> None:
        self._call(self.rt.cudaSetDevice, 0)
        ptr = self._call(self.rt.cudaMalloc, 1)
        self._call(self.rt.cudaFree, ptr)

    def versions(self) -> str:
        drv, rtv = self._driver_and_runtime()
        return (f"{self._package_version()} (CUDA {_cuda_version(rtv)} runtime), "
                f"driver CUDA {_cuda_version(drv)}")

    def device(self) -> tuple[str, str]:
        props = self._call(self.rt.cudaGetDeviceProperties, 0)
        name = props.name.decode(errors="replace").rstrip("\0") if isinstance(props.name, bytes) else str(props.name)
        return name, f"{props.major}.{props.minor}"

    def malloc(self, nbytes: int):
        ptr = int(self._call(self.rt.cudaMalloc, max(1, nbytes)))
        return ptr, (lambda: self._call(self.rt.cudaFree, ptr))

    def host_empty(self, count: int):
        ptr = int(self._call(self.rt.cudaMallocHost, max(1, count * 4)))
        arr = np.ctypeslib.as_array((ctypes.c_float * count).from_address(ptr))
        return arr, (lambda: self._call(self.rt.cudaFreeHost, ptr))

    def stream(self) -> int:
        s = self._call(self.rt.cudaStreamCreate)
        self._streams[int(s)] = s
        return int(s)

    def htod(self, dptr: int, host: np.ndarray, nbytes: int, stream: int) -> None:
        self._call(self.rt.cudaMemcpyAsync, dptr, host.ctypes.data, nbytes,
                   self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice, self._streams[stream])

    def dtoh(self, host: np.ndarray, dptr: int, nbytes: int, stream: int) -> None:
        self._call(self.rt.cudaMemcpyAsync, host.ctypes.data, dptr, nbytes,
                   self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, self._streams[stream])

    def sync(self, stream: int) -> None:
        self._call(self.rt.cudaStreamSynchronize, self._streams[stream])

    def destroy_stream(self, stream: int) -> None:
        s = self._streams.pop(stream, None)
        if s is not None:
            self._call(self.rt.cudaStreamDestroy, s)

    def close(self) -> None:
        for h in list(self._streams):
            with contextlib.suppress(EdgeSRError):
                self.destroy_stream(h)


BINDINGS = (_PyCuda, _CudaPython)


def cuda_api():
    """The first CUDA binding that works here (init + context + a tiny allocation), not merely the
    first that imports; one clear error with each binding's reason when none does."""
    reasons, device_problem = [], False
    for cls in BINDINGS:
        api = None
        try:
            api = cls()
            api.probe()
        except Exception as exc:  # noqa: BLE001 - any failure means: try the next binding
            if api is not None:
                with contextlib.suppress(Exception):
                    api.close()
            if isinstance(exc, ImportError):
                reasons.append(f"{cls.name}: not importable ({_one_line(exc)})")
            else:
                device_problem = True
                reasons.append(f"{cls.name}: {_one_line(exc)}")
            continue
        for r in reasons:
            log.info("CUDA binding skipped: %s", r)
        return api
    text = "; ".join(reasons)
    hint = cuda_binding_hint()
    if device_problem:
        raise DeviceError(f"no CUDA binding works on this device ({text})" + ("" if hint in text else f"; {hint}"))
    raise MissingDependency(f"TensorRT needs pycuda or cuda-python for device buffers ({text}): {hint}")


class Buffer:
    """A device buffer and its pinned host twin, freed exactly once (inside the caller's active())."""

    def __init__(self, cuda, count: int):
        self.count, self.nbytes = count, count * 4
        self._free_dev = self._free_host = None
        self.dptr, self._free_dev = cuda.malloc(self.nbytes)
        try:
            self.host, self._free_host = cuda.host_empty(count)
        except BaseException:
            self.free()
            raise

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
    CLOSE_WAIT_S = 5.0  # close() waits this long for an inference still running on another thread

    def __init__(self, path, *, device_check: bool = True, **_ignored):
        trt = require("tensorrt", "running .engine files")
        path = Path(path)
        if not path.is_file():
            raise EdgeSRError(f"engine not found: {path}")
        self.path, self.name = path, path.stem
        meta = read_sidecar(path)
        self.meta = meta
        self._bufs: list[Buffer] = []
        self._stream = None
        self._lock = threading.Lock()  # one inference at a time; close() waits for it
        self._cuda = cuda_api()
        try:
            with self._cuda.active():
                if device_check:
                    name, cc = self._cuda.device()
                    check_sidecar(meta, trt.__version__, name, cc, path.name)
                self._open(trt, path, meta)
        except BaseException:
            self.close()
            raise

    def _open(self, trt, path: Path, meta: dict) -> None:
        logger = trt_logger(trt)
        self._runtime = trt.Runtime(logger)
        with logger.capture() as errors:
            engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            detail = "; ".join(errors[-3:]) or "corrupt, or built by another TensorRT"
            raise DeviceError(f"TensorRT could not deserialize {path.name} ({detail}): "
                              f"rebuild it on this device with edge-sr build-engine --onnx {meta.get('source_onnx') or 'MODEL.onnx'}")
        self._engine = engine
        self._ctx = engine.create_execution_context()
        if self._ctx is None:
            raise DeviceError(f"TensorRT could not create an execution context for {path.name} (out of GPU memory?)")
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
        self._stream = self._cuda.stream()
        if self._v3:
            for name, buf in ((self._in_name, self._in), (self._out_name, self._out)):
                if not self._ctx.set_tensor_address(name, buf.dptr):
                    raise DeviceError(f"TensorRT refused the device address of tensor {name!r} in {path.name}")

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
        with self._lock:
            cuda = self._cuda
            if cuda is None:
                raise EdgeSRError(f"{self.path.name}: the TensorRT upscaler is closed")
            # the context is current for exactly this call, on whichever thread makes it
            with cuda.active():
                if self._v3:
                    ok = self._ctx.set_input_shape(self._in_name, shape)
                else:
                    ok = self._ctx.set_binding_shape(self._in_idx, shape)
                if not ok:
                    raise EdgeSRError(f"TensorRT refused input shape {shape}")
                self._in.host[:n_in] = y_lr_f32.reshape(-1)
                cuda.htod(self._in.dptr, self._in.host, n_in * 4, self._stream)
                if self._v3:
                    ok = self._ctx.execute_async_v3(self._stream)
                else:
                    bindings = [0] * self._engine.num_bindings
                    bindings[self._in_idx], bindings[self._out_idx] = self._in.dptr, self._out.dptr
                    ok = self._ctx.execute_async_v2(bindings, self._stream)
                if not ok:
                    raise DeviceError("TensorRT execution failed (see the TensorRT log)")
                cuda.dtoh(self._out.host, self._out.dptr, n_out * 4, self._stream)
                cuda.sync(self._stream)
                return self._out.host[:n_out].reshape(h * self.scale, w * self.scale).copy()

    def close(self) -> None:
        """Free everything; from any thread, any number of times, in any order with other upscalers."""
        cuda = getattr(self, "_cuda", None)
        if cuda is None:
            return
        lock = getattr(self, "_lock", None)
        got = lock.acquire(timeout=self.CLOSE_WAIT_S) if lock is not None else False
        if lock is not None and not got:
            log.warning("%s: an inference is still running after %.0f s; leaving its GPU memory to the process exit",
                        self.path.name, self.CLOSE_WAIT_S)
            return
        try:
            self._cuda = None
            with cuda.active():
                for b in self._bufs:
                    b.free()
                self._bufs = []
                if self._stream is not None:
                    cuda.destroy_stream(self._stream)
                    self._stream = None
                # TensorRT frees its own device memory when these go, so inside the active context too
                for attr in ("_ctx", "_engine", "_runtime"):
                    if hasattr(self, attr):
                        setattr(self, attr, None)
        finally:
            if got:
                lock.release()
            cuda.close()  # outside active(): releases the process's primary context with its last user
