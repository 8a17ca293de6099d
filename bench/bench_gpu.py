"""The GPU benchmark: three stacks on a Qwen2.5-VL with the 3B shape, in one command on the GPU machine.

    (a) `vtc run bench.vt --backend unsloth`       vtc's compiler and runtime over Unsloth
    (b) bench/notebook_baseline.py                 Unsloth's Qwen2.5-VL notebook by hand, nothing from vtc
    (c) `vtc run bench.vt --backend transformers`  vtc over transformers + PEFT + TRL

The same model folder (random weights, 3B sizes, built here by bench/build_qwen3b_shape.py), the same data
(synthetic 504 x 504 px images, bench/make_dataset.py), batch 4 without accumulation, 16-bit LoRA r=16 alpha=16 on
every attention and MLP layer of both towers, AdamW 8-bit, lr 2e-4 with 5 warm-up steps, gradient checkpointing.
Each stack runs as its own process, one after the other, each with its own working folder, HOME and TMPDIR, so
that no stack finds another's compiled code: Unsloth's unsloth_compiled_cache/ (working folder), its Mega-cache of
torch.compile artefacts (~/.cache/unsloth/mega_cache, saved at exit and loaded by the next Unsloth process),
TorchInductor's cache (TMPDIR/torchinductor_USER; Unsloth drops TORCHINDUCTOR_CACHE_DIR) and Triton's. Each pays its
own compilation: "time to first step" is a cold start.

Every process runs under bench/timed.py, which records when each optimizer step ends (after a CUDA synchronise)
and torch.cuda.max_memory_allocated. Steady state = the mean duration of steps WARMUP+1..N. Every row has the same
number of tokens (text + 324 image tokens), so tokens/s = 4 x tokens a row / seconds a step.

    python bench/bench_gpu.py --work /tmp/vtc-bench --out "$OUT" --steps 40 --steps-c 25

Writes bench.json (all numbers and raw step times), bench.md (the table for docs/gpu.md) and logs.tgz into --out.
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
accumulate 1
learning rate 2e-4
warmup 5 steps
schedule linear
optimizer adamw_8bit
weight decay 0.001
seed 3407
save to {runs}
"""

STACKS = {
    "a": "vtc run --backend unsloth",
    "b": "Unsloth notebook, by hand",
    "c": "vtc run --backend transformers",
}


