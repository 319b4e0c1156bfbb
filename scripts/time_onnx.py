#!/usr/bin/env python
"""Model-only latency of ONNX files side by side (ONNX Runtime CPU, 2 threads, spinning on), interleaved rounds.

    scripts/quiet.sh .venv/bin/python scripts/time_onnx.py A.onnx B.onnx ... [--size 320x240] [--threads 2]

Each file runs 1.5 s per round, 3 rounds interleaved (a slow spell hits every file alike); prints the median
latency over all runs. Used to choose the CPU INT8 recipe (calibration.quantize.CPU_INT8; docs/benchmarks/).
"""

import argparse
import time

import numpy as np
import onnxruntime as ort


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+")
    ap.add_argument("--size", default="320x240", help="LR WIDTHxHEIGHT")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    w, h = (int(v) for v in a.size.lower().split("x"))
    x = np.random.default_rng(0).random((1, 1, h, w), dtype=np.float32)
    sessions = {}
    for f in a.files:
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = a.threads, 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.add_session_config_entry("session.intra_op.allow_spinning", "1")
        so.log_severity_level = 3
        s = ort.InferenceSession(f, so, providers=["CPUExecutionProvider"])
        for _ in range(3):
            s.run(None, {s.get_inputs()[0].name: x})
        sessions[f] = s
    lat = {f: [] for f in a.files}
    for _ in range(a.rounds):
        for f, s in sessions.items():
            name, t_end = s.get_inputs()[0].name, time.perf_counter() + 1.5
            while time.perf_counter() < t_end:
                t0 = time.perf_counter()
                s.run(None, {name: x})
                lat[f].append((time.perf_counter() - t0) * 1e3)
    for f in a.files:
        print(f"{np.median(lat[f]):8.1f} ms  {f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
