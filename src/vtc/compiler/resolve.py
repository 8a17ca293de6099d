"""The resolve stage: a schema-valid recipe document + the registry -> ``Resolved``, the recipe with every value
decided once.

    resolve(document, spans, registry, base_dir, local_config=None) -> (Resolved, [Diagnostic])

Here, and only here: the model name is resolved (registry entry, Hub id or local folder; its family, markers,
image geometry and sizes), every clause the recipe leaves out gets its default, `resize` becomes the one
{mode, size} form every consumer reads, and the estimates (image tokens, trainable parameters, GPU memory) are
computed. Each value is a ``Sourced``: the value, where it came from ("xray.vt:4", "default", "registry" or
"derived") and the span of the clause that set it (None for defaults), so that the semantic checks can point at it
and the plan can record its provenance.

``Resolved``'s sections are the plan's sections, field for field: vtc.compiler.plan.build_plan is a projection of
it (record fields become keys, a trailing underscore dropped: ``from_`` -> ``from``). Two fields are not in the plan:
``flags`` (every `with`/`without` option; the plan holds the ones that change a run) and ``written`` (every value
the recipe wrote, as written, with its span: for checks about what the user wrote).

I/O: none but looking at the recipe's folder (``base_dir``). A name shaped like a Hub id (``data/xrays``,
``models/mine``) is a folder when one exists there, else a Hub id (docs/data.md, "Folder or Hub dataset"); a data
path that is missing there is a warning (VT401), since `vtc run` would stop at it. A local model folder's
config.json is read by the pipeline and passed in as ``local_config``; only for an ``org/name``-shaped name that
turns out to be a folder here is it read here (the pipeline takes such a name for a Hub id).
"""

from __future__ import annotations

import math
import os
import re
from typing import Any

from vtc.compiler import estimates as E
from vtc.compiler.flops import model_flops
from vtc.diagnostics import Diagnostic, Span, error, note, suggest, warning
from vtc.records import fields, record
from vtc.registry import (Registry, default_resize, explicit_hub_id, is_hub_id, model_geometry, resolve_model,
                          shadow_note, total_params, video_families)

# Defaults: Unsloth's vision notebooks (Qwen2.5-VL 7B notebook, shared/reference/unsloth-vision.md) where they
# exist; the notebooks train for max_steps=30 as a demo, vtc's default is one epoch (num_train_epochs=1, the
# notebooks' documented alternative) because a recipe describes a real run.
DEFAULTS: dict[str, Any] = {
    "method": "qlora",
    "precision": "auto",
    "instruction": "Describe this image.",
    "answer.from": "auto",  # detected from the data: captions beside images, a metadata column, class folders
    "lora.rank": 16,
    "lora.alpha": 16,
    "lora.dropout": 0.0,
    "train_for": {"amount": 1, "unit": "epochs"},
    # Samples per update (the effective batch): the notebooks' 2 a step x 4 steps. How many go through the GPU at
    # once (the micro-batch) is the runtime's choice by the plan's rule (training.batching), unless pinned.
    "batch": 8,
    # The old form (`accumulate A`, with `batch B` the rows per step): B's default there, as before issue 12.
    "old_form_batch": 2,
    # Of the free memory a run finds, the share the micro-batch's estimate must leave free (estimates are
    # estimates; the allocator fragments).
    "safety_margin": 0.1,
    # The micro-batch an `auto` run starts with when it cannot compare an estimate with free memory (an unknown
    # model, a machine whose free memory cannot be read): the largest divisor of the batch up to this; the retry
    # after an out-of-memory error at the first steps halves it.
    "fallback_micro_batch": 8,
    "learning_rate": 2e-4,
    "warmup": {"amount": 5, "unit": "steps"},
    "schedule": "linear",
    "optimizer": "adamw_8bit",
    "weight_decay": 0.001,
    "max_length": 2048,
    "seed": 3407,
    "metrics": ["exact_match"],
    "exports": ["adapter"],
    "gpus": 1,
    # Several processes (one per GPU, under torchrun): PyTorch's distributed data parallel, each process holding the
    # whole model ("ddp"; `shard model` makes it "fsdp2", the transformers backend's sharded weights). The
    # collective library by the device: NCCL between GPUs, gloo between CPU processes (the tests run two CPU
    # processes under gloo).
    "distributed.strategy": "ddp",
    "distributed.backend": {"gpu": "nccl", "cpu": "gloo"},
    # How long a process waits at a collective (a gradient all-reduce, the agreement on stopping) for one that does
    # not answer before the run ends with VT547 naming it: torch's own NCCL default (10 minutes), long enough for a
    # checkpoint of a large model to be written while the others wait, short enough that a hung machine does not
    # hold a cluster allocation for the 30 minutes of torch's gloo default.
    "distributed.timeout_s": 600,
    # How long the other processes wait for the first (rank 0) to check the data, fill the image cache and create
    # the run folder before they start: an hour covers a cold scan of about a million images on one machine
    # (docs/data.md), after which a process that still waits is stuck, not slow.
    "distributed.startup_timeout_s": 3600,
    "flags": {"responses_only": False, "rslora": False, "gradient_checkpointing": True, "trust_remote_code": False,
              "packing": False, "padding_free": False},
    # What a run does with rows that fail the data check (vtc.runtime.validate): stop is the safe default.
    "bad_rows": "stop",
    # The data file's format: detected from its rows (vtc.runtime.sources.detect), unless `format ...` pins it.
    "data.format": "auto",
    "tiff_pages": "first",
    # Checkpoint frequency: at a few seconds a step on a GPU, 50 steps lose at most a few minutes of work, while
    # saving a LoRA adapter with its optimizer state takes about a second.
    "checkpoint_every": 50,
    "max_new_tokens": 128,  # generation length for evaluation; radiology reports and LaTeX fit in 128 tokens
    # The side a `resize`-less recipe standardises to when the model's family has no default of its own.
    "resize": 512,
    "lora.bias": "none",  # LoRA adapters without bias terms, as Unsloth's notebooks train them
    # Data loading ahead of the step (training.data_loading; runtime/backends/base.py data_loader_arguments), by the
    # device the run trains on. GPU: worker processes open, decode and collate the next batches while the GPU trains
    # the current one. One worker makes a batch of 16 images of 504 px in well under 0.2 s on one core (measured on
    # the dev machine: PNG decoding 33 ms, Qwen-VL's image processor 76 ms; the chat template and tokens add little)
    # while an H200 trains it in 2.7 s (issue 12, Qwen2.5-VL 3B): one keeps up; 4 leave room for 1000 px images
    # (4x the pixels), DICOM decoding and a step 2-3x faster, and take 4 of the GPU machine's 16 cores (the training
    # process, its compiler and the pin-memory thread keep the rest; the runtime never starts more workers than
    # there are cores). Each worker keeps 2 batches ready (torch's own default; 8 batches of 16 x 504 px images
    # are ~0.8 GB of host memory); pinned (page-locked) host memory lets the copy to the GPU run without blocking;
    # workers persist across epochs (no new processes, processor copies and file hashes every epoch). CPU: 0
    # workers, the batch is made in the training process: the CPU's cores do the arithmetic, and a worker would
    # take one from it (CI has 2); pinning serves copies to a GPU only.
    # Qwen-VL's windowed vision attention as one variable-length flash call per layer (runtime/attention.py) where
    # the GPU and torch have the kernel, instead of transformers' one call per window: measured on an H200, Qwen2.5-VL
    # 3B shape, micro-batch 16 of 504 px images under Unsloth: 3.34 -> 0.89 s a step, GPU busy 34% -> 82%, the same
    # outputs within bf16 rounding (docs/gpu.md). "per_window" keeps transformers' own.
    "vision_attention": "varlen",
    "data_loading.workers": {"gpu": 4, "cpu": 0},
    "data_loading.pin_memory": {"gpu": True, "cpu": False},
    "data_loading.prefetch_factor": 2,
    "data_loading.persistent_workers": True,
    # Video (issue 16), Qwen-VL's own processing (qwen_vl_utils.vision_process): 2 frames a second, at least 4 and
    # at most 768 frames a clip, each frame's area within 128x28x28..768x28x28 pixels (VIDEO_MIN_PIXELS,
    # VIDEO_MAX_PIXELS; the family's `video_pixels` in the registry), the whole clip. Without a `video` clause a
    # multi-frame DICOM or TIFF file stays an image (its first frame, or `tiff pages`): "images".
    "video.fps": 2.0,
    "video.max_frames": 768,
    "video.min_frames": 4,
    "video.window": None,
    "video.multi_frame_files": {"without_clause": "images", "with_clause": "clips"},
}


