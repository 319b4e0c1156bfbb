"""TensorRT engine builder for TensorRT 8.x, 10.x and 11.x, branching on features, not versions.

* explicit-batch network (the flag only below TensorRT 10, where implicit batch still exists), ONNX
  parser with every parser error listed on failure; one process-wide TensorRT logger whose per-build
  error buffer puts parser and builder errors in the failure message;
* optimisation profile min/opt/max from the requested shapes;
* workspace limit (``set_memory_pool_limit`` from 8.4, ``max_workspace_size`` before);
* timing cache named by TensorRT version and GPU, reused when TensorRT accepts it; a cache from
  another TensorRT or GPU is replaced by a fresh one (said in one line), never reported as reused;
* FP16: ``BuilderFlag.FP16`` where it exists (up to 10); on 11 (strongly typed networks) a float16
  copy of the ONNX model is built instead;
* INT8: from a Q/DQ ONNX (``edge-sr calibrate``) on every version, with FP16 allowed where the GPU has
  fast FP16 (the float first conv then runs in FP16, as ``trtexec --int8 --fp16`` and Polygraphy do);
  up to 10 also implicitly with an ``IInt8EntropyCalibrator2`` from calibration images or from its
  cache alone (exceptions TensorRT's trampoline swallows are re-raised after the build);
* a precision the GPU lacks is refused, never downgraded;
* a sidecar JSON beside the engine records TensorRT version, GPU, precision, shapes and sources.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from edge_sr import __version__
from edge_sr.backends.tensorrt import SIDECAR_FORMAT, cuda_api, sidecar_path, trt_logger
from edge_sr.checkpoint import file_sha256
from edge_sr.errors import DeviceError, EdgeSRError
from edge_sr.imageio import atomic_path, write_bytes_atomic
from edge_sr.lazy import require

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")


@dataclass
class BuildResult:
    engine: Path
    sidecar: Path
    timing_cache: Path | None
    meta: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)


def parse_hw(text: str, what: str = "--shape") -> tuple[int, int]:
    """'480x640' (HEIGHTxWIDTH) -> (480, 640)."""
    from edge_sr.sizes import parse_size

    return parse_size(text, what, order="hw", minimum=1)


def profile_shapes(opt, min_shape=None, max_shape=None) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """(min, opt, max) LR shapes; without --min/--max-shape the profile is static at ``opt``."""
    mn = min_shape or opt
    mx = max_shape or opt
    if not (mn[0] <= opt[0] <= mx[0] and mn[1] <= opt[1] <= mx[1]):
        raise EdgeSRError(f"profile must satisfy min <= shape <= max per side: min {mn[0]}x{mn[1]}, "
                          f"shape {opt[0]}x{opt[1]}, max {mx[0]}x{mx[1]} (HEIGHTxWIDTH)")
    return mn, opt, mx


def features(trt) -> dict:
    """What this TensorRT offers (feature tests, as the API changed between 8, 10 and 11)."""
    bf = trt.BuilderFlag
    ncf = getattr(trt, "NetworkDefinitionCreationFlag", None)
    return {
        "fp16_flag": hasattr(bf, "FP16"),
        "int8_flag": hasattr(bf, "INT8"),
        "tf32_flag": hasattr(bf, "TF32"),
        "calibrator": hasattr(trt, "IInt8EntropyCalibrator2"),
        "explicit_batch_flag": ncf is not None and hasattr(ncf, "EXPLICIT_BATCH"),
        # implicit batch (and with it the binding API) went in TensorRT 10, where EXPLICIT_BATCH is ignored
        "implicit_batch": hasattr(getattr(trt, "ICudaEngine", None), "num_bindings"),
        "strongly_typed": ncf is not None and hasattr(ncf, "STRONGLY_TYPED"),
        "memory_pool": hasattr(trt, "MemoryPoolType"),
        "serialized_build": hasattr(trt.Builder, "build_serialized_network"),
    }


def read_onnx_metadata(path: Path) -> dict:
    """edge-sr metadata_props of an ONNX file (onnx package when present, else a minimal protobuf read,
    so that a Jetson without the onnx package can build)."""
    try:
        import onnx

        mp = onnx.load(str(path), load_external_data=False)
        props = {p.key: p.value for p in mp.metadata_props}
    except ImportError:
        props = _metadata_props_from_bytes(path.read_bytes())
    except Exception as exc:
        raise EdgeSRError(f"not a readable ONNX model (corrupt, truncated or not ONNX): {path} ({str(exc)[:160]})") from None
    return {k[len("edge_sr."):]: v for k, v in props.items() if k.startswith("edge_sr.")}


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    v = shift = 0
    while True:
        if i >= len(buf):
            raise EdgeSRError("truncated ONNX protobuf")
        b = buf[i]
        i += 1
        v |= (b & 0x7F) << shift
        if not b & 0x80:
            return v, i
        shift += 7


def _fields(buf: bytes):
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            val, i = _varint(buf, i)
        elif wt == 2:
            n, i = _varint(buf, i)
            val, i = buf[i : i + n], i + n
        elif wt == 1:
            val, i = buf[i : i + 8], i + 8
        elif wt == 5:
            val, i = buf[i : i + 4], i + 4
        else:
            raise EdgeSRError("not an ONNX protobuf")
        yield num, val


def _metadata_props_from_bytes(buf: bytes) -> dict:
    """ModelProto.metadata_props is field 14 of StringStringEntryProto(key=1, value=2)."""
    out = {}
    for num, val in _fields(buf):
        if num == 14 and isinstance(val, bytes):
            kv = dict(_fields(val))
            out[kv.get(1, b"").decode()] = kv.get(2, b"").decode()
    return out


def float16_onnx(src: Path, dst: Path) -> None:
    """float16 copy of a float32 ONNX model (TensorRT 11's way to FP16): weights and tensors in
    float16, I/O kept float32 with Casts (the engine's I/O contract stays float32)."""
    require("onnx", "FP16 engines on TensorRT 11 (float16 ONNX conversion)")
    try:
        from onnxconverter_common import float16
    except ImportError:
        raise EdgeSRError("FP16 on TensorRT 11 needs a float16 ONNX: pip install onnxconverter-common") from None
    import onnx

    mp = onnx.load(str(src))
    mp16 = float16.convert_float_to_float16(mp, keep_io_types=True)
    onnx.save(mp16, str(dst))


def parse_onnx(trt, builder, logger, onnx_path: Path, flags: int):
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    with logger.capture() as logged:
        ok = parser.parse(onnx_path.read_bytes(), str(onnx_path))  # the path resolves external weights
    if not ok:
        errs = [" ".join(str(parser.get_error(i)).split()) for i in range(parser.num_errors)] or logged[-5:]
        listed = "; ".join(f"{i + 1}. {e}" for i, e in enumerate(errs)) or "the parser gave no detail"
        hint = ""
        if any("symmetric quantization" in e for e in errs):
            hint = (" -- TensorRT takes only symmetric int8 Q/DQ (zero point 0): make the model with "
                    "edge-sr calibrate --activations int8 (the default), not uint8")
        raise EdgeSRError(f"TensorRT's ONNX parser rejected {onnx_path.name} ({len(errs)} error(s)): {listed}{hint}")
    return network, parser


def _check_io(trt, network, onnx_path: Path) -> str:
    if network.num_inputs != 1 or network.num_outputs != 1:
        raise EdgeSRError(f"{onnx_path.name} has {network.num_inputs} inputs and {network.num_outputs} outputs: "
                          "expected one input [1,1,H,W] and one output [1,1,sH,sW]")
    inp = network.get_input(0)
    shape = tuple(inp.shape)
    if len(shape) != 4 or shape[0] not in (1, -1) or shape[1] not in (1, -1):
        raise EdgeSRError(f"{onnx_path.name}: input {inp.name} has shape {shape}, expected [1,1,H,W]")
    return inp.name


def has_qdq(trt, network) -> bool:
    kinds = {getattr(trt.LayerType, "QUANTIZE", None), getattr(trt.LayerType, "DEQUANTIZE", None)} - {None}
    return any(network.get_layer(i).type in kinds for i in range(network.num_layers))


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "gpu"


def default_timing_cache(out: Path, trt_version: str, gpu: str, cc: str) -> Path:
    """Beside the engine, named by TensorRT version and GPU, so that an upgrade or another board starts
    its own cache instead of tripping over the old one (engines of one device share it)."""
    return out.with_name(f"edge-sr-timing-trt{trt_version}-{_slug(gpu)}-sm{cc.replace('.', '')}.cache")


def attach_timing_cache(config, path: Path) -> tuple[object | None, str | None, bool]:
    """(cache, note, reused). A file TensorRT rejects (``create_timing_cache`` gives None for another
    TensorRT or damage, ``set_timing_cache`` False for another GPU) is replaced by an empty cache."""
    note = None
    try:
        data = path.read_bytes() if path.is_file() else b""
    except OSError as exc:
        data, note = b"", f"timing cache {path} unreadable ({exc}): started an empty one"
    if data:
        cache = None
        with contextlib.suppress(Exception):  # None (or an exception) for a cache of another TensorRT
            cache = config.create_timing_cache(data)
        if cache is not None and config.set_timing_cache(cache, False):
            return cache, f"reused timing cache {path.name}", True
        why = "another TensorRT version, or damaged" if cache is None else "another GPU"
        note = f"timing cache {path.name} is from {why}: started an empty one (it replaces the file)"
    cache = config.create_timing_cache(b"")
    if cache is None or not config.set_timing_cache(cache, False):
        return None, "TensorRT refused an empty timing cache: building without one", False
    return cache, note, False


def build_engine(
    onnx_path: str | os.PathLike,
    out: str | os.PathLike,
    precision: str = "fp16",
    shape: tuple[int, int] = (480, 640),
    min_shape: tuple[int, int] | None = None,
    max_shape: tuple[int, int] | None = None,
    calib_images: str | os.PathLike | None = None,
    calib_cache: str | os.PathLike | None = None,
    workspace_mib: int = 1024,
    timing_cache: str | os.PathLike | None = None,
) -> BuildResult:
    onnx_path, out = Path(onnx_path), Path(out)
    if precision not in PRECISIONS:
        raise EdgeSRError(f"unknown precision {precision!r}: choose {', '.join(PRECISIONS)}")
    if not onnx_path.is_file():
        raise EdgeSRError(f"ONNX model not found: {onnx_path}")
    mn, opt, mx = profile_shapes(shape, min_shape, max_shape)
    if calib_cache is not None and calib_images is None and not Path(calib_cache).is_file():
        raise EdgeSRError(f"calibration cache not found: {calib_cache} (give --calib-images DIR to make it)")
    meta_in = read_onnx_metadata(onnx_path)
    if not meta_in.get("scale"):
        raise EdgeSRError(f"{onnx_path.name} lacks edge-sr metadata (scale, output): export it with edge-sr export")
    trt = require("tensorrt", "building TensorRT engines")
    cuda = cuda_api()
    try:
        with cuda.active():
            gpu_name, cc = cuda.device()
        return _build(trt, cuda, gpu_name, cc, onnx_path, out, precision, (mn, opt, mx), calib_images, calib_cache,
                      workspace_mib, timing_cache, meta_in)
    finally:
        cuda.close()


def _build(trt, cuda, gpu_name, cc, onnx_path: Path, out: Path, precision, shapes, calib_images, calib_cache,
           workspace_mib, timing_cache, meta_in) -> BuildResult:
    mn, opt, mx = shapes
    feat = features(trt)
    notes: list[str] = []
    logger = trt_logger(trt)
    builder = trt.Builder(logger)
    fast_fp16 = getattr(builder, "platform_has_fast_fp16", None)
    # a precision the GPU lacks is refused, never downgraded (the properties are gone in TensorRT 11)
    if precision == "fp16" and fast_fp16 is False:
        raise DeviceError("this GPU has no fast FP16: build --precision fp32 instead (edge-sr never downgrades)")
    if precision == "int8" and getattr(builder, "platform_has_fast_int8", None) is False:
        raise DeviceError("this GPU has no fast INT8: build --precision fp16 or fp32 instead (edge-sr never downgrades)")

    with tempfile.TemporaryDirectory(prefix="edge-sr-trt-") as tmpdir:
        src = onnx_path
        strongly_typed = False
        if precision == "fp16" and not feat["fp16_flag"]:
            # TensorRT 11: strongly typed network from a float16 model
            src = Path(tmpdir) / (onnx_path.stem + ".fp16.onnx")
            float16_onnx(onnx_path, src)
            strongly_typed = True
            notes.append("FP16 through a float16 ONNX (TensorRT without BuilderFlag.FP16)")
        flags = 0
        if feat["explicit_batch_flag"] and feat["implicit_batch"]:
            flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
        if feat["strongly_typed"] and (strongly_typed or not feat["fp16_flag"]):
            flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        network, _parser = parse_onnx(trt, builder, logger, src, flags)
        in_name = _check_io(trt, network, onnx_path)
        qdq = has_qdq(trt, network)

        config = builder.create_builder_config()
        ws = int(workspace_mib) << 20
        if feat["memory_pool"] and hasattr(config, "set_memory_pool_limit"):
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, ws)
        else:
            config.max_workspace_size = ws
        profile = builder.create_optimization_profile()
        profile.set_shape(in_name, (1, 1, *mn), (1, 1, *opt), (1, 1, *mx))
        config.add_optimization_profile(profile)
        if feat["tf32_flag"] and precision == "fp32":
            config.clear_flag(trt.BuilderFlag.TF32)  # fp32 means fp32
        calibrator = None
        if precision == "fp16" and feat["fp16_flag"]:
            config.set_flag(trt.BuilderFlag.FP16)
        elif precision == "int8":
            if qdq:
                notes.append("INT8 from the Q/DQ nodes of the ONNX model (explicit quantization)")
                if feat["int8_flag"]:
                    config.set_flag(trt.BuilderFlag.INT8)
                if feat["fp16_flag"] and fast_fp16:
                    config.set_flag(trt.BuilderFlag.FP16)
                    notes.append("FP16 allowed for the layers outside Q/DQ (the float first conv), "
                                 "as trtexec --int8 --fp16 does")
                if calib_images or calib_cache:
                    notes.append("the ONNX model is already Q/DQ: calibration images/cache ignored")
            elif not feat["calibrator"]:
                raise EdgeSRError(f"{onnx_path.name} has no Q/DQ nodes and this TensorRT has no INT8 calibrator "
                                  "(TensorRT 11): make a Q/DQ model with edge-sr calibrate and build from it")
            elif not (calib_images or calib_cache):
                raise EdgeSRError(f"{onnx_path.name} has no Q/DQ nodes: give --calib-images DIR or --calib-cache FILE "
                                  "for implicit INT8, or build from an edge-sr calibrate model")
            else:
                from edge_sr.calibration.tensorrt_calibrator import make_entropy_calibrator

                cache = Path(calib_cache) if calib_cache else out.with_name(out.name + ".calib.cache")
                with cuda.active():
                    calibrator = make_entropy_calibrator(trt, calib_images, cache, opt,
                                                         cuda=cuda if calib_images is not None else None)
                config.set_flag(trt.BuilderFlag.INT8)
                config.int8_calibrator = calibrator
                if hasattr(config, "set_calibration_profile"):
                    config.set_calibration_profile(profile)
                notes.append(f"implicit INT8 with IInt8EntropyCalibrator2 (cache {cache.name})")
        tc_path = Path(timing_cache) if timing_cache else default_timing_cache(out, trt.__version__, gpu_name, cc)
        tcache = None
        if hasattr(config, "create_timing_cache"):
            tcache, tc_note, _reused = attach_timing_cache(config, tc_path)
            if tc_note:
                notes.append(tc_note)
                if not _reused:
                    log.warning("%s", tc_note)
        try:
            with cuda.active(), logger.capture() as errors:
                if feat["serialized_build"]:
                    plan = builder.build_serialized_network(network, config)
                else:
                    eng = builder.build_engine(network, config)
                    plan = eng.serialize() if eng is not None else None
            if calibrator is not None:
                calibrator.check()  # what TensorRT's calibrator trampoline caught and only printed
        finally:
            if calibrator is not None:
                with cuda.active():
                    calibrator.free()
        if plan is None:
            detail = "; ".join(errors[-5:]) or "TensorRT gave no detail (run with -v for its log)"
            raise EdgeSRError(f"TensorRT could not build a {precision} engine from {onnx_path.name}: {detail}")
        meta = {
            "format": SIDECAR_FORMAT,
            "tensorrt": trt.__version__,
            "gpu": gpu_name,
            "compute_capability": cc,
            "precision": precision,
            "input": in_name,
            "min_shape": list(mn), "opt_shape": list(opt), "max_shape": list(mx),
            "source_onnx": str(onnx_path),
            "source_onnx_sha256": file_sha256(onnx_path),
            "scale": int(meta_in.get("scale", 0)) or None,
            "output": meta_in.get("output", "y"),
            "preset": meta_in.get("preset"),
            "config": meta_in.get("config"),
            "int8": "qdq" if (precision == "int8" and qdq) else ("calibrator" if precision == "int8" else None),
            "edge_sr": __version__,
        }
        # engine and sidecar: both written to temporary names, renamed only when both are complete
        with atomic_path(out) as tmp_engine:
            Path(tmp_engine).write_bytes(bytes(plan))
            write_bytes_atomic(sidecar_path(out), json.dumps(meta, indent=2).encode())
        if tcache is not None:
            try:
                write_bytes_atomic(tc_path, bytes(tcache.serialize()))
            except OSError as exc:  # the engine is fine without a cache
                log.warning("could not save the timing cache %s: %s", tc_path, exc)
                tc_path = None
    return BuildResult(out, sidecar_path(out), tc_path if tcache is not None else None, meta, notes)
