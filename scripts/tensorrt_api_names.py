#!/usr/bin/env python3
"""Check every TensorRT / CUDA name our device code uses against the real, compiled bindings and
write the record tests/fixtures/tensorrt_api_names.json plus the API table of docs/deploy.md.

    pip download --no-deps -d W86 tensorrt-bindings==8.6.1          (and unzip; likewise:)
    tensorrt-cu12-bindings==10.3.0, ==10.16.1.11; tensorrt-cu13-bindings==11.0.0.114, ==11.4.0.106
    pip download --no-deps --no-binary :all: --no-build-isolation pycuda   (the sdist, unpacked)
    python scripts/tensorrt_api_names.py --trt 8.6.1=W86/tensorrt_bindings/tensorrt.so ... \\
        --pycuda-src pycuda-2026.1 [--cuda-bindings 12.9.10=PATH 13.5.0=PATH]

The TensorRT modules cannot be imported without a GPU driver, so a name counts as present when it is
one of the .so's NUL-terminated strings or the tail of one (the linker merges "INT8" into "UINT8");
pybind11 keeps every bound name as such a string. pycuda names are looked up in the sdist's
wrap_cudadrv.cpp / driver.py; cuda-python names by importing cuda.bindings.runtime from each PATH.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # the shared name extractor (a dev script, not library code)
from api_names import used_names  # noqa: E402


def so_strings(path: Path) -> set[str]:
    data = Path(path).read_bytes()
    return {s.decode("latin-1") for s in re.findall(rb"[\x20-\x7e]{2,}", data)}


def present(name: str, strings: set[str], tails: dict) -> bool:
    if name in strings:
        return True
    return any(s.endswith(name) for s in tails.setdefault(name[-2:], [s for s in strings if s.endswith(name[-2:])]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trt", nargs="+", required=True, help="VERSION=path/to/tensorrt.so")
    ap.add_argument("--pycuda-src", required=True, type=Path)
    ap.add_argument("--cuda-bindings", nargs="*", default=[], help="VERSION=site-packages dir holding cuda/bindings")
    ap.add_argument("-o", default=str(REPO / "tests" / "fixtures" / "tensorrt_api_names.json"))
    a = ap.parse_args()
    used = used_names()
    rec = {"tensorrt": {}, "pycuda": {}, "cuda-python": {}}
    for spec in a.trt:
        ver, so = spec.split("=", 1)
        strings, tails = so_strings(Path(so)), {}
        rec["tensorrt"][ver] = sorted(n for n in used["tensorrt"] if present(n, strings, tails))
    src = ((a.pycuda_src / "src" / "wrapper" / "wrap_cudadrv.cpp").read_text()
           + (a.pycuda_src / "pycuda" / "driver.py").read_text())
    ver = re.search(r"pycuda-([\d.]+)", str(a.pycuda_src.resolve()))
    rec["pycuda"][ver.group(1) if ver else "sdist"] = sorted(
        n for n in used["pycuda"] if re.search(r'["(.]' + re.escape(n) + r'\b', src))
    for spec in a.cuda_bindings:
        ver, path = spec.split("=", 1)
        code = ("import json,sys; from cuda.bindings import runtime as rt; names=json.loads(sys.argv[1]); "
                "ok=[n for n in names if hasattr(rt,n) or hasattr(rt.cudaMemcpyKind,n) or hasattr(rt.cudaDeviceProp(),n)]; "
                "print(json.dumps(ok))")
        out = subprocess.run([sys.executable, "-c", code, json.dumps(sorted(used["cuda-python"]))],
                             capture_output=True, text=True, env={"PYTHONPATH": path}, check=True).stdout
        rec["cuda-python"][ver] = sorted(json.loads(out))
    Path(a.o).write_text(json.dumps(rec, indent=1, sort_keys=True) + "\n")
    print(f"wrote {a.o}")
    for vendor, by_ver in rec.items():
        vers = list(by_ver)
        print(f"\n| name | vendor | {' | '.join(vers)} |\n|---|---|{'---|' * len(vers)}")
        for n in sorted(used[vendor], key=str.lower):
            print(f"| `{n}` | {vendor} | " + " | ".join("yes" if n in by_ver[v] else "—" for v in vers) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
