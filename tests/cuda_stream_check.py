"""The stream's thread pattern against a CUDA binding, in a process of its own (a pycuda context left
pushed when a thread ends aborts the process, so only the exit code can show it):

    python tests/cuda_stream_check.py {fake-pycuda,pycuda,cuda-python}

Opens a TensorRT upscaler (the fake ``tensorrt`` of tests/fake_tensorrt, so no TensorRT is needed) on
the main thread, infers on a worker thread until stopped, joins it, closes; then two upscalers open
in one thread and closed in opening order, and one closed from another thread. With a real binding the
buffers are real device memory and the engine's "execution" is a device-to-device copy on the stream
(a stand-in for ``execute_async_v3`` without cuBLAS/cuDNN). Exit code 0 and a last line "OK ..." mean
it passed. Run by tests/test_cuda_pycuda.py (fake) and tests/test_cuda_gpu.py (real, `gpu`).
"""

from __future__ import annotations

import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def _device_copy(binding: str, api_of):
    """An executor for the fake engine: copy the input into the output on the engine's stream."""

    def run(in_ptr, out_ptr, h, w, scale, stream):
        api = api_of()
        if binding == "pycuda":
            api.drv.memcpy_dtod_async(out_ptr, in_ptr, h * w * 4, api._streams[stream])
        else:
            api._call(api.rt.cudaMemcpyAsync, out_ptr, in_ptr, h * w * 4,
                      api.rt.cudaMemcpyKind.cudaMemcpyDeviceToDevice, api._streams[stream])

    return run


def main(mode: str) -> int:
    sys.path.insert(0, str(HERE))  # this script's own helpers (a test tool, not library code)
    import fake_tensorrt

    import edge_sr.backends.tensorrt as bt

    real = mode != "fake-pycuda"
    if mode == "fake-pycuda":
        from fake_pycuda import install_fake_pycuda

        # a device other than the fake runtime's default (Orin, 8.7): the engine must be made for the probed device
        drv = install_fake_pycuda(lambda mods, k, v: mods.__setitem__(k, v), abort=True, gpu="Fake H200", cc=(9, 0))
        bt.BINDINGS = (bt._PyCuda,)
    elif mode == "pycuda":
        drv = None
        bt.BINDINGS = (bt._PyCuda,)
    elif mode == "cuda-python":
        drv = None
        bt.BINDINGS = (bt._CudaPython,)
    else:
        print(f"unknown mode {mode}", file=sys.stderr)
        return 2

    opened = []
    probe = bt.cuda_api()  # the CUDA binding alone: TensorRT comes in below
    print(f"binding: {probe.versions()}", flush=True)
    with probe.active():
        gpu, cc = probe.device()
    probe.close()
    # the fake runtime stands for the probed device: an engine built here names its GPU and compute capability
    trt = fake_tensorrt.make_fake_trt("10.3.0", gpu=gpu, cc=cc,
                                      executor=_device_copy(mode, lambda: opened[-1]._cuda) if real else None)
    sys.modules["tensorrt"] = trt

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as d:
        engine = Path(d) / "m.engine"
        fake_tensorrt.write_fake_engine(engine, gpu=gpu, cc=cc, min_shape=(8, 8), max_shape=(32, 48))

        def check(y, got):
            if real:  # the stand-in copies the input into the start of the output
                ok = np.array_equal(got.reshape(-1)[: y.size], y.reshape(-1))
            else:
                ok = np.array_equal(got, np.kron(y, np.ones((2, 2), np.float32)))
            if not ok:
                raise AssertionError("output differs from the reference")

        # 1. the stream: open on the main thread, infer on a worker until stopped, join, close
        up = bt.TensorRTUpscaler(engine)
        opened.append(up)
        stop, done, errors = threading.Event(), [], []

        def worker():
            try:
                while not stop.is_set():
                    y = rng.random((16 + len(done) % 8, 24), dtype=np.float32)
                    check(y, up.infer(y))
                    done.append(1)
                    if len(done) >= 20:
                        stop.wait(0.01)
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)
                stop.set()

        th = threading.Thread(target=worker, name="edge-sr-upscale")
        th.start()
        while len(done) < 20 and not errors:
            stop.wait(0.01)
        stop.set()
        th.join()
        up.close()
        if errors:
            raise errors[0]

        # 2. two upscalers in one thread (bench over two engines), closed in opening order
        a = bt.TensorRTUpscaler(engine)
        opened.append(a)
        b = bt.TensorRTUpscaler(engine)
        opened.append(b)
        y = rng.random((8, 8), dtype=np.float32)
        check(y, b.infer(y))
        a.close()
        check(y, b.infer(y))
        b.close()

        # 3. opened on the main thread, closed from another
        c = bt.TensorRTUpscaler(engine)
        opened.append(c)
        check(y, c.infer(y))
        closer = threading.Thread(target=c.close, name="closer")
        closer.start()
        closer.join()

    if drv is not None:
        problems = {"retains": drv.retains, "leaks": drv.leaks, "main stack": len(drv.thread_stack())}
        if drv.retains or drv.leaks or drv.thread_stack():
            print(f"FAIL {problems}", file=sys.stderr)
            return 1
    print(f"OK {mode}: {len(done)} inferences on a worker thread, two upscalers closed in opening order, "
          "one closed from another thread")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "fake-pycuda"))
