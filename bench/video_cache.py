"""Benchmark: reading clips decoded vs from the clip cache (vtc.runtime.video.read_clip, vtc.runtime.cache.ClipCache).

Writes N mp4 clips (vtc.runtime.tiny_data: a square moving over a noisy background, mpeg4) of F frames of S x S px
at R fps, then reads every clip with the recipe's video settings (`video 2 fps`, frame size 336 by default) four ways:

1. decoded: no cache (what every epoch, evaluation and report cost before the clip cache);
2. cold cache: an empty cache -- every clip decoded and its frames written as PNGs;
3. warm cache, fresh process: every clip's file hashed (the content part of the key) and its PNGs loaded;
4. warm cache, same process: the files' hashes remembered (an epoch after the first, in one run).

Prints ms per clip, clips/s, the speed-up over decoding, and the cache's size; asserts nothing. Not part of the
test suite:

    .venv/bin/python bench/video_cache.py                       # 48 clips of 64 frames at 320 px (docs/video.md)
    .venv/bin/python bench/video_cache.py --clips 8 --frames 600 --fps 30   # 20 s clips: decoding dominates more
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))


def make_clips(folder: Path, n: int, frames: int, size: int, fps: int) -> list[Path]:
    from PIL import Image

    from vtc.runtime.tiny_data import moving_square, write_mp4

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for k in range(n):
        rnd = random.Random(k)
        direction = rnd.choice(["left", "right", "up", "down"])
        squares = moving_square(direction, n=frames, size=size, seed=k)
        noise = Image.effect_noise((size, size), 40).convert("RGB")  # texture, so that frames are not trivially small
        clip = [Image.blend(f, noise, 0.3) for f in squares]
        out.append(write_mp4(folder / f"clip{k:03d}.mp4", clip, fps=fps))
    return out


def read_all(paths, video, cache) -> float:
    from vtc.runtime.video import read_clip

    start = time.perf_counter()
    for p in paths:
        read_clip(p, video, cache=cache)
    return time.perf_counter() - start


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=int, default=48)
    ap.add_argument("--frames", type=int, default=64)
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--fps", type=int, default=16, help="the clips' frame rate (64 frames at 16 fps: 4 s)")
    ap.add_argument("--sample-fps", type=float, default=2.0, help="the recipe's `video N fps`")
    ap.add_argument("--frame-size", type=int, default=336, help="the recipe's `frame size N`")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args(argv)

    from vtc.runtime import video as V
    from vtc.runtime.cache import ClipCache

    tmp = Path(tempfile.mkdtemp(prefix="vtc-clipbench-"))
    try:
        t = time.perf_counter()
        paths = make_clips(tmp / "clips", args.clips, args.frames, args.size, args.fps)
        made = time.perf_counter() - t
        video = {"fps": args.sample_fps, "max_frames": 768, "min_frames": 4, "window": None,
                 "resize": {"mode": "longest", "size": args.frame_size, "multiple": 28}, "temporal_patch": 2,
                 "multi_frame_files": "clips"}
        first = V.read_clip(paths[0], video)
        mb = sum(p.stat().st_size for p in paths) / 1e6
        print(f"{args.clips} mp4 clips of {args.frames} frames, {args.size} x {args.size} px at {args.fps} fps "
              f"({mb:.1f} MB, written in {made:.1f} s); read at {args.sample_fps:g} fps -> {len(first.frames)} frames "
              f"of {first.size[0]} x {first.size[1]} px a clip")
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
              f"{platform.system()} {platform.release()}; {time.strftime('%Y-%m-%d')}")
        cache = ClipCache(tmp / "cache", limit=100 * 1024**3)
        read_all(paths[:2], video, None)  # warm the imports and the decoder
        rows = []
        decoded = read_all(paths, video, None)
        rows.append(("decoded (no cache)", decoded))
        V._DIGESTS.clear()
        rows.append(("cold cache (decode + write PNGs)", read_all(paths, video, cache)))
        V._DIGESTS.clear()  # a fresh process: every file hashed again
        rows.append(("warm cache, fresh process (hash + load PNGs)", read_all(paths, video, cache)))
        rows.append(("warm cache, same process (load PNGs)", read_all(paths, video, cache)))
        entries, size = cache.stats()
        print("| read | ms a clip | clips/s | vs decoding |")
        print("|---|---|---|---|")
        for name, seconds in rows:
            print(f"| {name} | {1000 * seconds / len(paths):.1f} | {len(paths) / seconds:.1f} | "
                  f"{decoded / seconds:.1f}x |")
        print(f"cache: {entries} entries, {size / 1e6:.1f} MB ({size / entries / 1e3:.0f} KB a clip)")
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
