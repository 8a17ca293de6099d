"""Measure peak GPU memory of training steps, for the memory model of src/vtc/compiler/estimates.py.

One process per (model shape, backend, method, checkpointing mode); inside it, for each image size and each
micro-batch, two optimizer steps (forward, backward, AdamW 8-bit) on synthetic rows, after emptying the allocator's
cache and resetting its peak counters: the peak reserved and allocated memory (torch.cuda.max_memory_reserved /
max_memory_allocated, i.e. without the CUDA context), the rows' text tokens and the vision tower's patches. The
set-up is what vtc's backends do: Unsloth's FastVisionModel + get_peft_model (LoRA r=16 on every layer) and its
collator, or transformers + PEFT with gradient checkpointing; Qwen-VL's vision attention through one
variable-length call per layer (vtc.runtime.attention), as vtc runs it on a GPU.

    python bench/calibrate_memory.py --model /tmp/q3b --registry qwen2.5-vl-3b --backend unsloth --method lora \\
        --checkpointing unsloth --grid 504:1,8,32 --grid 1008:1,4,16 --out $OUT/cal-3b.json

Every configuration is appended to --out as soon as it is measured; an out-of-memory error is recorded as such.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

T0 = time.time()
if "--backend" in sys.argv and sys.argv[sys.argv.index("--backend") + 1] == "unsloth":
    from unsloth import FastVisionModel  # noqa: F401  (first, as Unsloth asks)
    from unsloth.trainer import UnslothVisionDataCollator  # noqa: F401

import torch  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))
from make_dataset import INSTRUCTION, conversations, make  # noqa: E402


def load_unsloth(args):
    from unsloth import FastVisionModel
    from unsloth.trainer import UnslothVisionDataCollator

    ckpt = {"unsloth": "unsloth", "true": True, "false": False}[args.checkpointing]
    model, tokenizer = FastVisionModel.from_pretrained(
        args.model, load_in_4bit=args.method == "qlora", full_finetuning=args.method == "full",
        use_gradient_checkpointing=ckpt)
    if args.method != "full":
        model = FastVisionModel.get_peft_model(
            model, finetune_vision_layers=True, finetune_language_layers=True, finetune_attention_modules=True,
            finetune_mlp_modules=True, r=16, lora_alpha=16, lora_dropout=0, bias="none", random_state=3407,
            use_gradient_checkpointing=ckpt)
    FastVisionModel.for_training(model)

    def collator_for(size: int):
        return UnslothVisionDataCollator(model, tokenizer, resize=size, resize_dimension="max",
                                         max_seq_length=args.max_length)

    return model, collator_for


def load_transformers(args):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from vtc.compiler.estimates import peft_regex
    from vtc.registry import load_registry

    entry = load_registry().models[args.registry]
    flags = {"vision": True, "language": True, "attention": True, "mlp": True}
    regex, _ = peft_regex(entry["family"], entry["architecture"], flags)
    model = AutoModelForImageTextToText.from_pretrained(args.model, dtype=torch.bfloat16,
                                                        attn_implementation="sdpa").to("cuda")
    if args.checkpointing != "false":
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=16, lora_dropout=0.0, target_modules=regex))
    model.train()
    processor = AutoProcessor.from_pretrained(args.model)
    pad = processor.tokenizer.pad_token_id
    image_ids = [i for i in (getattr(model.config, "image_token_id", None),
                             getattr(model.config, "image_token_index", None)) if i is not None]

    def collator_for(size: int):
        def collate(rows):
            texts = [processor.apply_chat_template(r["messages"], tokenize=False) for r in rows]
            images = [[c["image"] for c in r["messages"][0]["content"] if c["type"] == "image"] for r in rows]
            batch = processor(text=texts, images=images, return_tensors="pt", padding=True)
            labels = batch["input_ids"].clone()
            labels[labels == pad] = -100
            for i in image_ids:
                labels[labels == i] = -100
            batch["labels"] = labels
            return batch
        return collate

    return model, collator_for


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--registry", required=True, help="the registry entry whose shape the model has")
    ap.add_argument("--backend", choices=["unsloth", "transformers"], required=True)
    ap.add_argument("--method", choices=["lora", "qlora", "full"], default="lora")
    ap.add_argument("--checkpointing", choices=["unsloth", "true", "false"], default="unsloth")
    ap.add_argument("--grid", action="append", required=True, help="SIZE:MICRO,MICRO,...")
    ap.add_argument("--max-length", type=int, default=8192)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--out", required=True, type=Path)
    args = ap.parse_args()

    from vtc.runtime.attention import use_varlen_vision_attention, varlen_kernel_available

    record = {"model": args.registry, "backend": args.backend, "method": args.method,
              "checkpointing": args.checkpointing, "card": torch.cuda.get_device_name(0),
              "torch": torch.__version__, "import_s": round(time.time() - T0, 1), "points": []}

    def save() -> None:
        args.out.write_text(json.dumps(record, indent=1) + "\n")

    save()
    t = time.time()
    model, collator_for = (load_unsloth if args.backend == "unsloth" else load_transformers)(args)
    record["load_s"] = round(time.time() - t, 1)
    record["vision_attention"] = "varlen" if varlen_kernel_available() is None and \
        use_varlen_vision_attention(model) else "sdpa"
    record["trainable"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    import bitsandbytes as bnb

    optimizer = bnb.optim.AdamW8bit([p for p in model.parameters() if p.requires_grad], lr=2e-5)
    save()
    for spec in args.grid:
        size, micros = spec.split(":")
        size = int(size)
        data = Path(f"/tmp/cal-data-{size}")
        if not (data / "metadata.jsonl").exists():
            make(data, rows=64, size=size)
        rows = conversations(data, INSTRUCTION)
        collate = collator_for(size)
        for micro in (int(m) for m in micros.split(",")):
            optimizer.zero_grad(set_to_none=True)
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            point = {"size": size, "micro": micro}
            try:
                times = []
                for i in range(args.steps):
                    batch = collate([rows[(i * micro + j) % len(rows)] for j in range(micro)])
                    batch = {k: v.to("cuda") if hasattr(v, "to") else v for k, v in batch.items()}
                    s0 = time.time()
                    loss = model(**batch).loss
                    loss.backward()
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                    torch.cuda.synchronize()
                    times.append(round(time.time() - s0, 3))
                px = batch.get("pixel_values")
                point.update(
                    text_tokens_per_row=round(float(batch["attention_mask"].sum()) / micro, 1),
                    padded_length=int(batch["input_ids"].shape[1]),
                    pixel_values_shape=list(px.shape) if px is not None else None,
                    step_s=times, loss=round(float(loss), 4))
            except torch.OutOfMemoryError:
                point["oom"] = True
                batch = loss = None
            point["peak_reserved_gib"] = round(torch.cuda.max_memory_reserved() / 2 ** 30, 3)
            point["peak_allocated_gib"] = round(torch.cuda.max_memory_allocated() / 2 ** 30, 3)
            record["points"].append(point)
            save()
            print(json.dumps(point), flush=True)
    record["total_s"] = round(time.time() - T0, 1)
    save()


if __name__ == "__main__":
    main()
