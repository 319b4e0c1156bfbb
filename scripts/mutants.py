#!/usr/bin/env python3
"""Apply each breakage of issue #15 ("Why") to a temporary copy of the repository, one at a time, run the
test file that guards it, and report killed (the tests failed, as they must) or survived.

    .venv/bin/python scripts/mutants.py                 # all of them
    .venv/bin/python scripts/mutants.py luma verdict    # those whose name contains a word
    .venv/bin/python scripts/mutants.py --list

The live tree is never edited: each mutant is a fresh copy under a temporary folder (tracked and untracked,
non-ignored files; .venv, runs/ and ignored outputs stay behind) with PYTHONPATH pointing at the copy, so the
editable install's edge_sr is shadowed. Before the mutants, each test selection runs once on the unmutated
copy (the control): a selection that fails there makes its mutants "invalid", not "killed".
Tests that need the data use $EDGE_SR_DATA (default ../shared/data). CPU: run it under the shared lock
(scripts/mutants.sh does). Exit code 0 when every applicable mutant is killed.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Mutant:
    name: str
    what: str  # the breakage, in words
    path: str  # file changed, relative to the repository
    tests: list[str]  # pytest arguments (files, ::tests, -k)
    old: str | None = None  # regex to replace (exactly one match required)
    new: str | None = None
    apply: Callable[[Path], None] | None = None  # for binary files
    owner: str = ""  # set when the guarded code belongs to another task


def _zero_last_conv(copy: Path) -> None:
    import onnx
    from onnx import numpy_helper

    p = copy / "edge_sr/weights/dcscn_compact_x2.onnx"
    mp = onnx.load(str(p))
    last = [n for n in mp.graph.node if n.op_type == "Conv"][-1]
    for init in mp.graph.initializer:
        if init.name == last.input[1]:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 0, init.name))
            break
    else:
        raise RuntimeError("last Conv weight is not an initializer")
    onnx.save(mp, str(p))


SHIPPED_Q = "tests/test_shipped_quality.py"
PROMISES = "tests/test_promises.py"
CALIB = "tests/test_calibration.py"
MUTANTS = [
    Mutant("train-no-optimizer-step", "the optimizer step removed from the training loop", "train/loop.py",
           [f"{PROMISES}::test_training_lowers_the_loss_and_raises_psnr"], r"\n(\s*)opt\.step\(\)", r"\n\1pass"),
    Mutant("onnx-last-conv-zeroed", "the shipped compact ONNX's last convolution zeroed (sha256 check)",
           "edge_sr/weights/dcscn_compact_x2.onnx",
           [SHIPPED_Q, "-k", "test_every_shipped_file_is_the_file_measured and dcscn_compact_x2.onnx"],
           apply=_zero_last_conv),
    Mutant("onnx-last-conv-zeroed-protocol", "the same, caught by re-measuring Set5/Set14 (data needed)",
           "edge_sr/weights/dcscn_compact_x2.onnx",
           [SHIPPED_Q, "-k", "test_shipped_file_scores_its_report and dcscn_compact_x2.onnx"], apply=_zero_last_conv),
    Mutant("luma-mean-bgr", "the model fed the mean of B, G, R instead of the BT.601 luma", "edge_sr/color.py",
           [PROMISES, "-k", "bt601"],
           r"return 16\.0 \+ f\[\.\.\., 0\] \* _Y_FROM_BGR\[0\].*", "return f.mean(axis=-1)"),
    Mutant("luma-mean-in-pipeline", "the frame pipeline feeds the mean of B, G, R", "edge_sr/pipeline.py",
           [PROMISES, "-k", "bt601"], r"return y_from_bgr_u8\(frame\) \* np\.float32\(1 / 255\.0\)",
           "return frame.astype(np.float32).mean(axis=-1) * np.float32(1 / 255.0)"),
    Mutant("luma-full-range-matrix", "BT.601 full-range (JPEG) luma weights instead of studio range",
           "edge_sr/color.py", [PROMISES, "-k", "bt601"], r"\[\[65\.481, 128\.553, 24\.966\]",
           "[[76.245, 149.685, 29.07]"),
    Mutant("report-fp32-row-measures-int8", "the INT8 report's fp32 row measuring the INT8 model",
           "edge_sr/commands/calibrate.py", [f"{CALIB}::test_report_rows_equal_eval_and_the_verdict_follows_the_sign"],
           r'protocol_psnr\(\{"fp32": fp32, "int8": res\.path\}', 'protocol_psnr({"fp32": res.path, "int8": res.path}'),
    Mutant("verdict-sign-flipped", "the sign of the 0.15 dB verdict flipped", "edge_sr/commands/calibrate.py",
           [f"{CALIB}::test_report_rows_equal_eval_and_the_verdict_follows_the_sign"], r"d >= -0\.15", "d <= -0.15"),
    Mutant("verdict-bar-positive", "the verdict asks for a gain of 0.15 dB", "edge_sr/commands/calibrate.py",
           [f"{CALIB}::test_report_rows_equal_eval_and_the_verdict_follows_the_sign"], r"d >= -0\.15", "d >= 0.15"),
    Mutant("keep-float-ignored", "keep_float ignored by the quantizer", "calibration/quantize.py",
           [CALIB, "-k", "keep_float_and_per_channel"], r"nodes_to_exclude=excluded or None", "nodes_to_exclude=None"),
    Mutant("per-tensor-weights", "per-tensor weights while the metadata says per-channel", "calibration/quantize.py",
           [CALIB, "-k", "keep_float_and_per_channel"], r"per_channel=per_channel,", "per_channel=False,"),
    Mutant("checkpoint-format-check-removed", "the checkpoint format check removed", "edge_sr/checkpoint.py",
           [PROMISES, "-k", "foreign"], r'if meta\.get\("format"\) != FORMAT:', "if False:"),
    Mutant("init-non-strict", "--init loading non-strictly", "train/loop.py", [PROMISES, "-k", "init_loads_strictly"],
           r"(model\.load_state_dict\(\{k: torch\.from_numpy\(v\) for k, v in weights\.items\(\)\}, )strict=True\)",
           r"\1strict=False)"),
    Mutant("cpu-peak-flags-only", "the CPU peak from the flags alone (64 FLOP/cycle on a Zen 4 VM)", "edge_sr/bench.py",
           ["tests/test_cpu_peak.py"], r'if vendor == "AuthenticAMD" and family is not None:', "if False:"),
    # tiling: the code and its tests belong to the tiling task (issue #15 item 2); listed to see where it stands
    Mutant("tiling-no-context-shrink", "tiling under a size limit without the context shrink", "edge_sr/pipeline.py",
           ["tests/", "-k", "tile or tiling or tiled"],
           r"\(hi - 2 \* ov if core is None else min\(core, hi - 2 \* ov\)\)", "(hi if core is None else min(core, hi))",
           owner="tiling task (item 2)"),
    Mutant("tiling-columns-by-height", "stepping columns by the tile's height", "edge_sr/pipeline.py",
           ["tests/", "-k", "tile or tiling or tiled"],
           r'(cols = _axis\(w, tile, ov, lo\[1\] if lo else 1, )hi\[1\]', r"\1hi[0]",
           owner="tiling task (item 2)"),
]


def _copy_tree(dst: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = REPO / rel
        if not src.is_file():  # deleted in the work tree, or a submodule
            continue
        out = dst / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, out)


def _apply(m: Mutant, copy: Path) -> str | None:
    """Mutate the copy; returns why not when the code no longer has the pattern."""
    if m.apply is not None:
        m.apply(copy)
        return None
    p = copy / m.path
    text = p.read_text()
    hits = len(re.findall(m.old, text))
    if hits != 1:
        return f"pattern found {hits} times in {m.path}"
    p.write_text(re.sub(m.old, m.new, text))
    return None


def _pytest(copy: Path, args: list[str], timeout: int) -> tuple[int, float, str]:
    env = dict(os.environ, PYTHONPATH=str(copy), PYTHONDONTWRITEBYTECODE="1")
    env.setdefault("EDGE_SR_DATA", str(REPO.parent / "shared" / "data"))
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-o", "addopts=", *args]
    t0 = time.time()
    try:
        r = subprocess.run(cmd, cwd=copy, env=env, capture_output=True, text=True, timeout=timeout)
        rc, out = r.returncode, r.stdout + r.stderr
    except subprocess.TimeoutExpired:
        rc, out = 124, "timeout"
    return rc, time.time() - t0, out


def _check_shadowing(copy: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(copy))
    for mod in ("edge_sr", "train", "calibration"):
        got = subprocess.run([sys.executable, "-c", f"import {mod}; print({mod}.__file__)"], cwd=copy, env=env,
                             capture_output=True, text=True).stdout.strip()
        if not got.startswith(str(copy)):
            raise SystemExit(f"mutants: {mod} imports from {got}, not from the copy {copy}: cannot test mutants")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("words", nargs="*", help="run the mutants whose name contains one of these")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--timeout", type=int, default=600, help="seconds per pytest run")
    ap.add_argument("--keep", action="store_true", help="keep the copies (printed)")
    a = ap.parse_args(argv)
    chosen = [m for m in MUTANTS if not a.words or any(w in m.name for w in a.words)]
    if a.list:
        for m in chosen:
            print(f"{m.name:34} {m.path:32} {m.what}")
        return 0
    root = Path(tempfile.mkdtemp(prefix="edge-sr-mutants-"))
    rows, controls = [], {}
    try:
        base = root / "control"
        _copy_tree(base)
        _check_shadowing(base)
        for m in chosen:
            key = tuple(m.tests)
            if key not in controls:
                rc, dt, out = _pytest(base, m.tests, a.timeout)
                controls[key] = (rc, out)
                print(f"control {' '.join(m.tests)}: {'pass' if rc == 0 else f'FAIL rc={rc}'} ({dt:.0f} s)", flush=True)
                if rc != 0:
                    print(out[-1500:])
        for m in chosen:
            copy = root / m.name
            shutil.copytree(base, copy)
            why = _apply(m, copy)
            if why:
                rows.append((m, "not applicable", 0.0, why))
            elif controls[tuple(m.tests)][0] != 0:
                rows.append((m, "invalid", 0.0, "the tests fail without the mutant"))
            else:
                rc, dt, out = _pytest(copy, m.tests, a.timeout)
                if rc == 5:
                    rows.append((m, "no tests", dt, "the selection collected no test"))
                elif rc == 0:
                    rows.append((m, "SURVIVED", dt, ""))
                else:
                    failed = re.findall(r"^FAILED (\S+)", out, re.M)
                    rows.append((m, "killed", dt, failed[0] if failed else f"rc={rc}"))
            print(f"{m.name}: {rows[-1][1]} ({rows[-1][2]:.0f} s) {rows[-1][3]}", flush=True)
            if not a.keep:
                shutil.rmtree(copy, ignore_errors=True)
    finally:
        if a.keep:
            print(f"copies kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print()
    print(f"| mutant | breakage | file | result | test that failed |")
    print(f"|---|---|---|---|---|")
    for m, res, dt, note in rows:
        owner = f" ({m.owner})" if m.owner else ""
        print(f"| {m.name} | {m.what}{owner} | {m.path} | {res} | {note} |")
    bad = [r for r in rows if r[1] in ("SURVIVED", "invalid", "no tests") and not r[0].owner]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
