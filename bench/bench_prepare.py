"""Benchmark: streaming, parallel preparation of a large imagefolder, and the image cache.

Generates N small PNGs (random shapes, 48-160 px a side) with captions in metadata.jsonl, then runs the data check
(vtc.runtime.validate.scan_data: decode, check, standardise, store in the cache) three times:

1. cold: an empty cache -- every image is decoded, resized to `resize` and written to the cache;
2. warm: the same files again -- every image is only hashed and found in the cache;
3. one file changed -- that one is redone, the rest come from the cache.

It reports images/s, the speed-up of the warm run, and the peak memory of the whole job (this process plus its
worker processes, sampled every 50 ms with psutil). Not part of the test suite (it takes minutes):

    .venv/bin/python bench/bench_prepare.py --n 100000              # the figures in docs/data.md
    .venv/bin/python bench/bench_prepare.py --n 2000 --keep         # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

COLOURS = {"red": (220, 30, 30), "green": (30, 170, 30), "blue": (30, 60, 220), "yellow": (240, 210, 20)}
SHAPES = ("circle", "square", "triangle")


def _make(args) -> tuple[str, str]:
    """Write one PNG; returns (file_name, caption)."""
    from PIL import Image, ImageDraw

    root, i = args
    rnd = random.Random(i)
    w, h = rnd.randint(48, 160), rnd.randint(48, 160)
    colour, shape = rnd.choice(list(COLOURS)), rnd.choice(SHAPES)
    im = Image.new("RGB", (w, h), (rnd.randint(200, 255),) * 3)
    d = ImageDraw.Draw(im)
    box = (w // 6, h // 6, w - w // 6, h - h // 6)
    if shape == "circle":
        d.ellipse(box, fill=COLOURS[colour])
    elif shape == "square":
        d.rectangle(box, fill=COLOURS[colour])
    else:
        d.polygon([(w // 2, box[1]), (box[2], box[3]), (box[0], box[3])], fill=COLOURS[colour])
    name = f"{i // 1000:03d}/{i:06d}.png"
    im.save(Path(root) / name)
    return name, f"a {colour} {shape}"


def generate(root: Path, n: int, workers: int) -> float:
    """The dataset: root/metadata.jsonl + root/NNN/NNNNNN.png (1,000 a folder). Returns seconds taken."""
    import multiprocessing as mp

    started = time.perf_counter()
    root.mkdir(parents=True, exist_ok=True)
    for k in range((n + 999) // 1000):
        (root / f"{k:03d}").mkdir(exist_ok=True)
    with mp.get_context("spawn").Pool(workers) as pool, open(root / "metadata.jsonl", "w", encoding="utf-8") as f:
        for name, caption in pool.imap(_make, ((str(root), i) for i in range(n)), chunksize=256):
            f.write(json.dumps({"file_name": name, "text": caption}) + "\n")
    return time.perf_counter() - started


class PeakMemory:
    """Peak of (RSS of this process + RSS of all its descendants), sampled in a thread."""

    def __init__(self, every: float = 0.05):
        import psutil

        self.proc = psutil.Process()
        self.every = every
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        import psutil

        total = self.proc.memory_info().rss
        for child in self.proc.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:
                pass
        return total

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            time.sleep(self.every)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._sample())


def plan_for(data: Path, resize: int) -> dict:
    """The plan of a recipe that reads ``data`` at ``resize`` px (compiled, so complete: the runtime reads every
    value from the plan)."""
    from vtc.compiler.pipeline import compile_source

    recipe = f'finetune all on tiny-qwen2.5-vl\nfrom "./{data.name}"\nask "What is it?"\nresize {resize}\n'
    result = compile_source(recipe, str(data.parent / "bench.vt"), base_dir=str(data.parent))
    if result.plan is None:
        raise SystemExit("\n".join(d.message for d in result.diagnostics))
    return result.plan


def timed_scan(plan: dict, cache, workers: int) -> dict:
    from vtc.runtime.validate import scan_data

    with PeakMemory() as mem:
        started = time.perf_counter()
        report = scan_data(plan, cache=cache, workers=workers)
        seconds = time.perf_counter() - started
    return {"seconds": round(seconds, 2), "images": report.images, "cached": report.cached,
            "images_per_s": round(report.images / seconds, 1), "peak_memory_mib": round(mem.peak / 2**20),
            "errors": len(report.errors)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="images to generate (default 100,000)")
    ap.add_argument("--resize", type=int, default=224, help="longest side after preparation (default 224)")
    ap.add_argument("--workers", type=int, default=None, help="worker processes (default: the usable cores)")
    ap.add_argument("--dir", type=Path, default=None, help="where to generate (default: a temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the generated data and cache")
    ap.add_argument("--out", type=Path, default=None, help="also write the figures to this JSON file")
    args = ap.parse_args(argv)

    from vtc.runtime.cache import ImageCache
    from vtc.runtime.prepare import default_workers

    workers = args.workers or default_workers()
    base = args.dir or Path(tempfile.mkdtemp(prefix="vtc-bench-"))
    data, cache_dir = base / "data", base / "cache"
    shutil.rmtree(cache_dir, ignore_errors=True)
    try:
        if not (data / "metadata.jsonl").is_file() or \
                sum(1 for _ in open(data / "metadata.jsonl", encoding="utf-8")) != args.n:
            shutil.rmtree(data, ignore_errors=True)
            gen = generate(data, args.n, workers)
            print(f"generated {args.n:,} PNGs in {gen:.1f} s", file=sys.stderr)
        source_bytes = sum(p.stat().st_size for p in data.rglob("*.png"))
        cache = ImageCache(cache_dir, limit=1 << 50)
        load_before = os.getloadavg()  # other work on the machine slows the figures down
        plan = plan_for(data, args.resize)
        cold = timed_scan(plan, cache, workers)
        print("cold", cold, file=sys.stderr)
        warm = timed_scan(plan, cache, workers)
        print("warm", warm, file=sys.stderr)
        changed = data / "000" / "000000.png"
        from PIL import Image

        stamp = int(time.time() * 1000)
        Image.new("RGB", (120, 90), (stamp % 256, stamp // 256 % 256, stamp // 65536 % 256)).save(changed)
        redo = timed_scan(plan, cache, workers)
        print("one file changed", redo, file=sys.stderr)
        entries, cache_bytes = cache.stats()
        figures = {
            "date": time.strftime("%Y-%m-%d"), "images": args.n, "resize": args.resize, "workers": workers,
            "cpus": os.cpu_count(), "load_average_before": [round(x, 2) for x in load_before],
            "source_mib": round(source_bytes / 2**20, 1),
            "cache_entries": entries, "cache_mib": round(cache_bytes / 2**20, 1),
            "cold": cold, "warm": warm, "one_changed": redo,
            "warm_speedup": round(cold["seconds"] / warm["seconds"], 1),
            "changed_redone": redo["images"] - redo["cached"],
        }
        text = json.dumps(figures, indent=2)
        print(text)
        if args.out:
            args.out.write_text(text + "\n", encoding="utf-8")
        return 0
    finally:
        if not args.keep and args.dir is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
