"""A fake ``tensorrt`` module (and a CUDA buffer layer over host memory) for testing OUR logic around
TensorRT on a machine without a GPU: flags per TensorRT generation, profiles, sidecar checks, refusals,
parser and builder errors, timing caches, calibrators.

It is never a stand-in for TensorRT's results: its "engine" is a JSON record of what the builder was
asked, and its "inference" is a nearest-neighbour upscale, so tests can see that buffers, shapes and
API paths are wired right. It models the behaviours of the real bindings that can hurt us (checked
against the compiled bindings of TensorRT 8.6.1, 10.3, 10.16, 11.0 and 11.4 and NVIDIA's python/src):

* names per generation: binding API (``num_bindings``, ``execute_async_v2``) up to 9, the name-based
  API from 8.5; ``EXPLICIT_BATCH`` up to 10 (ignored, deprecated, in 10); ``BuilderFlag.FP16/INT8``,
  calibrators and ``platform_has_fast_*`` up to 10; ``max_workspace_size`` before 8.4;
* one logger per process: the first logger given to a Builder or Runtime is used while any of them
  lives; a different one given later is ignored (with a warning to the first);
* the calibrator trampoline catches every Python exception of ``get_batch`` / ``read_calibration_cache``
  / ``write_calibration_cache``, prints "[ERROR] Exception caught in get_batch(): ..." and carries on
  (a failed ``get_batch`` ends calibration); it reads the cache twice;
* ``create_timing_cache`` returns None for a cache from another TensorRT; ``set_timing_cache`` returns
  False for one from another GPU unless ``ignore_mismatch``;
* the ONNX parser refuses a DequantizeLinear with a non-zero zero point (asymmetric, e.g. uint8
  activations) with onnx-tensorrt's message, and warns about uint8 zero points;
* ``set_tensor_address`` / ``set_input_shape`` return False for an unknown tensor or a shape outside
  the profile; the runtime refuses a plan from another TensorRT or GPU and logs why.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import sys
import threading
import types

import numpy as np

# TensorRT's log severities (ILogger.Severity)
INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = 0, 1, 2, 3, 4


def make_fake_trt(version: str = "10.3.0", fast_fp16: bool = True, fast_int8: bool = True,
                  gpu: str = "Fake Orin", cc: str = "8.7", executor=None) -> types.ModuleType:
    """``executor(in_ptr, out_ptr, h, w, scale, stream)`` replaces the host-memory nearest-neighbour
    "inference" (the gpu tests pass a device-to-device copy)."""
    major, minor = (int(v) for v in version.split(".")[:2])
    gen = (major, minor)
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.calls = []  # what the builder saw, for assertions
    trt.fail_build = None  # a message: the builder logs it as an error and returns None
    trt.trampoline_errors = []  # what the calibrator trampoline caught and printed
    state = {"logger": None, "live": 0}
    trt._state = state

    flags = {"TF32": 7}
    if major <= 10:
        flags.update(FP16=0, INT8=1)
    trt.BuilderFlag = type("BuilderFlag", (), flags)
    ncf = {}
    if major <= 10:
        ncf["EXPLICIT_BATCH"] = 0
    if gen >= (9, 0):
        ncf["STRONGLY_TYPED"] = 1
    trt.NetworkDefinitionCreationFlag = type("NetworkDefinitionCreationFlag", (), ncf)
    if gen >= (8, 4):
        trt.MemoryPoolType = type("MemoryPoolType", (), {"WORKSPACE": 0})
    trt.LayerType = type("LayerType", (), {"CONVOLUTION": 1, "QUANTIZE": 2, "DEQUANTIZE": 3, "RESIZE": 4, "OTHER": 9})
    trt.TensorIOMode = type("TensorIOMode", (), {"INPUT": 1, "OUTPUT": 2})

    class ILogger:
        Severity = type("Severity", (), {"INTERNAL_ERROR": 0, "ERROR": 1, "WARNING": 2, "INFO": 3, "VERBOSE": 4})
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = 0, 1, 2, 3, 4

        def __init__(self):
            pass

    class Logger(ILogger):
        def __init__(self, min_severity=WARNING):
            ILogger.__init__(self)
            self.min_severity = min_severity
            self.messages = []

        def log(self, severity, msg):
            self.messages.append((severity, msg))

    trt.Logger, trt.ILogger = Logger, ILogger

    def _log(severity, msg):
        if state["logger"] is not None:
            state["logger"].log(severity, msg)

    trt._log = _log

    def _register(logger, who):
        if state["live"] == 0:
            state["logger"] = logger
        elif logger is not state["logger"]:
            _log(WARNING, f"The logger passed into {who} differs from one already provided for an existing "
                          "builder, runtime, or refitter. Uses of the global logger, returned by "
                          "nvinfer1::getLogger(), will return the existing value.")
        state["live"] += 1

    def _unregister():
        state["live"] -= 1

    if major <= 10:
        class IInt8EntropyCalibrator2:
            def __init__(self):
                pass

        trt.IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2

    def _trampoline(cal, method, *args, default=None):
        """pybind11 trampoline of TensorRT's calibrator: every Python exception caught and printed."""
        try:
            return getattr(cal, method)(*args)
        except Exception as exc:  # noqa: BLE001 - what the real trampoline does
            print(f"[ERROR] Exception caught in {method}(): {exc}", file=sys.stderr)
            trt.trampoline_errors.append((method, exc))
            return default

    class Tensor:
        def __init__(self, name, shape):
            self.name, self.shape = name, shape

    class Layer:
        def __init__(self, t):
            self.type = t

    class Network:
        def __init__(self, flags):
            self.flags = flags
            self.inputs, self.outputs, self.layers = [], [], []

        num_inputs = property(lambda self: len(self.inputs))
        num_outputs = property(lambda self: len(self.outputs))
        num_layers = property(lambda self: len(self.layers))

        def get_input(self, i):
            return self.inputs[i]

        def get_layer(self, i):
            return self.layers[i]

    class ParserError:
        def __init__(self, text):
            self.text = text

        def __str__(self):
            return self.text

    class OnnxParser:
        def __init__(self, network, logger):
            self.network, self.errors, self.logger = network, [], logger

        num_errors = property(lambda self: len(self.errors))

        def get_error(self, i):
            return self.errors[i]

        def parse(self, data, path=None):
            import onnx
            from onnx import numpy_helper

            try:
                mp = onnx.load_from_string(bytes(data))
            except Exception:
                self.errors = [ParserError("ModelImporter.cpp:735: Failed to parse ONNX model from file"),
                               ParserError("ModelImporter.cpp:736: protobuf: unexpected end of stream")]
                return False
            inits = {i.name: i for i in mp.graph.initializer}
            for idx, n in enumerate(mp.graph.node):
                cubic = any(a.name == "mode" and a.s == b"cubic" for a in n.attribute)
                if n.op_type == "Resize" and cubic and gen < (8, 5):
                    self.errors.append(ParserError(f"In node {idx} ({n.name}): UNSUPPORTED_NODE: "
                                                   "Assertion failed: mode != \"cubic\""))
                if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2 and n.input[2] in inits:
                    zp = numpy_helper.to_array(inits[n.input[2]])
                    if zp.dtype == np.uint8:
                        self.logger.log(WARNING, "TensorRT doesn't support QuantizeLinear/DequantizeLinear with "
                                                 "UINT8 zero_point. TensorRT will use INT8 instead.")
                    if n.op_type == "DequantizeLinear" and np.any(zp != 0):
                        self.errors.append(ParserError(
                            f"In node {idx} with name: {n.name} and operator: DequantizeLinear "
                            "(importDequantizeLinear): INVALID_NODE: Assertion failed: shiftIsAllZeros(zeroPoint): "
                            "TensorRT only supports symmetric quantization. The zero point for the "
                            "QuantizeLinear/DequantizeLinear operator must be all zeros."))
                        break
            if self.errors:
                return False
            for i in mp.graph.input:
                if i.name not in inits:
                    dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in i.type.tensor_type.shape.dim)
                    self.network.inputs.append(Tensor(i.name, dims))
            for o in mp.graph.output:
                self.network.outputs.append(Tensor(o.name, (1, 1, -1, -1)))
            kinds = {"Conv": 1, "QuantizeLinear": 2, "DequantizeLinear": 3, "Resize": 4}
            self.network.layers = [Layer(kinds.get(n.op_type, 9)) for n in mp.graph.node]
            return True

    class Profile:
        def __init__(self):
            self.shapes = {}

        def set_shape(self, name, mn, opt, mx):
            self.shapes[name] = (tuple(mn), tuple(opt), tuple(mx))

    tc_magic = f"FAKE-TIMING-CACHE|{version}|".encode()

    class TimingCache:
        def __init__(self, gpu_of_cache, entries):
            self.gpu, self.entries = gpu_of_cache, entries

        def serialize(self):
            return memoryview(tc_magic + f"{self.gpu}|{self.entries}".encode())

    class Config:
        def __init__(self):
            self.flags, self.profiles, self.int8_calibrator = set(), [], None
            self.workspace = None
            self.calibration_profile = None
            self.timing_cache = None

        def set_flag(self, f):
            self.flags.add(f)

        def clear_flag(self, f):
            self.flags.discard(f)

        def add_optimization_profile(self, p):
            self.profiles.append(p)
            return len(self.profiles) - 1

        def set_calibration_profile(self, p):
            self.calibration_profile = p

        def create_timing_cache(self, data):
            data = bytes(data)
            if not data:
                return TimingCache(gpu, 0)
            if not data.startswith(tc_magic):
                _log(ERROR, "Failed to load the timing cache: the cache was created by another TensorRT version "
                            "or is corrupt")
                return None
            g, n = data[len(tc_magic):].decode().rsplit("|", 1)
            return TimingCache(g, int(n))

        def set_timing_cache(self, cache, ignore_mismatch):
            if cache.gpu != gpu and not ignore_mismatch:
                _log(ERROR, f"Timing cache was created on a different device ({cache.gpu}); "
                            "set ignore_mismatch to use it anyway")
                return False
            self.timing_cache = cache
            return True

    if gen >= (8, 4):
        def set_memory_pool_limit(self, pool, size):
            self.workspace = ("pool", size)

        Config.set_memory_pool_limit = set_memory_pool_limit
    else:
        def _set_ws(self, v):
            self.workspace = ("max_workspace_size", v)

        Config.max_workspace_size = property(lambda self: self.workspace, _set_ws)

    flag_names = {v: k for k, v in flags.items()}

    class Builder:
        platform_has_fast_fp16 = fast_fp16
        platform_has_fast_int8 = fast_int8

        def __init__(self, logger):
            _register(logger, "createInferBuilder")
            self._alive = True

        def __del__(self):
            if getattr(self, "_alive", False):
                _unregister()

        def create_network(self, flags=0):
            if "EXPLICIT_BATCH" in ncf and gen >= (10, 0) and flags & (1 << ncf["EXPLICIT_BATCH"]):
                _log(WARNING, "kEXPLICIT_BATCH is deprecated and has no effect: networks are always explicit batch")
            return Network(flags)

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            cal = config.int8_calibrator
            calib = None
            if cal is not None:
                cached = _trampoline(cal, "read_calibration_cache")
                cached = _trampoline(cal, "read_calibration_cache") if cached is not None else cached  # read twice
                batches = 0
                if cached is None:
                    while _trampoline(cal, "get_batch", [network.inputs[0].name]) is not None:
                        batches += 1
                    if batches == 0:
                        _log(ERROR, "Calibration failure occurred with no scaling factors detected. This could be due "
                                    "to no int8 calibrator or insufficient custom scales for network layers.")
                        return None
                    _trampoline(cal, "write_calibration_cache", memoryview(b"fake-calibration-table"))
                calib = {"from_cache": cached is not None, "batches": batches}
            if trt.fail_build:
                _log(ERROR, trt.fail_build)
                return None
            rec = {
                "fake_engine": True, "version": version, "gpu": gpu, "cc": cc,
                "flags": sorted(flag_names[f] for f in config.flags),
                "network_flags": network.flags,
                "workspace": list(config.workspace) if config.workspace else None,
                "profiles": [{k: [list(s) for s in v] for k, v in p.shapes.items()} for p in config.profiles],
                "calibrator": calib,
                "calibration_profile": config.calibration_profile is not None,
                "timing_cache_in": config.timing_cache.entries if config.timing_cache else None,
                "input": network.inputs[0].name, "output": network.outputs[0].name,
            }
            if config.timing_cache is not None:
                config.timing_cache.entries += 3  # tactics timed in this build
            trt.calls.append(rec)
            return memoryview(json.dumps(rec).encode())  # IHostMemory supports the buffer protocol

    if major >= 11:  # platform_has_* kept (deprecated) in 10, gone in 11
        del Builder.platform_has_fast_fp16
        del Builder.platform_has_fast_int8

    class Context:
        def __init__(self, engine):
            self.engine, self.shape, self.addr = engine, None, {}

        def _in_profile(self, shape):
            prof = self.engine.rec["profiles"][0][self.engine.rec["input"]]
            return len(shape) == 4 and all(lo <= s <= hi for lo, s, hi in zip(prof[0], shape, prof[2]))

        def set_input_shape(self, name, shape):
            if name != self.engine.rec["input"] or not self._in_profile(tuple(shape)):
                _log(ERROR, f"IExecutionContext::setInputShape: Error Code 3: API Usage Error ({name} {tuple(shape)})")
                return False
            self.shape = tuple(shape)
            return True

        def set_binding_shape(self, idx, shape):
            if idx != 0 or not self._in_profile(tuple(shape)):
                return False
            self.shape = tuple(shape)
            return True

        def set_tensor_address(self, name, ptr):
            if name not in self.engine.names:
                _log(ERROR, f"IExecutionContext::setTensorAddress: Error Code 3: API Usage Error (tensor {name} not found)")
                return False
            self.addr[name] = ptr
            return True

        def _run(self, in_ptr, out_ptr, stream):
            _, _, h, w = self.shape
            s = self.engine.scale
            if executor is not None:
                executor(in_ptr, out_ptr, h, w, s, stream)
                return True
            x = np.ctypeslib.as_array((ctypes.c_float * (h * w)).from_address(in_ptr)).reshape(h, w)
            y = np.kron(x, np.ones((s, s), np.float32)).astype(np.float32)
            ctypes.memmove(out_ptr, y.ctypes.data, y.nbytes)
            return True

        def execute_async_v3(self, stream_handle):
            return self._run(self.addr[self.engine.rec["input"]], self.addr[self.engine.rec["output"]], stream_handle)

        def execute_async_v2(self, bindings, stream_handle):
            return self._run(bindings[0], bindings[1], stream_handle)

    class ICudaEngine:
        scale = 2

        def __init__(self, rec):
            self.rec = rec
            self.names = [rec["input"], rec["output"]]

        def create_execution_context(self):
            return Context(self)

    if gen >= (8, 5):
        ICudaEngine.num_io_tensors = property(lambda self: 2)
        ICudaEngine.get_tensor_name = lambda self, i: self.names[i]
        ICudaEngine.get_tensor_mode = lambda self, n: 1 if n == self.names[0] else 2
    if major <= 9:  # the binding API: gone in 10
        ICudaEngine.num_bindings = property(lambda self: 2)
        ICudaEngine.get_binding_name = lambda self, i: self.names[i]
        ICudaEngine.binding_is_input = lambda self, i: i == 0
    trt.ICudaEngine = ICudaEngine

    class Runtime:
        def __init__(self, logger):
            _register(logger, "createInferRuntime")
            self._alive = True

        def __del__(self):
            if getattr(self, "_alive", False):
                _unregister()

        def deserialize_cuda_engine(self, data):
            try:
                rec = json.loads(bytes(data))
            except ValueError:
                _log(ERROR, "1: [stdArchiveReader.cpp::StdArchiveReader::32] Error Code 1: Serialization "
                            "(Serialization assertion magicTagRead == kMAGIC_TAG failed.Magic tag does not match)")
                return None
            if rec.get("version") != version:
                _log(ERROR, f"1: [stdArchiveReader.cpp::StdArchiveReader::42] Error Code 1: Serialization "
                            f"(Serialization assertion stdVersionRead == kSERIALIZATION_VERSION failed.Version tag "
                            f"does not match. Note: Current Version: {version}, Serialized Engine Version: {rec.get('version')})")
                return None
            if rec.get("cc", cc) != cc:
                _log(ERROR, f"6: The engine plan file is generated on an incompatible device, expecting compute "
                            f"{cc} got compute {rec.get('cc')}, please rebuild.")
                return None
            return ICudaEngine(rec)

    trt.Builder, trt.OnnxParser, trt.Runtime = Builder, OnnxParser, Runtime
    return trt


