"""edge-sr bench: speed (and quality) of models, bicubic and OpenCV peers on this device."""

from __future__ import annotations

import os
import sys


def add_parser(sub) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmark models against bicubic and peers on this device",
        description="Measure, after a warm-up, the whole colour upscale of a frame (luma, model, bicubic, merge) "
        "and the model alone: median and p95 latency, FPS, GFLOP/s of the model arithmetic and its share of the "
        "device's estimated peak. Candidates: the shipped presets that exist (or --model), OpenCV's bicubic always, "
        "OpenCV dnn_superres peers with --peer. With --quality, PSNR/SSIM by the protocol and the Pareto front. "
        "Writes a table, a JSON report and a PNG plot. Run it on an otherwise idle device.",
    )
    p.add_argument("--model", action="append", default=[], metavar="PATH",
                   help="model to benchmark (.onnx, .int8.onnx, .engine, .safetensors or a preset); repeatable. "
                   "Default: the shipped presets that exist")
    p.add_argument("--peer", action="append", default=[], metavar="NAME=PATH",
                   help="OpenCV dnn_superres peer, e.g. fsrcnn=FSRCNN_x2.pb or espcn=ESPCN_x2.pb; repeatable. "
                   "Default: the x<scale> FSRCNN/ESPCN files in $EDGE_SR_PEERS when set")
    p.add_argument("--precision", choices=("auto", "fp32", "int8"), default="auto",
                   help="shipped files of the presets to measure: fp32, int8 (the TensorRT file, which a CPU runs in "
                   "float arithmetic, and the CPU file), or auto (default): every precision, so that the bench cache "
                   "can settle which one `--precision auto` runs on this device")
    p.add_argument("--scale", type=int, default=2, help="upscale factor (default 2); models must match")
    p.add_argument("--size", action="append", default=[], metavar="WxH",
                   help="LR frame size; repeatable (default 320x240, 640x480, 1280x720)")
    p.add_argument("--threads", type=int, default=0, help="intra-op threads (default: physical cores)")
    p.add_argument("--providers", default=None, help="ONNX Runtime providers, e.g. cpu or cuda,cpu")
    p.add_argument("--seconds", type=float, default=2.0, help="timed seconds per model and size (default 2)")
    p.add_argument("--runs", type=int, default=10, help="at least this many timed frames (default 10)")
    p.add_argument("--warmup", type=int, default=3, help="untimed frames first (default 3)")
    p.add_argument("--repeat", type=int, default=1,
                   help="rounds over all candidates; the report gives the median of the rounds (default 1)")
    p.add_argument("--wait-idle", type=float, default=0, metavar="S",
                   help="before each candidate, wait up to S seconds for other processes to leave the CPU idle")
    p.add_argument("--quality", default=None, metavar="DIR",
                   help="add protocol PSNR/SSIM on the images in DIR (a folder of images or of sets)")
    p.add_argument("-o", "--output", default="bench", metavar="PREFIX",
                   help="writes PREFIX.json and PREFIX.png (default: ./bench)")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG")
    p.add_argument("--from-json", default=None, metavar="FILE",
                   help="print the table of a saved report and draw its plot again (PREFIX.png), measuring nothing")
    p.add_argument("--pick", type=float, default=None, metavar="FPS",
                   help="only pick: the highest-quality model that sustains FPS at the first --size, from the "
                   "cached benchmark (measured now when none is cached)")
    p.set_defaults(func=run)


def _candidates(args):
    from ..bench import Candidate, default_candidates, model_candidate, peer_candidate, peers_from_dir
    from ..errors import EdgeSRError

    from ..config import PRESET_NAMES

    precisions = ("fp32", "int8") if args.precision == "auto" else (args.precision,)
    cands = []
    for m in args.model:
        if m in PRESET_NAMES:  # a preset: its shipped files of the asked precisions
            found = [c for c in default_candidates(args.scale, precisions) if c.name.startswith(f"dcscn_{m}_x")]
            if not found:
                raise EdgeSRError(f"no shipped {m} x{args.scale} files of precision {args.precision}")
            cands += found
        else:
            cands.append(model_candidate(m, args.scale))
    if not args.model:
        cands = default_candidates(args.scale, precisions)
    if not args.model and not cands:
        print(f"no shipped x{args.scale} models found: benchmarking bicubic and peers only "
              "(add --model PATH)", file=sys.stderr)
    cands.append(Candidate(name="bicubic (OpenCV)", kind="bicubic", scale=args.scale, backend="opencv"))
    if args.peer:
        cands += [peer_candidate(s, args.scale) for s in args.peer]
    elif os.environ.get("EDGE_SR_PEERS"):
        cands += peers_from_dir(os.environ["EDGE_SR_PEERS"], args.scale)
    names = [c.name for c in cands]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise EdgeSRError(f"the same model given twice: {', '.join(sorted(dup))}")
    return cands


