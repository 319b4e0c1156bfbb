"""ONNX Runtime backend: FP32 or INT8 (Q/DQ) ONNX models on CPU (Raspberry Pi, x86) or CUDA/TensorRT EP.

Reads edge-sr's ``metadata_props`` (written by ``edge-sr export`` / ``calibrate``) through ONNX
Runtime itself, so the device needs no ``onnx`` package. A foreign ONNX file with one float input
[1, 1, H, W] and one float output [1, 1, sH, sW] is accepted too: its scale comes from a probe run
and its output is taken as the full HR luma.
"""

from __future__ import annotations

import json
import logging
import os
import platform
from pathlib import Path

import numpy as np

from ..config import DCSCNConfig
from ..errors import EdgeSRError
from ..lazy import require
from . import Upscaler

log = logging.getLogger(__name__)

META_PREFIX = "edge_sr."
# preferred order when the user names no provider; only those present are used
DEFAULT_PROVIDER_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
_SHORT_NAMES = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider",
                "trt": "TensorrtExecutionProvider"}


# how a Q/DQ (INT8) file is computed: this CPU's integer kernels, or the ONNX spec's float reference
INT8_ARITHMETIC = ("kernels", "reference")


# x86 without VNNI: ONNX Runtime's u8s8 kernels add pairs of u8 x s8 products in int16 (VPMADDUBSW) and saturate
# where two large ones meet (measured: compact x4's .int8.onnx -0.142 dB on Set5 against its FP32, -0.065 in exact
# arithmetic). This session option makes ONNX Runtime rewrite int8 weights outside [-64, 63] to uint8 and take its
# u8u8 kernels: the exact sums. ONNX Runtime applies it on every x86 CPU with AVX2 (MlasPlatformU8S8Overflow() only
# compares dispatch tables), VNNI or not, and with VNNI its u8s8 kernels were exact already (VPDPBUSD sums in int32):
# there it only costs speed, measured on an AVX-512 VNNI EPYC (Zen 4): normal x2's .cpu-int8.onnx 296 ms with it,
# 179 ms without (model only, 320x240, 2 threads; edge-sr bench, docs/benchmarks/README.md). So it is set only where the kernels
# saturate (u8s8_saturates). ONNX Runtime 1.32 fails to load some Q/DQ graphs with it ("Attempt to replace the
# existing tensor": S8S8 activations on the fast graph, not a shipped file): those load without it.
X64_EXACT_KEY = "session.x64quantprecision"
_X86_MACHINES = ("x86_64", "amd64", "i386", "i686", "x86")


def u8s8_saturates(isa: str | None = None, machine: str | None = None) -> bool:
    """Whether ONNX Runtime's u8s8 INT8 kernels can saturate on this CPU: x86 without VNNI (AVX2, AVX-512 without
    VNNI, SSE4.1), or an x86 CPU whose flags cannot be read (assumed the worst). False on ARM, where the option does
    not exist, and on VNNI."""
    if (machine or platform.machine()).lower() not in _X86_MACHINES:
        return False
    from ..bench import VNNI_FLAGS, int8_isa  # MLAS's AVX-512 VNNI and AVX-VNNI kernels sum u8 x s8 in int32

    return (int8_isa() if isa is None else isa) not in VNNI_FLAGS


def open_session(ort, path, options, providers, exact: bool | None = None):
    """(InferenceSession, exact_x86). Where this CPU's u8s8 kernels saturate (``exact`` None: u8s8_saturates()),
    first with ``options(True)`` (the x86 saturation fix), then, when ONNX Runtime cannot apply that to this graph,
    with ``options(False)``; elsewhere with ``options(False)``. An error of the last try is the caller's."""
    if exact is None:
        exact = u8s8_saturates()
    if exact:
        try:
            return ort.InferenceSession(str(path), sess_options=options(True), providers=providers), True
        except Exception as exc:  # noqa: BLE001 - whatever the first try hit, the second try decides
            log.debug("ONNX Runtime could not load %s with %s (%s): loading it without", path, X64_EXACT_KEY, exc)
    return ort.InferenceSession(str(path), sess_options=options(False), providers=providers), False