@record
class Sourced:
    """A value and where it came from: ``origin`` is "file:line" of the clause, "default", "registry" or
    "derived"; ``span`` is the clause's (or value's) span when the recipe wrote it."""

    value: object
    origin: str
    span: Span | None = None


@record
class RecipeFiles:
    file: str  # the main recipe, relative to base_dir
    files: tuple  # it and every included file, in the order they were read


@record
class Model:
    name: Sourced  # as written
    source: Sourced  # registry | tiny | hub | local (unknown when the name resolved to nothing: no plan then)
    id: Sourced  # what from_pretrained gets
    family: Sourced
    markers: Sourced
    geometry: Sourced
    architecture: Sourced
    trust_remote_code: Sourced


@record
class Parts:
    vision: Sourced
    language: Sourced
    attention: Sourced
    mlp: Sourced
    projector: Sourced  # frozen | lora | full


@record
class Lora:
    rank: Sourced
    alpha: Sourced
    dropout: Sourced
    rslora: Sourced
    bias: Sourced
    target_modules: Sourced  # the regex get_peft_regex builds for the parts on this family's module names
    modules_to_save: Sourced  # the projector's modules under `projector full`, else []


@record
class DataSource:
    source: Sourced
    kind: Sourced  # path | hub
    split: Sourced
    format: Sourced  # auto | messages | sharegpt | llava | prompt_completion


@record
class Answer:
    from_: Sourced  # auto | captions | folders | column
    column: Sourced


@record
class Data:
    train: DataSource
    eval: object  # DataSource, or Sourced(None)
    holdout: Sourced  # a fraction (0.1) or None
    instruction: Sourced
    system: Sourced
    answer: Answer
    image_column: Sourced
    images_folder: Sourced  # `images from folder`: a path relative to base_dir, or None (the data file's folder)
    bad_rows: Sourced


@record
class Images:
    resize: Sourced  # {"mode": "longest" | "exact" | "none", "size": N | [W, H] | None}
    window: Sourced
    tiff_pages: Sourced


@record
class Video:
    """How clips are read (families with video; docs/plan.md, video): sampling, window and frame size."""

    fps: Sourced  # frames sampled per second of clip
    max_frames: Sourced  # at most this many frames a clip
    min_frames: Sourced  # at least this many (never more than the clip has)
    window: Sourced  # None, or {"start": s, "end": s | None}: seconds from the clip's start
    resize: Sourced  # {"mode": "pixels", "min_pixels", "max_pixels", "multiple"} | {"mode": "longest", "size", ...}
    temporal_patch: Sourced  # frames merged in time (registry)
    multi_frame_files: Sourced  # "clips": every DICOM and TIFF file is read as a clip; "images": as before


@record
class Batching:
    """How the runtime splits the batch: micro_batch x accumulate x processes = batch (docs/plan.md)."""

    processes: Sourced  # "world_size": the run's processes (torchrun's WORLD_SIZE; 1 without torchrun)
    safety_margin: Sourced  # the share of the free memory the chosen micro-batch's estimate leaves free
    fallback: Sourced  # the micro-batch of an `auto` run that cannot compare; None when the micro-batch is pinned
    memory_gib: Sourced  # [{"micro_batch": m, "unsloth": GiB, "transformers": GiB}] for each divisor m of batch


@record
class DataLoading:
    """How batches are made ahead of the step, by the device a run trains on (docs/plan.md, training)."""

    workers: Sourced  # {"gpu": n, "cpu": n}: data-loading worker processes (0: in the training process)
    pin_memory: Sourced  # {"gpu": bool, "cpu": bool}: batches in page-locked host memory
    prefetch_factor: Sourced  # batches each worker keeps ready
    persistent_workers: Sourced  # workers kept from one epoch to the next


@record
class Training:
    responses_only: Sourced
    gradient_checkpointing: Sourced
    max_length: Sourced
    batch: Sourced  # samples per update (the effective batch), over all micro-batches and processes
    micro_batch: Sourced  # rows through the GPU at once, per process: pinned (a number) or "auto"
    batching: Batching
    steps: Sourced  # optimizer steps, or None when training by epochs
    epochs: Sourced  # passes over the data, or None when training by steps
    learning_rate: Sourced
    part_learning_rates: Sourced  # [{"part", "learning_rate", "pattern"}]: parts at a rate of their own
    warmup_steps: Sourced  # or None when warmup is a share of the steps
    warmup_ratio: Sourced  # or None
    schedule: Sourced
    optimizer: Sourced
    weight_decay: Sourced
    seed: Sourced
    data_loading: DataLoading
    vision_attention: Sourced  # "varlen" (one call per layer where the GPU has the kernel) or "per_window"


