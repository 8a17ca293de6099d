"""bench/distributed_run.py (issue 18's multi-GPU bench) run end to end on the CPU: its --tiny mode, 2 gloo processes
on vtc's tiny Qwen2.5-VL, every part (throughput three ways, SIGTERM then resume, SIGKILL under torchrun and under
`vtc run --gpus`, the sharded evaluation against one process). The script's own checks are the test's: its JSON
lists every check that failed under "failures"; the test also reads the figures it relies on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_distributed_bench_runs_every_part_with_two_cpu_processes(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env["PYTHONPATH"] = str(ROOT / "src")
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "distributed_run.py"), "--work", str(tmp_path / "w"),
                           "--out", str(tmp_path / "out"), "--tiny", "--gpus", "2", "--steps", "3",
                           "--checkpoint-every", "1"],
                          capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == json.loads((tmp_path / "out" / "distributed.json").read_text())
    assert report["failures"] == [] and report["skipped"] == {}, (report["failures"], done.stderr[-3000:])
    assert (report["device"], report["config"]["processes"], report["config"]["micro_batch"]) == ("cpu", 2, 2)

    tp = report["throughput"]
    for key, processes in (("a", 1), ("b", 2), ("c", 2)):
        run = tp[key]
        assert (run["rc"], run["state"], run["run_folders"], run["processes"]) == (0, "finished", 1, processes), key
        assert run["batch"] == {"batch": 2 * processes, "micro_batch": 2, "accumulate": 1, "processes": processes}
        assert run["tokens_per_s"] > 0 and run["time_to_first_step_s"] is not None
        assert len(run["peak_memory_gib_per_rank"]) == processes
    assert tp["speedup_b"] > 0 and tp["speedup_c"] > 0 and tp["meets_target"] in (True, False)

    sig = report["sigterm"]
    assert sig["ok"] and sig["signalled"]["rank"] == 1 and sig["exit_rc"] != 0
    assert sig["interrupted_state"] == "interrupted" and sig["checkpoint_step"] >= sig["checkpoint_seen"]
    assert sig["steps"] == list(range(1, sig["steps_planned"] + 1)) and sig["run_folders"] == 1

    kill = report["kill"]
    assert kill["c"]["ok"] and "VT547" in kill["c"]["codes"] and kill["c"]["signalled"]["rank"] == 1
    assert kill["b"]["ok"] and "VT557" in kill["b"]["codes"] and not kill["b"]["hung"]

    ev = report["eval"]
    assert ev["ok"] and ev["metrics_equal"] and ev["one"]["processes"] == 1 and ev["several"]["processes"] == 2
    assert set(ev["one"]["metrics"]) == {"exact_match", "cer"}
