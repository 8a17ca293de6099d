"""The GPU backend: Unsloth's FastVisionModel, its LoRA flags and UnslothVisionDataCollator, trained by TRL.

Import order matters. Unsloth patches transformers, TRL and PEFT when it is imported, and patches less (with a
warning) when they were imported first. So this module imports unsloth as its very first heavy import, and vtc
imports this module only once the backend has been chosen (base.choose_backend -> load_backend), before any
runtime module touches transformers: run_target and `vtc ask` call choose_backend right after compiling or reading
the plan, which imports only the compiler (and torch, to look for CUDA; torch before unsloth is fine). If
transformers was imported earlier anyway, ``self.notes`` says so in the run's log and manifest.

Unsloth's arguments are derived from the plan's values here, each in one function: from_pretrained_arguments
(FastVisionModel.from_pretrained: precision, method, max length, gradient checkpointing, seed), peft_arguments
(FastVisionModel.get_peft_model: the four finetune_* flags from plan["parts"], which pick the layers exactly as
Unsloth's notebooks do, and plan["lora"]), collator_arguments (UnslothVisionDataCollator: masking, markers, length,
resize) and sft_config (TRL's SFTConfig: base.sft_arguments, with the precision flags set from the model's dtype).

One process per GPU: nothing here assumes device 0. Under torchrun (LOCAL_RANK and WORLD_SIZE set) each process
takes its own card and loads one whole model there, as Unsloth's DDP support expects; multi-GPU runs are a later
issue, but nothing in this file stands in their way.
"""

from __future__ import annotations

import os
import sys

# Before unsloth patches anything: was transformers already imported? (It should not have been.)
_TRANSFORMERS_FIRST = "transformers" in sys.modules or "trl" in sys.modules or "peft" in sys.modules

# Compiled code goes into vtc's cache folder, keyed by the library versions (runtime/compile_cache.py): Unsloth reads
# UNSLOTH_COMPILE_LOCATION when imported, and removes TORCHINDUCTOR_CACHE_DIR, so the variables are set before and
# again after. (compile_cache imports nothing heavy.)
from vtc.runtime import compile_cache as _compile_cache  # noqa: E402

_COMPILE_CACHE = _compile_cache.prepare()

import unsloth  # noqa: E402,F401  (first: it patches transformers, trl and peft on import)
from unsloth import FastVisionModel  # noqa: E402
from unsloth.trainer import UnslothVisionDataCollator  # noqa: E402

_compile_cache.after_import(_COMPILE_CACHE)

import importlib.util  # noqa: E402
from typing import Any, Callable, Sequence  # noqa: E402

from vtc.runtime.backends.base import (BNB_OPTIMIZERS, chat_markers, data_loader_arguments,  # noqa: E402
                                       parts_match_nothing, sft_arguments, unfreeze_chosen)
from vtc.runtime.attention import apply_plan  # noqa: E402
from vtc.runtime.collator import worker_errors  # noqa: E402