@record
class Evaluation:
    metrics: Sourced
    max_new_tokens: Sourced


@record
class Outputs:
    dir: Sourced
    exports: Sourced


@record
class Checkpoint:
    every_steps: Sourced


@record
class Distributed:
    """How several processes train together (docs/plan.md, hardware; docs/distributed.md)."""

    strategy: Sourced  # "ddp": each process holds the whole model; "fsdp2": the weights sharded across processes
    backend: Sourced  # {"gpu": "nccl", "cpu": "gloo"}: the collective library by device
    timeout_s: Sourced  # a collective's wait for a process that does not answer, then VT547
    startup_timeout_s: Sourced  # the wait of the other processes for rank 0's data check and run folder


@record
class Hardware:
    gpus: Sourced  # processes per machine that `vtc run` starts: a number, or "all" (one per visible GPU)
    distributed: Distributed


@record
class Estimates:
    image_size: Sourced
    image_tokens_per_image: Sourced
    text_tokens_per_image: Sourced
    tiles_per_image: Sourced
    trainable_parameters: Sourced
    total_parameters: Sourced
    gpu_memory_gib: Sourced
    gpu_memory_breakdown_gib: Sourced
    # [{"processes": N, "gib": per GPU}] with the model sharded over N processes (`shard model`; transformers
    # backend, at the headline micro-batch), for N = 2, 4, 8 and the recipe's `gpus N`; None for qlora (not sharded)
    # or without an estimate.
    gpu_memory_sharded_gib: Sourced
    flops: Sourced  # model FLOPs per text token and per vision patch (compiler/flops.py), or None
    # Video (estimates.video_estimate; all None without video): the largest clip the plan allows (square frames,
    # the frames at the cap or the window), its tokens, the tokens of one second of clip, and the memory of a row
    # with that clip (unsloth, at micro-batch 1).
    video_frame_size: Sourced
    video_frames_per_clip_max: Sourced
    video_tokens_per_clip_max: Sourced
    video_tokens_per_second: Sourced
    gpu_memory_video_gib: Sourced


@record
class Resolved:
    """The recipe, resolved: every section of the plan, each value with its origin (see the module docstring)."""

    recipe: RecipeFiles
    base_dir: str
    model: Model
    method: Sourced
    precision: Sourced
    parts: Parts
    lora: object  # Lora, or Sourced(None) for full fine-tuning
    trainable_regex: Sourced  # full fine-tuning: the parameters it unfreezes; None for LoRA
    data: Data
    images: Images
    video: object  # Video, or Sourced(None) for a family without video
    training: Training
    evaluation: Evaluation
    outputs: Outputs
    checkpoint: Checkpoint
    hardware: Hardware
    estimates: Estimates
    flags: dict  # every `with` / `without` option -> Sourced (not in the plan)
    written: dict  # JSON pointer of every value the recipe wrote -> Sourced, as written (not in the plan)


# The sections of Resolved that are the plan's sections, in order.
PLAN_SECTIONS = ("model", "method", "precision", "parts", "lora", "trainable_regex", "data", "images", "video",
                 "training", "evaluation", "outputs", "checkpoint", "hardware", "estimates")


