"""Each backend derives its libraries' arguments from the plan in one place: Unsloth's (from_pretrained,
get_peft_model, the vision collator), PEFT's and TRL's. Checked here on plans the compiler makes, without a GPU: the
Unsloth backend module is imported over a stand-in `unsloth` package (its argument functions are pure)."""

from __future__ import annotations

import sys

import pytest

from runtime_helpers import unsloth_backend_over_stand_ins
from vtc.compiler.pipeline import compile_source

pytest.importorskip("torch")


def plan_of(text: str) -> dict:
    result = compile_source(text, "/abs/r.vt", base_dir="/abs")
    assert result.plan is not None, [d.message for d in result.diagnostics]
    return result.plan


@pytest.fixture
def unsloth_backend(monkeypatch):
    """vtc.runtime.backends.unsloth_backend imported over stand-ins for unsloth and unsloth.trainer."""
    module = unsloth_backend_over_stand_ins(monkeypatch)
    yield module
    sys.modules.pop("vtc.runtime.backends.unsloth_backend", None)


def test_unsloth_arguments_of_the_default_qlora_recipe(unsloth_backend):
    import torch

    plan = plan_of("finetune vision,mlp on qwen2.5-vl with responses_only from ./xrays resize 512\n")
    assert unsloth_backend.from_pretrained_arguments(plan, "/models/q") == {
        "model_name": "/models/q", "max_seq_length": 2048, "dtype": None, "load_in_4bit": True,
        "load_in_16bit": False, "full_finetuning": False, "use_gradient_checkpointing": "unsloth",
        "trust_remote_code": False, "random_state": 3407}
    assert unsloth_backend.peft_arguments(plan) == {
        "finetune_vision_layers": True, "finetune_language_layers": False, "finetune_attention_modules": False,
        "finetune_mlp_modules": True, "r": 16, "lora_alpha": 16, "lora_dropout": 0.0, "bias": "none",
        "use_rslora": False, "random_state": 3407, "use_gradient_checkpointing": "unsloth"}
    assert unsloth_backend.collator_arguments(plan) == {
        "max_seq_length": 2048, "train_on_responses_only": True, "resize": 512, "resize_dimension": "max",
        "instruction_part": "<|im_start|>user\n", "response_part": "<|im_start|>assistant\n"}
    assert unsloth_backend.torch_dtype("bf16") is torch.bfloat16 and unsloth_backend.torch_dtype("auto") is None


def test_unsloth_arguments_follow_every_plan_value(unsloth_backend):
    import torch

    plan = plan_of("finetune all on qwen2.5-vl-3b\nusing lora\nfrom ./x\nresize 640x480\nprecision fp16\n"
                   "without gradient_checkpointing\nlora rank 8 alpha 32 dropout 0.05\nwith rslora\nseed 7\n"
                   "max length 4096\n")
    args = unsloth_backend.from_pretrained_arguments(plan, "unsloth/Qwen2.5-VL-3B-Instruct")
    assert (args["dtype"], args["load_in_4bit"], args["load_in_16bit"], args["use_gradient_checkpointing"],
            args["random_state"], args["max_seq_length"]) == (torch.float16, False, True, False, 7, 4096)
    peft = unsloth_backend.peft_arguments(plan)
    assert (peft["r"], peft["lora_alpha"], peft["lora_dropout"], peft["use_rslora"], peft["random_state"]) == \
        (8, 32, 0.05, True, 7)
    assert all(peft[f"finetune_{k}"] for k in ("vision_layers", "language_layers", "attention_modules",
                                                 "mlp_modules"))
    assert unsloth_backend.collator_arguments(plan) == {"max_seq_length": 4096, "train_on_responses_only": False,
                                                        "resize": (640, 480)}
    full = plan_of("finetune all on qwen2.5-vl-3b\nusing full\nfrom ./x\nresize none\n")
    args = unsloth_backend.from_pretrained_arguments(full, "m")
    assert (args["load_in_4bit"], args["load_in_16bit"], args["full_finetuning"]) == (False, False, True)
    assert unsloth_backend.collator_arguments(full)["resize"] == "max"  # Unsloth's "no resize"


def test_trl_arguments_shared_by_both_backends():
    from vtc.runtime.backends.base import sft_arguments

    by_steps = sft_arguments(plan_of("finetune all on qwen2.5-vl\nfrom ./x\ntrain for 60 steps\nwarmup 3%\n"
                                     "batch 8\naccumulate 2\nschedule cosine\n"), "/out", ["none"])
    assert {k: by_steps[k] for k in ("per_device_train_batch_size", "gradient_accumulation_steps", "max_steps",
                                     "num_train_epochs", "warmup_ratio", "lr_scheduler_type", "optim", "seed",
                                     "max_length")} == {
        "per_device_train_batch_size": 8, "gradient_accumulation_steps": 2, "max_steps": 60, "num_train_epochs": 1,
        "warmup_ratio": 0.03, "lr_scheduler_type": "cosine", "optim": "adamw_8bit", "seed": 3407, "max_length": 2048}
    assert "warmup_steps" not in by_steps
    by_epochs = sft_arguments(plan_of("finetune all on qwen2.5-vl\nfrom ./x\ntrain for 2.5 epochs\n"), "/o", ["none"])
    assert (by_epochs["max_steps"], by_epochs["num_train_epochs"], by_epochs["warmup_steps"]) == (-1, 2.5, 5)


def test_transformers_backend_config_on_this_machine(tmp_path):
    pytest.importorskip("trl")
    from vtc.runtime.backends.transformers_backend import TransformersBackend

    plan = plan_of("finetune all on tiny-qwen2.5-vl\nusing lora\nfrom ./x\ntrain for 3 steps\nlearning rate 1e-3\n")
    backend = TransformersBackend()
    config = backend.sft_config(plan, str(tmp_path), ["none"])
    # Outside a run the split is the plan's own: the default batch 8, all at once (the fallback; a run chooses).
    assert (config.per_device_train_batch_size, config.gradient_accumulation_steps, config.max_steps,
            config.learning_rate, config.seed) == (8, 1, 3, 1e-3, 3407)
    assert config.optim == "adamw_torch"  # adamw_8bit needs bitsandbytes on a GPU: said in the notes
    assert any("adamw_8bit" in note for note in backend.notes)
    assert not config.gradient_checkpointing  # memory is not the limit on a CPU
