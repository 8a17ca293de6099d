"""Shared by the runtime tests: hand-written plans (docs/internals.md, plan_version 1) and a tiny shapes dataset.

The LoRA target regexes here are written independently of the compiler, from Unsloth's selection rules
(shared/reference/unsloth-vision.md), so that the tests check the runtime against Unsloth, not against itself.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

COLOURS = {"red": (220, 30, 30), "green": (30, 170, 30), "blue": (30, 60, 220), "yellow": (240, 210, 20)}
SHAPES = ("circle", "square", "triangle")

# Module names (transformers 5.17) by tower and kind, per family; projector and lm_head are never listed.
MODULES = {
    "qwen2_5_vl": {
        ("vision", "attention"): r"model\.visual\.blocks\.\d+\.attn\.(qkv|proj)",
        ("vision", "mlp"): r"model\.visual\.blocks\.\d+\.mlp\.(gate_proj|up_proj|down_proj)",
        ("language", "attention"): r"model\.language_model\.layers\.\d+\.self_attn\.(q_proj|k_proj|v_proj|o_proj)",
        ("language", "mlp"): r"model\.language_model\.layers\.\d+\.mlp\.(gate_proj|up_proj|down_proj)",
    },
    "mllama": {
        ("vision", "attention"):
            r"model\.vision_model\.(transformer|global_transformer)\.layers\.\d+\.self_attn\.(q_proj|k_proj|v_proj|o_proj)",
        ("vision", "mlp"): r"model\.vision_model\.(transformer|global_transformer)\.layers\.\d+\.mlp\.(fc1|fc2)",
        ("language", "attention"):
            r"model\.language_model\.layers\.\d+\.(self_attn|cross_attn)\.(q_proj|k_proj|v_proj|o_proj)",
        ("language", "mlp"): r"model\.language_model\.layers\.\d+\.mlp\.(gate_proj|up_proj|down_proj)",
    },
}

FAMILY_OF = {"tiny-qwen2.5-vl": "qwen2_5_vl", "tiny-llama-3.2-vision": "mllama"}
MARKERS = {
    "qwen2_5_vl": {"instruction_part": "<|im_start|>user\n", "response_part": "<|im_start|>assistant\n"},
    "mllama": {"instruction_part": "<|start_header_id|>user<|end_header_id|>\n\n",
               "response_part": "<|start_header_id|>assistant<|end_header_id|>\n\n"},
}


def target_regex(family: str, parts: dict) -> str:
    towers = [t for t in ("vision", "language") if parts.get(t)]
    kinds = [k for k in ("attention", "mlp") if parts.get(k)]
    alts = [MODULES[family][(t, k)] for t in towers for k in kinds]
    return "(" + "|".join(f"(?:{a})" for a in alts) + ")"


def make_plan(data_dir, *, model="tiny-qwen2.5-vl", parts=None, method="lora", steps=8, lr=2e-3, batch=4,
              holdout=None, eval_dir=None, metrics=("exact_match",), max_new_tokens=4, outputs_dir=None,
              exports=("adapter",), responses_only=True, source="tiny", model_id=None, r=16) -> dict:
    """A plan as the compiler would write it for a small LoRA run on the tiny model."""
    parts = parts or {"vision": True, "language": True, "attention": True, "mlp": True}
    family = FAMILY_OF.get(model, "qwen2_5_vl")
    data_dir = Path(data_dir)
    markers = MARKERS[family]
    regex = target_regex(family, parts)
    return {
        "plan_version": 1,
        "vtc_version": "0.1.0",
        "recipe": {"file": "test.vt", "files": ["test.vt"]},
        "base_dir": str(data_dir.parent),
        "model": {"name": model, "source": source, "id": model_id or model, "family": family, "markers": markers,
                  "geometry": {"kind": "patches", "patch_size": 14, "merge_size": 2, "min_pixels": 3136,
                               "max_pixels": 50176},
                  "trust_remote_code": False},
        "method": method,
        "parts": dict(parts),
        "unsloth": {"from_pretrained": {"model_name": model, "max_seq_length": 512, "dtype": None,
                                        "load_in_4bit": method == "qlora", "load_in_16bit": False,
                                        "full_finetuning": method == "full", "use_gradient_checkpointing": "unsloth",
                                        "trust_remote_code": False, "random_state": 3407},
                    "get_peft_model": None if method == "full" else {
                        "finetune_vision_layers": parts["vision"], "finetune_language_layers": parts["language"],
                        "finetune_attention_modules": parts["attention"], "finetune_mlp_modules": parts["mlp"],
                        "r": r, "lora_alpha": r, "lora_dropout": 0.0, "bias": "none", "random_state": 3407,
                        "use_rslora": False}},
        "peft": None if method == "full" else {"target_modules": regex, "r": r, "lora_alpha": r, "lora_dropout": 0.0,
                                              "bias": "none", "use_rslora": False, "modules_to_save": None},
        "trainable_regex": regex + r"\.(weight|bias)" if method == "full" else None,
        "data": {"train": {"source": data_dir.name, "kind": "path", "split": None},
                 "eval": {"source": str(eval_dir), "kind": "path", "split": None} if eval_dir else None,
                 "holdout": holdout, "instruction": "What colour is the shape?", "system": None,
                 "answer": {"from": "auto", "column": None}, "image_column": None},
        "images": {"resize": {"mode": "longest", "size": 112}},
        "collator": {"train_on_responses_only": responses_only, **markers, "max_seq_length": 512,
                     "resize": 112, "ignore_index": -100},
        "sft": {"per_device_train_batch_size": batch, "gradient_accumulation_steps": 1, "warmup_steps": 0,
                "max_steps": steps, "num_train_epochs": 1, "learning_rate": lr, "lr_scheduler_type": "constant",
                "optim": "adamw_8bit", "weight_decay": 0.0, "seed": 3407, "logging_steps": 1, "report_to": "none",
                "remove_unused_columns": False, "dataset_text_field": "",
                "dataset_kwargs": {"skip_prepare_dataset": True}, "max_length": 512},
        "evaluation": {"metrics": list(metrics), "max_new_tokens": max_new_tokens},
        "outputs": {"dir": str(outputs_dir or data_dir.parent / "runs"), "exports": list(exports)},
        "hardware": {"gpus": 1},
        "estimates": {},
        "provenance": {},
    }


def shape_image(colour: str, shape: str, size: int = 112, seed: int = 0):
    from PIL import Image, ImageDraw

    rnd = random.Random(seed)
    im = Image.new("RGB", (size, size), "white")
    d = ImageDraw.Draw(im)
    m = rnd.randint(10, 22)
    box = (m, m, size - m, size - m)
    fill = COLOURS[colour]
    if shape == "circle":
        d.ellipse(box, fill=fill)
    elif shape == "square":
        d.rectangle(box, fill=fill)
    else:
        d.polygon([(size // 2, m), (size - m, size - m), (m, size - m)], fill=fill)
    return im


def make_shapes(folder, n: int = 16, seed: int = 0) -> Path:
    """An imagefolder dataset (metadata.jsonl + PNGs): the answer is the shape's colour."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rnd = random.Random(seed)
    with open(folder / "metadata.jsonl", "w", encoding="utf-8") as f:
        for i in range(n):
            colour, shape = rnd.choice(list(COLOURS)), rnd.choice(SHAPES)
            shape_image(colour, shape, seed=seed * 1000 + i).save(folder / f"img-{i:03d}.png")
            f.write(json.dumps({"file_name": f"img-{i:03d}.png", "text": colour}) + "\n")
    return folder


def write_plan(plan: dict, path) -> Path:
    path = Path(path)
    path.write_text(json.dumps(plan, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path
