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

    ``distributed`` (one of several processes under torchrun): the first signal is only recorded, in training or
    not, because the processes must stop together: they agree on it after every step (the checkpoint callback) and
    between the stages after training (run.py); a second one still stops this process at once. ``prefix`` starts
    the line it prints (the rank and host of a process other than rank 0). After shield(), signals are only
    recorded: the run is marking its folder and must not be cut short.
    """

    def __init__(self, stream=None, *, distributed: bool = False, prefix: str = "") -> None:
        self.received: str | None = None
        self.graceful = False
        self.distributed = distributed
        self.prefix = prefix
        self.shielded = False
        self.exit_code: int | None = None
        self.stream = stream or sys.stdout
        self._old: dict[int, object] = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self.exit_code is None:
            for sig, old in self._old.items():
                signal.signal(sig, old)
        self._old.clear()

    def _handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self.shielded:
            self.received = self.received or name
            return
        if (self.graceful or self.distributed) and self.received is None:
            self.received = name
            try:
                print(f"\n{self.prefix}{name}: finishing this training step and saving a checkpoint "
                      f"(send it again to stop at once)", file=self.stream, flush=True)
            except (OSError, ValueError):
                pass
            return
        self.received = self.received or name
        raise KeyboardInterrupt(name)

    def shield(self) -> None:
        """From now on, signals are only recorded."""
        self.shielded = True

    def exit_with(self, code: int) -> None:
        """One of several processes that decided how it ends (``code``: 130/143 stopped together, 1 failed):
        from now on SIGINT and SIGTERM are ignored until the process exits, so that torchrun's SIGTERM to the rest
        when the first one exits cannot cut short the folder's marking or change the exit status. Ignored, not
        handled: Python resets its own handlers to the default while it shuts down, not an ignored signal. (The
        process is about to exit; torchrun sends SIGKILL 30 s after its SIGTERM anyway.)"""
        self.exit_code = code
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, signal.SIG_IGN)

    @property
    def signum(self) -> int:
        """The received signal's number, 0 for none."""
        return int(signal.Signals[self.received]) if self.received else 0


def agree(stop: StopSignals, group) -> bool:
    """Whether any process of the run received a stop signal (one process: this one); every process then records
    the same signal (SIGTERM over SIGINT), so that all exit with the same status."""
    if not group.distributed:
        return bool(stop.received)
    signum = group.agree_stop(stop.signum)
    if signum:
        stop.received = signal.Signals(signum).name
    return bool(signum)


def checkpoint_callback(every: int, stop: StopSignals, keep: int = KEEP, group=None):
    """A transformers TrainerCallback that asks the trainer to save (every ``every`` steps, at the last step, and on
    a stop signal), marks each saved checkpoint complete and keeps the newest ``keep``. Made by a function so that
    importing this module never imports transformers.

    ``group`` (distributed.group()): with several processes, they agree after every step whether any received a
    stop signal (one all-reduce of one number over vtc's gloo group: about 0.1 ms on the CPU), so that all stop
    after the same step with one checkpoint; a checkpoint is marked complete by rank 0 only after every process
    wrote its part of it (a barrier), and only rank 0 removes old ones."""
    from transformers import TrainerCallback

    from vtc.runtime.distributed import Single

    group = group or Single()

    class CheckpointCallback(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            stop.graceful = True

        def on_step_end(self, args, state, control, **kw):
            step = state.global_step
            stopping = agree(stop, group)
            group.step = step  # every process answered: the last step all finished (VT547 names it)
            if stopping:
                control.should_save = True
                control.should_training_stop = True
            elif (every and step % every == 0) or step >= state.max_steps:
                control.should_save = True

        def on_save(self, args, state, control, **kw):
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            group.barrier()  # every process has written its part (its RNG state)
            if group.leader and folder.is_dir():
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
    options (``--allow-changed``, ``--trust-remote-code``). A run of several processes resumes with as many: the
    launch options of this process's world (`--gpus N`, and for several machines `--nodes`, this machine's
    `--node-rank` and `--master`; each machine gives its own node rank)."""
    from vtc.runtime.distributed import world
    from vtc.runtime.outputs import command

    w = world()
    launch: list[str] = []
    if w.distributed:
        launch = ["--gpus", str(w.local_size)]
        nodes = w.size // w.local_size
        if nodes > 1:
            master = f"{os.environ.get('MASTER_ADDR', 'HOST')}:{os.environ.get('MASTER_PORT', 'PORT')}"
            launch += ["--nodes", str(nodes), "--node-rank", str(w.node), "--master", master]
    return command("vtc", "run", "--resume", shown, *launch, *extra)


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