def resolve(document: dict, spans: dict[str, Span], registry: Registry, base_dir: str,
            local_config: str | None = None, *, files=()) -> tuple[Resolved, list[Diagnostic]]:
    """Resolve a schema-valid recipe document (see the module docstring). The diagnostics are what resolving the
    model name found (VT201-VT203), at the model's span. ``files``: every recipe file the compile read (lowering's
    list), so that the plan's `recipe.files` holds an included file even when every value of it was overridden (a
    later edit to it must still change the recipe's fingerprint)."""
    main_file = spans[""].file if "" in spans else "recipe.vt"

    def display(file: str) -> str:
        return display_name(file, main_file, base_dir)

    def origin(pointer: str) -> str:
        span = spans.get(pointer)
        if span is None:
            return "default"
        return f"{display(span.file)}:{span.line}" if span.line else display(span.file)

    def get(pointer: str, default=None) -> Sourced:
        """The document's value at a pointer with its origin, or the default."""
        node: Any = document
        for key in pointer.strip("/").split("/"):
            if not isinstance(node, dict) or key not in node:
                return Sourced(default, "default")
            node = node[key]
        return Sourced(node, origin(pointer), spans.get(pointer))

    def same(value, like: Sourced) -> Sourced:
        """A value decided by the same clause as ``like`` (e.g. a flag that follows from `using full`)."""
        return Sourced(value, like.origin, like.span)

    def derived(value) -> Sourced:
        return Sourced(value, "derived")

    def registry_value(value) -> Sourced:
        return Sourced(value, "registry")

    # --- the model
    name = get("/model")
    beside = beside_recipe(name.value, base_dir) if is_hub_id(name.value) else None
    if beside is not None and local_config is None:
        local_config = read_config(beside)
    found, problems = resolve_model(name.value, registry, local_config, beside_recipe=beside)
    makers = {"error": error, "warning": warning, "note": note}
    diagnostics = [makers[p.severity](p.code, p.message, name.span, p.help, suggestion=p.suggestion)
                   for p in problems]
    method = get("/method", DEFAULTS["method"])
    flags = {flag: get(f"/flags/{flag}", default) for flag, default in DEFAULTS["flags"].items()}
    family = found["family"] if found else None
    entry = found["entry"] if found else None
    source = found["source"] if found else "unknown"
    if source == "registry" and found.get("hub"):
        model_id = registry_value(found["hub"]["4bit" if method.value == "qlora" else "16bit"])
    elif source == "tiny":
        model_id = registry_value(found["key"])
    elif found is not None and found["id"] != name.value:  # `hf://org/name`: from_pretrained gets `org/name`
        model_id = Sourced(found["id"], name.origin, name.span)
    else:
        model_id = name
    fam_info = registry.families.get(family) if family else None
    geometry = model_geometry(family, entry, registry)
    arch = entry.get("architecture") if entry else None
    model = Model(
        name=name, source=derived(source), id=model_id,
        family=Sourced(family, "registry" if source in ("registry", "tiny") else "derived"),
        markers=registry_value(dict(fam_info["markers"]) if fam_info else None),
        geometry=registry_value(geometry),
        architecture=Sourced(arch, "derived") if source == "local" else registry_value(arch),
        trust_remote_code=flags["trust_remote_code"])

    # --- what trains
    parts_written = get("/parts")
    chosen = E.selection(list(parts_written.value))
    projector = _projector(set(parts_written.value), method, get("/projector"), parts_written, same)
    parts = Parts(**{key: same(chosen[key], parts_written) for key in ("vision", "language", "attention", "mlp")},
                  projector=projector)
    regex = E.lora_targets(family, arch, chosen, projector.value if method.value != "full" else "frozen")
    rank = _as(int, get("/lora/rank", DEFAULTS["lora.rank"]))
    if method.value == "full":
        lora: object = same(None, method)
        if all(chosen.values()):
            trainable_regex = derived(".*")
        else:
            chosen_re = [r"(?:" + regex + r")\.(?:weight|bias)"] if any(chosen.values()) else []
            if projector.value == "full":  # every parameter of the projector's modules (norms too)
                chosen_re.append(r"(?:.*\.)?(?:" + "|".join(re.escape(m) for m in
                                                           E.projector_modules(family, arch)) + r")\..*")
            trainable_regex = derived("|".join(chosen_re) if len(chosen_re) == 1 else
                                      "|".join(r"(?:" + x + r")" for x in chosen_re))
    else:
        lora = Lora(rank=rank, alpha=_as(int, get("/lora/alpha", DEFAULTS["lora.alpha"])),
                    dropout=_as(float, get("/lora/dropout", DEFAULTS["lora.dropout"])), rslora=flags["rslora"],
                    bias=Sourced(DEFAULTS["lora.bias"], "default"), target_modules=derived(regex),
                    modules_to_save=same(E.projector_modules(family, arch) if projector.value == "full" else [],
                                         projector))
        trainable_regex = same(None, method)

    # --- data
    data = Data(
        train=_data_source("from", get("/train_data/source"), get("/train_data/split"), base_dir, diagnostics,
                           _data_format(get("/train_data/format", DEFAULTS["data.format"]), diagnostics)),
        eval=_data_source("evaluate on", get("/eval_data/source"), get("/eval_data/split"), base_dir, diagnostics,
                          _data_format(get("/eval_data/format", DEFAULTS["data.format"]), diagnostics))
        if "eval_data" in document else Sourced(None, "default"),
        holdout=_share(get("/holdout")), instruction=get("/instruction", DEFAULTS["instruction"]),
        system=get("/system"),
        answer=Answer(from_=get("/answer/from", DEFAULTS["answer.from"]), column=get("/answer/column")),
        image_column=get("/image_column"), images_folder=get("/images_folder"),
        bad_rows=get("/bad_rows", DEFAULTS["bad_rows"]))

    # --- images: `resize` in its one form
    images = Images(resize=_resize(get("/resize"), family, entry, registry, geometry, spans, name, diagnostics),
                    window=get("/window"), tiff_pages=get("/tiff_pages", DEFAULTS["tiff_pages"]))

    # --- video: the plan's `video` for a family with video (registry), else None (a `video` clause there is VT222)
    video = _video(get, fam_info, geometry, spans, name, family, registry, diagnostics, source != "unknown")

    # --- training
    train_for = get("/train_for", DEFAULTS["train_for"])
    by_steps = train_for.value["unit"] == "steps"
    amount = train_for.value["amount"]
    warmup = get("/warmup", DEFAULTS["warmup"])
    in_percent = warmup.value["unit"] == "percent"
    training = Training(
        responses_only=flags["responses_only"], gradient_checkpointing=flags["gradient_checkpointing"],
        max_length=_as(int, get("/max_length", DEFAULTS["max_length"])),
        **_batch(get("/batch"), get("/micro_batch"), get("/accumulate")),
        batching=None,  # below, with the estimates
        steps=same(int(amount) if by_steps else None, train_for),
        epochs=same(None if by_steps else _whole(amount), train_for),
        learning_rate=_as(float, get("/learning_rate", DEFAULTS["learning_rate"])),
        part_learning_rates=_part_rates(get("/part_learning_rates", []), E.part_patterns(family, arch) or {}),
        warmup_steps=same(None if in_percent else int(warmup.value["amount"]), warmup),
        warmup_ratio=same(round(warmup.value["amount"] / 100, 10) if in_percent else None, warmup),
        schedule=get("/schedule", DEFAULTS["schedule"]), optimizer=get("/optimizer", DEFAULTS["optimizer"]),
        weight_decay=_as(float, get("/weight_decay", DEFAULTS["weight_decay"])),
        seed=_as(int, get("/seed", DEFAULTS["seed"])),
        data_loading=DataLoading(**{name: Sourced(DEFAULTS[f"data_loading.{name}"], "default")
                                    for name in ("workers", "pin_memory", "prefetch_factor", "persistent_workers")}),
        vision_attention=Sourced(DEFAULTS["vision_attention"], "default"))

    stem = os.path.splitext(os.path.basename(main_file))[0] or "recipe"
    evaluation = Evaluation(metrics=_as(list, get("/metrics", DEFAULTS["metrics"])),
                            max_new_tokens=Sourced(DEFAULTS["max_new_tokens"], "default"))
    outputs = Outputs(dir=get("/save_to", f"runs/{stem}"), exports=_as(list, get("/exports", DEFAULTS["exports"])))
    checkpoint = Checkpoint(every_steps=_as(int, get("/checkpoint_every", DEFAULTS["checkpoint_every"])))
    gpus = get("/gpus", DEFAULTS["gpus"])
    shard = get("/shard")
    hardware = Hardware(
        gpus=gpus if gpus.value == "all" else _as(int, gpus),
        distributed=Distributed(
            strategy=Sourced("fsdp2", shard.origin, shard.span) if shard.value == "model" else
            Sourced(DEFAULTS["distributed.strategy"], "default"),
            **{name: Sourced(DEFAULTS[f"distributed.{name}"], "default")
               for name in ("backend", "timeout_s", "startup_timeout_s")}))

    # --- estimates
    total = total_params(family, entry)
    image = E.image_estimate(geometry, images.resize.value)
    trainable = E.trainable_parameters(method.value, chosen, family, arch, rank.value, total, projector.value)
    def memory(micro: int, backend: str) -> dict | None:
        return E.memory_estimate(method=method.value, family=family, arch=arch, total=total, trainable=trainable,
                                 image=image, batch=micro, max_length=training.max_length.value,
                                 optim=training.optimizer.value,
                                 checkpointing=training.gradient_checkpointing.value, backend=backend,
                                 geometry=geometry)

    pinned = training.micro_batch.value if training.micro_batch.value != "auto" else None
    table = [{"micro_batch": m, **{b: _total(memory(m, b)) for b in BATCH_BACKENDS}}
             for m in micro_batches(training.batch.value)]
    training = _replace(training, batching=Batching(
        processes=derived("world_size"), safety_margin=Sourced(DEFAULTS["safety_margin"], "default"),
        fallback=derived(None if pinned else fallback_micro_batch(training.batch.value)),
        memory_gib=derived(table)))
    # The headline estimate: at the pinned micro-batch, else at 1 (the least a run needs; the table has the rest).
    breakdown = memory(pinned or 1, "unsloth")
    # Sharded (compiler/estimates.py, "several GPUs"): from the transformers backend's estimate, the one that shards.
    whole = memory(pinned or 1, "transformers")
    counts = sorted(set(E.SHARD_PROCESSES) | ({hardware.gpus.value} if hardware.gpus.value not in ("all", 1) else set()))
    layer = E.layer_bytes(family, arch)
    sharded = None if whole is None or method.value == "qlora" else [
        {"processes": n, "gib": E.sharded_estimate(whole, n, layer)["total"]} for n in counts]
    estimates = Estimates(
        image_size=derived(image["image_size"]), image_tokens_per_image=derived(image["image_tokens_per_image"]),
        text_tokens_per_image=derived(image["text_tokens_per_image"]), tiles_per_image=derived(image["tiles"]),
        trainable_parameters=derived(trainable), total_parameters=derived(total),
        gpu_memory_gib=derived(breakdown["total"] if breakdown else None),
        gpu_memory_breakdown_gib=derived(breakdown), gpu_memory_sharded_gib=derived(sharded),
        flops=derived(model_flops(family, arch, geometry)),
        **_video_estimates(video, geometry, method.value, family, arch, total, trainable, training))

    files = [main_file, *files] + [s.file for s in spans.values()]
    recipe = RecipeFiles(display(main_file), tuple(dict.fromkeys(display(f) for f in files)))
    resolved = Resolved(
        recipe=recipe, base_dir=base_dir, model=model, method=method, precision=get("/precision",
                                                                                    DEFAULTS["precision"]),
        parts=parts, lora=lora, trainable_regex=trainable_regex, data=data, images=images, video=video,
        training=training, evaluation=evaluation, outputs=outputs, checkpoint=checkpoint, hardware=hardware,
        estimates=estimates,
        flags=flags, written=_written(document, spans, origin))
    return resolved, diagnostics


