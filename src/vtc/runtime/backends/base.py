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
    sft_config adds what its machine needs (precision flags, an optimizer it can run) and nothing else.

    The batch's split is the run's (vtc.runtime.batching.in_force: the micro-batch the run chose or the recipe
    pinned, and the accumulation that makes the plan's batch per update); outside a run, the plan's own."""
    from vtc.runtime.batching import in_force

    t = plan["training"]
    split = in_force(plan)
    args = {
        "per_device_train_batch_size": split.micro_batch,
        "gradient_accumulation_steps": split.accumulate,
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
    from vtc.runtime.distributed import group

    g = group()
    if g.distributed:  # several processes under torchrun (vtc.runtime.distributed made the process group)
        args.update(ddp_backend=g.backend, ddp_timeout=plan["hardware"]["distributed"]["timeout_s"],
                    # every trainable weight gets a gradient each step: no search for unused ones (a full pass
                    # over the graph every step)
                    ddp_find_unused_parameters=False)
    return args


def data_loader_arguments(plan: dict, device: str, micro_batch: int, *, cores: int | None = None,
                          shared_memory: int | None = None) -> tuple[dict, list[str]]:
    """SFTConfig's dataloader_* arguments from plan["training"]["data_loading"] for ``device`` ("gpu": the run
    trains on a CUDA GPU, "cpu": on the CPU), and the notes of what this machine changed. ``micro_batch``: rows a
    batch. ``cores`` (the CPU cores this process may use) and ``shared_memory`` (bytes free in /dev/shm) are this
    machine's, found when not given (tests give them).

    What the machine may change: no more workers than cores (more would only wait for one); and no more batches in
    flight than shared memory holds, since workers hand their batches over through /dev/shm, which a container
    often keeps small (Docker's default is 64 MB, and a batch of 16 images of 504 px is about 100 MB): a worker
    that cannot write its batch there dies of a bus error (VT542), so vtc starts fewer workers, or none, instead.

    With workers, the batches are opened, decoded and collated in forked processes (the collators are fork-safe and
    send their errors back whole: collator.worker_errors); "fork" is said explicitly because the collators and rows
    hold closures that another start method would have to pickle (Python 3.14 makes forkserver the default)."""
    rule = plan["training"]["data_loading"]
    workers = planned = rule["workers"][device]
    prefetch = rule["prefetch_factor"]
    notes: list[str] = []
    if cores is None:
        cores = _usable_cores()
    if workers > cores:
        workers = cores
        notes.append(f"data loading: {workers} worker{'s' * (workers != 1)} instead of the plan's {planned} (this "
                     f"machine lets vtc use {cores} CPU core{'s' * (cores != 1)})")
    if workers:
        if shared_memory is None:
            shared_memory = _shared_memory_free()
        batch = max(micro_batch, 1) * _image_bytes(plan)
        fits = _workers_that_fit(workers, prefetch, batch, shared_memory)
        if fits < workers:
            held = f"about {batch / 2**20:,.0f} MiB a batch" if batch else "batches"
            notes.append(f"data loading: {fits or 'no'} worker{'s' * (fits != 1)} instead of {workers}: this "
                         f"machine's shared memory (/dev/shm), through which workers hand over their batches, has "
                         f"{shared_memory / 2**20:,.0f} MiB free for {held} (in a container, `--shm-size=8g` "
                         "raises it)")
            workers = fits
    args: dict = {"dataloader_num_workers": workers, "dataloader_pin_memory": rule["pin_memory"][device]}
    if workers:
        args.update(dataloader_prefetch_factor=prefetch, dataloader_persistent_workers=rule["persistent_workers"],
                    dataloader_multiprocessing_context="fork")
        # The tokenizers library warns in every forked worker when the training process used its thread pool before
        # (the length check did): saying whether to use it silences that; the workers must not use it anyway.
        import os

        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return args, notes


# Shared memory a data-loading setup needs at the least, whatever the batch (the batches' other tensors, torch's
# bookkeeping): below it, no workers.
SHARED_MEMORY_FLOOR = 256 * 2**20


def _workers_that_fit(workers: int, prefetch: int, batch: int, free: int | None) -> int:
    """The most workers (up to ``workers``) whose batches in flight (prefetch each, and one being handed over) fit
    in ``free`` bytes of shared memory; ``workers`` when it is unknown (no /dev/shm: not Linux)."""
    if free is None:
        return workers
    if free < SHARED_MEMORY_FLOOR:
        return 0
    while workers and (workers * prefetch + 1) * batch > free:
        workers -= 1
    return workers


def _image_bytes(plan: dict) -> int:
    """A row's image tensor as the processor hands it over, at most: the standardised image's pixels, 3 channels of
    32-bit floats, twice for Qwen-VL (its frames come in pairs); Llama 3.2 Vision's tiles, padding tiles included.
    0 when the size is unknown (`resize none`)."""
    e, geometry = plan["estimates"], plan["model"]["geometry"] or {}
    if geometry.get("kind") == "tiles":
        side = geometry["tile_size"]
        return geometry["max_tiles"] * side * side * 3 * 4
    if not e["image_size"]:
        return 0
    width, height = e["image_size"]
    return width * height * 3 * 4 * 2


def _shared_memory_free() -> int | None:
    import shutil

    try:
        return shutil.disk_usage("/dev/shm").free
    except OSError:
        return None


def _usable_cores() -> int:
    import os

    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


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


def choose_backend(requested: str = "auto", plan: dict | None = None) -> tuple[Backend, str]:
    """Pick the backend: ``auto`` takes unsloth when a CUDA GPU is present and unsloth is installed, otherwise
    transformers; for a ``plan`` whose model is sharded (`shard model`: hardware.distributed.strategy "fsdp2"),
    transformers, the one that can split a model across GPUs. Returns the backend and a one-line reason for the log
    and the manifest.

    Raises VtcError (VT505) when a forced backend cannot run here, VT554 for `--backend unsloth` with a sharded plan.
    """
    if requested not in ("auto", *BACKENDS):
        raise VtcError(error("VT505", f"unknown backend `{requested}`", help="use auto, transformers or unsloth"))
    sharded = plan is not None and plan["hardware"]["distributed"]["strategy"] == "fsdp2"
    if sharded and requested == "unsloth":
        raise VtcError(error(
            "VT554", "the recipe says `shard model`, and the unsloth backend cannot split a model across GPUs: "
            "Unsloth holds the whole model on each GPU", plan_span(plan, "/hardware/distributed/strategy"),
            help="run without `--backend unsloth` (vtc then takes the transformers backend, which shards it), or "
                 "remove `shard model` from the recipe if the model fits one GPU"))
    if importlib.util.find_spec("torch") is None:
        raise VtcError(error("VT505", "the training libraries (torch, transformers, peft, trl) are not installed",
                             help=_help_install_train()))
    cuda = cuda_available()
    has_unsloth = unsloth_installed()
    if requested == "auto":
        if sharded:
            name, reason = "transformers", ("backend: transformers (`shard model`: only the transformers backend "
                                            "splits a model across GPUs; Unsloth holds it whole on each)")
        elif cuda and has_unsloth:
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
