"""Check the bench report the emulated Raspberry Pi wrote: every precision of the models beside FP32, the
INT8 summary that settles the Pi's INT8 choice, and the platform's INT8 file (by scripts/check-pi-emulated.sh).

    python check_bench.py BENCH.json
"""

import json
import sys


def main(argv) -> int:
    r = json.load(open(argv[0]))
    if r["device"]["machine"] != "aarch64":
        print(f"CHECK: the report was not written on aarch64: {r['device']}")
        return 1
    entries = r.get("precision") or []
    if not entries:
        print("CHECK: no INT8-vs-FP32 summary in the report")
        return 1
    e = entries[0]
    missing = [k for k in ("int8.onnx_vs_fp32", "cpu-int8.onnx_vs_fp32") if k not in e]
    if missing or e.get("platform_int8_file") != "cpu-int8.onnx":  # the CPU file (U8S8) since session 10
        print(f"CHECK: summary lacks {missing} or names {e.get('platform_int8_file')} as the Pi's INT8 file: {e}")
        return 1
    print(f"RESULT: aarch64 report with both INT8 files beside FP32 (emulated speed: meaningless); Pi INT8 file "
          f"{e['platform_int8_file']}, {'default' if e['platform_default_int8'] else 'not default'} here: "
          f"{e['platform_reason']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
