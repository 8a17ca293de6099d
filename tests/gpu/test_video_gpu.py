"""The motion task (issue 16) through the Unsloth backend on a CUDA GPU: tiny-qwen2.5-vl learns which way a square
moves from clips of frame folders, and `vtc ask` answers a clip (an mp4) with the trained run.

vtc.runtime.tiny_data writes the data (a square moving left or right with wrap-around, so no single frame tells the
direction); the recipe is the CPU test's settings (tests/test_video_training.py), which learn it there: 4 frames of
56 px at 2 fps, 300 steps of 8 at 2e-3. Unsloth's collator gets the clips as vtc opens them (frames, fps,
resized_height/width). One process (`python -m vtc run ... --backend unsloth`), as users run it; Unsloth compiles on
the first step (about a minute). Run with the command in docs/gpu.md (VTC_GPU_LOGS=DIR keeps the output).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from video_helpers import MOTION_RECIPE

pytestmark = pytest.mark.gpu

TIMEOUT = float(os.environ.get("VTC_GPU_TIMEOUT", 480))



def _run(args: list[str], work: Path, name: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "UNSLOTH_COMPILE_LOCATION": str(work / "unsloth_compiled_cache")}
    res = subprocess.run([sys.executable, "-m", "vtc", *args], cwd=work, env=env, capture_output=True, text=True,
                         timeout=TIMEOUT)
    logs = os.environ.get("VTC_GPU_LOGS")
    if logs:
        Path(logs).mkdir(parents=True, exist_ok=True)
        (Path(logs) / f"video-{name}.log").write_text(res.stdout + res.stderr)
    return res


def test_motion_task_learns_through_unsloth(tmp_path):
    from vtc.runtime.tiny_data import moving_square, write_motion_dataset, write_mp4

    write_motion_dataset(tmp_path / "motion", train=64, test=24, frames=4, size=56)
    (tmp_path / "motion.vt").write_text(MOTION_RECIPE.format(steps=300))
    res = _run(["run", "motion.vt", "--backend", "unsloth"], tmp_path, "run")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    assert "Traceback" not in out
    run = sorted((tmp_path / "runs").glob("run-*"))[-1]
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["backend"]["name"] == "unsloth", manifest["backend"]
    ev = json.loads((run / "eval.json").read_text())
    assert ev["after"]["exact_match"] >= 0.8, ev  # two directions: chance is 50%

    # `vtc ask` on a clip file: a right-moving square, and the same clip backwards
    clip = write_mp4(tmp_path / "right.mp4", moving_square("right", n=4, size=56, seed=777), fps=2)
    back = write_mp4(tmp_path / "back.mp4", moving_square("right", n=4, size=56, seed=777)[::-1], fps=2)
    answers = []
    for path in (clip, back):
        res = _run(["ask", str(run), str(path), "--backend", "unsloth"], tmp_path, f"ask-{path.stem}")
        assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
        answers.append(res.stdout.strip().splitlines()[-1])
    assert answers == ["right", "left"], answers
