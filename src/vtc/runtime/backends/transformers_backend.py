"""The portable backend: transformers + PEFT + TRL, on CPU or a CUDA GPU.

It reads the plan only, and derives each library's arguments in one place: PEFT's LoraConfig from plan["lora"]
(load), full fine-tuning's parameters from plan["trainable_regex"], TRL's SFTConfig from plan["training"]
(base.sft_arguments + sft_config), the collator from plan["training"] and the model's markers (collator). What it
has to change to run on this machine (an optimizer that needs bitsandbytes, 16-bit precision on a CPU) is listed in
``self.notes`` for the log and the manifest, never silently.
"""

from __future__ import annotations

import functools
import importlib.util
import re
import tempfile
from typing import Any, Callable, Sequence

from vtc.diagnostics import VtcError, error
from vtc.runtime.backends.base import (BNB_OPTIMIZERS, chat_markers, data_loader_arguments, parts_match_nothing,
                                       sft_arguments, unfreeze_chosen)
from vtc.runtime.attention import apply_plan
from vtc.runtime.collator import worker_errors


# Kept in 16 bit in a 4-bit load, as Unsloth does: the vision tower, the projector and the LM head are small and
# sensitive to quantisation.
_SKIP_4BIT = ["visual", "vision_tower", "vision_model", "merger", "multi_modal_projector", "lm_head"]


def device_kind() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def compute_dtype(plan: dict):
    """Weights' dtype: the plan's precision on a GPU (auto: bf16 where the GPU supports it, else fp16), fp32 on the
    CPU."""
    import torch

    if device_kind() != "cuda":
        return torch.float32
    precision = plan["precision"]
    if precision == "fp32":  # a plan edited for exact comparisons (tests/gpu parity): no autocast
        return torch.float32
    if precision == "fp16":
        return torch.float16
    if precision == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


