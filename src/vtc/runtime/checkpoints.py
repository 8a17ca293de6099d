"""Checkpoints, a clean stop on Ctrl-C or SIGTERM, and what `vtc run --resume` needs.

Checkpoints are the trainer's own (transformers' ``Trainer._save_checkpoint``): the adapter (or the fully
fine-tuned weights), ``optimizer.pt``, ``scheduler.pt``, ``rng_state.pth`` (Python, NumPy, torch CPU and CUDA
generators) and ``trainer_state.json`` (the step, the logged history). They go to ``<run>/checkpoints/checkpoint-N``.
vtc decides when to save, with a callback, so that any backend whose trainer is a transformers ``Trainer`` gets the
same behaviour whatever its own ``save_strategy`` says:

* every ``plan["checkpoint"]["every_steps"]`` optimizer steps (the recipe's `checkpoint every N steps`), and at the
  last step, so that a failure while evaluating or saving never costs the training;
* when SIGINT (Ctrl-C) or SIGTERM arrives while training: the current step finishes, a checkpoint is saved,
  training stops, and the run says how to resume. A second signal stops at once.

A checkpoint counts only once it is complete: after the trainer has written every file, vtc adds
``vtc-complete.json`` (written to a temporary name, then renamed). A folder without it (a process killed while
saving) is ignored and removed. The newest two complete checkpoints are kept; the finished run deletes them all.

Loading a checkpoint goes through transformers, which reads optimizer, scheduler and RNG states with
``torch.load(..., weights_only=True)``: tensors and plain containers only, never arbitrary pickled objects.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sys
import threading
from pathlib import Path

CHECKPOINTS = "checkpoints"
COMPLETE = "vtc-complete.json"
# Two, not one: while checkpoint N+1 is being written, checkpoint N must still be there, complete.
KEEP = 2
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")

# Exit codes of a run stopped by a signal: 128 + the signal number, as shells report them.
EXIT_CODES = {"SIGINT": 130, "SIGTERM": 143}


class RunInterrupted(Exception):
    """A run stopped by SIGINT or SIGTERM after saving what it could. ``exit_code`` is 130 or 143."""

    def __init__(self, signal_name: str, run_dir: Path, step: int | None, command: str) -> None:
        self.signal_name = signal_name
        self.run_dir = run_dir
        self.step = step
        self.command = command
        self.exit_code = EXIT_CODES.get(signal_name, 130)
        super().__init__(f"stopped by {signal_name}" + (f" at step {step}" if step is not None else ""))


def every_steps(plan: dict) -> int:
    """Checkpoint frequency in optimizer steps; 0 means only when interrupted and at the end."""
    return plan["checkpoint"]["every_steps"]


class StopSignals:
    """SIGINT and SIGTERM during a run, as a context manager.

    While ``graceful`` is set (training), the first signal is only recorded (``received``) and the training callback
    stops after the current step; outside training, or on a second signal, KeyboardInterrupt is raised at once.
    Handlers can only be installed from the main thread; elsewhere this does nothing.
    """

    def __init__(self, stream=None) -> None:
        self.received: str | None = None
        self.graceful = False
        self.stream = stream or sys.stdout
        self._old: dict[int, object] = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()

    def _handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self.graceful and self.received is None:
            self.received = name
            print(f"\n{name}: finishing this training step and saving a checkpoint "
                  f"(send it again to stop at once)", file=self.stream, flush=True)
            return
        self.received = self.received or name
        raise KeyboardInterrupt(name)


def checkpoint_callback(every: int, stop: StopSignals, keep: int = KEEP):
    """A transformers TrainerCallback that asks the trainer to save (every ``every`` steps, at the last step, and on
    a stop signal), marks each saved checkpoint complete and keeps the newest ``keep``. Made by a function so that
    importing this module never imports transformers."""
    from transformers import TrainerCallback

    class CheckpointCallback(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            stop.graceful = True

        def on_step_end(self, args, state, control, **kw):
            step = state.global_step
            if stop.received:
                control.should_save = True
                control.should_training_stop = True
            elif (every and step % every == 0) or step >= state.max_steps:
                control.should_save = True

        def on_save(self, args, state, control, **kw):
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if folder.is_dir():
                mark_complete(folder, state.global_step)
                prune(Path(args.output_dir), keep)

        def on_train_end(self, args, state, control, **kw):
            stop.graceful = False

    return CheckpointCallback()


def _fsync_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def mark_complete(folder: Path, step: int) -> None:
    """Declare a checkpoint folder complete (the trainer has finished writing it)."""
    _fsync_write(folder / COMPLETE, json.dumps({"step": step}) + "\n")


def checkpoints(folder: Path) -> list[tuple[int, Path, bool]]:
    """(step, path, complete) of every checkpoint-N folder in ``folder``, by step."""
    if not folder.is_dir():
        return []
    out = []
    for p in folder.iterdir():
        m = _CHECKPOINT.match(p.name)
        if m and p.is_dir():
            out.append((int(m.group(1)), p, (p / COMPLETE).is_file()))
    return sorted(out)


def prune(folder: Path, keep: int = KEEP) -> None:
    """Keep the newest ``keep`` complete checkpoints; remove older ones and incomplete leftovers."""
    found = checkpoints(folder)
    complete = [p for _s, p, ok in found if ok]
    for _s, p, ok in found:
        if not ok or p in complete[:-keep]:
            shutil.rmtree(p, ignore_errors=True)


def latest_checkpoint(run_dir: Path) -> tuple[int, Path] | None:
    """The newest complete checkpoint of a run folder: (step, path), or None."""
    complete = [(s, p) for s, p, ok in checkpoints(Path(run_dir) / CHECKPOINTS) if ok]
    return complete[-1] if complete else None


def trim_metrics(path: Path, step: int) -> list[dict]:
    """Drop the metrics.jsonl records after ``step`` (steps that will be trained again); return what is kept."""
    from vtc.confine import Refused, read_confined

    try:  # a regular file of bounded size (a run folder may come from elsewhere); anything else counts as empty
        text = read_confined(path, None, 1 << 30).decode("utf-8", errors="replace")
    except Refused as exc:
        if exc.kind == "missing":
            return []
        text = ""  # replaced below by a regular file
    kept = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
            if isinstance(record, dict) and int(record.get("step", 0)) <= step:
                kept.append(record)
        except (ValueError, TypeError, RecursionError):  # a line cut short by a killed process, or not a record
            continue
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
    os.replace(tmp, path)
    return kept


def resume_command(run_dir: Path, shown: str, *extra: str) -> str:
    """The exact command that resumes a run folder (as the user should type it, shell-quoted), with ``extra``
    options (``--allow-changed``, ``--trust-remote-code``)."""
    from vtc.runtime.outputs import command

    return command("vtc", "run", "--resume", shown, *extra)


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True
