"""The GPU benchmark of issue 12: four stacks on a Qwen2.5-VL with the 3B shape, in one command on the GPU machine.

    (a)  `vtc run bench.vt --backend unsloth`   vtc over Unsloth, `batch 8`: vtc chooses the micro-batch
    (w)  the same, from another working folder  the warm start: vtc's compile caches from (a)
    (b)  bench/notebook_baseline.py             Unsloth's Qwen2.5-VL notebook as written: batch 2, accumulate 4
    (b') the same process, a second training    the notebook with the micro-batch vtc chose in (a)
    (c)  `vtc run bench.vt --backend transformers`  vtc over transformers + PEFT + TRL, `batch 8`, vtc's choice

The same model folder (random weights, 3B sizes, bench/build_qwen3b_shape.py), the same data (synthetic 504 x 504
px images, bench/make_dataset.py, 375 tokens a row), the same effective batch (8 rows an optimizer step), 16-bit
LoRA r=16 alpha=16 on every attention and MLP layer of both towers, AdamW 8-bit, lr 2e-4 with 5 warm-up steps,
gradient checkpointing. Each stack runs as its own process under bench/timed.py (the end of every optimizer step
after a CUDA synchronise; peak memory), in its own working folder with its own HOME and TMPDIR. (a) starts with an
empty vtc cache folder (VTC_CACHE), so its time to first step is cold; (w) runs the same recipe from another
folder with that cache, so its time to first step is warm. (b) and (c) get fresh TorchInductor and Triton folders.

Also measured: how busy the GPU is (nvidia-smi utilization.gpu every 250 ms, over each stack's steady steps); in
(a), a torch.profiler trace of two steady steps (left out of the steady mean) and, after training, the bare work of
one optimizer step (forward, backward, optimizer on batches already on the GPU; bench/timed.py BENCH_BARE_STEPS)
to compare with the trainer's step; (a)'s manifest: what vtc chose and its tokens/s, samples/s and model FLOP
utilisation.

    python bench/bench_gpu.py --work /tmp/vtc-bench --out "$OUT"

Writes into --out: bench.json (every number and raw step times), bench.md (the table for docs/gpu.md) and
bench.tgz (logs, recipes, (a)'s manifest, the trace). Steady state = the steps after --warmup, profiled steps out.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from gpu_busy import BusySampler  # noqa: E402


RECIPE = """# Benchmark recipe: written by bench/bench_gpu.py
finetune all on {model}
using lora
from {data}
ask "{instruction}"
answer from column text
resize 504
lora rank 16 alpha 16
train for {steps} steps
batch {batch}
learning rate 2e-4
warmup 5 steps
schedule linear
optimizer adamw_8bit
weight decay 0.001
seed 3407
save to {runs}
"""

STACKS = {
    "a": "vtc run --backend unsloth (vtc's micro-batch)",
    "w": "the same, warm start from another folder",
    "b": "Unsloth notebook as written (2 x 4)",
    "b'": "Unsloth notebook at vtc's micro-batch",
    "c": "vtc run --backend transformers (vtc's micro-batch)",
}


def run_stack(key: str, args: list[str], work: Path, timeout: float, extra_env: dict) -> dict:
    """Run one stack under bench/timed.py in its own folder; return timed.py's record."""
    d = work / f"stack-{key.replace(chr(39), 'p')}"
    d.mkdir(parents=True, exist_ok=True)
    for sub in ("home", "tmp"):
        (d / sub).mkdir(exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
           "BENCH_RESULT": str(d / "timed.json"), "BENCH_T_LAUNCH": repr(time.time()),
           "HOME": str(d / "home"), "TMPDIR": str(d / "tmp"), **extra_env}
    src = str(ROOT / "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), src) if p)
    log = d / "stack.log"
    print(f"[bench] ({key}) {STACKS[key]} ...", flush=True)
    t0 = time.time()
    with open(log, "w") as fh:
        try:
            rc = subprocess.run([sys.executable, str(HERE / "timed.py"), *args], cwd=d, env=env, stdout=fh,
                                stderr=subprocess.STDOUT, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
    wall = time.time() - t0
    rec = json.loads((d / "timed.json").read_text()) if (d / "timed.json").is_file() else {}
    rec.update(rc=rc, wall_s=round(wall, 1), log=str(log), folder=str(d))
    print(f"[bench] ({key}) rc={rc} in {wall:.0f} s, {len(rec.get('step_ends', []))} steps", flush=True)
    if rc != 0:
        print(log.read_text(errors="replace")[-4000:], flush=True)
    return rec


def summarise(rec: dict, segment: dict, warmup: int, tokens_per_step: int, sampler: BusySampler,
              skip: tuple[int, ...] = ()) -> dict:
    """Steady-state figures of one training (steps after `warmup`, profiled steps left out)."""
    ends = segment.get("step_ends") or []
    if len(ends) <= warmup + 1:
        return {"ok": False, "rc": rec.get("rc"), "steps": len(ends)}
    durations = {i + 2: b - a for i, (a, b) in enumerate(zip(ends, ends[1:]))}  # step number -> its duration
    steady = [d for n, d in durations.items() if n > warmup and n not in skip]
    s_step = statistics.mean(steady)
    return {
        "ok": rec.get("rc") == 0, "rc": rec.get("rc"), "steps": len(ends),
        "micro_batch": segment.get("micro_batch"), "accumulate": segment.get("accumulate"),
        "steady_steps": f"{warmup + 1}-{len(ends)}" + (f" without {list(skip)}" if skip else ""),
        "s_per_step": round(s_step, 4), "s_per_step_median": round(statistics.median(steady), 4),
        "s_per_step_stdev": round(statistics.stdev(steady), 4) if len(steady) > 1 else 0.0,
        "tokens_per_s": round(tokens_per_step / s_step, 1),
        "gpu_busy": sampler.between(ends[warmup], ends[-1]),
        "peak_allocated_gib": round(rec.get("peak_allocated_gib", float("nan")), 2),
        "peak_reserved_gib": round(rec.get("peak_reserved_gib", float("nan")), 2),
        "time_to_first_step_s": round(ends[0] - rec["t_launch"], 1),
        "first_step_s": round(ends[0] - segment["t_train_begin"], 1),
        "start_to_train_s": round(segment["t_train_begin"] - rec["t_launch"], 1),
        "wall_s": rec.get("wall_s"), "device": rec.get("device"),
        "step_durations": [round(durations[n], 4) for n in sorted(durations)],
    }


def last_run(runs: Path) -> Path | None:
    found = sorted(p for p in runs.glob("run-*") if p.is_dir()) if runs.is_dir() else []
    return found[-1] if found else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("/tmp/vtc-bench"))
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=30, help="steps of (a), (b) and (c)")
    ap.add_argument("--steps-then", type=int, default=15, help="steps of (b')")
    ap.add_argument("--steps-warm", type=int, default=6, help="steps of (w)")
    ap.add_argument("--warmup", type=int, default=4, help="steps left out of the steady state")
    ap.add_argument("--batch", type=int, default=8, help="the effective batch of every stack")
    ap.add_argument("--profile", default="20,21", help="steps of (a) traced by torch.profiler ('' for none)")
    ap.add_argument("--bare-steps", type=int, default=5)
    ap.add_argument("--rows", type=int, default=128)
    ap.add_argument("--size", default="3b", help="3b, or tiny for a rehearsal")
    ap.add_argument("--stacks", default="a,w,b,c")
    ap.add_argument("--timeout", type=float, default=240, help="seconds per stack at most")
    args = ap.parse_args()
    work, out = args.work, args.out
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(HERE))
    import make_dataset

    t0 = time.time()
    model = work / f"model-{args.size}"
    if not (model / "config.json").is_file():
        subprocess.run([sys.executable, str(HERE / "build_qwen3b_shape.py"), "--out", str(model), "--size",
                        args.size], check=True)
    data = work / "data"
    if not (data / "metadata.jsonl").is_file():
        make_dataset.make(data, rows=args.rows, size=504)
    counts = make_dataset.tokens_per_row(model, data, limit=32)
    assert len(set(counts)) == 1, f"rows differ in length: {sorted(set(counts))}"
    tokens_per_step = counts[0] * args.batch
    prep_s = time.time() - t0
    print(f"[bench] model and data ready in {prep_s:.0f} s; {counts[0]} tokens a row, {tokens_per_step} a step",
          flush=True)

    recipes = {}
    for key, steps in (("a", args.steps), ("w", args.steps_warm), ("c", args.steps)):
        recipes[key] = work / f"bench-{key}.vt"
        recipes[key].write_text(RECIPE.format(model=model, data=data, instruction=make_dataset.INSTRUCTION,
                                              steps=steps, batch=args.batch, runs=work / f"runs-{key}"))
    vtc_cache = work / "vtc-cache"  # empty before (a): a cold start; (w) finds what (a) left
    profile_path = work / "trace-a.json"
    fresh = {"TORCHINDUCTOR_CACHE_DIR": "inductor", "TRITON_CACHE_DIR": "triton"}
    sampler = BusySampler()
    results: dict = {}
    chosen = {"micro": None}

    def fresh_caches(key: str) -> dict:
        d = work / f"stack-{key.replace(chr(39), 'p')}"
        return {k: str(d / v) for k, v in fresh.items()}

    def write_report() -> None:
        ok = {k: v for k, v in results.items() if v.get("ok")}
        ratios = {}
        for x, y in (("a", "b"), ("a", "b'"), ("a", "c")):
            if x in ok and y in ok:
                ratios[f"{x}/{y} tokens/s"] = round(ok[x]["tokens_per_s"] / ok[y]["tokens_per_s"], 3)
        if "a" in ok and "w" in ok:
            ratios["warm/cold time to first step"] = round(ok["w"]["time_to_first_step_s"]
                                                           / ok["a"]["time_to_first_step_s"], 3)
        info = json.loads((model / "bench_model.json").read_text())
        report = {"device": next((v.get("device") for v in results.values() if v.get("device")), None),
                  "model": {"shape": f"Qwen2.5-VL {args.size}", "parameters": info["parameters"],
                            "dtype": "bfloat16"},
                  "tokens_per_row": counts[0], "tokens_per_step": tokens_per_step, "effective_batch": args.batch,
                  "steady_state": f"steps {args.warmup + 1} to the last", "prep_s": round(prep_s, 1),
                  "results": results, "ratios": ratios}
        (out / "bench.json").write_text(json.dumps(report, indent=1) + "\n")
        lines = [f"Card: {report['device']}. Qwen2.5-VL {args.size} shape ({info['parameters'] / 1e9:.2f} B "
                 f"parameters, random weights), bf16 LoRA r=16 on all vision and language layers, effective batch "
                 f"{args.batch}, 504x504 images, {tokens_per_step} tokens an optimizer step, steady state from step "
                 f"{args.warmup + 1}, s/step as mean (median).", "",
                 "| stack | micro x accumulate | steps | s/step | tokens/s | GPU busy | peak reserved | "
                 "time to first step | of which first step |", "|---|---|---|---|---|---|---|---|---|"]
        for key, r in results.items():
            if r.get("ok"):
                busy = r["gpu_busy"]["mean_percent"]
                lines.append(f"| ({key}) {STACKS[key]} | {r['micro_batch']} x {r['accumulate']} | "
                             f"{r['steady_steps']} | {r['s_per_step']:.3f} ({r['s_per_step_median']:.3f}) | "
                             f"{r['tokens_per_s']:.0f} | {busy if busy is not None else '?'}% | "
                             f"{r['peak_reserved_gib']:.2f} GiB | {r['time_to_first_step_s']:.0f} s | "
                             f"{r['first_step_s']:.0f} s |")
            else:
                lines.append(f"| ({key}) {STACKS[key]} | failed (rc {r.get('rc')}) | | | | | | | |")
        lines += ["", "Ratios: " + ", ".join(f"{k} {v}" for k, v in ratios.items())]
        (out / "bench.md").write_text("\n".join(lines) + "\n")
        with tarfile.open(out / "bench.tgz", "w:gz") as tar:
            for d in sorted(work.glob("stack-*")):
                for name in ("stack.log", "timed.json"):
                    if (d / name).is_file():
                        tar.add(d / name, arcname=f"{d.name}/{name}")
            for recipe in recipes.values():
                tar.add(recipe, arcname=recipe.name)
            for key in ("a", "w", "c"):
                run = last_run(work / f"runs-{key}")
                for name in ("manifest.json", "metrics.jsonl", "plan.json", "run.log"):
                    if run and (run / name).is_file():
                        tar.add(run / name, arcname=f"run-{key}/{name}")
            if profile_path.is_file():
                tar.add(profile_path, arcname="trace-a.json")
        print("\n".join(lines), flush=True)

    def record(key: str, rec: dict, segment_index: int = 0, skip: tuple[int, ...] = ()) -> None:
        segments = rec.get("segments") or []
        if len(segments) <= segment_index:
            results[key] = {"ok": False, "rc": rec.get("rc"), "steps": 0}
            return
        results[key] = summarise(rec, segments[segment_index], args.warmup, tokens_per_step, sampler, skip)
        if rec.get("bare_step_s") and segment_index == 0:
            bare = rec["bare_step_s"][1:] or rec["bare_step_s"]
            results[key]["bare_step_s"] = round(statistics.mean(bare), 4)
            if results[key].get("ok"):
                results[key]["trainer_over_bare"] = round(results[key]["s_per_step"] / statistics.mean(bare) - 1, 4)
        for extra in ("bare_error", "profiled_steps"):
            if rec.get(extra):
                results[key][extra] = rec[extra]

    for key in args.stacks.split(","):
        if key in ("a", "w"):
            env = {"VTC_CACHE": str(vtc_cache)}
            if key == "a":
                env["BENCH_BARE_STEPS"] = str(args.bare_steps)
                if args.profile:
                    env["BENCH_PROFILE"] = f"{args.profile},{profile_path}"
            cmd = ["-m", "vtc", "run", str(recipes[key]), "--backend", "unsloth"]
            rec = run_stack(key, cmd, work, args.timeout, env)
            skip = tuple(rec.get("profiled_steps") or ())
            record(key, rec, skip=tuple(range(skip[0], skip[1] + 2)) if skip else ())
            run = last_run(work / f"runs-{key}")
            if run and (run / "manifest.json").is_file():
                manifest = json.loads((run / "manifest.json").read_text())
                results[key]["manifest"] = {k: manifest.get(k) for k in
                                            ("batching", "throughput", "compile_cache", "vision_attention",
                                             "peak_gpu_memory_gib", "data_loading")}
                if key == "a":
                    chosen["micro"] = (manifest.get("batching") or {}).get("micro_batch") or \
                        rec.get("segments", [{}])[0].get("micro_batch")
            if run and (run / "plan.json").is_file():
                plan = json.loads((run / "plan.json").read_text())
                results[key]["plan_memory_gib"] = plan.get("training", {}).get("batching", {}).get("memory_gib")
        elif key == "b":
            micro = chosen["micro"] or args.batch
            cmd = [str(HERE / "notebook_baseline.py"), "--model", str(model), "--data", str(data), "--steps",
                   str(args.steps), "--batch", "2", "--accumulate", str(args.batch // 2),
                   "--then", f"{micro},{args.batch // micro},{args.steps_then}",
                   "--info", str(work / "stack-b" / "info.json")]
            rec = run_stack("b", cmd, work, args.timeout, fresh_caches("b"))
            record("b", rec, 0)
            record("b'", rec, 1)
        elif key == "c":
            cmd = ["-m", "vtc", "run", str(recipes["c"]), "--backend", "transformers"]
            rec = run_stack("c", cmd, work, args.timeout, fresh_caches("c"))
            record("c", rec)
            run = last_run(work / "runs-c")
            if run and (run / "manifest.json").is_file():
                manifest = json.loads((run / "manifest.json").read_text())
                results["c"]["manifest"] = {k: manifest.get(k) for k in ("batching", "throughput")}
        write_report()  # after every stack, so that a cut-off call still returns what finished
    sampler.stop()


if __name__ == "__main__":
    main()
