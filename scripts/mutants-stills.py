#!/usr/bin/env python3
"""Breaks the stills / folders / API / tiling code on purpose, one change at a time, in a temporary copy
of the repo, and runs the test that must catch it: every line should say KILLED (exit 0 when all are).
Includes issue 15's tiling breakages (no context shrink under a size limit; columns stepped by the
tile's height).

    .venv/bin/python scripts/mutants-stills.py
"""
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable

M = [
 ("edge_sr/stills.py", "        exif[_ORIENTATION] = 1\n", "        pass\n", "tests/test_stills.py::test_exif_rotated_jpeg_comes_out_upright_with_its_exif"),
 ("edge_sr/stills.py", "        im = _orient_pil(im, orientation)\n", "", "tests/test_stills.py::test_exif_rotated_jpeg_comes_out_upright_with_its_exif"),
 ("edge_sr/stills.py", '            opts["icc_profile"] = still.icc\n', "            pass\n", "tests/test_stills.py::test_icc_profile_is_carried"),
 ("edge_sr/stills.py", "            canvas.putalpha(Image.fromarray(a))\n", "            pass\n", "tests/test_stills.py::test_rgba_png_keeps_its_transparency"),
 ("edge_sr/stills.py", "    keep16 = still.bits == 16 and fmt in _DEPTH16_OK\n", "    keep16 = False\n", "tests/test_stills.py::test_16_bit_png_stays_16_bit"),
 ("edge_sr/stills.py", "        if max_pixels and w * h > max_pixels:\n", "        if False:\n", "tests/test_stills.py::test_decode_guard_refuses_a_huge_header_before_decoding"),
 ("edge_sr/stills.py", "        if frames > 1:\n", "        if False:\n", "tests/test_stills.py::test_animated_gif_is_refused_with_one_line_a_still_gif_works"),
 ("edge_sr/stills.py", "        if len(group) == 1:\n", "        if True:\n", "tests/test_folders.py::test_name_collisions_are_avoided_and_said"),
 ("edge_sr/stills.py", "        if out.resolve() in inputs:\n", "        if False:\n", "tests/test_folders.py::test_inputs_are_never_overwritten"),
 ("edge_sr/stills.py", "            err = str(exc)\n", "            raise\n", "tests/test_folders.py::test_corrupt_file_is_reported_and_skipped"),
 ("edge_sr/stills.py", "        colour = colour[..., ::-1]\n", "        pass\n", "tests/test_api.py::test_channel_order_is_explicit_and_honoured"),
 ("edge_sr/pipeline.py", "c = core if hi is None else (hi - 2 * ov if core is None else min(core, hi - 2 * ov))", "c = core if hi is None else (hi if core is None else min(core, hi))", "tests/test_tiling_checkpoint.py"),
 ("edge_sr/pipeline.py", 'cols = _axis(w, tile, ov, lo[1] if lo else 1, hi[1] if hi else None', 'cols = _axis(w, tile, ov, lo[1] if lo else 1, hi[0] if hi else None', "tests/test_tiling_checkpoint.py"),
 ("edge_sr/pipeline.py", "_MERGE_MARGIN = 4", "_MERGE_MARGIN = 0", "tests/test_tiling_checkpoint.py"),
]

def run() -> int:
    # the unbroken copy must pass first, or every "KILLED" below would mean nothing
    tests = sorted({t for *_, t in M})
    r = subprocess.run([PY, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', *tests], cwd=R, capture_output=True,
                       text=True, env=dict(os.environ, PYTHONPATH=str(R)))
    print("baseline (unbroken):", r.stdout.strip().splitlines()[-1] if r.stdout.strip() else r.stderr[-300:])
    if r.returncode != 0:
        return 99
    bad=0
    for f, old, new, tests in M:
        p=R/f; orig=p.read_text()
        assert orig.count(old)>=1, (f, old)
        p.write_text(orig.replace(old,new,1))
        try:
            r = subprocess.run([PY, '-m', 'pytest', '-q', '-x', '-p', 'no:cacheprovider', *tests.split()], cwd=R,
                               capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(R)))
        finally:
            p.write_text(orig)
        killed = r.returncode!=0
        bad += not killed
        print(('KILLED ' if killed else 'SURVIVED ')+f+': '+old.strip()[:70], r.stdout.strip().splitlines()[-1][:80] if r.stdout.strip() else '')
    return bad


def main() -> int:
    global R
    with tempfile.TemporaryDirectory() as d:
        R = Path(d)
        files = subprocess.run(["git", "ls-files", "edge_sr", "tests", "deploy", "calibration", "train",
                                "pyproject.toml", "README.md"], cwd=REPO, capture_output=True, text=True).stdout.split()
        for f in files:
            if (REPO / f).is_file():
                (R / f).parent.mkdir(parents=True, exist_ok=True)
                (R / f).write_bytes((REPO / f).read_bytes())
        return run()


if __name__ == "__main__":
    sys.exit(main())
