"""Real device memory with both CUDA bindings (`gpu`): the stream's thread pattern (open on the main
thread, infer on a worker, stop, join, close; two upscalers closed in opening order; a close from
another thread) in a process of its own, with a device-to-device copy on the stream standing in for
``execute_async_v3`` (no TensorRT, cuBLAS or cuDNN needed). Exit code 0 means the process survived the
worker thread's exit (pycuda aborts when a thread ends with a context pushed).

pycuda: build it from its sdist with CUDA's compiler on the GPU machine
(``PATH=/usr/local/cuda/bin:$PATH pip install pycuda``); cuda-python: ``pip install "cuda-bindings>=12.9,<13"``
matching the driver. Passed on an NVIDIA H200 with pycuda 2026.1 and cuda-bindings 13.3.1 (docs/deploy.md)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.mark.gpu
@pytest.mark.parametrize("binding,module", [("pycuda", "pycuda.driver"), ("cuda-python", "cuda.bindings.runtime")])
def test_stream_thread_pattern_with_real_device_memory(binding, module):
    top = module.split(".")[0]
    if importlib.util.find_spec(top) is None:
        pytest.skip(f"{binding} not installed")
    r = subprocess.run([sys.executable, str(HERE / "cuda_stream_check.py"), binding],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"{binding}: exit {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    assert r.stdout.strip().splitlines()[-1].startswith(f"OK {binding}")
