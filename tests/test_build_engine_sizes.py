"""build-engine speaks the same size convention as every other command (WIDTHxHEIGHT frame sizes);
the first releases' --shape HEIGHTxWIDTH still works, and the two are never mixed silently."""

import argparse

import pytest

from conftest import run_cli
from edge_sr.errors import EdgeSRError


def _args(*argv):
    from edge_sr.commands.build_engine import add_parser

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    return parser.parse_args(["build-engine", "--onnx", "m.onnx", "-o", "m.engine", *argv])


def test_size_is_width_by_height_and_equals_the_legacy_shape():
    from edge_sr.commands.build_engine import _shape

    # a 1280x720 camera frame: 720 rows, 1280 columns, whichever way it is written
    assert _shape(_args("--size", "1280x720"), "") == (720, 1280)
    assert _shape(_args("--shape", "720x1280"), "") == (720, 1280)
    assert _shape(_args("--max-size", "1920x1080"), "max_") == (1080, 1920)
    assert _shape(_args(), "", "640x480") == (480, 640)  # the default: a VGA frame
    assert _shape(_args(), "min_") is None
    with pytest.raises(EdgeSRError, match="not both"):
        _shape(_args("--size", "640x480", "--shape", "480x640"), "")


def test_help_documents_sizes_only():
    r = run_cli("build-engine", "--help")
    assert r.returncode == 0
    assert "--size" in r.stdout and "WIDTHxHEIGHT" in " ".join(r.stdout.split())
    options = [ln.split()[0] for ln in r.stdout.splitlines() if ln.strip().startswith("-")]
    assert not any(o.startswith("--shape") or o.startswith("--min-shape") for o in options), options


def test_profile_order_is_checked_in_frame_sizes(tmp_path):
    from conftest import REPO

    onnx = REPO / "edge_sr" / "weights" / "dcscn_compact_x2.onnx"
    r = run_cli("build-engine", "--onnx", str(onnx), "--size", "64x64", "--max-size", "64x32",
                "-o", str(tmp_path / "x.engine"))
    assert r.returncode == 2 and "min <= shape <= max" in r.stderr and "Traceback" not in r.stderr
    assert not list(tmp_path.glob("x.engine*"))
