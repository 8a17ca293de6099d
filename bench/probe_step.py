"""Where an Unsloth training step of the Qwen2.5-VL 3B shape spends its time, on the GPU machine.

One process: Unsloth's FastVisionModel + get_peft_model (LoRA r=16 on every layer, gradient checkpointing
"unsloth"), Unsloth's collator, AdamW 8-bit, a hand-written loop (forward, backward, optimizer step) so that each
part can be timed alone. For each configuration (vision attention as transformers does it, one call per window,
or vtc's one variable-length call per layer; micro-batch), it records the step times after a CUDA synchronise,
the collator's time on the CPU, peak memory, and how busy the GPU was (nvidia-smi utilization.gpu every 250 ms
over the timed steps). Then one torch.profiler trace of two steps of the best configuration, exported as a
Chrome trace, plus the largest costs summed from that trace by bench/trace_costs.py.

    python bench/build_qwen3b_shape.py --out /tmp/q3b --size 3b
    python bench/probe_step.py --model /tmp/q3b --out $OUT --budget 420

Writes probe_step.json (every figure) and trace.json.gz into --out. Stops starting new configurations when the
time budget (seconds) would be exceeded, and says so in the JSON.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import sys
import time
from pathlib import Path

T0 = time.time()
from unsloth import FastVisionModel  # noqa: E402  (first, as Unsloth asks)
from unsloth.trainer import UnslothVisionDataCollator  # noqa: E402

T_IMPORT = time.time() - T0

import torch  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))
from gpu_busy import BusySampler  # noqa: E402
from make_dataset import INSTRUCTION, conversations, make  # noqa: E402

from vtc.runtime.attention import use_varlen_vision_attention, varlen_kernel_available  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--budget", type=float, default=420.0)
    ap.add_argument("--size", type=int, default=504)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    result: dict = {"import_s": round(T_IMPORT, 1), "card": torch.cuda.get_device_name(0),
                    "torch": torch.__version__, "configs": [], "varlen_unavailable": varlen_kernel_available()}

    def save() -> None:
        (args.out / "probe_step.json").write_text(json.dumps(result, indent=1) + "\n")

    data_dir = Path("/tmp/probe-data")
    make(data_dir, rows=64, size=args.size)
    rows = conversations(data_dir, INSTRUCTION)

    t = time.time()
    model, tokenizer = FastVisionModel.from_pretrained(args.model, load_in_4bit=False,
                                                       use_gradient_checkpointing="unsloth")
    model = FastVisionModel.get_peft_model(model, finetune_vision_layers=True, finetune_language_layers=True,
                                           finetune_attention_modules=True, finetune_mlp_modules=True, r=16,
                                           lora_alpha=16, lora_dropout=0, bias="none", random_state=3407)
    FastVisionModel.for_training(model)
    result["load_s"] = round(time.time() - t, 1)
    collator = UnslothVisionDataCollator(model, tokenizer)
    import bitsandbytes as bnb

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = bnb.optim.AdamW8bit(params, lr=2e-4, weight_decay=0.001)
    sampler = BusySampler()

    def step(batch) -> float:
        batch = {k: v.to("cuda", non_blocking=True) if hasattr(v, "to") else v for k, v in batch.items()}
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss)

    def run(label: str, micro: int, steps: int, attention: str) -> dict:
        try:
            return measure(label, micro, steps, attention)
        except Exception as e:  # keep the figures measured so far
            import traceback

            result["configs"].append({"label": label, "error": traceback.format_exc()[-3000:]})
            save()
            print("FAILED", label, repr(e), flush=True)
            torch.cuda.empty_cache()
            return {"tokens_per_s": -1, "micro": micro}

    def measure(label: str, micro: int, steps: int, attention: str) -> dict:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        t_collate, times, losses = [], [], []
        for i in range(steps):
            chunk = [rows[(i * micro + j) % len(rows)] for j in range(micro)]
            c0 = time.perf_counter()
            batch = collator(chunk)
            t_collate.append(time.perf_counter() - c0)
            s0 = time.time()
            losses.append(step(batch))
            torch.cuda.synchronize()
            times.append((s0, time.time()))
        steady = times[2:] if len(times) > 3 else times[1:]
        durations = [b - a for a, b in steady]
        tokens = int(batch["attention_mask"].sum())
        rec = {"label": label, "attention": attention, "micro": micro, "steps": steps,
               "first_step_s": round(times[0][1] - times[0][0], 2),
               "step_s": [round(b - a, 3) for a, b in times],
               "steady_mean_s": round(sum(durations) / len(durations), 3),
               "collate_mean_s": round(sum(t_collate[1:]) / max(len(t_collate) - 1, 1), 3),
               "text_tokens_per_step": tokens,
               "tokens_per_s": round(tokens / (sum(durations) / len(durations)), 1),
               "gpu_busy": sampler.between(steady[0][0], steady[-1][1]),
               "peak_allocated_gib": round(torch.cuda.max_memory_allocated() / 2 ** 30, 2),
               "peak_reserved_gib": round(torch.cuda.max_memory_reserved() / 2 ** 30, 2),
               "losses": [round(x, 4) for x in losses]}
        result["configs"].append(rec)
        save()
        print(json.dumps(rec), flush=True)
        return rec

    def time_left() -> float:
        return args.budget - (time.time() - T0)

    # 1. transformers' per-window vision attention (what every run did so far).
    run("sdpa-16", 16, 8, "sdpa")
    # 2. The same vision outputs through one variable-length call per layer? (one batch, no grad)
    attention = "sdpa"
    if result["varlen_unavailable"] is None:
        try:
            batch = collator(rows[:4])
            visual = next(m for n, m in model.named_modules() if n.endswith("visual"))
            with torch.no_grad():
                px = batch["pixel_values"].to("cuda", dtype=torch.bfloat16)
                grid = batch["image_grid_thw"].to("cuda")
                before = visual(px, grid_thw=grid)
                before = getattr(before, "pooler_output", before)
                result["varlen_modules"] = use_varlen_vision_attention(model)
                after = visual(px, grid_thw=grid)
                after = getattr(after, "pooler_output", after)
            result["varlen_vs_sdpa_max_abs"] = float((before.float() - after.float()).abs().max())
            result["varlen_vs_sdpa_max_ref"] = float(before.float().abs().max())
            attention = "varlen"
        except Exception:
            import traceback

            result["varlen_error"] = traceback.format_exc()[-3000:]
        save()
    best = run(f"{attention}-16", 16, 7, attention)
    for micro in (32, 64):
        if time_left() < 120:
            result["skipped"] = f"micro {micro} and after: budget"
            break
        rec = run(f"{attention}-{micro}", micro, 5, attention)
        if rec["tokens_per_s"] > best["tokens_per_s"]:
            best = rec
    save()
    # 3. A trace of two steps of the best configuration.
    if time_left() > 60:
        from torch.profiler import ProfilerActivity, profile, schedule

        micro = best["micro"]
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA],
                     schedule=schedule(wait=0, warmup=1, active=2), record_shapes=False) as prof:
            for i in range(3):
                with torch.profiler.record_function("vtc.collate"):
                    b = collator([rows[(i * micro + j) % len(rows)] for j in range(micro)])
                step(b)
                torch.cuda.synchronize()
                prof.step()
        trace = Path("/tmp/trace.json")
        prof.export_chrome_trace(str(trace))
        with open(trace, "rb") as f, gzip.open(args.out / "trace.json.gz", "wb") as g:
            shutil.copyfileobj(f, g)
        result["trace_micro"] = micro
    sampler.stop()
    result["total_s"] = round(time.time() - T0, 1)
    save()


if __name__ == "__main__":
    main()