def run_stack(key: str, args: list[str], work: Path, timeout: float) -> dict:
    """Run one stack under bench/timed.py in a fresh folder with fresh compile caches; return its record."""
    d = work / f"stack-{key}"
    d.mkdir(parents=True, exist_ok=True)
    for sub in ("home", "tmp"):
        (d / sub).mkdir(exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
           "BENCH_RESULT": str(d / "timed.json"), "BENCH_T_LAUNCH": repr(time.time()),
           "HOME": str(d / "home"), "TMPDIR": str(d / "tmp"),
           "TORCHINDUCTOR_CACHE_DIR": str(d / "inductor"), "TRITON_CACHE_DIR": str(d / "triton")}
    src = str(ROOT / "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), src) if p)
    log = d / f"{key}.log"
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
    rec.update(rc=rc, wall_s=round(wall, 1), log=str(log))
    print(f"[bench] ({key}) rc={rc} in {wall:.0f} s, {len(rec.get('step_ends', []))} steps", flush=True)
    if rc != 0:
        print(log.read_text(errors="replace")[-3000:], flush=True)
    return rec


def summarise(rec: dict, warmup: int, tokens_per_step: int) -> dict:
    ends = rec.get("step_ends") or []
    if len(ends) <= warmup + 1:
        return {"ok": False, "rc": rec.get("rc"), "steps": len(ends)}
    durations = [b - a for a, b in zip(ends, ends[1:])]  # durations[i] is step i+2's
    steady = durations[warmup - 1:]  # steps warmup+1 .. N
    s_step = statistics.mean(steady)
    return {
        "ok": rec.get("rc") == 0, "rc": rec.get("rc"), "steps": len(ends),
        "steady_steps": f"{warmup + 1}-{len(ends)}",
        "s_per_step": round(s_step, 4), "s_per_step_median": round(statistics.median(steady), 4),
        "s_per_step_stdev": round(statistics.stdev(steady), 4) if len(steady) > 1 else 0.0,
        "tokens_per_s": round(tokens_per_step / s_step, 1),
        "peak_allocated_gib": round(rec.get("peak_allocated_gib", float("nan")), 2),
        "peak_reserved_gib": round(rec.get("peak_reserved_gib", float("nan")), 2),
        "time_to_first_step_s": round(ends[0] - rec["t_launch"], 1),
        "first_step_s": round(ends[0] - rec["t_train_begin"], 1) if rec.get("t_train_begin") else None,
        "start_to_train_s": round(rec["t_train_begin"] - rec["t_launch"], 1) if rec.get("t_train_begin") else None,
        "wall_s": rec.get("wall_s"), "device": rec.get("device"),
        "step_durations": [round(x, 4) for x in durations],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("/tmp/vtc-bench"))
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=40, help="steps of (a) and (b)")
    ap.add_argument("--steps-c", type=int, default=25, help="steps of (c), the slow stack (default: --steps)")
    ap.add_argument("--warmup", type=int, default=4, help="steps left out of the steady state")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--rows", type=int, default=128)
    ap.add_argument("--size", default="3b", help="3b, or tiny for a quick rehearsal")
    ap.add_argument("--stacks", default="abc")
    ap.add_argument("--timeout", default="300", help="seconds per stack: one number, or a,b,c (e.g. 230,200,120)")
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

    steps = {"a": args.steps, "b": args.steps, "c": args.steps_c or args.steps}
    recipes = {}
    for key in "ac":
        recipes[key] = work / f"bench-{key}.vt"
        recipes[key].write_text(RECIPE.format(model=model, data=data, instruction=make_dataset.INSTRUCTION,
                                              steps=steps[key], batch=args.batch, runs=work / "runs"))
    limits = [float(x) for x in str(args.timeout).split(",")]
    timeouts = dict(zip("abc", limits if len(limits) == 3 else limits * 3))
    commands = {
        "a": ["-m", "vtc", "run", str(recipes["a"]), "--backend", "unsloth", "--runs-dir", str(work / "runs-a")],
        "b": [str(HERE / "notebook_baseline.py"), "--model", str(model), "--data", str(data), "--steps",
              str(steps["b"]), "--batch", str(args.batch), "--info", str(work / "stack-b" / "info.json")],
        "c": ["-m", "vtc", "run", str(recipes["c"]), "--backend", "transformers", "--runs-dir",
              str(work / "runs-c")],
    }
    results: dict = {}

    def write_report() -> None:
        """bench.json, bench.md and logs.tgz from the stacks run so far."""
        ratios = {}
        ok = {k: v for k, v in results.items() if v.get("ok")}
        if "a" in ok and "b" in ok:
            ratios["a_vs_b_throughput"] = round(ok["a"]["tokens_per_s"] / ok["b"]["tokens_per_s"], 4)
        if "a" in ok and "c" in ok:
            ratios["a_vs_c_speedup"] = round(ok["a"]["tokens_per_s"] / ok["c"]["tokens_per_s"], 3)
        if "b" in ok and "c" in ok:
            ratios["b_vs_c_speedup"] = round(ok["b"]["tokens_per_s"] / ok["c"]["tokens_per_s"], 3)
        info = json.loads((model / "bench_model.json").read_text())
        report = {"device": next((v.get("device") for v in results.values() if v.get("device")), None),
                  "model": {"shape": "Qwen2.5-VL-3B", "parameters": info["parameters"], "dtype": "bfloat16"},
                  "tokens_per_row": counts[0], "tokens_per_step": tokens_per_step, "batch": args.batch,
                  "steps": steps, "steady_state": f"steps {args.warmup + 1} to the last",
                  "prep_s": round(prep_s, 1), "results": results, "ratios": ratios}
        (out / "bench.json").write_text(json.dumps(report, indent=1) + "\n")
        lines = [f"Card: {report['device']}. Qwen2.5-VL, 3B shape ({info['parameters'] / 1e9:.2f} B parameters, "
                 f"random weights), bf16 LoRA r=16 on all vision and language layers, batch {args.batch}, 504x504 "
                 f"images, {tokens_per_step} tokens a step, steady state from step {args.warmup + 1} to the last, "
                 "s/step as mean (median).", "",
                 "| stack | steps | s/step | tokens/s | peak GPU memory (allocated) | time to first step | "
                 "of which first step |",
                 "|---|---|---|---|---|---|---|"]
        for key, r in results.items():
            if r.get("ok"):
                lines.append(f"| ({key}) {r['stack']} | {r['steady_steps']} | {r['s_per_step']:.3f} "
                             f"({r['s_per_step_median']:.3f}) | {r['tokens_per_s']:.0f} | "
                             f"{r['peak_allocated_gib']:.2f} GiB | {r['time_to_first_step_s']:.0f} s | "
                             f"{r['first_step_s']:.0f} s |")
            else:
                lines.append(f"| ({key}) {r['stack']} | failed (rc {r.get('rc')}) | | | | | |")
        lines += ["", "Ratios: " + ", ".join(f"{k} {v}" for k, v in ratios.items())]
        (out / "bench.md").write_text("\n".join(lines) + "\n")
        with tarfile.open(out / "logs.tgz", "w:gz") as tar:
            for key in args.stacks:
                log = work / f"stack-{key}" / f"{key}.log"
                if log.is_file():
                    tar.add(log, arcname=log.name)
            for key, recipe in recipes.items():
                tar.add(recipe, arcname=recipe.name)
        print("\n".join(lines), flush=True)

    for key in args.stacks:
        rec = run_stack(key, commands[key], work, timeouts[key])
        results[key] = {"stack": STACKS[key], **summarise(rec, args.warmup, tokens_per_step)}
        # Losses, where each stack logs them: vtc's metrics.jsonl, the notebook's info.json.
        if key in "ac":
            runs = sorted((work / f"runs-{key}").glob("run-*"))
            if runs and (runs[-1] / "metrics.jsonl").is_file():
                results[key]["losses"] = [json.loads(l)["loss"] for l in (runs[-1] / "metrics.jsonl").open()]
        elif (work / "stack-b" / "info.json").is_file():
            results[key]["losses"] = json.loads((work / "stack-b" / "info.json").read_text()).get("losses")
        write_report()  # after every stack, so that a cut-off call still returns what finished


if __name__ == "__main__":
    main()