def write_fake_engine(path, version="10.3.0", gpu="Fake Orin", cc="8.7", min_shape=(16, 16), max_shape=(64, 80),
                      scale=2, precision="fp16") -> None:
    """An engine file of ``make_fake_trt(version)`` and its sidecar, without a build."""
    from edge_sr.backends.tensorrt import SIDECAR_FORMAT, sidecar_path

    rec = {"fake_engine": True, "version": version, "gpu": gpu, "cc": cc, "input": "y_lr", "output": "residual",
           "profiles": [{"y_lr": [[1, 1, *min_shape], [1, 1, *max_shape], [1, 1, *max_shape]]}]}
    with open(path, "wb") as f:
        f.write(json.dumps(rec).encode())
    meta = {"format": SIDECAR_FORMAT, "tensorrt": version, "gpu": gpu, "compute_capability": cc,
            "precision": precision, "min_shape": list(min_shape), "opt_shape": list(max_shape),
            "max_shape": list(max_shape), "scale": scale, "output": "residual", "source_onnx": "m.onnx"}
    sidecar_path(path).write_text(json.dumps(meta))


class FakeCuda:
    """Our CUDA layer's interface over host memory (pointers are numpy buffers' addresses). Like pycuda,
    every device call must run inside ``active()`` on the calling thread."""

    name = "fake-cuda"

    def __init__(self, gpu: str = "Fake Orin", cc: str = "8.7"):
        self.gpu, self.cc = gpu, cc
        self.live: dict[int, np.ndarray] = {}
        self.freed = 0
        self.closed = False
        self.outside_active = []  # device calls made with no active() on their thread
        self._tls = threading.local()
        self._streams = set()

    @contextlib.contextmanager
    def active(self):
        self._tls.depth = getattr(self._tls, "depth", 0) + 1
        try:
            yield self
        finally:
            self._tls.depth -= 1

    def _need(self, what):
        if not getattr(self._tls, "depth", 0):
            self.outside_active.append(what)
            raise RuntimeError(f"{what}: no CUDA context is current in this thread")

    def probe(self):
        pass

    def versions(self):
        return "fake-cuda"

    def device(self):
        return self.gpu, self.cc

    def malloc(self, nbytes):
        self._need("malloc")
        a = np.zeros(max(1, nbytes), np.uint8)
        ptr = a.ctypes.data
        self.live[ptr] = a

        def free():
            self._need("free")
            del self.live[ptr]
            self.freed += 1

        return ptr, free

    def host_empty(self, count):
        self._need("host_empty")
        a = np.zeros(count, np.float32)
        self.live[a.ctypes.data] = a

        def free():
            self._need("free_host")
            del self.live[a.ctypes.data]
            self.freed += 1

        return a, free

    def stream(self):
        self._need("stream")
        h = 0x1000 + len(self._streams)
        self._streams.add(h)
        return h

    def htod(self, dptr, host, nbytes, stream):
        self._need("htod")
        ctypes.memmove(dptr, host.ctypes.data, nbytes)

    def dtoh(self, host, dptr, nbytes, stream):
        self._need("dtoh")
        ctypes.memmove(host.ctypes.data, dptr, nbytes)

    def sync(self, stream):
        self._need("sync")

    def destroy_stream(self, stream):
        self._need("destroy_stream")
        self._streams.discard(stream)

    def close(self):
        self.closed = True