def physical_cores() -> int:
    """Physical cores this process may use (SMT siblings counted once); intra-op threads default."""
    try:
        allowed = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        allowed = os.cpu_count() or 1
    cores = set()
    try:
        phys = core = None
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, val = line.partition(":")
            key = key.strip()
            if key == "physical id":
                phys = val.strip()
            elif key == "core id":
                core = val.strip()
            elif not line.strip():
                if core is not None:
                    cores.add((phys, core))
                phys = core = None
        if core is not None:
            cores.add((phys, core))
    except OSError:
        pass
    return max(1, min(allowed, len(cores)) if cores else allowed)


def choose_providers(requested: list[str] | str | None, available: list[str]) -> list[str]:
    """Providers by availability, or exactly the ones named (a missing one is an error, no fallback)."""
    if requested:
        names = [requested] if isinstance(requested, str) else list(requested)
        names = [_SHORT_NAMES.get(n.strip().lower(), n.strip()) for part in names for n in part.split(",") if n.strip()]
        missing = [n for n in names if n not in available]
        if missing:
            raise EdgeSRError(f"ONNX Runtime provider(s) {', '.join(missing)} not available in this onnxruntime "
                              f"(available: {', '.join(available)})")
        return names
    return [p for p in DEFAULT_PROVIDER_ORDER if p in available] or ["CPUExecutionProvider"]


def read_metadata(sess) -> dict:
    """edge-sr keys of the model's metadata_props (prefix stripped)."""
    custom = sess.get_modelmeta().custom_metadata_map or {}
    return {k[len(META_PREFIX):]: v for k, v in custom.items() if k.startswith(META_PREFIX)}


def _dim_ok(d, want: int) -> bool:
    return d == want or not isinstance(d, int)  # symbolic (str) or None: dynamic


