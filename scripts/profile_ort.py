#!/usr/bin/env python
"""Per-op profile of an ONNX model under ONNX Runtime's own profiler (CPU provider).

    scripts/quiet.sh .venv/bin/python scripts/profile_ort.py MODEL.onnx [--size 320x240] [--threads 2]

Prints the median model latency, GFLOP/s of the DCSCN arithmetic (from the model's edge-sr
metadata), and the time per op type and per node (mean over the profiled runs, warm-up excluded).
Run it through scripts/quiet.sh on a machine with a background job.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np


def parse_size(text: str) -> tuple[int, int]:
    w, _, h = text.lower().partition("x")
    return int(w), int(h)


def profile(model: str, width: int, height: int, threads: int, runs: int, warmup: int, spin: bool = True,
            level: str = "all") -> dict:
    import onnxruntime as ort

    levels = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL, "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
    x = np.random.default_rng(0).random((1, 1, height, width), dtype=np.float32)

    def session(prof_dir: str | None):
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = levels[level]
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        so.log_severity_level = 3
        if prof_dir:
            so.enable_profiling = True
            so.profile_file_prefix = os.path.join(prof_dir, "ort")
        return ort.InferenceSession(model, sess_options=so, providers=["CPUExecutionProvider"])

    # timing without the profiler's overhead
    sess = session(None)
    name = sess.get_inputs()[0].name
    for _ in range(warmup):
        sess.run(None, {name: x})
    lat = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, {name: x})
        lat.append((time.perf_counter() - t0) * 1e3)
    meta = {k: v for k, v in (sess.get_modelmeta().custom_metadata_map or {}).items()}
    del sess

    with tempfile.TemporaryDirectory() as d:
        sess = session(d)
        for _ in range(warmup + runs):
            sess.run(None, {name: x})
        trace = json.loads(Path(sess.end_profiling()).read_text())
    per_node: dict[str, list[float]] = defaultdict(list)
    op_of: dict[str, str] = {}
    for ev in trace:
        if ev.get("cat") != "Node" or not ev.get("name", "").endswith("_kernel_time"):
            continue
        node = ev["name"][: -len("_kernel_time")]
        per_node[node].append(ev["dur"] / 1e3)
        op_of[node] = ev.get("args", {}).get("op_name", "?")
    # drop the warm-up runs (first `warmup` occurrences of each node)
    node_ms = {n: float(np.mean(v[warmup:] or v)) for n, v in per_node.items()}
    op_ms: dict[str, float] = defaultdict(float)
    for n, ms in node_ms.items():
        op_ms[op_of[n]] += ms
    cfg = meta.get("edge_sr.config")
    gflop = None
    if cfg:
        from edge_sr.config import DCSCNConfig

        gflop = DCSCNConfig.from_dict(json.loads(cfg)).gflop_per_frame(height, width)
    return {"model": model, "size": [width, height], "threads": threads, "runs": runs,
            "median_ms": float(np.median(lat)), "p95_ms": float(np.percentile(lat, 95)), "gflop": gflop,
            "op_ms": dict(sorted(op_ms.items(), key=lambda kv: -kv[1])),
            "node_ms": dict(sorted(node_ms.items(), key=lambda kv: -kv[1])), "node_op": op_of}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help=".onnx files")
    ap.add_argument("--size", default="320x240", help="LR WIDTHxHEIGHT (default 320x240)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--no-spin", action="store_true", help="intra-op threads sleep instead of spinning")
    ap.add_argument("--level", default="all", choices=["disable", "basic", "extended", "all"], help="graph optimisation")
    ap.add_argument("--nodes", type=int, default=12, help="slowest nodes to list")
    ap.add_argument("--json", default=None, help="write the profiles here")
    ap.add_argument("--wait-idle", type=float, default=60, help="wait up to this many seconds for an idle CPU")
    args = ap.parse_args(argv)
    w, h = parse_size(args.size)
    from edge_sr.bench import wait_for_idle

    busy = wait_for_idle(args.wait_idle)
    if busy is not None and busy > 0.15:
        print(f"warning: other processes use {busy:.1f} cores: the figures will be low", file=sys.stderr)
    out = []
    for m in args.models:
        r = profile(m, w, h, args.threads, args.runs, args.warmup, not args.no_spin, args.level)
        out.append(r)
        total = sum(r["op_ms"].values())
        rate = f", {r['gflop'] / r['median_ms'] * 1e3:.1f} GFLOP/s ({r['gflop']:.2f} GFLOP/frame)" if r["gflop"] else ""
        print(f"\n{m} @ {w}x{h} LR, {args.threads} threads: median {r['median_ms']:.2f} ms, "
              f"p95 {r['p95_ms']:.2f} ms{rate}")
        print(f"  {'op':<22}{'ms':>9}{'share':>8}")
        for op, ms in r["op_ms"].items():
            print(f"  {op:<22}{ms:9.2f}{100 * ms / total:7.1f}%")
        print(f"  slowest nodes:")
        for n, ms in list(r["node_ms"].items())[: args.nodes]:
            print(f"    {n[:48]:<50}{r['node_op'][n]:<16}{ms:8.2f} ms")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
