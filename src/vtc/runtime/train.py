"""Training, and the length check before it: the backend's trainer over the rows, with vtc's callbacks.

    check_lengths(plan, processor, collator, train_rows, eval_rows) -> str   VT430/431/564/565 before any step
    parameter_groups(named_parameters, plan, decay_names, weight_decay) -> the optimizer's groups, a rate per part
    use_part_learning_rates(trainer, plan, rep)  the trainer's optimizer built from those groups (both backends)
    train(backend, plan, model, processor, rows, collator, run_dir, rep, ...) -> history
                                          (with one retry at half the micro-batch after an early out-of-memory error)
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Callable

from vtc.runtime import batching as B
from vtc.runtime import checkpoints as C
from vtc.runtime import failures as F
from vtc.runtime import throughput as T
from vtc.runtime.backends.base import chat_markers, plan_span
from vtc.runtime.progress import Reporter


def train(be, plan, model, processor, train_rows, collator, run_dir: Path, rep: Reporter, *,
          stop: C.StopSignals | None = None, history: list[dict] | None = None,
          resume_from: str | None = None, on_notes: Callable[[], None] | None = None,
          on_retry: Callable[[B.Split], None] | None = None) -> list[dict]:
    """Train with the backend's trainer; metrics.jsonl, TensorBoard logs and checkpoints go into the run folder.

    ``resume_from``: the name of a checkpoint folder in <run>/checkpoints to continue from (its optimizer,
    scheduler, RNG and step); ``history``: the metrics already logged before it. ``on_notes`` is called once the
    trainer is made: the backend notes there what it changed to run on this machine (the optimizer, the precision),
    and those notes must show before the first step, not after the run.

    The batch is split as batching.in_force says (the run put its split there). Out of memory before step
    RETRY_STEPS of a new run that vtc split itself, with no checkpoint saved yet: once, the trainable weights go back
    to what they were, the micro-batch is halved (the batch per update stays), VT540 is printed, ``on_retry`` gets
    the new split (for the manifest), and training starts again. Any other out-of-memory error goes up (VT520).

    Under torchrun with several processes there is no retry: an out-of-memory error in one process leaves the
    others waiting in the gradient all-reduce, and they could agree on a retry only after the timeout; the run
    ends instead with VT547 naming the process (its VT520 says what to change), resumable from its checkpoint.
    Only rank 0 writes metrics.jsonl, TensorBoard's logs and the throughput record.
    """
    from vtc.runtime.distributed import group

    stop = stop or C.StopSignals()
    split = B.in_force(plan)
    retryable = resume_from is None and split.how in ("fits", "smallest", "fallback") and split.retry is None \
        and not group().distributed
    snapshot = B.Snapshot.take(model) if retryable else None
    while True:
        trainer, progress = _trainer(be, plan, model, processor, train_rows, collator, run_dir, rep, stop, history)
        meter = T.attach(trainer, plan)  # tokens/s, samples/s, MFU, peak memory: the run's end reports them
        if on_notes is not None:
            on_notes()
        try:
            if resume_from:
                if group().distributed and group().backend == "gloo":
                    _load_on_the_cpu(trainer)
                trainer.train(resume_from_checkpoint=str(run_dir / C.CHECKPOINTS / resume_from))
            else:
                trainer.train()
            summaries = group().all_gather(meter.summary())  # every process's share of the speed (one: itself)
            if group().leader:
                T.keep(run_dir, T.combine(summaries))
            return progress.history
        except Exception as exc:
            step = trainer.state.global_step
            if not (snapshot is not None and F.is_oom(exc) and step < B.RETRY_STEPS
                    and C.latest_checkpoint(run_dir) is None):
                raise
            smaller = B.halved(split, step, F._first_line(exc))
            if smaller is None:
                raise
        # Out of the except block: the exception (and the activations its frames hold) is gone. The failed
        # attempt's trainer, optimizer state and gradients go too, then its weights are put back.
        del trainer, progress
        _release_memory()
        snapshot.restore(model)
        rep.line(B.retry_warning(split, smaller, plan_span(plan, "/training/batch")).render())
        split, snapshot = smaller, None
        B.use(split)
        C.trim_metrics(run_dir / "metrics.jsonl", 0)  # the steps of the failed attempt are trained again
        if on_retry is not None:
            on_retry(split)


def _trainer(be, plan, model, processor, train_rows, collator, run_dir: Path, rep: Reporter, stop, history):
    """The backend's trainer with vtc's callbacks (progress, checkpoints, TensorBoard), and the progress callback."""
    from vtc.runtime.distributed import group

    from vtc.runtime.progress import training_callback

    leader = group().leader
    progress = training_callback(run_dir / "metrics.jsonl" if leader else None, rep, history=history)
    callbacks = [progress, C.checkpoint_callback(C.every_steps(plan), stop, group=group())]
    if leader and importlib.util.find_spec("tensorboard") is not None:
        from torch.utils.tensorboard import SummaryWriter
        from transformers.integrations import TensorBoardCallback

        callbacks.append(TensorBoardCallback(tb_writer=SummaryWriter(log_dir=str(run_dir / "tensorboard"))))
    be.for_training(model)
    # The trainer's output_dir holds only the checkpoints (vtc saves the adapter itself).
    ckpt_dir = run_dir / C.CHECKPOINTS
    if leader:  # (made with the run folder; again here for a retry)
        ckpt_dir.mkdir(exist_ok=True)
    # vtc's own TensorBoard callback above is the one tracker; the trainer reports to nothing else.
    trainer = be.trainer(plan, model, processor, train_rows, collator, str(ckpt_dir), callbacks, report_to=["none"])
    use_part_learning_rates(trainer, plan, rep)
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)  # our progress line replaces the per-step dict printing
    trainer.remove_callback(ProgressCallback)
    return trainer, progress


def parameter_groups(named_parameters, plan: dict, decay_names, weight_decay: float) -> list[dict]:
    """The optimizer's parameter groups: the trainable parameters of no listed part at the base rate (the group
    carries no "lr": the optimizer's, which is training.learning_rate), then for each part of
    plan["training"]["part_learning_rates"] (in order) its trainable parameters at its own "lr". A parameter belongs
    to the first part whose pattern re.search finds in its name. Each of them is split as transformers splits: weight decay for the names in
    ``decay_names``, none for the others (biases, norms). Empty groups are left out. Each group has a "part" key
    ("vision", ..., or "base"), which torch keeps and the tests read."""
    import re

    parts = []
    for i, x in enumerate(plan["training"]["part_learning_rates"]):
        try:
            parts.append((x["part"], x["learning_rate"], re.compile(x["pattern"])))
        except re.error as exc:  # a plan edited by hand: the compiler writes valid patterns
            from vtc.diagnostics import VtcError, error

            raise VtcError(error("VT514", f"/training/part_learning_rates/{i}/pattern is not a regular expression "
                                 f"({exc})", plan_span(plan, "/training/part_learning_rates"),
                                 help="compile the recipe again (`vtc plan -o plan.json`)")) from None
    # The base groups first: the trainer logs the first group's rate as "the" learning rate.
    buckets: dict[str, tuple[list, list]] = {"base": ([], [])}
    buckets.update({name: ([], []) for name, _lr, _p in parts})
    for name, param in named_parameters:
        if not param.requires_grad:
            continue
        part = next((p for p, _lr, pattern in parts if pattern.search(name)), "base")
        buckets[part][0 if name in decay_names else 1].append(param)
    rates = {name: lr for name, lr, _p in parts}
    groups = []
    for part, (decay, no_decay) in buckets.items():
        for params, wd in ((decay, weight_decay), (no_decay, 0.0)):
            if params:
                group = {"params": params, "weight_decay": wd, "part": part}
                if part in rates:
                    group["lr"] = rates[part]
                groups.append(group)
    return groups


def use_part_learning_rates(trainer, plan: dict, rep: Reporter | None = None) -> None:
    """When the plan gives some parts a rate of their own, the trainer's create_optimizer builds the optimizer from
    parameter_groups (the optimizer class and its arguments as the trainer chooses them from its args). The
    Trainer calls create_optimizer after wrapping the model (DDP, FSDP2), so the groups hold the parameters it
    trains; its learning-rate scheduler scales each group's own rate (LambdaLR multiplies every group's initial
    lr). Plans without part rates keep the trainer's own optimizer."""
    if not plan["training"]["part_learning_rates"]:
        return

    def create_optimizer(model=None):
        opt_model = trainer.model if model is None else model
        if trainer.optimizer is None:
            decay = set(trainer.get_decay_parameter_names(opt_model))
            groups = parameter_groups(opt_model.named_parameters(), plan, decay, trainer.args.weight_decay)
            cls, kwargs = trainer.get_optimizer_cls_and_kwargs(trainer.args, opt_model)
            kwargs = {k: v for k, v in kwargs.items() if k not in ("params", "model", "optimizer_dict")}
            trainer.optimizer = cls(groups, **kwargs)
            if rep is not None:  # the rates the optimizer really got, per part (rank 0 prints; run.log keeps it)
                rep.line("optimizer: " + _groups_in_words(groups, plan["training"]["learning_rate"]))
        return trainer.optimizer

    trainer.create_optimizer = create_optimizer


