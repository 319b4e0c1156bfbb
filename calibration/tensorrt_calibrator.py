"""Legacy implicit INT8 for TensorRT up to 10: an ``IInt8EntropyCalibrator2`` over calibration images.

It feeds the runtime's pre-processing (luma / 255, fixed-size crops, one frame per batch as the
network is explicit-batch [1,1,H,W]) and writes a calibration cache; given only the cache, it builds
without images (TensorRT samples' pattern). TensorRT 11 has no calibrators: use a Q/DQ model.
"""

from __future__ import annotations

import logging
from pathlib import Path

from edge_sr.errors import EdgeSRError
from edge_sr.imageio import write_bytes_atomic

log = logging.getLogger(__name__)


def make_entropy_calibrator(trt, images, cache_path, lr_shape, cuda=None, crops_per_image: int = 2,
                            max_images: int = 100, min_images: int = 8):
    """An IInt8EntropyCalibrator2 instance (class made here: tensorrt is imported lazily)."""
    if not hasattr(trt, "IInt8EntropyCalibrator2"):
        raise EdgeSRError("this TensorRT has no IInt8EntropyCalibrator2 (TensorRT 11): use a Q/DQ model from edge-sr calibrate")
    cache_path = Path(cache_path)
    samples = None
    if images is not None:
        from .data import load_calibration_set

        samples = load_calibration_set(images, crop=tuple(lr_shape), crops_per_image=crops_per_image,
                                       min_images=min_images, max_images=max_images)
    elif not cache_path.is_file():
        raise EdgeSRError(f"calibration cache not found: {cache_path} (give --calib-images DIR to make it)")

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        """TensorRT calls these through a trampoline that catches every Python exception, prints it and
        carries on (a failed get_batch ends calibration, a failed write leaves no cache). So each
        callback stores its exception, and ``check()`` re-raises it after the build."""

        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)  # a pybind11 trampoline must be initialised explicitly
            self.samples, self.index, self.cuda = samples, 0, cuda
            self.buffer = None
            self.error: BaseException | None = None
            self.batches = 0
            self.wrote_cache = False
            self._cache_bytes = None  # TensorRT may read the cache more than once: keep it in memory
            if samples is not None:
                from edge_sr.backends.tensorrt import Buffer

                self.buffer = Buffer(cuda, int(samples[0].size))
                self._stream = cuda.stream()

        def _keep(self, exc: BaseException) -> None:
            if self.error is None:
                self.error = exc

        def get_batch_size(self):
            return 1

        def get_batch(self, names, p_str=None):
            try:
                if self.error is not None or self.samples is None or self.index >= len(self.samples):
                    return None
                x = self.samples[self.index].reshape(-1)
                self.index += 1
                with self.cuda.active():  # TensorRT may call from any thread
                    self.buffer.host[: x.size] = x
                    self.cuda.htod(self.buffer.dptr, self.buffer.host, x.size * 4, self._stream)
                    self.cuda.sync(self._stream)
                self.batches += 1
                return [self.buffer.dptr]
            except BaseException as exc:  # noqa: BLE001 - TensorRT would swallow it: kept for check()
                self._keep(exc)
                return None

        def read_calibration_cache(self):
            # images given: calibrate afresh (and overwrite the cache); none: build from the cache alone
            try:
                if self.samples is not None:
                    return None
                if self._cache_bytes is None:
                    data = cache_path.read_bytes()
                    if not data:
                        raise EdgeSRError(f"calibration cache {cache_path} is empty: make it again with --calib-images DIR")
                    log.info("using calibration cache %s", cache_path)
                    self._cache_bytes = data
                return self._cache_bytes
            except BaseException as exc:  # noqa: BLE001
                self._keep(exc)
                return None

        def write_calibration_cache(self, cache):
            if self.error is not None:  # calibration ended early on an error: its table would be wrong
                return
            try:
                write_bytes_atomic(cache_path, bytes(cache))
                self.wrote_cache = True
                log.info("wrote calibration cache %s", cache_path)
            except BaseException as exc:  # noqa: BLE001
                self._keep(exc)

        def check(self) -> None:
            """After build_serialized_network: raise what the callbacks hit, or a missing cache."""
            exc = self.error
            if exc is not None:
                if isinstance(exc, EdgeSRError) or not isinstance(exc, Exception):
                    raise exc
                if isinstance(exc, OSError):
                    raise EdgeSRError(f"INT8 calibration: {exc}") from exc
                raise EdgeSRError(f"INT8 calibration failed in TensorRT's callback: {type(exc).__name__}: {exc}") from exc
            if self.samples is not None:
                if self.batches == 0:
                    raise EdgeSRError("INT8 calibration: TensorRT took no calibration batch")
                if not self.wrote_cache or not cache_path.is_file():
                    raise EdgeSRError(f"INT8 calibration: TensorRT did not write the calibration cache {cache_path}")

        def free(self):
            """Inside the caller's active()."""
            if self.buffer is not None:
                self.buffer.free()
                self.buffer = None
                self.cuda.destroy_stream(self._stream)

    return EntropyCalibrator()
