"""Issue 18: `vtc run` on several GPUs, measured in one command (any number of GPUs; on the CPU, gloo processes).

    python bench/distributed_run.py --work /tmp/dist --out "$OUT"                    # every GPU here, Unsloth
    python bench/distributed_run.py --work /tmp/dist --out "$OUT" --gpus 2 --backend transformers
    python bench/distributed_run.py --work /tmp/dist --out /tmp/dist --tiny --gpus 2  # the CPU: 2 gloo processes

The recipe: bench/build_qwen3b_shape.py's Qwen2.5-VL 3B shape (random weights, built when missing) on
bench/make_dataset.py's 504 px images, LoRA r16 on every layer of both towers, `micro batch M` pinned (--micro), so
that every process takes M rows a step in every launch: `batch M` on one process, `batch M x N` on N. With --tiny:
vtc's embedded tiny-qwen2.5-vl, 112 px images, the transformers backend, few steps; without CUDA, `--gpus N` is N CPU
processes over gloo (vtc's own CPU mode: `vtc run --gpus N` and torchrun both start them on a machine without CUDA).

What it does (--what, any of):
  throughput  (a) `vtc run` alone, (b) `vtc run --gpus N`, (c) `torchrun --nproc-per-node N -m vtc run`; the
              speed-up of (b) and (c) over (a) in tokens/s (issue 18: >= 1.8 for 2 GPUs). With N == 1, (b) is left
              out (`--gpus 1` starts nothing: it is (a) again) and (c) is one process under torchrun: its ratio is
              then the launcher's overhead. (a) runs first and pays the cold compile caches: compare times to the
              first step with that in mind (tokens/s leave out the first steps).
  sigterm     (c) with `checkpoint every K steps`; once a complete checkpoint exists, SIGTERM to one rank process
              (the highest rank, a child of torchrun); then `torchrun ... -m vtc run --resume RUN_DIR`.
  kill        SIGKILL to the highest rank mid-run, under (c) and, when N > 1, under (b); the seconds until every
              process has ended, the diagnostic codes printed (VT547 under torchrun, VT557 under `vtc run --gpus`).
  eval        the same finished adapter (run (a)'s, or a short run made here) evaluated by vtc's sharded evaluation
              (vtc.runtime.evaluate.answer_rows: each process answers a contiguous share, rank 0 gathers) with N
              processes under torchrun and with 1 process; the metrics and answers compared.
Every subprocess runs under a timeout (its process group killed after it) and the whole script under --budget:
a part that would start after the budget is spent is recorded as skipped. Nothing here can hang.

Prints one JSON line and writes OUT/distributed.json (and OUT/distributed-logs.tgz: every launch's log and recipe,
when OUT is not WORK). Keys (stable; a value is null where it was not measured):
  schema             1
  device             "cuda" | "cpu"; card: the GPU's name or "cpu"; gpus_visible; date (UTC); commit (git HEAD)
  config             {processes N, micro_batch M, backend, model, steps, rows, image_size, budget_s, what}
  throughput         {a|b|c: LAUNCH (b absent when N == 1), speedup_b, speedup_c, target_speedup (1.8 when N == 2,
                      else null), meets_target}
     LAUNCH          {command, pid, rc, wall_s, time_to_first_step_s (process start to the first record in the run's
                      metrics.jsonl, polled every 0.1 s), first_step_after_train_begin_s (that record's "elapsed"),
                      run_folders (how many in its runs folder), run_dir, state (manifest), processes (world size),
                      batch {batch, micro_batch, accumulate, processes}, tokens_per_s, samples_per_s (manifest's
                      "throughput", the steady steps, added over the processes; steady_steps: which steps),
                      peak_memory_gib_per_rank (list in rank order of {gpu_allocated, gpu_reserved, gpu_total, host}:
                      the manifest's throughput.processes, or its one peak_memory_gib for a single process),
                      timings (manifest's stage seconds), log}
  sigterm            {steps_planned S, checkpoint_every K, first: LAUNCH, signalled {pid, rank}, checkpoint_seen
                      (the step of the first complete checkpoint seen), sigterm_to_end_s, exit_rc (torchrun's),
                      worker_exit_codes (torchrun's failure summary: 143 each), interrupted_state, checkpoint_step,
                      resume: LAUNCH, run_folders, final_state, steps (the logged step numbers of the finished run),
                      steps_continue (1..S, each once), losses_kept (the steps up to the checkpoint keep their
                      losses after the resume), ok}
  kill               {c|b: {signalled {pid, rank}, rc, kill_to_end_s, all_ended (every rank process seen is gone),
                      hung, codes (diagnostic codes in the output), worker_exit_codes (torchrun's summary, when
                      printed), expected_code, ok, log}}
  eval               {adapter (run folder), rows, one and several (1 and N processes): {rc, wall_s, metrics,
                      processes, answer_s (the answering alone), log}, metrics_equal, answers_equal, answers_differ
                      (row numbers), ok}
  skipped            parts not run, each with why
  failures           short strings, one per check that failed (empty when everything passed)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

RECIPE = """# written by bench/distributed_run.py
finetune all on {model}
using lora
from {data}
ask "Describe this picture in detail please."
answer from column text
resize {size}
lora rank 16 alpha 16
train for {steps} steps
batch {batch}
micro batch {micro}
learning rate 2e-4
warmup {warmup} steps
optimizer {optimizer}
seed 3407
export adapter
save to {runs}
"""

POLL_S = 0.1  # the first step and the checkpoint are polled this often: the times below are good to ~0.1 s
_CODE = "error[VT"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Bench:
    """The settings of one call and the launches it makes (each logged under WORK/logs)."""

    def __init__(self, args) -> None:
        self.args = args
        self.work: Path = args.work
        self.deadline = time.time() + args.budget
        self.failures: list[str] = []
        self.skipped: dict[str, str] = {}
        self.env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK",
                                                                     "LOCAL_WORLD_SIZE", "MASTER_ADDR",
                                                                     "MASTER_PORT")}
        src = str(ROOT / "src")
        self.env["PYTHONPATH"] = os.pathsep.join(p for p in (src, self.env.get("PYTHONPATH")) if p)
        self.env.update(HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1",
                        UNSLOTH_COMPILE_LOCATION=str(self.work / "unsloth_compiled_cache"))
        if args.tiny:
            # torchrun gives each of its processes one thread (OMP_NUM_THREADS=1); the process of `vtc run` alone
            # gets the same on the CPU, so that (a) and (b)/(c) do the same work per process, and N CPU processes
            # are not slowed by one process's threads taking every core.
            self.env.setdefault("OMP_NUM_THREADS", "1")
            self.env["CUDA_VISIBLE_DEVICES"] = ""  # --tiny is the CPU mode, on a GPU machine too
        (self.work / "logs").mkdir(parents=True, exist_ok=True)

    def left(self) -> float:
        return self.deadline - time.time()

    # --- recipes ---------------------------------------------------------------------------------------------
    def recipe(self, name: str, processes: int, steps: int, extra: str = "") -> Path:
        a = self.args
        text = RECIPE.format(model=json.dumps(str(a.model)), data=json.dumps(str(self.data)), size=a.size,
                             steps=steps, batch=a.micro * processes, micro=a.micro,
                             warmup=0 if a.tiny else 2,
                             optimizer="adamw_8bit" if a.backend == "unsloth" else "adamw_torch",
                             runs=json.dumps(str(self.work / "runs-default")))
        path = self.work / f"{name}.vt"
        path.write_text(text + extra)
        return path

    # --- launches --------------------------------------------------------------------------------------------
    def vtc(self, *args) -> list[str]:
        return [sys.executable, "-m", "vtc", "run", *map(str, args), "--backend", self.args.backend]

    def torchrun(self, n: int, *args) -> list[str]:
        return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(n), "--master-addr",
                "127.0.0.1", "--master-port", str(free_port()), "-m", "vtc", "run", *map(str, args), "--backend",
                self.args.backend]

    def launch(self, name: str, command: list[str], runs: Path | None, timeout: float, on_poll=None,
               resume: bool = False) -> dict:
        """Run ``command`` (its own process group) until it ends or ``timeout`` (then the group is killed);
        ``on_poll(proc, t0)`` is called every POLL_S while it runs. The record of LAUNCH (module docstring).
        ``runs`` is emptied first unless ``resume``: a run folder of an earlier call with the same --work (a warm
        GPU machine keeps /tmp) would count as this launch's, and its metrics as this launch's first step."""
        if runs is not None and not resume:
            shutil.rmtree(runs, ignore_errors=True)
        capped = self.left() < timeout
        timeout = min(timeout, max(self.left(), 1.0))
        log = self.work / "logs" / f"{name}.log"
        rec: dict = {"command": " ".join(command), "log": str(log), "rc": None, "time_to_first_step_s": None}
        print(f"[distributed_run] {name}: {rec['command']}", file=sys.stderr, flush=True)
        t0 = time.time()
        with open(log, "w") as fh:
            proc = subprocess.Popen(command, cwd=self.work, env=self.env, stdout=fh, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            while proc.poll() is None:
                if time.time() - t0 > timeout:
                    kill_group(proc)
                    rec["rc"] = "timeout"
                    self.failures.append(f"{name}: no end within {timeout:.0f} s (killed" +
                                         (", the --budget was spent)" if capped else ")"))
                    break
                if rec["time_to_first_step_s"] is None and runs is not None and first_record(runs):
                    rec["time_to_first_step_s"] = round(time.time() - t0, 1)
                if on_poll is not None:
                    on_poll(proc, t0)
                time.sleep(POLL_S)
            proc.wait()
        rec["wall_s"] = round(time.time() - t0, 1)
        rec["t_end"] = time.time()
        if rec["rc"] is None:
            rec["rc"] = proc.returncode
        rec["pid"] = proc.pid
        if runs is not None:
            rec.update(read_run(runs))
        print(f"[distributed_run] {name}: rc={rec['rc']} in {rec['wall_s']} s", file=sys.stderr, flush=True)
        return rec


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL to the launch's process group and to its rank processes, which torchrun starts in sessions of their
    own (torch.distributed.elastic's SubprocessHandler): they would outlive their agent otherwise."""
    for _rank, pid in rank_children(proc.pid):
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run_dirs(runs: Path) -> list[Path]:
    return sorted(p for p in runs.glob("run-*") if p.is_dir()) if runs.is_dir() else []