# The plan's precision -> a torch dtype name; auto lets Unsloth choose (bf16 where the GPU supports it, else fp16).
_DTYPES = {"auto": None, "bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


FIRST_STEP_NOTE = ("  first step: Unsloth compiles the model for this GPU, which takes a minute or more; "
                   "this is expected, and the steps after it are fast")
# Measured on an H200 (docs/gpu.md, issue 12): with vtc's compile cache warm, the first step of the Qwen2.5-VL 3B
# shape took 20 s instead of 74 s.
FIRST_STEP_WARM_NOTE = ("  first step: Unsloth loads the code compiled by an earlier run from vtc's cache; the "
                        "first step still takes longer than the next ones")
# Measured on an H100: the first generation with a tiny model took 30-50 s (compiling), later batches ~0.1 s.
FIRST_GENERATION_NOTE = ("  first generation: Unsloth compiles the model for this GPU, which can take a minute; "
                         "this is expected")
_generation_noted = False


def local_rank() -> int:
    """This process's GPU under torchrun (LOCAL_RANK), else 0."""
    try:
        return int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        return 0


def distributed() -> bool:
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


def torch_dtype(precision: str):
    """The plan's precision as a torch dtype; auto is None (Unsloth chooses)."""
    import torch

    name = _DTYPES[precision]
    return getattr(torch, name) if name else None


def from_pretrained_arguments(plan: dict, model_path: str) -> dict:
    """FastVisionModel.from_pretrained's arguments: the model from where it is now (a local folder or a Hub id),
    4-bit weights for qlora, 16-bit for lora, full fine-tuning's own switch (neither 4- nor 16-bit flag: Unsloth
    loads full precision for it), Unsloth's offloaded gradient checkpointing when the plan keeps checkpointing on."""
    method, training = plan["method"], plan["training"]
    return {
        "model_name": model_path, "max_seq_length": training["max_length"], "dtype": torch_dtype(plan["precision"]),
        "load_in_4bit": method == "qlora", "load_in_16bit": method == "lora", "full_finetuning": method == "full",
        "use_gradient_checkpointing": "unsloth" if training["gradient_checkpointing"] else False,
        "trust_remote_code": plan["model"]["trust_remote_code"], "random_state": training["seed"],
    }


def peft_arguments(plan: dict) -> dict:
    """FastVisionModel.get_peft_model's arguments: the four finetune_* flags and the adapter. When the projector
    trains, also the plan's target_modules regex (Unsloth's flags never target the projector: its regex keeps
    only Linear leaves that repeat, ../shared/reference/unsloth-vision.md) and, under `projector full`, its
    modules_to_save."""
    parts, lora, training = plan["parts"], plan["lora"], plan["training"]
    extra: dict[str, Any] = {}
    if parts["projector"] != "frozen":
        extra["target_modules"] = lora["target_modules"]
        if lora["modules_to_save"]:
            extra["modules_to_save"] = list(lora["modules_to_save"])
    return {**extra,
        "finetune_vision_layers": parts["vision"], "finetune_language_layers": parts["language"],
        "finetune_attention_modules": parts["attention"], "finetune_mlp_modules": parts["mlp"],
        "r": lora["rank"], "lora_alpha": lora["alpha"], "lora_dropout": lora["dropout"], "bias": lora["bias"],
        "use_rslora": lora["rslora"], "random_state": training["seed"],
        "use_gradient_checkpointing": "unsloth" if training["gradient_checkpointing"] else False,
    }


def collator_arguments(plan: dict) -> dict:
    """UnslothVisionDataCollator's arguments. Images reach it already standardised by vtc (images.resize), so its
    own resize is the same size: the longest side (resize_dimension "max"; its default compares the width only),
    the exact (W, H), or "max" (no resize) for `resize none` and for a pixel budget (each image has its own size
    there; the collator's smart_resize, multiples of 28 within 4x28x28..16384x28x28 px, leaves vtc's budgeted
    Qwen-VL images as they are, since the compiler keeps every budget within those bounds)."""
    resize = plan["images"]["resize"]
    training = plan["training"]
    kwargs: dict[str, Any] = {"max_seq_length": training["max_length"],
                              "train_on_responses_only": training["responses_only"]}
    if resize["mode"] == "longest":
        kwargs.update(resize=resize["size"], resize_dimension="max")
    elif resize["mode"] == "exact":
        kwargs["resize"] = tuple(resize["size"])
    else:  # none, pixels: no resize of the collator's own
        kwargs["resize"] = "max"
    if training["responses_only"]:
        kwargs["instruction_part"], kwargs["response_part"] = chat_markers(plan)
    return kwargs


class VtcUnslothCollator(UnslothVisionDataCollator):
    """UnslothVisionDataCollator over lazily opened rows.

    TRL's SFTTrainer takes only a `datasets` Dataset, and one holding the rows would hold every image in memory.
    So the trainer's dataset holds row numbers ({"row": i}), and this collator opens the rows of each batch from
    ``self.rows`` (vtc's lazy Rows) before Unsloth's collator sees them. Rows given directly (dicts with
    "messages") pass through unchanged. Being a subclass keeps Unsloth's trainer treating it as its own collator.
    It runs in the data-loading workers when the plan has them (it touches no CUDA: its tensors stay on the CPU
    until the trainer moves the batch), and an error there reaches the run whole (collator.worker_errors).
    """

    def __call__(self, examples):
        with worker_errors():
            rows = getattr(self, "rows", None)
            if rows is not None:
                examples = [rows[e["row"]] if "row" in e and "messages" not in e else e for e in examples]
            return super().__call__(examples)


class UnslothBackend:
    """FastVisionModel + UnslothVisionDataCollator + TRL's SFTTrainer (as patched by Unsloth). CUDA only."""

    name = "unsloth"

    def __init__(self) -> None:
        self.notes: list[str] = []
        self.model_path: str | None = None
        if _TRANSFORMERS_FIRST:
            self._note("transformers was imported before unsloth, so Unsloth could patch less than usual")
        for note in _COMPILE_CACHE.notes:  # where compiled code goes, and whether an earlier run left some
            self._note(note)

    # ---- loading -------------------------------------------------------------------------------------------
    def _from_pretrained_kwargs(self, plan: dict, model_path: str) -> dict:
        import torch

        kwargs = from_pretrained_arguments(plan, model_path)
        if kwargs["load_in_4bit"] and importlib.util.find_spec("bitsandbytes") is None:
            # Unsloth would switch to 16 bit with a printed line; say it once, in vtc's log and the manifest.
            self._note("`using qlora` needs bitsandbytes, which is not installed: Unsloth loads the model in 16 bit")
        if torch.cuda.is_available():
            rank = local_rank()
            torch.cuda.set_device(rank)
            if distributed():
                # One whole model per process on its own card (Unsloth cannot split a vision model across GPUs).
                kwargs["device_map"] = {"": rank}
        return kwargs

    def load(self, plan: dict, model_path: str):
        """FastVisionModel.from_pretrained, then get_peft_model with the plan's flags (or, for full fine-tuning,
        exactly the parameters of plan["trainable_regex"] left trainable)."""
        kwargs = self._from_pretrained_kwargs(plan, model_path)
        model, processor = FastVisionModel.from_pretrained(**kwargs)
        self.model_path = model_path
        self._vision_attention(plan, model)
        if plan["method"] == "full":
            unfreeze_chosen(model, plan)  # Unsloth's full_finetuning trains every weight; the parts may ask for fewer
            return model, processor
        try:
            model = FastVisionModel.get_peft_model(model, **peft_arguments(plan))
        except RuntimeError as exc:
            # unsloth_zoo.peft_utils.get_peft_regex: "No layers to finetune ..." / "No modules to finetune ..."
            if "to finetune" in str(exc):
                raise parts_match_nothing(plan) from None
            raise
        return model, processor

    def load_trained(self, plan: dict, model_path: str, run_model_dir: str):
        """The base model (from where it is now) with a run's adapter, or a run's fully fine-tuned model; ready to
        generate. The processor comes from the run folder."""
        from transformers import AutoProcessor

        kwargs = self._from_pretrained_kwargs(plan, model_path)
        kwargs["full_finetuning"] = False
        kwargs["use_gradient_checkpointing"] = False
        if plan["method"] == "full":
            kwargs["model_name"] = run_model_dir
            model, _ = FastVisionModel.from_pretrained(**kwargs)
        else:
            from peft import PeftModel

            base, _ = FastVisionModel.from_pretrained(**kwargs)
            model = PeftModel.from_pretrained(base, run_model_dir, is_trainable=False)
        self.model_path = model_path
        self._vision_attention(plan, model)
        processor = AutoProcessor.from_pretrained(run_model_dir, trust_remote_code=plan["model"]["trust_remote_code"])
        self.for_inference(model)
        return model, processor

    # ---- training ------------------------------------------------------------------------------------------
    def collator(self, plan: dict, model, processor) -> Callable[[list], dict]:
        """UnslothVisionDataCollator with the plan's masking, markers, length limit and resize. Video parts go to it
        as vtc opens them (frames, fps, resized_height/width: the list branch of unsloth_zoo's fetch_video, which
        resizes each frame to exactly resized_* and takes the rate from "fps"); the video processor gets the plan's
        frame bounds so that it resizes nothing again (collator.set_video_bounds)."""
        from vtc.runtime.collator import set_video_bounds

        set_video_bounds(processor, plan["video"])
        return VtcUnslothCollator(model, processor, **collator_arguments(plan))

    def sft_config(self, plan: dict, model, output_dir: str, report_to: list[str] | None = None):
        """TRL's SFTConfig from the plan (base.sft_arguments): precision from the loaded model's dtype and an
        optimizer this machine can run."""
        import torch
        from trl import SFTConfig

        args = sft_arguments(plan, output_dir, report_to or ["none"])
        optim = args["optim"]
        if optim in BNB_OPTIMIZERS and importlib.util.find_spec("bitsandbytes") is None:
            self._note(f"optimizer {optim} needs bitsandbytes, which is not installed: using adamw_torch")
            optim = "adamw_torch"
        dtype = getattr(model, "dtype", None)
        # Mixed precision must match the weights: Unsloth refuses bf16 flags on a float16 model and vice versa.
        args.update(optim=optim, bf16=dtype == torch.bfloat16, fp16=dtype == torch.float16)
        # Unsloth trains on a CUDA GPU only: the plan's rule for a GPU (workers, pinned memory: Unsloth then copies
        # the batches to the GPU without blocking, unsloth.models._utils._unsloth_non_blocking_batches).
        loading, notes = data_loader_arguments(plan, "gpu", args["per_device_train_batch_size"])
        args.update(loading)
        for note in notes:
            self._note(note)
        if distributed():
            args["ddp_find_unused_parameters"] = False
        return SFTConfig(**args)

    def trainer(self, plan: dict, model, processor, train_rows: Sequence, collator: Callable, output_dir: str,
                callbacks: list, report_to: list[str] | None = None):
        """Unsloth's patched SFTTrainer over the rows, with a line before the first (compiling) step."""
        from transformers import TrainerCallback
        from trl import SFTTrainer

        class FirstStepNote(TrainerCallback):
            def on_train_begin(self, args, state, control, **kw):
                if state.is_local_process_zero:
                    warm = _COMPILE_CACHE.state in ("warm", "partly warm")
                    print(FIRST_STEP_WARM_NOTE if warm else FIRST_STEP_NOTE, flush=True)

        from datasets import Dataset

        cfg = self.sft_config(plan, model, output_dir, report_to)
        dataset = Dataset.from_dict({"row": list(range(len(train_rows)))})
        if isinstance(collator, VtcUnslothCollator):
            collator.rows = train_rows
        else:  # any other collator gets the rows themselves
            inner = collator

            def collator(batch):
                with worker_errors():
                    return inner([train_rows[item["row"]] for item in batch])
        return SFTTrainer(model=model, args=cfg, train_dataset=dataset, data_collator=collator,
                          processing_class=processor, callbacks=[FirstStepNote(), *callbacks])

    def for_inference(self, model) -> None:
        global _generation_noted
        if not _generation_noted and local_rank() == 0:
            _generation_noted = True
            print(FIRST_GENERATION_NOTE, flush=True)
        FastVisionModel.for_inference(model)

    def for_training(self, model) -> None:
        FastVisionModel.for_training(model)

    # ---- saving --------------------------------------------------------------------------------------------
    def save_adapter(self, model, processor, out_dir: str) -> None:
        """PEFT adapter (adapter_config.json + adapter_model.safetensors) and the processor; for full fine-tuning
        the whole model. Loads with FastVisionModel.from_pretrained and with plain transformers + PEFT."""
        model.save_pretrained(out_dir)
        processor.save_pretrained(out_dir)

    def save_merged(self, model, processor, out_dir: str) -> None:
        """LoRA merged into 16-bit weights by Unsloth (save_method="merged_16bit"), with the processor."""
        model.save_pretrained_merged(out_dir, processor, save_method="merged_16bit")

    def _vision_attention(self, plan: dict, model) -> None:
        note = apply_plan(plan, model)
        if note:
            self._note(note)

    def _note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

