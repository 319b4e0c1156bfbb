"""A fake ``tensorrt`` module (and CUDA buffer API) for testing OUR logic around TensorRT on a machine
without a GPU: flags per TensorRT generation, profile shapes, sidecar checks, refusals, parser errors.

It is never a stand-in for TensorRT's results: its "engine" is a JSON record of what the builder was
asked, and its "inference" is a nearest-neighbour upscale, so tests can see that buffers, shapes and
API paths are wired right.
"""

from __future__ import annotations

import ctypes
import json
import types

import numpy as np


def make_fake_trt(version: str = "10.3.0", fast_fp16: bool = True, fast_int8: bool = True) -> types.ModuleType:
    major, minor = (int(v) for v in version.split(".")[:2])
    gen = (major, minor)
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.calls = []  # what the builder saw, for assertions

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

    class Logger:
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = 0, 1, 2, 3, 4

        def __init__(self, severity=2):
            self.severity = severity

    class ILogger:
        def __init__(self):
            pass

    trt.Logger, trt.ILogger = Logger, ILogger

    if major <= 10:
        class IInt8EntropyCalibrator2:
            def __init__(self):
                pass

        trt.IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2

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
            self.network, self.errors = network, []

        num_errors = property(lambda self: len(self.errors))

        def get_error(self, i):
            return self.errors[i]

        def parse(self, data, path=None):
            import onnx

            try:
                mp = onnx.load_from_string(bytes(data))
            except Exception:
                self.errors = [ParserError("ModelImporter.cpp:735: Failed to parse ONNX model from file"),
                               ParserError("ModelImporter.cpp:736: protobuf: unexpected end of stream")]
                return False
            for n in mp.graph.node:
                cubic = any(a.name == "mode" and a.s == b"cubic" for a in n.attribute)
                if n.op_type == "Resize" and cubic and gen < (8, 5):
                    self.errors.append(ParserError(f"In node {len(self.errors)} ({n.name}): UNSUPPORTED_NODE: "
                                                   "Assertion failed: mode != \"cubic\""))
            if self.errors:
                self.errors.append(ParserError("ModelImporter.cpp:773: --- End node ---"))
                return False
            init = {i.name for i in mp.graph.initializer}
            for i in mp.graph.input:
                if i.name not in init:
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

    class TimingCache:
        def __init__(self, data):
            self.data = bytes(data)

        def serialize(self):
            return b"timing-cache:" + str(len(self.data)).encode()

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
            return TimingCache(data)

        def set_timing_cache(self, cache, ignore_mismatch):
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
            self.logger = logger

        def create_network(self, flags=0):
            return Network(flags)

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            cal = config.int8_calibrator
            calib = None
            if cal is not None:
                cached = cal.read_calibration_cache()
                batches = 0
                if cached is None:
                    while cal.get_batch(["y_lr"]) is not None:
                        batches += 1
                    cal.write_calibration_cache(b"fake-calibration-table")
                calib = {"from_cache": cached is not None, "batches": batches}
            rec = {
                "fake_engine": True, "version": version,
                "flags": sorted(flag_names[f] for f in config.flags),
                "network_flags": network.flags,
                "workspace": list(config.workspace) if config.workspace else None,
                "profiles": [{k: [list(s) for s in v] for k, v in p.shapes.items()} for p in config.profiles],
                "calibrator": calib,
                "calibration_profile": config.calibration_profile is not None,
                "timing_cache_in": len(config.timing_cache.data) if config.timing_cache else None,
                "input": network.inputs[0].name, "output": network.outputs[0].name,
            }
            trt.calls.append(rec)
            return json.dumps(rec).encode()

    if major >= 10:  # platform_has_* kept (deprecated) in 10, gone in 11
        if major >= 11:
            del Builder.platform_has_fast_fp16
            del Builder.platform_has_fast_int8

    class Context:
        def __init__(self, engine):
            self.engine, self.shape, self.addr = engine, None, {}

        def set_input_shape(self, name, shape):
            self.shape = tuple(shape)
            return True

        def set_binding_shape(self, idx, shape):
            self.shape = tuple(shape)
            return True

        def set_tensor_address(self, name, ptr):
            self.addr[name] = ptr

        def _run(self, in_ptr, out_ptr):
            _, _, h, w = self.shape
            s = self.engine.scale
            x = np.ctypeslib.as_array((ctypes.c_float * (h * w)).from_address(in_ptr)).reshape(h, w)
            y = np.kron(x, np.ones((s, s), np.float32)).astype(np.float32)
            ctypes.memmove(out_ptr, y.ctypes.data, y.nbytes)
            return True

        def execute_async_v3(self, stream):
            return self._run(self.addr[self.engine.rec["input"]], self.addr[self.engine.rec["output"]])

        def execute_async_v2(self, bindings, stream):
            return self._run(bindings[0], bindings[1])

    class Engine:
        scale = 2

        def __init__(self, rec):
            self.rec = rec
            self.names = [rec["input"], rec["output"]]

        def create_execution_context(self):
            return Context(self)

    if gen >= (8, 5):
        Engine.num_io_tensors = property(lambda self: 2)
        Engine.get_tensor_name = lambda self, i: self.names[i]
        Engine.get_tensor_mode = lambda self, n: 1 if n == self.names[0] else 2
    else:
        Engine.num_bindings = property(lambda self: 2)
        Engine.get_binding_name = lambda self, i: self.names[i]
        Engine.binding_is_input = lambda self, i: i == 0

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, data):
            try:
                rec = json.loads(bytes(data))
            except ValueError:
                return None
            return Engine(rec) if rec.get("version") == version else None

    trt.Builder, trt.OnnxParser, trt.Runtime = Builder, OnnxParser, Runtime
    return trt


class FakeCuda:
    """Host memory standing in for device memory (pointers are numpy buffers' addresses)."""

    name = "fake-cuda"

    def __init__(self, gpu: str = "Fake Orin", cc: str = "8.7"):
        self.gpu, self.cc = gpu, cc
        self.live: dict[int, np.ndarray] = {}
        self.freed = 0
        self.closed = False

    def device(self):
        return self.gpu, self.cc

    def malloc(self, nbytes):
        a = np.zeros(max(1, nbytes), np.uint8)
        ptr = a.ctypes.data
        self.live[ptr] = a

        def free():
            del self.live[ptr]
            self.freed += 1

        return ptr, free

    def host_empty(self, count):
        a = np.zeros(count, np.float32)
        self.live[a.ctypes.data] = a

        def free():
            del self.live[a.ctypes.data]
            self.freed += 1

        return a, free

    def stream(self):
        return 0, "stream"

    def htod(self, dptr, host, nbytes, stream):
        ctypes.memmove(dptr, host.ctypes.data, nbytes)

    def dtoh(self, host, dptr, nbytes, stream):
        ctypes.memmove(host.ctypes.data, dptr, nbytes)

    def sync(self, stream):
        pass

    def destroy_stream(self, stream):
        pass

    def close(self):
        self.closed = True
