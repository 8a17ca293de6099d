"""Benchmark stack (b): Unsloth's Qwen2.5-VL vision notebook, written by hand, with nothing from vtc.

The cells of the notebook (Qwen2.5_VL_(7B)-Vision.ipynb), in order: FastVisionModel.from_pretrained,
FastVisionModel.get_peft_model with the four finetune_* flags, the data set converted to conversations,
FastVisionModel.for_training, SFTTrainer with UnslothVisionDataCollator and the notebook's SFTConfig. Changes
from the notebook, each because the benchmark asks for it: a local model folder (no network), 16-bit LoRA instead
of 4-bit (load_in_4bit=False), the batch and accumulation from the command line (the notebook's 2 x 4 by default in
bench/bench_gpu.py), LoRA r=16 on all layers (the notebook's flags are
already all True), max_steps from the command line, and the collator's responses_only left off as in the notebook.

    python bench/notebook_baseline.py --model /tmp/qwen3b --data /tmp/bench-data --steps 25
"""

import argparse
import json
import time

T0 = time.time()

from unsloth import FastVisionModel  # noqa: E402  (first, as Unsloth asks)
from unsloth.trainer import UnslothVisionDataCollator  # noqa: E402

T_IMPORT = time.time()

import torch  # noqa: E402
from trl import SFTConfig, SFTTrainer  # noqa: E402

from make_dataset import INSTRUCTION, conversations  # noqa: E402  (bench/, no vtc)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--accumulate", type=int, default=1)
    ap.add_argument("--then", default=None, help="MICRO,ACCUMULATE,STEPS: a second training of the same model "
                    "in the same process (the benchmark's (b'): the notebook at vtc's micro-batch)")
    ap.add_argument("--optim", default="adamw_8bit")
    ap.add_argument("--output-dir", default="outputs")
    ap.add_argument("--info", default=None, help="write load/import timings here (JSON)")
    args = ap.parse_args()

    model, tokenizer = FastVisionModel.from_pretrained(
        args.model,
        load_in_4bit=False,  # the benchmark compares 16-bit LoRA on all three stacks
        use_gradient_checkpointing="unsloth",
    )
    t_loaded = time.time()
    model = FastVisionModel.get_peft_model(
        model,
        finetune_vision_layers=True,
        finetune_language_layers=True,
        finetune_attention_modules=True,
        finetune_mlp_modules=True,
        r=16,
        lora_alpha=16,
        lora_dropout=0,
        bias="none",
        random_state=3407,
        use_rslora=False,
        loftq_config=None,
    )
    converted_dataset = conversations(args.data, INSTRUCTION)

    FastVisionModel.for_training(model)
    trainer = train(model, tokenizer, converted_dataset, args, args.batch, args.accumulate, args.steps)
    stats = trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    then_losses = None
    if args.then:
        micro, accumulate, steps = (int(x) for x in args.then.split(","))
        second = train(model, tokenizer, converted_dataset, args, micro, accumulate, steps)
        second.train()
        then_losses = [h["loss"] for h in second.state.log_history if "loss" in h]
    if args.info:
        with open(args.info, "w") as f:
            json.dump({"t0": T0, "import_s": T_IMPORT - T0, "load_s": t_loaded - T_IMPORT,
                       "losses": losses, "then_losses": then_losses,
                       "train_runtime": stats.metrics.get("train_runtime"),
                       "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad)}, f, indent=1)


def train(model, tokenizer, converted_dataset, args, batch: int, accumulate: int, steps: int):
    """The notebook's SFTTrainer cell."""
    return SFTTrainer(
        model=model,
        processing_class=tokenizer,
        data_collator=UnslothVisionDataCollator(model, tokenizer),
        train_dataset=converted_dataset,
        args=SFTConfig(
            per_device_train_batch_size=batch,
            gradient_accumulation_steps=accumulate,
            warmup_steps=5,
            max_steps=steps,
            learning_rate=2e-4,
            logging_steps=1,
            optim=args.optim,
            weight_decay=0.001,
            lr_scheduler_type="linear",
            seed=3407,
            output_dir=args.output_dir,
            report_to="none",
            bf16=model.dtype == torch.bfloat16,
            fp16=model.dtype == torch.float16,
            remove_unused_columns=False,
            dataset_text_field="",
            dataset_kwargs={"skip_prepare_dataset": True},
            max_length=2048,
            save_strategy="no",
        ),
    )


if __name__ == "__main__":
    main()