class TransformersBackend:
    """transformers + PEFT + TRL. One instance per run (it remembers the model path and the notes)."""

    name = "transformers"

    def __init__(self) -> None:
        self.notes: list[str] = []
        self.model_path: str | None = None

    # ---- loading -------------------------------------------------------------------------------------------
    def _load_base(self, plan: dict, model_path: str, *, for_training: bool = True):
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        cuda = device_kind() == "cuda"
        dtype = compute_dtype(plan)
        trust = plan["model"]["trust_remote_code"]
        kwargs: dict[str, Any] = {"dtype": dtype, "trust_remote_code": trust}
        if plan["method"] == "qlora" and for_training:
            from vtc.runtime.backends.base import plan_span

            if not cuda:
                raise VtcError(error(
                    "VT504", "`using qlora` loads the model in 4 bit, which needs a CUDA GPU, and none was found",
                    plan_span(plan, "/method"),
                    help="write `using lora` in the recipe to train in full precision on this machine"))
            if importlib.util.find_spec("bitsandbytes") is None:
                raise VtcError(error(
                    "VT504", "`using qlora` needs the bitsandbytes package, which is not installed",
                    plan_span(plan, "/method"),
                    help="`pip install bitsandbytes`, or write `using lora` in the recipe"))
            from transformers import BitsAndBytesConfig

            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=dtype, llm_int8_skip_modules=_SKIP_4BIT)
        if cuda and not (for_training and sharded(plan)):
            kwargs["device_map"] = {"": torch.cuda.current_device()}
        # Sharded (`shard model`, several processes): loaded on the CPU, then accelerate's fully_shard moves each
        # process's 1/N to its GPU: the whole model never sits on one card.
        model = AutoModelForImageTextToText.from_pretrained(model_path, **kwargs)
        processor = AutoProcessor.from_pretrained(model_path, trust_remote_code=trust)
        self.model_path = model_path
        note = apply_plan(plan, model)  # Qwen-VL's vision tower: one attention call per layer on a GPU
        if note:
            self._note(note)
        return model, processor

    def load(self, plan: dict, model_path: str):
        """Load model and processor; apply LoRA from plan["lora"], or unfreeze plan["trainable_regex"]."""
        import torch

        model, processor = self._load_base(plan, model_path)
        if plan["method"] == "full":
            unfreeze_chosen(model, plan)
            return model, processor

        from peft import LoraConfig, get_peft_model

        cfg = plan["lora"]
        target = re.compile(cfg["target_modules"])
        linear = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and target.fullmatch(n)]
        if not linear:
            raise parts_match_nothing(plan)
        if plan["method"] == "qlora":
            from peft import prepare_model_for_kbit_training

            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        lora = LoraConfig(
            r=cfg["rank"], lora_alpha=cfg["alpha"], lora_dropout=cfg["dropout"], bias=cfg["bias"],
            use_rslora=cfg["rslora"], target_modules=cfg["target_modules"], task_type="CAUSAL_LM",
            # `projector full`: the projector's modules train in full beside the adapter and are saved with it
            modules_to_save=list(cfg["modules_to_save"]) or None)
        # The LoRA A matrices are random: seed them like Unsloth's random_state so that a run is repeatable.
        torch.manual_seed(plan["training"]["seed"])
        model = get_peft_model(model, lora)
        return model, processor

    def load_trained(self, plan: dict, model_path: str, run_model_dir: str):
        """Base model + the run's adapter (or the run's fully fine-tuned model), ready to generate."""
        from transformers import AutoProcessor

        if plan["method"] == "full":
            model, _ = self._load_base(plan, run_model_dir, for_training=False)
        else:
            from peft import PeftModel

            base, _ = self._load_base(plan, model_path, for_training=False)
            model = PeftModel.from_pretrained(base, run_model_dir)
        processor = AutoProcessor.from_pretrained(run_model_dir, trust_remote_code=plan["model"]["trust_remote_code"])
        self.for_inference(model)
        return model, processor

    # ---- training ------------------------------------------------------------------------------------------
    def collator(self, plan: dict, model, processor) -> Callable[[list], dict]:
        from vtc.runtime.collator import VisionCollator, set_video_bounds

        instruction_part, response_part = chat_markers(plan)
        set_video_bounds(processor, plan["video"])  # clips reach the model at the size vtc gave their frames
        return VisionCollator(
            processor, train_on_responses_only=plan["training"]["responses_only"], instruction_part=instruction_part,
            response_part=response_part, max_seq_length=plan["training"]["max_length"])

    def sft_config(self, plan: dict, output_dir: str, report_to: list[str]):
        """TRL's SFTConfig from the plan, with what this machine needs (precision, optimizer) and the notes."""
        from trl import SFTConfig

        args = sft_arguments(plan, output_dir, report_to)
        cuda = device_kind() == "cuda"
        optim = args["optim"]
        if optim in BNB_OPTIMIZERS and not (cuda and importlib.util.find_spec("bitsandbytes") is not None):
            why = "no CUDA GPU" if not cuda else "bitsandbytes is not installed"
            self._note(f"optimizer {optim} needs bitsandbytes on a CUDA GPU ({why}): using adamw_torch")
            optim = "adamw_torch"
        args["optim"] = optim
        if cuda:
            import torch

            dtype = compute_dtype(plan)
            args.update(bf16=dtype == torch.bfloat16, fp16=dtype == torch.float16)
        else:
            args.update(bf16=False, fp16=False)
            self._note("no CUDA GPU: training in 32-bit floating point on the CPU")
        # Gradient checkpointing trades compute for GPU memory; on the CPU memory is not the limit, so it is off.
        args["gradient_checkpointing"] = plan["training"]["gradient_checkpointing"] and cuda
        if args["gradient_checkpointing"]:
            args["gradient_checkpointing_kwargs"] = {"use_reentrant": False}
        loading, notes = data_loader_arguments(plan, "gpu" if cuda else "cpu", args["per_device_train_batch_size"])
        args.update(loading)
        for note in notes:
            self._note(note)
        if not cuda:
            args["use_cpu"] = True
        args.update(fsdp_arguments(plan))
        return SFTConfig(**args)

    def trainer(self, plan: dict, model, processor, train_rows: Sequence, collator: Callable, output_dir: str,
                callbacks: list, report_to: list[str] | None = None):
        """An SFTTrainer over the rows. Rows stay lazy: the trainer's dataset holds row numbers, and the collator
        opens the images of each batch only, in the data-loading workers when the plan has them (an error there
        reaches the run whole: collator.worker_errors)."""
        from datasets import Dataset

        cfg = self.sft_config(plan, output_dir, report_to or ["none"])
        index = Dataset.from_dict({"row": list(range(len(train_rows)))})

        def collate(batch: list[dict]) -> dict:
            with worker_errors():
                return collator([train_rows[item["row"]] for item in batch])

        cls = sft_trainer_class(device_kind() == "cuda")
        trainer = cls(model=model, args=cfg, train_dataset=index, data_collator=collate, processing_class=processor,
                      callbacks=callbacks)
        if cfg.fsdp and not trainer.is_fsdp_enabled:
            # accelerate 1.15 takes its FSDP plugin for GPU runs only (state.py: the MULTI_GPU kinds); on the CPU
            # the processes train with DDP, each holding the whole model. Said, never silent.
            self._note("`shard model`: accelerate shards a model across GPUs only; on the CPU each process holds "
                       "the whole model (data parallel)")
        return trainer

    def for_inference(self, model) -> None:
        model.eval()
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        base.config.use_cache = True

    def for_training(self, model) -> None:
        model.train()

    # ---- saving --------------------------------------------------------------------------------------------
    def save_adapter(self, model, processor, out_dir: str) -> None:
        """PEFT adapter (adapter_config.json + adapter_model.safetensors) and the processor; for full fine-tuning
        the whole model. A sharded model (FSDP2) is gathered whole first: every process must call this (a
        collective), and only rank 0 writes."""
        gathered, state = full_state_dict(model)
        if gathered and state is None:
            return  # not rank 0: its part went into rank 0's copy
        model.save_pretrained(out_dir, **({"state_dict": state} if gathered else {}))
        processor.save_pretrained(out_dir)

    def save_merged(self, model, processor, out_dir: str) -> None:
        """LoRA merged into a fresh 16-bit (bf16) copy of the base model, so a 4-bit training base never leaks
        rounding into the merged weights."""
        import torch
        from peft import PeftModel
        from transformers import AutoModelForImageTextToText

        gathered, state = full_state_dict(model)  # sharded (FSDP2): every process calls, rank 0 writes
        if gathered and state is None:
            return
        if not hasattr(model, "merge_and_unload"):  # full fine-tuning: the model is already whole
            if gathered:
                model.save_pretrained(out_dir, state_dict={k: v.to(torch.bfloat16) if v.is_floating_point() else v
                                                           for k, v in state.items()})
            else:
                model.to(torch.bfloat16).save_pretrained(out_dir)
            processor.save_pretrained(out_dir)
            return
        with tempfile.TemporaryDirectory() as tmp:
            model.save_pretrained(tmp, **({"state_dict": state} if gathered else {}))
            base = AutoModelForImageTextToText.from_pretrained(self.model_path, dtype=torch.bfloat16,
                                                               trust_remote_code=False)
            merged = PeftModel.from_pretrained(base, tmp).merge_and_unload()
            merged.save_pretrained(out_dir)
        processor.save_pretrained(out_dir)

    def sharded_weights(self, model) -> bool:
        """Whether FSDP2 split the model's weights across the processes: then generating and saving are collectives
        that every process makes alike (evaluate.answer_rows, run._take_part_in_saving)."""
        from torch.distributed.tensor import DTensor

        return any(isinstance(p, DTensor) for p in model.parameters())

    def _note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)