def first_record(runs: Path) -> bool:
    for d in run_dirs(runs):
        m = d / "metrics.jsonl"
        try:
            if m.is_file() and m.stat().st_size > 0:
                return True
        except OSError:
            pass
    return False


def metrics(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass  # a line being written
    return out


def manifest(run: Path) -> dict:
    try:
        return json.loads((run / "manifest.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def read_run(runs: Path) -> dict:
    """What the latest run folder of ``runs`` records (LAUNCH's keys from the run)."""
    dirs = run_dirs(runs)
    out: dict = {"run_folders": len(dirs), "run_dir": str(dirs[-1]) if dirs else None}
    if not dirs:
        return out
    run = dirs[-1]
    m = manifest(run)
    tp = m.get("throughput") or {}
    records = metrics(run)
    per_rank = [p.get("peak_memory_gib") for p in tp.get("processes", [])] or \
        ([tp["peak_memory_gib"]] if tp.get("peak_memory_gib") else [])
    out.update(state=m.get("state"), processes=(m.get("distributed") or {}).get("world_size"),
               batch={k: (m.get("batch") or {}).get(k) for k in ("batch", "micro_batch", "accumulate", "processes")},
               tokens_per_s=tp.get("tokens_per_second"), samples_per_s=tp.get("samples_per_second"),
               steady_steps=tp.get("steps"), peak_memory_gib_per_rank=per_rank,
               first_step_after_train_begin_s=records[0].get("elapsed") if records else None,
               timings=m.get("timings"))
    return out


def rank_children(pid: int) -> list[tuple[int, int]]:
    """(rank, pid) of the processes ``pid`` started that carry a RANK (torchrun's workers), highest rank first."""
    found = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return []
    kids: set[int] = set()
    for t in tasks:
        try:
            kids.update(int(x) for x in (t / "children").read_text().split())
        except OSError:
            pass
    for kid in kids:
        try:
            env = dict(e.split("=", 1) for e in Path(f"/proc/{kid}/environ").read_bytes().decode(
                errors="replace").split("\0") if "=" in e)
        except OSError:
            continue
        if "RANK" in env and "LOCAL_RANK" in env:
            found.append((int(env.get("RANK", -1)), kid))
    return sorted(found, reverse=True)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def worker_exit_codes(text: str) -> list[int]:
    """The workers' exit codes in torchrun's failure summary (`exitcode  : 143 (pid: ...)`), in its order."""
    out = []
    for line in text.splitlines():
        if line.strip().startswith("exitcode") and ":" in line:
            try:
                out.append(int(line.split(":", 1)[1].split()[0]))
            except (ValueError, IndexError):
                pass
    return out


def codes_in(text: str) -> list[str]:
    out = []
    for part in text.split(_CODE)[1:]:
        code = "VT" + part.split("]", 1)[0]
        if code not in out:
            out.append(code)
    return out


# --- the parts ----------------------------------------------------------------------------------------------------

def throughput(b: Bench, n: int) -> dict:
    a = b.args
    out: dict = {}
    one, several = b.recipe("one", 1, a.steps), b.recipe("several", n, a.steps)
    launches = {"a": b.vtc(one, "--runs-dir", b.work / "runs-a"),
                "b": b.vtc(several, "--gpus", n, "--runs-dir", b.work / "runs-b"),
                "c": b.torchrun(n, several, "--runs-dir", b.work / "runs-c")}
    if n == 1:  # `vtc run --gpus 1` starts nothing: it is (a) again (tests/test_launch.py), not worth a launch
        del launches["b"]
        b.skipped["throughput (b)"] = "`vtc run --gpus 1` runs in the vtc process itself: the same as (a)"
    for key, command in launches.items():
        rec = b.launch(f"throughput-{key}", command, b.work / f"runs-{key}", a.timeout)
        rec.pop("t_end", None)
        out[key] = rec
        if rec["rc"] != 0 or rec.get("state") != "finished" or rec.get("run_folders") != 1:
            b.failures.append(f"throughput ({key}): rc {rec['rc']}, state {rec.get('state')}, "
                              f"{rec.get('run_folders')} run folders")
    base = out["a"].get("tokens_per_s")
    for key in ("b", "c"):
        mine = (out.get(key) or {}).get("tokens_per_s")
        out[f"speedup_{key}"] = round(mine / base, 3) if base and mine else None
    out["target_speedup"] = 1.8 if n == 2 else None
    out["meets_target"] = (None if n != 2 or None in (out["speedup_b"], out["speedup_c"])
                           else min(out["speedup_b"], out["speedup_c"]) >= 1.8)
    return out


def sigterm(b: Bench, n: int) -> dict:
    a = b.args
    every = a.checkpoint_every
    steps = max(a.steps, 4 * every)
    recipe = b.recipe("sigterm", n, steps, f"checkpoint every {every} steps\n")
    runs = b.work / "runs-sigterm"
    out: dict = {"steps_planned": steps, "checkpoint_every": every, "signalled": None, "checkpoint_seen": None}
    sent: dict = {}

    def on_poll(proc, t0):
        if sent:
            return
        complete = [c for d in run_dirs(runs) for c in (d / "checkpoints").glob("checkpoint-*/vtc-complete.json")]
        if not complete:
            return
        ranks = rank_children(proc.pid)
        if not ranks:
            return
        rank, pid = ranks[0]
        os.kill(pid, signal.SIGTERM)
        sent.update(t=time.time(), pid=pid, rank=rank)
        out["signalled"] = {"pid": pid, "rank": rank}
        out["checkpoint_seen"] = min(int(c.parent.name.split("-")[1]) for c in complete)

    first = b.launch("sigterm-first", b.torchrun(n, recipe, "--runs-dir", runs), runs, a.timeout, on_poll)
    out["first"] = first
    out["sigterm_to_end_s"] = round(first.pop("t_end") - sent["t"], 1) if sent else None
    out["exit_rc"] = first["rc"]  # torchrun's own: 1 whenever a worker exited non-zero, 143 included
    out["worker_exit_codes"] = worker_exit_codes(Path(first["log"]).read_text(errors="replace"))
    dirs = run_dirs(runs)
    stopped = dirs[-1] if dirs else None
    m = manifest(stopped) if stopped else {}
    out["interrupted_state"] = m.get("state")
    out["checkpoint_step"] = (m.get("interrupted") or {}).get("checkpoint_step")
    before = {r["step"]: r["loss"] for r in metrics(stopped)} if stopped else {}
    if not sent or m.get("state") != "interrupted":
        b.failures.append(f"sigterm: the run was not interrupted by the signal (signalled {bool(sent)}, state "
                          f"{m.get('state')}, rc {first['rc']})")
        out["ok"] = False
        return out
    resume = b.launch("sigterm-resume", b.torchrun(n, "--resume", stopped), runs, a.timeout, resume=True)
    resume.pop("t_end", None)
    out["resume"] = resume
    dirs = run_dirs(runs)
    out["run_folders"] = len(dirs)
    final = dirs[-1] if dirs else None
    out["final_state"] = manifest(final).get("state") if final else None
    after = metrics(final) if final else []
    out["steps"] = [r["step"] for r in after]
    out["steps_continue"] = out["steps"] == list(range(1, steps + 1))
    kept = {r["step"]: r["loss"] for r in after}
    out["losses_kept"] = all(kept.get(s) == loss for s, loss in before.items() if s <= (out["checkpoint_step"] or 0))
    out["ok"] = (resume["rc"] == 0 and out["run_folders"] == 1 and out["final_state"] == "finished"
                 and out["steps_continue"] and out["losses_kept"])
    if not out["ok"]:
        b.failures.append(f"sigterm: resume rc {resume['rc']}, {out['run_folders']} run folders, state "
                          f"{out['final_state']}, steps {out['steps']}, losses kept {out['losses_kept']}")
    return out


def kill(b: Bench, n: int, how: str) -> dict:
    """SIGKILL to the highest rank after the run's second logged step; how long until every process has ended."""
    a = b.args
    steps = max(a.steps * 4, 40)  # far more than the kill leaves time for: it never finishes first
    recipe = b.recipe(f"kill-{how}", n, steps)
    runs = b.work / f"runs-kill-{how}"
    command = b.torchrun(n, recipe, "--runs-dir", runs) if how == "c" else \
        b.vtc(recipe, "--gpus", n, "--runs-dir", runs)
    sent: dict = {}
    seen: set[int] = set()

    def on_poll(proc, t0):
        ranks = rank_children(proc.pid)
        seen.update(pid for _, pid in ranks)
        if sent or not ranks:
            return
        dirs = run_dirs(runs)
        if dirs and len(metrics(dirs[-1])) >= 2:
            rank, pid = ranks[0]
            os.kill(pid, signal.SIGKILL)
            sent.update(t=time.time(), pid=pid, rank=rank)

    rec = b.launch(f"kill-{how}", command, runs, a.kill_timeout, on_poll)
    text = Path(rec["log"]).read_text(errors="replace")
    out = {"signalled": {k: sent.get(k) for k in ("pid", "rank")} if sent else None, "rc": rec["rc"],
           "kill_to_end_s": round(rec["t_end"] - sent["t"], 1) if sent else None,
           "all_ended": not any(alive(p) for p in seen), "hung": rec["rc"] == "timeout",
           "codes": codes_in(text), "worker_exit_codes": worker_exit_codes(text), "log": rec["log"]}
    # A lost process: VT547 from the processes under torchrun, VT557 from `vtc run --gpus`'s launcher. One process
    # killed under torchrun leaves nobody to say it: torchrun's own failure report, no vtc code.
    out["expected_code"] = "VT557" if how == "b" else ("VT547" if n > 1 else None)
    out["ok"] = bool(sent) and not out["hung"] and out["all_ended"] and rec["rc"] not in (0, None) and \
        (out["expected_code"] is None or out["expected_code"] in out["codes"])
    if not out["ok"]:
        b.failures.append(f"kill ({how}): signalled {bool(sent)}, rc {rec['rc']}, codes {out['codes']}, all ended "
                          f"{out['all_ended']}")
    return out


EVAL_CHILD = r'''
# The evaluation of a finished run's adapter by vtc's own sharded evaluation (bench/distributed_run.py, "eval").
import json, os, sys, time
from pathlib import Path
os.environ["HF_HUB_OFFLINE"] = "1"
recipe, run, out, backend = sys.argv[1:5]
from vtc.compiler.pipeline import compile_file
from vtc.runtime import batching as B, distributed as D, evaluate as E
from vtc.runtime.backends.base import choose_backend
from vtc.runtime.lifecycle import read_manifest
from vtc.runtime.model_path import load_model, resolve_model_path
from vtc.runtime.validate import validate_for_run

result = compile_file(recipe)
plan = result.plan
assert plan is not None, [d.message for d in result.diagnostics]
with D.running(plan) as group:
    be, _ = choose_backend(backend, plan=plan)
    with B.scope():
        B.use(B.recorded_or_planned(read_manifest(Path(run)), plan))
        data = group.leader_first("data", lambda: validate_for_run(plan))
        if not group.leader:
            data = validate_for_run(plan)
        rows = data.eval
        model, processor = load_model(be, plan, resolve_model_path(plan), trained=str(Path(run) / "adapter"))
        t0 = time.time()
        answers = E.answer_rows(be, model, processor, rows, plan)
        took = time.time() - t0
        if group.leader:
            names = list(plan["evaluation"]["metrics"])
            scores = E.score(names, answers, E.expected_answers(rows))
            Path(out).write_text(json.dumps({"metrics": scores, "answers": answers, "rows": len(rows),
                                             "processes": group.size, "answer_s": round(took, 2)}))
sys.stdout.flush(); sys.stderr.flush(); os._exit(0)
'''


def evaluation(b: Bench, n: int, adapter_run: str | None) -> dict:
    a = b.args
    from make_dataset import make

    evaldir = b.work / "eval-data"
    if not (evaldir / "metadata.jsonl").is_file():
        make(evaldir, rows=a.eval_rows, size=a.size, seed=1)
    if adapter_run is None or not (Path(adapter_run) / "adapter").is_dir():
        runs = b.work / "runs-eval-train"
        rec = b.launch("eval-train", b.vtc(b.recipe("eval-train", 1, a.steps), "--runs-dir", runs), runs, a.timeout)
        adapter_run = rec.get("run_dir")
    out: dict = {"adapter": adapter_run, "rows": a.eval_rows}
    if adapter_run is None or not (Path(adapter_run) / "adapter").is_dir():
        b.failures.append("eval: no finished adapter to evaluate")
        out["ok"] = False
        return out
    recipe = b.recipe("eval", 1, a.steps, f"evaluate on {json.dumps(str(evaldir))}\nmetric exact_match, cer\n")
    child = b.work / "eval_child.py"
    child.write_text(EVAL_CHILD)
    got = {}
    for key, command in (("one", [sys.executable, str(child)]),
                         ("several", [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(n),
                                      "--master-addr", "127.0.0.1", "--master-port", str(free_port()),
                                      str(child)])):
        result = b.work / f"eval-{key}.json"
        result.unlink(missing_ok=True)
        rec = b.launch(f"eval-{key}", [*command, str(recipe), adapter_run, str(result), a.backend], None, a.timeout)
        got[key] = json.loads(result.read_text()) if rec["rc"] == 0 and result.is_file() else {}
        out[key] = {"rc": rec["rc"], "wall_s": rec["wall_s"], "metrics": got[key].get("metrics"),
                    "processes": got[key].get("processes"), "answer_s": got[key].get("answer_s"), "log": rec["log"]}
    if not (got["one"] and got["several"]):
        b.failures.append(f"eval: rc {out['one']['rc']} (1 process), {out['several']['rc']} ({n} processes)")
        out["ok"] = False
        return out
    out["metrics_equal"] = got["one"]["metrics"] == got["several"]["metrics"]
    out["answers_equal"] = got["one"]["answers"] == got["several"]["answers"]
    out["answers_differ"] = [i for i, (x, y) in enumerate(zip(got["one"]["answers"], got["several"]["answers"]))
                             if x != y]
    out["ok"] = out["metrics_equal"]
    if not out["ok"]:
        b.failures.append(f"eval: metrics differ: 1 process {got['one']['metrics']}, {n} {got['several']['metrics']}")
    return out


# --- main -----------------------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True, help="working folder (data, recipes, runs, logs)")
    ap.add_argument("--out", type=Path, required=True, help="distributed.json goes here")
    ap.add_argument("--gpus", type=int, default=None, help="processes: every visible GPU by default; 2 on the CPU")
    ap.add_argument("--backend", choices=("unsloth", "transformers"), default=None,
                    help="unsloth by default on a GPU, transformers with --tiny")
    ap.add_argument("--model", type=Path, default=Path("/tmp/qwen3b"), help="the 3B shape's folder (built there)")
    ap.add_argument("--tiny", action="store_true", help="vtc's tiny-qwen2.5-vl, small images: the CPU rehearsal")
    ap.add_argument("--steps", type=int, default=None, help="steps of each throughput run (20; 6 with --tiny)")
    ap.add_argument("--micro", type=int, default=None, help="rows per process per step (4; 2 with --tiny)")
    ap.add_argument("--checkpoint-every", type=int, default=None, help="sigterm's checkpoints (5; 2 with --tiny)")
    ap.add_argument("--rows", type=int, default=None, help="training rows (128; 16 with --tiny)")
    ap.add_argument("--eval-rows", type=int, default=None, help="evaluation rows (16; 6 with --tiny)")
    ap.add_argument("--what", default="throughput,sigterm,kill,eval")
    ap.add_argument("--timeout", type=float, default=None, help="seconds per launch at most (420; 240 with --tiny)")
    ap.add_argument("--kill-timeout", type=float, default=None,
                    help="seconds a kill run may take in all before it counts as a hang (300; 180 with --tiny)")
    ap.add_argument("--budget", type=float, default=3000, help="seconds for the whole script: later parts skipped")
    a = ap.parse_args(argv)
    tiny = a.tiny
    a.backend = a.backend or ("transformers" if tiny else "unsloth")
    a.steps = a.steps or (6 if tiny else 20)
    a.micro = a.micro or (2 if tiny else 4)
    a.checkpoint_every = a.checkpoint_every or (2 if tiny else 5)
    a.rows = a.rows or (16 if tiny else 128)
    a.eval_rows = a.eval_rows or (6 if tiny else 16)
    a.timeout = a.timeout or (240 if tiny else 420)
    a.kill_timeout = a.kill_timeout or (180 if tiny else 300)
    a.size = 112 if tiny else 504
    what = [w.strip() for w in a.what.split(",") if w.strip()]
    unknown = [w for w in what if w not in ("throughput", "sigterm", "kill", "eval")]
    if unknown:
        ap.error(f"--what: unknown part {unknown[0]!r} (throughput, sigterm, kill, eval)")

    # The GPUs, asked in a process of their own: this one never opens CUDA (its context would hold memory on GPU 0
    # through every launch).
    probe = subprocess.run([sys.executable, "-c", "import json, torch; n = torch.cuda.device_count(); "
                            "print(json.dumps([n, torch.cuda.get_device_name(0) if n else 'cpu']))"],
                           capture_output=True, text=True, timeout=120)
    visible, card = json.loads(probe.stdout.strip().splitlines()[-1]) if probe.returncode == 0 else (0, "cpu")
    cuda = visible > 0 and not tiny
    n = a.gpus or (visible if cuda else 2)
    if tiny:
        a.model = "tiny-qwen2.5-vl"
    a.work.mkdir(parents=True, exist_ok=True)
    a.out.mkdir(parents=True, exist_ok=True)
    b = Bench(a)
    if not tiny and not (Path(a.model) / "config.json").is_file():  # built in a process of its own, as above
        subprocess.run([sys.executable, str(HERE / "build_qwen3b_shape.py"), "--out", str(a.model), "--size", "3b",
                        "--device", "cuda" if cuda else "cpu"], check=True, timeout=900)
    from make_dataset import make

    b.data = a.work / "data"
    if not (b.data / "metadata.jsonl").is_file():
        make(b.data, rows=a.rows, size=a.size)
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    report: dict = {
        "schema": 1, "device": "cuda" if cuda else "cpu",
        "card": card if cuda else "cpu", "gpus_visible": visible,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "commit": commit,
        "config": {"processes": n, "micro_batch": a.micro, "backend": a.backend, "model": str(a.model),
                   "steps": a.steps, "rows": a.rows, "image_size": a.size, "budget_s": a.budget, "what": what},
        "throughput": None, "sigterm": None, "kill": None, "eval": None,
    }
    # The seconds a part needs to be worth starting, from the H200's figures (docs/gpu.md: an Unsloth launch of the
    # 3B shape reaches its first step in ~70 s warm, ~130 s cold): three launches, two, one or two, two. A part
    # started with less is cut at the budget (its launch killed and listed under "failures").
    needs = dict.fromkeys(("throughput", "sigterm", "kill", "eval"), 30) if tiny else \
        {"throughput": 240, "sigterm": 180, "kill": 100, "eval": 160}
    for part in ("throughput", "sigterm", "kill", "eval"):
        if part not in what:
            continue
        if b.left() < needs[part]:
            b.skipped[part] = (f"{max(b.left(), 0):.0f} s of the --budget ({a.budget:.0f} s) left, under the "
                               f"{needs[part]} s it needs: run it with --what {part}")
            continue
        if part == "throughput":
            report["throughput"] = throughput(b, n)
        elif part == "sigterm":
            report["sigterm"] = sigterm(b, n)
        elif part == "kill":
            report["kill"] = {how: kill(b, n, how) for how in (("c", "b") if n > 1 else ("c",))}
            if n == 1:
                b.skipped["kill (b)"] = "`vtc run --gpus 1` runs in the vtc process itself: no launcher to report"
        else:
            done = (report["throughput"] or {}).get("a") or {}
            report["eval"] = evaluation(b, n, done.get("run_dir") if done.get("state") == "finished" else None)
    report["skipped"] = b.skipped
    report["failures"] = b.failures
    (a.out / "distributed.json").write_text(json.dumps(report, indent=2) + "\n")
    if a.out.resolve() != a.work.resolve():  # every launch's log and recipe, for what the JSON does not say
        import tarfile

        with tarfile.open(a.out / "distributed-logs.tgz", "w:gz") as tar:
            tar.add(a.work / "logs", arcname="logs")
            for recipe in sorted(a.work.glob("*.vt")):
                tar.add(recipe, arcname=f"recipes/{recipe.name}")
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
