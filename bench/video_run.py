"""`vtc run` on clips for the Qwen2.5-VL 3B shape, through a backend (issue 16): what a user's video run achieves.

Where bench/video_throughput.py times bare training steps, this runs the whole of `vtc run` as users do: mp4 clips
(vtc.runtime.tiny_data's moving squares, --frames frames at 2 fps, so `video 2 fps` takes every frame), decoded by
PyAV and sized by vtc, vtc's choice of micro batch for `batch 8`, the backend's trainer, and prints the run's own
figures (manifest.json's "throughput": tokens/s, samples/s, MFU, peak memory; the micro batch chosen; time to the
first step). The model is bench/build_qwen3b_shape.py's 3B shape with random weights (built when missing).

    python bench/video_run.py --work /tmp/vrun                         # 8 frames of 336 px, Unsloth, 30 steps
    python bench/video_run.py --work /tmp/vrun --backend transformers --frames 8 --size 336 --steps 30

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

RECIPE = """# written by bench/video_run.py
finetune all on {model}
using lora
from {data}
ask "Which way does the square move?"
answer from column text
video 2 fps, at most {frames} frames, frame size {size}
lora rank 16 alpha 16
train for {steps} steps
batch 8
learning rate 2e-4
warmup 5 steps
optimizer {optimizer}
with responses_only
save to {runs}
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--model", type=Path, default=Path("/tmp/qwen3b"))
    ap.add_argument("--backend", choices=("unsloth", "transformers"), default="unsloth")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--size", type=int, default=336)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--clips", type=int, default=96)
    args = ap.parse_args()

    import build_qwen3b_shape as shape
    from vtc.runtime.tiny_data import write_motion_dataset

    if not (args.model / "config.json").is_file():
        shape.build(args.model, "3b", "cuda")
    args.work.mkdir(parents=True, exist_ok=True)
    data = write_motion_dataset(args.work / "clips", train=args.clips, test=0, frames=args.frames, size=args.size,
                                kind="mp4", fps=2)
    recipe = args.work / f"video-{args.backend}.vt"
    runs = args.work / f"runs-{args.backend}"
    recipe.write_text(RECIPE.format(model=args.model, data=data / "train", frames=args.frames, size=args.size,
                                    steps=args.steps, runs=runs,
                                    optimizer="adamw_8bit" if args.backend == "unsloth" else "adamw_torch"))
    started = time.time()
    res = subprocess.run([sys.executable, "-m", "vtc", "run", str(recipe), "--backend", args.backend],
                         cwd=args.work, capture_output=True, text=True,
                         env={**os.environ, "UNSLOTH_COMPILE_LOCATION": str(args.work / "unsloth_compiled_cache")})
    wall = time.time() - started
    (args.work / f"video-{args.backend}.log").write_text(res.stdout + res.stderr)
    if res.returncode != 0:
        print(json.dumps({"error": f"vtc run exited {res.returncode}", "tail": (res.stdout + res.stderr)[-3000:]}))
        raise SystemExit(1)
    run = sorted(runs.glob("run-*"))[-1]
    manifest = json.loads((run / "manifest.json").read_text())
    print(json.dumps({"backend": args.backend, "frames": args.frames, "size": args.size, "steps": args.steps,
                      "wall_s": round(wall, 1), "throughput": manifest.get("throughput"),
                      "batch": manifest.get("batch"),
                      "log_tail": [line for line in res.stdout.splitlines() if line.strip()][-12:]}))


if __name__ == "__main__":
    main()
