"""Training throughput on short clips for the Qwen2.5-VL 3B shape (issue 16): tokens/s and frames/s of a step.

The model is bench/build_qwen3b_shape.py's 3B shape with random weights (speed and memory depend on the shapes, not
the weights; the GPU machine has no network). Each row is a clip of --frames frames of --size px (default 8 frames
at 336 px: 4 temporal patches x 12 x 12 merged tokens = 576 video tokens) with a short question and answer, batched by
vtc's own collator (vtc.runtime.collator.VisionCollator: the frames reach the processor as vtc sizes them, at their
fps) and trained with LoRA r=16 on every linear layer of both towers (PEFT), bf16, gradient checkpointing, AdamW,
on one GPU. The micro batch is the largest of --micro (default 16, 8, 4, 2, 1) whose step fits in memory. After
--warmup steps, --steps steps are timed (torch.cuda.synchronize around each).

    python bench/video_throughput.py                      # builds /tmp/qwen3b if missing, then measures
    python bench/video_throughput.py --model /tmp/qwen3b --frames 8 --size 336 --steps 10
    python bench/video_throughput.py --model-size tiny --device cpu --steps 2 --micro 2    # a smoke run on the CPU

Prints one JSON line: {"model", "frames", "size", "micro_batch", "tokens_per_row", "video_tokens_per_row",
"step_s", "tokens_per_s", "frames_per_s", "clips_per_s", "peak_gib", "gpu"}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))


def clip_rows(n: int, frames: int, size: int) -> list[dict]:
    """``n`` rows, each one clip of ``frames`` frames of ``size`` px (the motion task's squares) and a one-word
    answer."""
    from vtc.runtime.tiny_data import moving_square

    rows = []
    for i in range(n):
        direction = ("left", "right")[i % 2]
        clip = moving_square(direction, n=frames, size=size, seed=i)
        rows.append({"messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "Which way does the square move?"},
                {"type": "video", "video": clip, "fps": 2.0, "resized_height": size, "resized_width": size}]},
            {"role": "assistant", "content": [{"type": "text", "text": direction}]}]})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=None, help="a folder from build_qwen3b_shape.py (default: "
                    "/tmp/qwen3b, or /tmp/qwen-tiny for --model-size tiny; built when missing)")
    ap.add_argument("--model-size", choices=("3b", "7b", "tiny"), default="3b")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--size", type=int, default=336, help="frame side in px (a multiple of 28)")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--micro", default="16,8,4,2,1", help="micro batches to try, largest first")
    ap.add_argument("--device", default=None)
    args = ap.parse_args()

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    import build_qwen3b_shape as shape
    from vtc.runtime.collator import VisionCollator, set_video_bounds

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model_dir = args.model or Path("/tmp/qwen3b" if args.model_size != "tiny" else "/tmp/qwen-tiny")
    if not (model_dir / "config.json").is_file():
        shape.build(model_dir, args.model_size, device)
    processor = AutoProcessor.from_pretrained(model_dir)
    side = args.size
    set_video_bounds(processor, {"resize": {"mode": "pixels", "min_pixels": 28 * 28, "max_pixels": side * side,
                                            "multiple": 28}})
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(model_dir, dtype=dtype).to(device)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    targets = r".*(visual\.blocks\.\d+\.(attn\.(qkv|proj)|mlp\.(gate|up|down)_proj)|language_model\.layers\.\d+\." \
              r"(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj))"
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=16, lora_dropout=0.0, target_modules=targets))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    collator = VisionCollator(processor, train_on_responses_only=False, instruction_part=None, response_part=None,
                              max_seq_length=8192)
    video_token = processor.tokenizer.convert_tokens_to_ids("<|video_pad|>")

    def step(batch) -> None:
        batch = {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}
        for key in ("pixel_values_videos", "pixel_values"):
            if key in batch:
                batch[key] = batch[key].to(dtype)
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    chosen, batch = None, None
    for micro in [int(x) for x in args.micro.split(",")]:
        batch = collator(clip_rows(micro, args.frames, side))
        try:
            step(batch)
            sync()
            chosen = micro
            break
        except torch.OutOfMemoryError:
            optimizer.zero_grad(set_to_none=True)
            if device == "cuda":
                torch.cuda.empty_cache()
    if chosen is None:
        print(json.dumps({"error": "no micro batch fits", "tried": args.micro}))
        raise SystemExit(1)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for _ in range(max(0, args.warmup - 1)):
        step(batch)
    sync()
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step(batch)
        sync()
        times.append(time.perf_counter() - t0)
    step_s = sorted(times)[len(times) // 2]
    tokens = int(batch["attention_mask"].sum())
    video_tokens = int((batch["input_ids"] == video_token).sum())
    print(json.dumps({
        "model": f"Qwen2.5-VL {args.model_size} shape (random weights)", "frames": args.frames, "size": side,
        "micro_batch": chosen, "tokens_per_row": tokens // chosen, "video_tokens_per_row": video_tokens // chosen,
        "step_s": round(step_s, 4), "tokens_per_s": round(tokens / step_s, 1),
        "frames_per_s": round(chosen * args.frames / step_s, 1), "clips_per_s": round(chosen / step_s, 2),
        "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device == "cuda" else None,
        "gpu": torch.cuda.get_device_name() if device == "cuda" else "cpu", "steps_timed": len(times),
        "method": "LoRA r16 on both towers (PEFT), bf16, gradient checkpointing, AdamW; vtc's collator",
    }))


if __name__ == "__main__":
    main()
