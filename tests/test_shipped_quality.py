"""The shipped models are the ones measured, and still measure what docs/quality says.

docs/quality/*.json are `edge-sr eval --json` reports; each names the files it measured by sha256.
A shipped file whose content changed without a new report fails here (no data needed); with the data,
each shipped file is re-measured by the protocol and must give the report's Set5 and Set14 PSNR
within 0.01 dB. INT8 results depend a little on the CPU's INT8 kernels (AVX-512 VNNI, AVX2...): an
INT8 file is compared with the report made on a CPU of this one's class when there is one."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from conftest import REPO

WEIGHTS = REPO / "edge_sr" / "weights"
REPORTS = sorted((REPO / "docs" / "quality").glob("*.json"))
SHIPPED = sorted(p for p in WEIGHTS.glob("dcscn_*") if p.suffix in (".safetensors", ".onnx"))
TOL_DB = 0.01
# between CPUs of different INT8 classes, measured: compact INT8 on Set14 moves 0.018 dB (VNNI -> AVX2)
OTHER_ISA_TOL_DB = 0.05


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _entries():
    """(report path, label in results, model record) for every model a report names."""
    out = []
    for rp in REPORTS:
        doc = json.loads(rp.read_text())
        for label, rec in doc.get("models", {}).items():
            out.append((rp, label, rec, doc))
    return out


def test_reports_exist_and_name_their_files():
    assert SHIPPED, "no shipped models in edge_sr/weights"
    assert REPORTS
    for rp in REPORTS:
        doc = json.loads(rp.read_text())
        models = doc.get("models")
        assert models, f"{rp.name} does not say which files it measured (no 'models' with sha256)"
        for label, rec in models.items():
            assert label in doc["results"], (rp.name, label)
            assert len(rec["sha256"]) == 64 and rec["file"], (rp.name, label)
        assert doc.get("device", {}).get("int8_isa"), f"{rp.name} does not say on which CPU class it was measured"


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_every_shipped_file_is_the_file_measured(path):
    """Each shipped file has a report of its exact content, and no report names an older content of it."""
    sha = _sha256(path)
    named = [(rp.name, rec["sha256"]) for rp, _, rec, _ in _entries() if rec["file"] == path.name]
    assert named, f"{path.name} is shipped but no docs/quality report measured it: run edge-sr eval --json"
    stale = [rp for rp, s in named if s != sha]
    assert not stale, (f"{path.name} changed since {', '.join(stale)} measured it (sha256 {sha[:12]}...): "
                       "measure it again with edge-sr eval --json into docs/quality/")


def _cases():
    """(file, report, label) to re-measure: every FP32 file against each report naming it; every INT8 file
    against the reports of this CPU's INT8 class (or all, with a wider tolerance, when none is)."""
    from edge_sr.bench import int8_isa

    here = int8_isa()
    cases = []
    for path in SHIPPED:
        entries = [(rp, label, doc) for rp, label, rec, doc in _entries() if rec["file"] == path.name]
        # a report in the ONNX reference arithmetic (eval --int8-arithmetic reference) is the same on every CPU
        ref = [(rp, label, doc) for rp, label, doc in entries if doc.get("int8_arithmetic") == "reference"]
        entries = [e for e in entries if e[2].get("int8_arithmetic", "kernels") == "kernels"]
        if "int8" in path.name:  # .int8.onnx (TensorRT/ARM) and .cpu-int8.onnx: INT8 kernels differ by CPU
            same = [e for e in entries if e[2]["device"]["int8_isa"] == here]
            entries = same or entries
            tol = TOL_DB if same else OTHER_ISA_TOL_DB
        else:
            tol = TOL_DB
        cases += [(path, rp, label, tol, "kernels") for rp, label, _ in entries]
        cases += [(path, rp, label, TOL_DB, "reference") for rp, label, _ in ref]
    return cases


@pytest.mark.slow
@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_file_scores_its_report(path, data_root):
    """Set5 and Set14 by the protocol, through the product's colour pipeline, equal the report."""
    from edge_sr.backends import open_upscaler
    from edge_sr.quality import discover_sets, evaluate

    cases = [c for c in _cases() if c[0] == path]
    assert cases, f"no report for {path.name}"
    sets = [(n, f) for n, f in discover_sets(data_root / "val") if n in ("set5", "set14")]
    assert {n for n, _ in sets} == {"set5", "set14"}, "val/ must hold set5/ and set14/"
    got = {}
    for arithmetic in sorted({c[4] for c in cases}):
        with open_upscaler(path, int8_arithmetic=arithmetic) as up:
            res = evaluate({"m": lambda lr: up.upscale(lr[..., ::-1])[..., ::-1]}, sets, up.scale, with_ssim=False,
                           progress=False)
        got[arithmetic] = {r.name: r.psnr for r in res["m"]}
    for _, rp, label, tol, arithmetic in cases:
        want = json.loads(rp.read_text())["results"][label]
        for s in ("set5", "set14"):
            g = got[arithmetic][s]
            assert g == pytest.approx(want[s]["psnr"], abs=tol), (
                f"{path.name} on {s} ({arithmetic} arithmetic): {g:.3f} dB, {rp.name} says {want[s]['psnr']:.3f} "
                f"(tolerance {tol} dB)")


def test_eval_json_names_each_file_by_sha256(tmp_path):
    """`edge-sr eval --json` records which exact file it measured (so the next report carries it) and the CPU class."""
    from conftest import run_cli, textured_bgr
    from edge_sr.imageio import write_image

    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for i in range(2):
        write_image(imgs / f"{i}.png", textured_bgr(24, 28, seed=i))
    onnx = WEIGHTS / "dcscn_compact_x2.onnx"
    out = tmp_path / "r.json"
    r = run_cli("eval", "--data", str(imgs), "--model", "compact", "--model", str(onnx), "--no-ssim", "--json", str(out))
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    assert set(doc["models"]) == set(doc["results"]) - {"bicubic"}
    for rec in doc["models"].values():  # the preset resolves to the shipped FP32 ONNX
        assert rec["file"] == onnx.name and rec["sha256"] == _sha256(onnx) and rec["bytes"] == onnx.stat().st_size
    assert doc["device"]["int8_isa"] and doc["device"]["versions"]["onnxruntime"]
