"""Training, and the length check before it: the backend's trainer over the rows, with vtc's callbacks.

    check_lengths(plan, processor, collator, train_rows, eval_rows) -> str   VT430/VT431 before any step
    train(backend, plan, model, processor, rows, collator, run_dir, rep, ...) -> history
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Callable

from vtc.runtime import checkpoints as C
from vtc.runtime.backends.base import chat_markers
from vtc.runtime.progress import Reporter


def train(be, plan, model, processor, train_rows, collator, run_dir: Path, rep: Reporter, *,
          stop: C.StopSignals | None = None, history: list[dict] | None = None,
          resume_from: str | None = None, on_notes: Callable[[], None] | None = None) -> list[dict]:
    """Train with the backend's trainer; metrics.jsonl, TensorBoard logs and checkpoints go into the run folder.

    ``resume_from``: the name of a checkpoint folder in <run>/checkpoints to continue from (its optimizer,
    scheduler, RNG and step); ``history``: the metrics already logged before it. ``on_notes`` is called once the
    trainer is made: the backend notes there what it changed to run on this machine (the optimizer, the precision),
    and those notes must show before the first step, not after the run.
    """
    from vtc.runtime.progress import training_callback

    progress = training_callback(run_dir / "metrics.jsonl", rep, history=history)
    stop = stop or C.StopSignals()
    callbacks = [progress, C.checkpoint_callback(C.every_steps(plan), stop)]
    if importlib.util.find_spec("tensorboard") is not None:
        from torch.utils.tensorboard import SummaryWriter
        from transformers.integrations import TensorBoardCallback

        callbacks.append(TensorBoardCallback(tb_writer=SummaryWriter(log_dir=str(run_dir / "tensorboard"))))
    be.for_training(model)
    # The trainer's output_dir holds only the checkpoints (vtc saves the adapter itself).
    ckpt_dir = run_dir / C.CHECKPOINTS
    ckpt_dir.mkdir(exist_ok=True)
    # vtc's own TensorBoard callback above is the one tracker; the trainer reports to nothing else.
    trainer = be.trainer(plan, model, processor, train_rows, collator, str(ckpt_dir), callbacks, report_to=["none"])
    if on_notes is not None:
        on_notes()
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)  # our progress line replaces the per-step dict printing
    trainer.remove_callback(ProgressCallback)
    if resume_from:
        trainer.train(resume_from_checkpoint=str(ckpt_dir / resume_from))
    else:
        trainer.train()
    return progress.history


def check_lengths(plan, processor, collator, train_rows, eval_rows) -> str:
    """Every row must fit the plan's max length with all its image tokens, before any training (VT430/VT431 from
    the collator)."""
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