def sharded(plan: dict) -> bool:
    """Whether this process trains a sharded model: the plan says `shard model` (hardware.distributed.strategy
    "fsdp2") and the run has several processes (one process: nothing to shard across, nothing changes)."""
    from vtc.runtime.distributed import world

    return plan["hardware"]["distributed"]["strategy"] == "fsdp2" and world().size > 1


def fsdp_arguments(plan: dict) -> dict:
    """The Trainer's FSDP2 arguments for a sharded run (accelerate's FullyShardedDataParallelPlugin through
    TrainingArguments.fsdp_config, transformers 5.17), else none.

    * version 2: FSDP2 (torch's fully_shard: each parameter split across the processes);
    * TRANSFORMER_BASED_WRAP: one shard unit per decoder layer and vision block (the classes the model lists in
      _no_split_modules, e.g. Qwen2_5_VLDecoderLayer and Qwen2_5_VLVisionBlock), so that a process gathers one
      layer's weights at a time;
    * reshard_after_forward: each layer's gathered weights are freed after its forward (gathered again for the
      backward): the least memory, which is why a recipe shards;
    * FULL_STATE_DICT: checkpoints hold the whole model (gathered on rank 0), loadable with any number of
      processes (resume with another world size);
    * cpu_ram_efficient_loading off: every process loads the model on the CPU before it is sharded (host memory:
      the model's size per process; turning it on loads it on rank 0 only: not yet tried on several GPUs)."""
    if not sharded(plan):
        return {}
    return {"fsdp": True, "fsdp_config": {
        "version": 2, "auto_wrap_policy": "TRANSFORMER_BASED_WRAP", "reshard_after_forward": True,
        "state_dict_type": "FULL_STATE_DICT", "cpu_ram_efficient_loading": False}}


def full_state_dict(model) -> tuple[bool, dict | None]:
    """(sharded, state dict): for a model sharded by FSDP2 (its parameters are DTensors), the whole state dict,
    gathered on rank 0 in host memory (None on the other ranks; every rank must call: it is a collective); for any
    other model (False, None): save it as it is."""
    from torch.distributed.tensor import DTensor

    if not any(isinstance(p, DTensor) for p in model.parameters()):
        return False, None
    import torch.distributed as dist
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return True, (state if dist.get_rank() == 0 else None)


@functools.cache  # one class per process, so that isinstance checks and pickling see the same class
def sft_trainer_class(cuda: bool):
    """TRL's SFTTrainer, or on a machine without CUDA a subclass that computes the loss the way
    transformers.Trainer does.

    TRL 1.15 always computes its loss through a fused LM head written in Triton (trl.kernels), which runs only on a
    CUDA GPU ("0 active drivers" / "'NoneType' object has no attribute 'apply'" on a CPU), and SFTConfig has no
    switch for it. Trainer.compute_loss calls the model with its labels: the model's own cross-entropy, the same
    loss without the fusion. TRL's token accuracy and entropy metrics are not logged on this path.
    """
    from trl import SFTTrainer

    try:
        from trl.trainer.utils import _ChunkedLogProbFunction as fused
    except ImportError:  # other TRL versions: treat the fused path as unavailable
        fused = None
    if cuda and fused is not None:
        return SFTTrainer
    from transformers import Trainer

    class PortableSFTTrainer(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            inputs["use_cache"] = False
            return Trainer.compute_loss(self, model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)

    return PortableSFTTrainer
