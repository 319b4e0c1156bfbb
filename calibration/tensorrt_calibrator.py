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
        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.samples, self.index, self.cuda = samples, 0, cuda
            self.buffer = None
            if samples is not None:
                from edge_sr.backends.tensorrt import Buffer

                self.buffer = Buffer(cuda, int(samples[0].size))
                self._stream_handle, self._stream = cuda.stream()

        def get_batch_size(self):
            return 1

        def get_batch(self, names, p_str=None):
            if self.samples is None or self.index >= len(self.samples):
                return None
            x = self.samples[self.index].reshape(-1)
            self.index += 1
            self.buffer.host[: x.size] = x
            self.cuda.htod(self.buffer.dptr, self.buffer.host, x.size * 4, self._stream)
            self.cuda.sync(self._stream)
            return [self.buffer.dptr]

        def read_calibration_cache(self):
            # images given: calibrate afresh (and overwrite the cache); none: build from the cache alone
            if self.samples is None:
                log.info("using calibration cache %s", cache_path)
                return cache_path.read_bytes()
            return None

        def write_calibration_cache(self, cache):
            write_bytes_atomic(cache_path, bytes(cache))
            log.info("wrote calibration cache %s", cache_path)

        def free(self):
            if self.buffer is not None:
                self.buffer.free()
                self.buffer = None
                self.cuda.destroy_stream(self._stream)

    return EntropyCalibrator()