def _video(get, fam_info: dict | None, geometry: dict | None, spans: dict, name: Sourced, family: str | None,
           registry: Registry, diagnostics: list, known: bool = True) -> object:
    """The plan's `video` section (Video) for a family whose registry entry says `"video": true`, with its defaults
    (DEFAULTS["video.*"], the family's video_pixels); Sourced(None) otherwise."""
    clause = get("/video")
    if not fam_info or not fam_info.get("video") or not geometry or geometry.get("kind") != "patches":
        if clause.value is not None and (fam_info or known):
            families = video_families(registry)
            models = [alias for alias, key in registry.aliases.items()
                      if registry.families.get(registry.models.get(key, {}).get("family"), {}).get("video")]
            what = (f"{fam_info['display']} does not read video" if fam_info else
                    f"vtc does not know the family of `{name.value}`, so it cannot read video for it")
            diagnostics.append(error(
                "VT222", f"{what}; the families that do are {', '.join(families)}", clause.span,
                f"to train on clips, write `finetune ... on {models[-1] if models else 'qwen2.5-vl'}` (or another "
                f"{' or '.join(families)} model); to train {name.value} on still images, remove the `video` clause",
                related=((name.span, "the model"),) if name.span is not None else ()))
        return Sourced(None, clause.origin if clause.value is not None else "default", clause.span)
    multiple = int(geometry["patch_size"]) * int(geometry.get("merge_size", 1))
    pixels = fam_info.get("video_pixels") or {}
    # Within the model's own bounds (a tiny model's processor takes less than Qwen-VL's video defaults).
    high = min(int(pixels.get("max_pixels", 768 * multiple * multiple)), int(geometry["max_pixels"]))
    default_resize = {"mode": "pixels", "min_pixels": min(int(pixels.get("min_pixels", 128 * multiple * multiple)),
                                                          high),
                      "max_pixels": high, "multiple": multiple}
    written = get("/video/resize")
    if written.value is None:
        resize = Sourced(default_resize, "registry")
    elif isinstance(written.value, dict):
        high = int(written.value["max_pixels"])
        low = int(written.value.get("min_pixels", min(default_resize["min_pixels"], high)))
        problems = _frame_budget(low, high, "min_pixels" in written.value, multiple, int(geometry["max_pixels"]),
                                 fam_info["display"], spans, written)
        diagnostics.extend(problems)
        resize = Sourced({"mode": "pixels", "min_pixels": low, "max_pixels": high, "multiple": multiple},
                         written.origin, written.span) if not problems else Sourced(default_resize, "registry")
    elif not multiple <= int(written.value) <= FRAME_SIDE_MOST:
        diagnostics.append(error(
            "VT122", f"`frame size {written.value}`: a frame's longest side is {multiple} to {FRAME_SIDE_MOST} px",
            written.span, f"{fam_info['display']} reads frames in {multiple} px tokens, and its own default keeps a "
                          "square frame about 317-776 px a side: write `frame size 336`, or leave the frame size out "
                          "for that default"))
        resize = Sourced(default_resize, "registry")
    else:
        resize = Sourced({"mode": "longest", "size": int(written.value), "multiple": multiple}, written.origin,
                         written.span)
    window = get("/video/window", DEFAULTS["video.window"])
    if window.value is not None:
        window = Sourced({"start": float(window.value["start"]),
                          "end": float(window.value["end"]) if window.value.get("end") is not None else None},
                         window.origin, window.span)
    files = DEFAULTS["video.multi_frame_files"]
    return Video(fps=_as(float, get("/video/fps", DEFAULTS["video.fps"])),
                 max_frames=_as(int, get("/video/max_frames", DEFAULTS["video.max_frames"])),
                 min_frames=Sourced(DEFAULTS["video.min_frames"], "default"),
                 window=window, resize=resize,
                 temporal_patch=Sourced(int(fam_info.get("temporal_patch", 2)), "registry"),
                 multi_frame_files=Sourced(files["with_clause"], clause.origin, clause.span)
                 if clause.value is not None else Sourced(files["without_clause"], "default"))


