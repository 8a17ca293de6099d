"""Several training processes on CUDA GPUs (docs/distributed.md), through Unsloth, each as users start them.

    gpu:       torchrun with one process on one GPU: the one-GPU path under torchrun (no process group is made,
               the run is the same as `vtc run` alone), and `vtc run --gpus 1` (nothing started: in-process)
    multigpu:  two processes on two GPUs (DDP over NCCL): one run folder, the world size and split in the manifest,
               and a SIGTERM to one rank then `vtc run --resume`. Skipped unless two GPUs are visible (the issue
               "The multi-GPU run on real GPUs" measures them).
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

import pytest

from test_unsloth_backend import COMMON, Proc, _env, _run_dir, _vtc

pytestmark = pytest.mark.gpu

RECIPE = f"""finetune all on tiny-qwen2.5-vl
using lora
resize 112
train for {{steps}} steps
checkpoint every 2 steps
learning rate 1e-3
{COMMON}"""


def _torchrun(processes: int, *args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
            "-m", "vtc", *args]


def _recipe(work: Path, steps: int) -> Path:
    work.mkdir(parents=True, exist_ok=True)
    path = work / "ddp.vt"
    path.write_text(RECIPE.format(steps=steps) + f"save to {work / 'runs'}\n")
    return path


def _manifest(run: Path) -> dict:
    return json.loads((run / "manifest.json").read_text())


def test_one_process_under_torchrun_is_the_one_gpu_run(tmp_path):
    """torchrun --nproc-per-node 1 -m vtc run: trains on the one GPU through Unsloth, one run folder, world size 1."""
    recipe = _recipe(tmp_path / "one", steps=8)
    out = Proc("torchrun-1", _torchrun(1, "run", str(recipe), "--backend", "unsloth"), tmp_path / "one",
               _env(tmp_path)).wait().check()
    runs = sorted((tmp_path / "one" / "runs").glob("run-*"))
    assert [r.name for r in runs] == ["run-001"], (runs, out[-3000:])
    manifest = _manifest(runs[0])
    assert manifest["state"] == "finished" and manifest["backend"]["name"] == "unsloth"
    assert manifest["batch"]["processes"] == 1


@pytest.mark.multigpu
def test_two_gpus_train_one_run_and_resume_after_sigterm_to_one_rank(tmp_path):
    """`vtc run --gpus 2`: one run folder written by rank 0; SIGTERM to rank 1 mid-run stops both ranks at the same
    step with a checkpoint; `vtc run --resume --gpus 2` finishes it with the loss curve continuing."""
    work = tmp_path / "two"
    recipe = _recipe(work, steps=150)
    proc = Proc("gpus-2", _vtc("run", str(recipe), "--backend", "unsloth", "--gpus", "2"), work, _env(tmp_path))
    # Rank 1 is the child process whose environment says RANK=1: find it once training has begun.
    deadline = time.time() + 400
    rank1 = None
    while time.time() < deadline and proc.popen.poll() is None:
        if "checkpoint" in proc.output or "2/150" in proc.output or "/150" in proc.output:
            rank1 = _pid_with_env("RANK", "1")
            if rank1:
                break
        time.sleep(1)
    assert rank1, proc.output[-3000:]
    time.sleep(3)
    import os

    os.kill(rank1, signal.SIGTERM)
    proc.wait()
    assert proc.rc == 143, proc.output[-3000:]
    stopped = sorted((work / "runs").glob("run-*"))
    assert [r.name for r in stopped] == ["run-001.interrupted"], stopped
    assert _manifest(stopped[0])["distributed"]["world_size"] == 2
    again = Proc("gpus-2-resume", _vtc("run", "--resume", str(stopped[0]), "--backend", "unsloth", "--gpus", "2"),
                 work, _env(tmp_path)).wait().check()
    run = _run_dir(work / "runs")
    assert run.name == "run-001", (run, again[-2000:])
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 151))


def _pid_with_env(name: str, value: str) -> int | None:
    """A vtc training process of this user whose environment has name=value (torchrun sets RANK per worker)."""
    import os

    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = (entry / "environ").read_bytes().split(b"\0")
            cmd = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"vtc" in cmd and f"{name}={value}".encode() in env and int(entry.name) != os.getpid():
            return int(entry.name)
    return None