def _groups_in_words(groups: list[dict], base: float) -> str:
    """``base 0.0002 (1,234 weights), vision 2e-05 (567 weights)``: each part's rate and trainable weights."""
    counts: dict[str, list] = {}
    for g in groups:
        entry = counts.setdefault(g["part"], [g.get("lr", base), 0])
        entry[1] += sum(p.numel() for p in g["params"])
    return ", ".join(f"{part} {lr:g} ({n:,} weights)" for part, (lr, n) in counts.items())


def _load_on_the_cpu(trainer) -> None:
    """A distributed run on the CPU: the Trainer reads the optimizer state back with map_location=args.device,
    which accelerate makes "cpu:0" for a CPU process of a distributed run, and torch.load knows only "cpu"
    (transformers 5.17, torch 2.14: "don't know how to restore data location ... (tagged with cpu:0)"). While it
    reads the checkpoint, "cpu:N" is read as "cpu". On GPUs the location is "cuda:N" and nothing changes."""
    import torch

    real = trainer._load_optimizer_and_scheduler

    def load(checkpoint):
        original = torch.load

        def cpu_load(*args, **kwargs):
            if str(kwargs.get("map_location", "")).startswith("cpu:"):
                kwargs["map_location"] = "cpu"
            return original(*args, **kwargs)

        torch.load = cpu_load
        try:
            return real(checkpoint)
        finally:
            torch.load = original

    trainer._load_optimizer_and_scheduler = load


def _release_memory() -> None:
    """What an out-of-memory error left allocated, given back before the retry."""
    import gc

    gc.collect()
    F.free_gpu_memory()


def check_lengths(plan, processor, collator, train_rows, eval_rows) -> str:
    """Every row must fit the plan's max length with all its image tokens and its whole answer, and have tokens to
    train on, before any training (VT430/VT431/VT564/VT565 from the collator; `vtc preview` shows the rows)."""
    limit = plan["training"]["max_length"]
    check = getattr(collator, "check_lengths", None)
    if check is None:  # a backend's own collator (unsloth): measure with vtc's collator
        from vtc.runtime.collator import VisionCollator

        instruction_part, response_part = chat_markers(plan)
        check = VisionCollator(processor, train_on_responses_only=plan["training"]["responses_only"],
                               instruction_part=instruction_part, response_part=response_part,
                               max_seq_length=limit).check_lengths
    longest = check(train_rows, limit)
    if len(eval_rows):
        longest_eval = check(eval_rows, limit)
        if isinstance(longest, int) and isinstance(longest_eval, int):
            longest = max(longest, longest_eval)
    if isinstance(longest, int):
        return f"longest row {longest} tokens (limit {limit})"
    return f"every row fits {limit} tokens"