def run(args) -> int:
    from .. import bench
    from ..bench import DEFAULT_SIZES, parse_size
    from ..errors import EdgeSRError

    sizes = [parse_size(s) for s in args.size] or list(DEFAULT_SIZES)
    options = {"providers": args.providers} if args.providers else {}
    if args.pick is not None:
        from ..selection import pick_model

        w, h = sizes[0]
        models = args.model or None
        path, reason = pick_model(args.pick, w, h, args.scale, models=models, threads=args.threads)
        print(reason)
        print(path)
        return 0
    if args.from_json:  # re-render a saved report: no measurement
        report = bench.load_report(args.from_json)
        rows = bench.rows_from_report(report)
        print(bench.format_table(rows))
        if not args.no_plot:
            dev = report.get("device", {})
            bench.plot(rows, args.output + ".png",
                       title=f"edge-sr bench x{rows[0].scale} on {dev.get('cpu', '?')}, {dev.get('threads', '?')} threads")
            print(f"wrote {args.output}.png")
        return 0
    cands = _candidates(args)

    def progress(row):
        print(f"  {row.name} {row.lr_size[0]}x{row.lr_size[1]}: {row.median_ms:.1f} ms ({row.fps:.1f} FPS)",
              file=sys.stderr)

    report = bench.run_bench(cands, sizes, threads=args.threads, warmup=args.warmup, min_runs=args.runs,
                             seconds=args.seconds, quality_dir=args.quality, options=options, progress=progress,
                             repeat=args.repeat, wait_idle_s=args.wait_idle,
                             command=["edge-sr", *sys.argv[1:]] if sys.argv and sys.argv[0] else None)
    rows = bench.rows_from_report(report)
    dev = report["device"]
    print(f"{dev['cpu']} ({dev['machine']}), {dev['threads']} threads; peak {dev['peak_gflops_estimate'] or '?'} "
          f"GFLOP/s ({dev['peak_note']})")
    print(bench.format_table(rows))
    for size, per in report["ratios"].items():
        for name, refs in per.items():
            if refs:
                rel = ", ".join((f"{v:.2f}x" if v >= 0.1 else f"1/{1 / v:.0f}") + f" {k}" for k, v in refs.items())
                print(f"  {size} {name}: FPS = {rel}")
    for e in report.get("precision") or []:
        rel = ", ".join(f"{k.replace('.onnx', '')} {e[k + '_vs_fp32']:.2f}x"
                        + (f" ({e[k + '_psnr_delta']:+.3f} dB)" if k + "_psnr_delta" in e else "")
                        for k in ("int8.onnx", "cpu-int8.onnx") if k + "_vs_fp32" in e)
        if rel:
            print(f"  INT8 vs FP32, {e['preset']} x{e['scale']} {e['lr_size'][0]}x{e['lr_size'][1]}: {rel}")
    out_json = args.output + ".json"
    bench.write_json(report, out_json)
    print(f"wrote {out_json}")
    if not args.no_plot:
        out_png = args.output + ".png"
        bench.plot(rows, out_png, title=f"edge-sr bench x{args.scale} on {dev['cpu']}, {dev['threads']} threads")
        print(f"wrote {out_png}")
    # the run also refreshes the cache that --target-fps / --pick reads
    from ..selection import choose_precision, update_cache

    update_cache(report)
    presets = sorted({(e["preset"], e["scale"]) for e in report.get("precision") or []})
    for preset, scale in presets:  # what --precision auto now runs here, from the cache just written
        try:
            path, why = choose_precision(preset, scale, "auto", threads=args.threads)
            print(f"--precision auto on this device, {preset} x{scale}: {path.name} ({why})")
        except EdgeSRError as exc:
            print(f"--precision auto, {preset} x{scale}: {exc}", file=sys.stderr)
    return 0
