"""The Backend protocol every training backend implements, and the automatic choice between them.

Nothing here imports torch, transformers or unsloth at module import: the Unsloth backend must import unsloth before
transformers, trl and peft, so the choice is made first and the chosen backend's module is imported by name.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any, Callable, Protocol, Sequence

from vtc.diagnostics import Span, VtcError, error

# Optimizers that are bitsandbytes kernels: they need CUDA and the bitsandbytes package (both backends check).
BNB_OPTIMIZERS = frozenset({"adamw_8bit", "paged_adamw_8bit", "adamw_bnb_8bit", "paged_adamw_32bit", "lion_8bit",
                            "paged_lion_8bit", "paged_adamw", "paged_lion"})

BACKENDS = ("transformers", "unsloth")

# backend name -> (module, class); imported only when chosen
_MODULES = {
    "transformers": ("vtc.runtime.backends.transformers_backend", "TransformersBackend"),
    "unsloth": ("vtc.runtime.backends.unsloth_backend", "UnslothBackend"),
}


class Backend(Protocol):
    """What the runtime asks of a backend. See docs/internals.md."""

    name: str  # "transformers" | "unsloth"
    notes: list[str]  # what it changed to run on this machine (an optimizer, a precision), for the log and manifest

    def load(self, plan: dict, model_path: str) -> tuple[Any, Any]:
        """Load model and processor, with LoRA applied (or the full fine-tuning parameters unfrozen)."""

    def load_trained(self, plan: dict, model_path: str, run_model_dir: str) -> tuple[Any, Any]:
        """Load the base model with a run's saved adapter (or a run's fully fine-tuned model), for `vtc ask`."""

    def collator(self, plan: dict, model: Any, processor: Any) -> Callable[[list], dict]:
        """The data collator that turns a list of rows into a batch of tensors."""

    def trainer(self, plan: dict, model: Any, processor: Any, train_rows: Sequence, collator: Callable,
                output_dir: str, callbacks: list, report_to: list[str] | None = None) -> Any:
        """A TRL SFTTrainer (or compatible) configured from plan["sft"]; ``.train()`` runs it. ``report_to`` is
        the trackers besides vtc's own TensorBoard callback (["none"] for none).

        Checkpoints: ``output_dir`` is the run's checkpoints/ folder and must become ``args.output_dir``; the
        ``callbacks`` (vtc's checkpoint callback among them) must be kept. vtc's callback decides when to save
        (``control.should_save``), so ``save_strategy="no"`` is right, and the runtime resumes with
        ``trainer.train(resume_from_checkpoint=...)``: the trainer must be a transformers Trainer subclass."""

    def for_inference(self, model: Any) -> None:
        """Switch to generation: eval mode, caches on, left padding."""

    def for_training(self, model: Any) -> None:
        """Switch back to training: train mode, right padding."""

    def save_adapter(self, model: Any, processor: Any, out_dir: str) -> None:
        """Save the LoRA adapter in PEFT format (or the full model for full fine-tuning) with the processor."""

    def save_merged(self, model: Any, processor: Any, out_dir: str) -> None:
        """Merge LoRA into the base weights and save a 16-bit model with the processor."""


def sft_arguments(plan: dict, output_dir: str, report_to: list[str]) -> dict:
    """The arguments of TRL's SFTConfig that both backends share, from the plan's training values. Each backend's
    sft_config adds what its machine needs (precision flags, an optimizer it can run) and nothing else."""
    t = plan["training"]
    args = {
        "per_device_train_batch_size": t["batch"],
        "gradient_accumulation_steps": t["accumulate"],
        # A plan trains for either a number of steps or a number of epochs; -1 tells the Trainer to count epochs,
        # and num_train_epochs is ignored once max_steps is positive.
        "max_steps": t["steps"] if t["steps"] is not None else -1,
        "num_train_epochs": t["epochs"] if t["epochs"] is not None else 1,
        "learning_rate": t["learning_rate"],
        "lr_scheduler_type": t["schedule"],
        "optim": t["optimizer"],
        "weight_decay": t["weight_decay"],
        "seed": t["seed"],
        "max_length": t["max_length"],
        # vtc's progress line and metrics.jsonl show every optimizer step.
        "logging_steps": 1,
        # vtc's checkpoint callback decides when to save (control.should_save); the adapter is saved by vtc.
        "output_dir": output_dir, "save_strategy": "no", "report_to": report_to, "disable_tqdm": True,
        # The vision collators need each row whole: no column removal, no text field, no dataset preparation.
        "remove_unused_columns": False, "dataset_text_field": "", "dataset_kwargs": {"skip_prepare_dataset": True},
    }
    if t["warmup_ratio"] is not None:
        args["warmup_ratio"] = t["warmup_ratio"]
    else:
        args["warmup_steps"] = t["warmup_steps"]
    return args


def chat_markers(plan: dict) -> tuple[str | None, str | None]:
    """The model's (instruction_part, response_part) markers, (None, None) when its family is unknown."""
    markers = plan["model"]["markers"]
    return (markers["instruction_part"], markers["response_part"]) if markers else (None, None)


def unfreeze_chosen(model, plan: dict) -> None:
    """Full fine-tuning: exactly the parameters plan["trainable_regex"] names train (VT506 when it names none)."""
    import re

    pattern = re.compile(plan["trainable_regex"])
    chosen = 0
    for name, param in model.named_parameters():
        param.requires_grad = bool(pattern.fullmatch(name))
        chosen += param.requires_grad
    if not chosen:
        raise parts_match_nothing(plan)


def parts_match_nothing(plan: dict) -> VtcError:
    """VT506, at the `finetune` clause: the parts select no layer (LoRA) or no weight (full) of the loaded model."""
    what = "full fine-tuning match no weight" if plan["method"] == "full" else "LoRA match no layer"
    return VtcError(error("VT506", f"the parts chosen for {what} of this model ({plan['model']['id']})",
                          plan_span(plan, "/parts/vision"),
                          help="choose other parts in `finetune ...` (vision, language, attention, mlp)"))


def plan_span(plan: dict, pointer: str) -> Span | None:
    """Where the recipe set a plan value (from the plan's provenance, e.g. "xray.vt:2"), for diagnostics."""
    where = plan["provenance"].get(pointer, "")
    file, _, line = where.rpartition(":")
    if file and line.isdigit():
        return Span(file, int(line))
    return Span(plan["recipe"]["file"])


def cuda_available() -> bool:
    """Whether torch sees a CUDA GPU (False when torch is not installed)."""
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


def unsloth_installed() -> bool:
    """Whether unsloth could be imported, found without importing it (importing it patches transformers)."""
    try:
        return importlib.util.find_spec("unsloth") is not None
    except (ImportError, ValueError):
        return False


def _help_install_train() -> str:
    return "install the training libraries with `pip install 'vtc[train]'`"


def choose_backend(requested: str = "auto") -> tuple[Backend, str]:
    """Pick the backend: ``auto`` takes unsloth when a CUDA GPU is present and unsloth is installed, otherwise
    transformers. Returns the backend and a one-line reason for the log and the manifest.

    Raises VtcError (VT505) when a forced backend cannot run here.
    """
    if requested not in ("auto", *BACKENDS):
        raise VtcError(error("VT505", f"unknown backend `{requested}`", help="use auto, transformers or unsloth"))
    if importlib.util.find_spec("torch") is None:
        raise VtcError(error("VT505", "the training libraries (torch, transformers, peft, trl) are not installed",
                             help=_help_install_train()))
    cuda = cuda_available()
    has_unsloth = unsloth_installed()
    if requested == "auto":
        if cuda and has_unsloth:
            name, reason = "unsloth", "backend: unsloth (CUDA GPU found and unsloth installed)"
        elif cuda:
            name, reason = "transformers", (
                "backend: transformers (unsloth is not installed; `pip install 'vtc[unsloth]'` for the faster one)")
        else:
            name, reason = "transformers", "backend: transformers (no CUDA GPU found; unsloth needs one)"
    elif requested == "unsloth":
        if not cuda:
            raise VtcError(error(
                "VT505", "the unsloth backend needs a CUDA GPU, and none was found",
                help="run without `--backend unsloth` (or with `--backend transformers`) to train on this machine"))
        if not has_unsloth:
            raise VtcError(error(
                "VT505", "the unsloth backend was requested but unsloth is not installed",
                help="install it on the GPU machine with `pip install 'vtc[unsloth]'`, "
                     "or use `--backend transformers`"))
        name, reason = "unsloth", "backend: unsloth (requested with --backend)"
    else:
        name = "transformers"
        reason = "backend: transformers (requested with --backend)"
    return load_backend(name), reason


def load_backend(name: str) -> Backend:
    """Import the named backend's module and return an instance of its backend class."""
    module_name, class_name = _MODULES[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or "?"
        if missing == module_name:
            raise VtcError(error("VT505", f"this copy of vtc has no {name} backend",
                                 help="use `--backend transformers`")) from None
        raise VtcError(error("VT505", f"the {name} backend needs the Python package `{missing}`, which is missing",
                             help=_help_install_train() if name == "transformers"
                             else "install it with `pip install 'vtc[unsloth]'` on a CUDA machine")) from None
    return getattr(module, class_name)()