# The longest frame side `frame size N` takes (as `resize N`).
FRAME_SIDE_MOST = 8192


def _frame_budget(low: int, high: int, has_low: bool, multiple: int, most: int, display: str, spans: dict,
                  written: Sourced) -> list[Diagnostic]:
    """VT206 for a frame pixel budget outside what the model can see (below one token, above its processor's
    maximum), VT205 for a minimum above the maximum."""
    from vtc.compiler.lower import amount_text

    out = []
    bounds = f"{display} takes {multiple * multiple:,} to {most:,} pixels a frame"
    for amount, which, pointer in ((low, "minimum", "/video/resize/min_pixels"),
                                   (high, "maximum", "/video/resize/max_pixels")):
        if which == "minimum" and not has_low:
            continue
        span = spans.get(pointer) or written.span
        if amount < multiple * multiple:
            out.append(error("VT206", f"a frame {which} of {amount:,} pixels is below what {display} can see: its "
                                      f"smallest frame is one {multiple}x{multiple} px token", span,
                             f"{bounds}; write at least {multiple * multiple:,}"))
        elif amount > most:
            out.append(error("VT206", f"a frame {which} of {amount:,} pixels is above what {display}'s processor "
                                      "accepts", span, f"{bounds}; write at most {amount_text(most)}"))
    if not out and low > high:
        out.append(error("VT205", f"the frame size's minimum ({low:,} pixels) is above its maximum ({high:,} "
                                  "pixels)", written.span,
                         f"write the smaller amount first: `frame size between {amount_text(high)} and "
                         f"{amount_text(low)} pixels`"))
    return out


def _video_estimates(video, geometry, method: str, family, arch, total, trainable, training) -> dict[str, Sourced]:
    """The estimates' video fields: the largest clip (E.video_estimate) and the memory of one row holding it."""
    plain = None if isinstance(video, Sourced) else {name: getattr(video, name).value for name in fields(video)}
    clip = E.video_estimate(geometry, plain)
    memory = None
    if clip["tokens_per_clip"] is not None:
        tokens = clip["tokens_per_clip"]
        estimate = E.memory_estimate(
            method=method, family=family, arch=arch, total=total, trainable=trainable,
            image={"image_tokens_per_image": tokens, "text_tokens_per_image": tokens}, batch=1,
            max_length=max(training.max_length.value, tokens + E.TEXT_ALLOWANCE), optim=training.optimizer.value,
            checkpointing=training.gradient_checkpointing.value, backend="unsloth", geometry=geometry)
        memory = _total(estimate)
    return {"video_frame_size": Sourced(clip["frame_size"], "derived"),
            "video_frames_per_clip_max": Sourced(clip["frames"], "derived"),
            "video_tokens_per_clip_max": Sourced(clip["tokens_per_clip"], "derived"),
            "video_tokens_per_second": Sourced(clip["tokens_per_second"], "derived"),
            "gpu_memory_video_gib": Sourced(memory, "derived")}


# The backends a plan's memory table has a column for (the runtime reads the column of the backend it runs).
BATCH_BACKENDS = ("unsloth", "transformers")
# The largest micro-batch a table lists (the largest `batch` a recipe may write).
MOST_MICRO_BATCH = 4096


def _batch(batch: Sourced, micro: Sourced, accumulate: Sourced) -> dict[str, Sourced]:
    """The batch (samples per update) and the micro-batch ("auto" or pinned) the recipe means.

    `batch N` is N per update, the micro-batch vtc's to choose; `micro batch M` pins it. The old form, with
    `accumulate A` (before issue 12): `batch B` (default 2) rows per step, A steps per update: B x A per update with
    the micro-batch pinned to B, as it always meant (VT246 says how to write it now). `accumulate` with `micro batch`
    is VT248; the old form's micro-batch wins here (no plan is made then)."""
    if accumulate.value is not None:
        rows = int(batch.value) if batch.value is not None else DEFAULTS["old_form_batch"]
        per_step = batch if batch.value is not None else Sourced(rows, "default")
        return {"batch": Sourced(rows * int(accumulate.value), accumulate.origin, accumulate.span),
                "micro_batch": Sourced(rows, per_step.origin, per_step.span)}
    effective = _as(int, batch) if batch.value is not None else Sourced(DEFAULTS["batch"], "default")
    return {"batch": effective,
            "micro_batch": _as(int, micro) if micro.value is not None else Sourced("auto", "default")}