class OnnxUpscaler(Upscaler):
    backend = "onnxruntime"

    def __init__(self, path, *, threads: int = 0, providers=None, frame_shape=None, spin: bool = True,
                 warmup: bool = True, mem_pattern: bool = True, int8_arithmetic: str = "kernels", **_ignored):
        ort = require("onnxruntime", "the ONNX Runtime backend (.onnx models)")
        path = Path(path)
        if not path.is_file():
            raise EdgeSRError(f"ONNX model not found: {path}")
        self.path, self.name = path, path.stem  # dcscn_compact_x2 or dcscn_compact_x2.int8
        self.threads = threads or physical_cores()
        if int8_arithmetic not in INT8_ARITHMETIC:
            raise EdgeSRError(f"int8 arithmetic {int8_arithmetic!r}: one of {', '.join(INT8_ARITHMETIC)}")
        # "kernels": every graph optimization, so a Q/DQ file runs on this CPU's integer kernels (the speed,
        # and the rounding, of this machine). "reference": none, so each DequantizeLinear -> float op ->
        # QuantizeLinear runs as the ONNX spec writes it: the arithmetic of int32-accumulating INT8 hardware
        # (TensorRT, x86 VNNI, ARM dot product).
        self.int8_arithmetic = int8_arithmetic
        self.providers = choose_providers(providers, ort.get_available_providers())

        def options(exact_x86: bool):
            so = ort.SessionOptions()
            so.intra_op_num_threads = self.threads
            so.inter_op_num_threads = 1
            so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if int8_arithmetic == "kernels"
                                           else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
            if exact_x86:
                so.add_session_config_entry(X64_EXACT_KEY, "1")
            so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
            # off for stills: the planned block comes on top of the first run's buffers (normal, 214x217 LR:
            # peak RSS 413 MB with it, 243 MB without); the stream keeps it (one shape, every frame)
            so.enable_mem_pattern = mem_pattern
            so.log_severity_level = 3  # warnings of the optimizer are not the user's business
            return so

        try:
            self._sess, self.exact_x86 = open_session(ort, path, options, self.providers)
        except Exception as exc:  # InvalidProtobuf, Fail, NoSuchFile...: one line
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise EdgeSRError(f"not a loadable ONNX model (corrupt, truncated or not ONNX): {path} ({first[:200]})") from None
        self._check_io()
        meta = read_metadata(self._sess)
        self.metadata = meta
        self.precision = meta.get("precision", "fp32")
        if meta.get("output") in ("y", "residual"):
            self.output_is_residual = meta["output"] == "residual"
            try:
                self.scale = int(meta["scale"])
                self.config = DCSCNConfig.from_dict(json.loads(meta["config"])) if meta.get("config") else None
            except (KeyError, ValueError, TypeError) as exc:
                raise EdgeSRError(f"{path.name}: broken edge-sr metadata ({exc})") from None
        else:  # a foreign model: full HR luma out, scale from a probe
            self.output_is_residual = False
            self.config = None
            self.scale = self._probe_scale()
        self._binding = None
        self.frame_shape = None
        if frame_shape is not None:
            self.prepare(tuple(frame_shape))
        elif warmup:
            self.infer(np.zeros((32, 32), np.float32))

    # -- I/O contract ---------------------------------------------------------------------------
    def _check_io(self) -> None:
        ins, outs = self._sess.get_inputs(), self._sess.get_outputs()
        problem = None
        if len(ins) != 1 or len(outs) != 1:
            problem = f"{len(ins)} inputs and {len(outs)} outputs"
        else:
            i, o = ins[0], outs[0]
            for t, what in ((i, "input"), (o, "output")):
                if t.type != "tensor(float)":
                    problem = f"{what} {t.name} is {t.type}"
                elif len(t.shape) != 4 or not (_dim_ok(t.shape[0], 1) and _dim_ok(t.shape[1], 1)):
                    problem = f"{what} {t.name} has shape {t.shape}"
                if problem:
                    break
        if problem:
            raise EdgeSRError(f"{self.path.name} is not an edge-sr super-resolution model: expected one float32 "
                              f"input [1,1,H,W] and one float32 output [1,1,sH,sW], found {problem}")
        self._in_name, self._out_name = ins[0].name, outs[0].name
        shape = ins[0].shape
        if isinstance(shape[2], int) and isinstance(shape[3], int):
            self.fixed_lr_shape = self.max_lr_shape = (shape[2], shape[3])

    def _probe_scale(self) -> int:
        h, w = self.fixed_lr_shape or (16, 16)
        try:
            out = self._sess.run(None, {self._in_name: np.zeros((1, 1, h, w), np.float32)})[0]
        except Exception as exc:
            raise EdgeSRError(f"{self.path.name}: probe run failed ({str(exc).splitlines()[0][:200]})") from None
        sh, sw = out.shape[-2:]
        if out.ndim != 4 or sh % h or sw % w or sh // h != sw // w or sh // h not in (2, 3, 4):
            raise EdgeSRError(f"{self.path.name}: output {list(out.shape)} for input [1,1,{h},{w}] is not an x2/x3/x4 upscale")
        return sh // h

    # -- running --------------------------------------------------------------------------------
    def prepare(self, lr_shape: tuple[int, int]) -> None:
        """Pre-allocate input and output for one LR frame shape (IOBinding); other shapes still run."""
        h, w = int(lr_shape[0]), int(lr_shape[1])
        self._in_buf = np.zeros((1, 1, h, w), np.float32)
        self._out_buf = np.empty((1, 1, h * self.scale, w * self.scale), np.float32)
        io = self._sess.io_binding()
        io.bind_cpu_input(self._in_name, self._in_buf)
        io.bind_output(self._out_name, "cpu", 0, np.float32, list(self._out_buf.shape), self._out_buf.ctypes.data)
        self._binding = io
        self.frame_shape = (h, w)
        self._sess.run_with_iobinding(io)  # warm-up at the real size

    def infer(self, y_lr_f32: np.ndarray) -> np.ndarray:
        """LR luma [H, W] -> HR array [sH, sW] (the bound output buffer for the prepared shape: valid
        until the next call)."""
        if y_lr_f32.ndim != 2:
            raise EdgeSRError(f"expected a 2-D luma array, got shape {y_lr_f32.shape}")
        if self.fixed_lr_shape and y_lr_f32.shape != self.fixed_lr_shape:
            raise EdgeSRError(f"model {self.path.name} takes only {self.fixed_lr_shape[1]}x{self.fixed_lr_shape[0]} "
                              f"LR input, got {y_lr_f32.shape[1]}x{y_lr_f32.shape[0]}")
        if self._binding is not None and y_lr_f32.shape == self.frame_shape:
            self._in_buf[0, 0] = y_lr_f32
            self._sess.run_with_iobinding(self._binding)
            return self._out_buf[0, 0]
        x = np.ascontiguousarray(y_lr_f32, dtype=np.float32)[None, None]
        return self._sess.run([self._out_name], {self._in_name: x})[0][0, 0]

    def describe(self) -> dict:
        d = super().describe()
        d.update(providers=self.providers, threads=self.threads,
                 output="residual" if self.output_is_residual else "y")
        return d

    def close(self) -> None:
        self._binding = None
        self._sess = None