def micro_batches(batch: int) -> list[int]:
    """The micro-batches a batch can be split into: its divisors, up to MOST_MICRO_BATCH, smallest first."""
    low = [d for d in range(1, math.isqrt(batch) + 1) if batch % d == 0]
    return [d for d in sorted(set(low + [batch // d for d in low])) if d <= MOST_MICRO_BATCH]


def fallback_micro_batch(batch: int) -> int:
    """The micro-batch of an `auto` run that cannot compare estimates with free memory: the largest divisor of the
    batch up to DEFAULTS["fallback_micro_batch"]."""
    return max(d for d in micro_batches(batch) if d <= DEFAULTS["fallback_micro_batch"])


def _total(estimate: dict | None) -> float | None:
    return estimate["total"] if estimate else None


def _replace(value, **changes):
    """A record with some fields changed."""
    return type(value)(**{name: changes.get(name, getattr(value, name)) for name in fields(value)})


def _written(document: dict, spans: dict[str, Span], origin) -> dict[str, Sourced]:
    """Every value of the document (objects, lists and their members) by JSON pointer, with its span."""
    out: dict[str, Sourced] = {}

    def walk(node, pointer: str) -> None:
        if pointer:
            out[pointer] = Sourced(node, origin(pointer), spans.get(pointer))
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{pointer}/{key.replace('~', '~0').replace('/', '~1')}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{pointer}/{i}")
    walk(document, "")
    return out


# The parts that may have a learning rate of their own (`learning rate 2e-4, vision 2e-5, projector 1e-4`).
RATE_PARTS = ("vision", "projector", "language")


def _projector(parts: set, method: Sourced, written: Sourced, parts_written: Sourced, same) -> Sourced:
    """How the projector trains: frozen | lora | full. Named in `finetune`: with LoRA under lora/qlora unless
    `projector full`, in full under `using full`. `finetune all` under `using full` trains every parameter, the
    projector's too ("full"); under LoRA `all` keeps its meaning (the towers' layers, not the projector)."""
    if "projector" in parts:
        if method.value == "full":
            return same("full", method)
        return written if written.value is not None else same("lora", parts_written)
    if "all" in parts and method.value == "full":
        return same("full", parts_written)
    return same("frozen", parts_written)


def _part_rates(written: Sourced, patterns: dict[str, str]) -> Sourced:
    """The plan's part_learning_rates: each part named once with a rate, and the regex of its parameter names
    (checks.py reports a word that is no part, a part twice, a part that does not train, a model whose parts vtc
    does not know: the plan is not made then)."""
    rates, seen = [], set()
    for item in written.value or []:
        part = item["part"]
        if part in RATE_PARTS and part not in seen and patterns.get(part):
            seen.add(part)
            rates.append({"part": part, "learning_rate": float(item["learning_rate"]), "pattern": patterns[part]})
    return Sourced(rates, written.origin, written.span)


def _as(kind, value: Sourced) -> Sourced:
    """The value converted (the schema accepts 2.0 for `batch 2.0`; the plan says 2)."""
    return Sourced(kind(value.value), value.origin, value.span)


def _whole(number):
    return int(number) if float(number).is_integer() else float(number)


def _share(holdout: Sourced) -> Sourced:
    """`holdout 10%` -> 0.1 (a fraction); None stays None."""
    value = holdout.value
    return Sourced(round(value / 100, 10) if value is not None else None, holdout.origin, holdout.span)


_DATA_FILE = re.compile(r"\.(jsonl?|csv|parquet|arrow)$", re.IGNORECASE)


def data_kind(source: str, base_dir: str | None = None) -> str:
    """path or hub (docs/data.md, "Folder or Hub dataset"): `hf://org/name` is a Hub dataset; anything that can only
    be a path (./x, /x, ~/x, C:/x, a backslash, no slash or several, a data file's extension) is a path; an
    `org/name`-shaped name is a path when it exists in the recipe's folder ``base_dir``, else a Hub dataset id.
    Decided against ``base_dir``, never the working directory."""
    if explicit_hub_id(source) is not None:
        return "hub"
    if not _hub_shaped(source):
        return "path"
    return "path" if base_dir is not None and os.path.exists(_beside(base_dir, source)) else "hub"


def _hub_shaped(source: str) -> bool:
    return is_hub_id(source) and not _DATA_FILE.search(source)


def _beside(base_dir: str, name: str) -> str:
    """``name`` (a path as a recipe writes it) resolved against the recipe's folder, as the runtime resolves it."""
    return os.path.normpath(os.path.join(base_dir, os.path.expanduser(name)))


def beside_recipe(name: str, base_dir: str) -> str | None:
    """The folder an `org/name`-shaped name is in the recipe's folder, or None."""
    folder = _beside(base_dir, name)
    return folder if os.path.isdir(folder) else None


# A model folder's config.json: a few KB (the largest vision-language configs are tens of KB).
CONFIG_LIMIT = 1024 * 1024


def read_config(folder: str) -> str | None:
    """The text of ``folder``/config.json under the confinement rule (vtc.confine: inside the folder after following
    links, a regular file, never a FIFO or a device, at most CONFIG_LIMIT bytes), or None when it is missing,
    refused or not UTF-8 (the model's family is then unknown, VT203)."""
    from vtc.confine import Refused, read_confined

    try:
        return read_confined(os.path.join(folder, "config.json"), folder, CONFIG_LIMIT).decode("utf-8")
    except (Refused, UnicodeDecodeError, ValueError):
        return None


# The data formats `format ...` names (docs/data.md has a section for each).
DATA_FORMATS = ("auto", "messages", "sharegpt", "llava", "prompt_completion")


def _data_format(written: Sourced, diagnostics: list[Diagnostic]) -> Sourced:
    """`format <name>` checked against DATA_FORMATS: VT204 with did-you-mean for another word (then auto)."""
    if written.value in DATA_FORMATS:
        return written
    close = suggest(str(written.value), DATA_FORMATS)
    diagnostics.append(error(
        "VT204", f"unknown data format `{written.value}`", written.span,
        (f"did you mean `format {close}`? " if close else "")
        + "the formats are sharegpt (LLaMA-Factory, ms-swift, Axolotl), llava, prompt_completion (TRL), messages "
          "(typed parts); leave `format` out to detect it from the rows", suggestion=close))
    return Sourced(DEFAULTS["data.format"], "default")


def _format_on_hub(clause: str, value: str, format: Sourced | None, diagnostics: list[Diagnostic]) -> None:
    """VT209 (warning): `format` pins the format of a data FILE; a Hub dataset is read with `datasets`, whose
    columns say what its rows are (messages, conversations, images: vtc.runtime.sources.hf), so it has no effect."""
    if format is None or format.value == DEFAULTS["data.format"] or format.span is None:
        return
    diagnostics.append(warning(
        "VT209", f"`format {format.value}` has no effect on the Hub dataset `{value}`: vtc reads a Hub dataset's "
                 "rows by their columns", format.span,
        f"remove `format {format.value}`; it pins the format of a .json or .jsonl file (`{clause} ./data.json "
        f"format {format.value}`)"))


def _data_source(clause: str, source: Sourced, split: Sourced, base_dir: str,
                 diagnostics: list[Diagnostic], format: Sourced | None = None) -> DataSource:
    """A `from` / `evaluate on` source: its kind (data_kind) and, for a Hub dataset written `hf://org/name`, the id.
    What the recipe's folder shows about it goes to ``diagnostics``: VT270 (note) for an `org/name`-shaped folder
    read as a folder; VT401 (warning) for a path that is not there, or an `org/name` name read as a Hub dataset
    although its first folder is there (a typo in a folder's path, most likely)."""
    value = source.value
    kind = data_kind(value, base_dir)
    explicit = explicit_hub_id(value)
    if explicit is not None or kind == "hub":
        _format_on_hub(clause, value, format, diagnostics)
    if explicit is not None:
        return DataSource(source=Sourced(explicit, source.origin, source.span), kind=Sourced("hub", "derived"),
                          split=split, format=format or Sourced(DEFAULTS["data.format"], "default"))
    here = os.path.isdir(base_dir)  # a recipe compiled from text has no folder to look in
    where = _beside(base_dir, value)
    if here and kind == "path" and _hub_shaped(value):
        message, help_text = shadow_note(value, where, "the data")
        diagnostics.append(note("VT270", message, source.span, help_text))
    elif here and kind == "path" and not os.path.exists(where):
        diagnostics.append(warning(
            "VT401", f"`{clause} {value}`: there is no folder or file {where}; vtc run will stop here",
            source.span, f"check the path: a relative path starts at the recipe's folder ({base_dir}); if the data "
                         "is on another machine, ignore this here and run `vtc check` there"))
    elif here and kind == "hub":
        first = value.split("/")[0]
        parent = _beside(base_dir, first)
        if os.path.isdir(parent):
            try:
                names = sorted(os.listdir(parent))
            except OSError:
                names = []
            close = suggest(value.split("/")[1], names)
            folder = (f"did you mean the folder `./{first}/{close}`?" if close else
                      "if you meant a folder, check its path (a relative path starts at the recipe's folder);")
            diagnostics.append(warning(
                "VT401", f"`{clause} {value}`: there is no folder {where}, though {first}/ is there; vtc run will "
                         f"read `{value}` as a Hugging Face Hub dataset",
                source.span, f"{folder} if you meant the Hub dataset, write `hf://{value}` (this warning then goes)",
                # The fix replaces the written path (quoted or not) with the folder's, when it needs no quotes.
                suggestion=f"./{first}/{close}" if close and re.fullmatch(r"[\w.+-]+", close) else None))
    return DataSource(source=source, kind=Sourced(kind, "derived"), split=split,
                      format=format or Sourced(DEFAULTS["data.format"], "default"))


def _resize(written: Sourced, family: str | None, entry: dict | None, registry: Registry,
            geometry: dict | None = None, spans: dict | None = None, model_name: Sourced | None = None,
            diagnostics: list | None = None) -> Sourced:
    """`resize` in its one form, {"mode", "size"}: `resize N` -> longest N, `resize WxH` -> exact [W, H],
    `resize none` -> none; no clause -> the family's default side (the registry's), else DEFAULTS["resize"].
    A pixel budget -> {"mode": "pixels", "min_pixels", "max_pixels", "multiple"} (the multiple and, for `up to`, the
    minimum from the model's geometry; VT205-VT207 when the budget does not fit the model, and then the default)."""
    value = written.value
    if isinstance(value, dict) and "max_pixels" in value:
        budget = _pixel_budget(value, written, geometry, spans or {}, model_name, family, registry)
        if isinstance(budget, dict):
            return Sourced(budget, written.origin, written.span)
        if diagnostics is not None:
            diagnostics.extend(budget)
        value = None  # left out, as if unwritten: the rest of the recipe is still checked
    if value is None:
        side = default_resize(family, entry, registry)
        return Sourced({"mode": "longest", "size": side or DEFAULTS["resize"]}, "registry" if side else "default")
    if value == "none":
        form = {"mode": "none", "size": None}
    elif isinstance(value, dict):
        form = {"mode": "exact", "size": [int(value["width"]), int(value["height"])]}
    else:
        form = {"mode": "longest", "size": int(value)}
    return Sourced(form, written.origin, written.span)


def _pixel_budget(value: dict, written: Sourced, geometry: dict | None, spans: dict, model_name: Sourced | None,
                  family: str | None, registry: Registry) -> dict | list[Diagnostic]:
    """The plan's pixel budget, or the diagnostics that say why this model cannot have it (VT205-VT207)."""
    shown = model_name.value if model_name is not None else "this model"
    limits = E.budget_limits(geometry)
    if limits is None:
        why = (f"vtc does not know how `{shown}` turns images into tokens" if geometry is None else
               f"`{shown}` gives every image one input size ({geometry['image_size']}x{geometry['image_size']} px), "
               "so a budget would change nothing" if geometry.get("kind") == "fixed" else
               f"vtc does not know how `{shown}` cuts images")
        return [error("VT207", f"vtc cannot budget pixels for this model: {why}", written.span,
                      "write `resize 512` (one standard size) instead, or use a Qwen-VL or Llama 3.2 Vision model")]
    low_span = spans.get("/resize/min_pixels") or written.span
    high_span = spans.get("/resize/max_pixels") or written.span
    high = int(value["max_pixels"])
    low = int(value["min_pixels"]) if "min_pixels" in value else limits["default_min"]
    display = registry.families[family]["display"] if family in registry.families else shown
    out = []
    bounds = f"{display} takes {limits['lowest']:,} to {limits['highest']:,} pixels an image"
    for amount, span, which in ((low, low_span, "minimum"), (high, high_span, "maximum")):
        if "min_pixels" not in value and which == "minimum":
            continue
        if amount < limits["lowest"]:
            unit = (f"one {limits['multiple']}x{limits['multiple']} px image token" if geometry["kind"] == "patches"
                    else "one 14x14 px patch")
            out.append(error("VT206", f"a {which} of {amount:,} pixels is below what {display} can see: its smallest "
                                      f"image is {limits['lowest']:,} pixels ({unit} is "
                                      f"{limits['multiple'] ** 2 if geometry['kind'] == 'patches' else 196} pixels)",
                             span, f"{bounds}; write at least {limits['lowest']:,}"))
        elif amount > limits["highest"]:
            out.append(error("VT206", f"a {which} of {amount:,} pixels is above what {display}'s processor accepts",
                             span, f"{bounds}; write at most {limits['highest']:,}"))
    if out:
        return out
    if low > high:
        if "min_pixels" in value:
            from vtc.compiler.lower import amount_text

            return [error("VT205", f"the pixel budget's minimum ({low:,} pixels) is above its maximum "
                                   f"({high:,} pixels)", written.span,
                          f"write the smaller amount first: `resize between {amount_text(high)} and "
                          f"{amount_text(low)} pixels`")]
        return [error("VT205", f"`up to {high:,} pixels` is below {display}'s own minimum of {low:,} pixels an "
                               "image", high_span, f"write at least `resize up to {low:,} pixels`")]
    return {"mode": "pixels", "min_pixels": low, "max_pixels": high, "multiple": limits["multiple"]}


def display_name(file: str, main_file: str, base_dir: str) -> str:
    """A file name relative to the main recipe's folder, with forward slashes (stable across machines)."""
    try:
        if os.path.isabs(file):
            rel = os.path.relpath(file, base_dir)
        else:
            rel = os.path.relpath(file, os.path.dirname(main_file) or ".")
    except ValueError:  # another drive on Windows
        rel = file
    return rel.replace(os.sep, "/")
