"""Run a Python program unchanged and record when each training step ends, and the peak GPU memory.

    BENCH_RESULT=out.json python bench/timed.py -m vtc run recipe.vt --backend unsloth
    BENCH_RESULT=out.json python bench/timed.py bench/notebook_baseline.py --model ... --data ...

The same harness measures all three benchmark stacks, so that they are timed identically. It imports nothing
heavy itself (so `import unsloth` stays the first heavy import of the program it runs): a meta-path hook waits
until the program imports transformers.trainer_callback, then wraps CallbackHandler.on_train_begin and
on_step_end, which every Trainer (TRL's SFTTrainer and Unsloth's patched one included) calls once per optimizer
step. Each step end first synchronises CUDA, so the time includes all the step's GPU work. At exit it writes
BENCH_RESULT: wall-clock timestamps (time.time()) of the process start, train begin and every step end, and
torch.cuda.max_memory_allocated / max_memory_reserved.
"""

from __future__ import annotations

import atexit
import importlib.abc
import importlib.util
import json
import os
import runpy
import sys
import time

T_START = time.time()
RECORD: dict = {"t_launch": float(os.environ.get("BENCH_T_LAUNCH", T_START)), "t_start": T_START,
                "t_train_begin": None, "step_ends": [], "segments": [], "argv": sys.argv[1:]}


def _sync() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


PROFILE: dict = {}


def _profile(step: int) -> None:
    """BENCH_PROFILE=FIRST,LAST,PATH: a torch.profiler trace of steps FIRST..LAST of the first training, exported to
    PATH as a Chrome trace (open in Perfetto or chrome://tracing); RECORD["profiled_steps"] names them so that the
    steady-state mean can leave them out."""
    spec = os.environ.get("BENCH_PROFILE")
    if not spec or len(RECORD["segments"]) != 1:
        return
    first, last, path = spec.split(",", 2)
    import torch

    if step == int(first) - 1:
        PROFILE["p"] = torch.profiler.profile(
            activities=[torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA])
        PROFILE["p"].__enter__()
    elif step == int(last) and "p" in PROFILE:
        PROFILE["p"].__exit__(None, None, None)
        PROFILE["p"].export_chrome_trace(path)
        RECORD["profiled_steps"] = [int(first), int(last)]


def _bare_steps(model, optimizer, dataloader, accumulate: int, count: int) -> None:
    """After training: `count` optimizer steps of the bare work (forward, backward, optimizer step) on batches the
    trainer's own data loader made, already on the GPU before the clock starts; RECORD["bare_step_s"] gets their
    durations. The trainer's steady step minus this is what the trainer, the data and the host add."""
    import torch

    device = next(p.device for p in model.parameters())
    micro = []
    for batch in dataloader:
        micro.append({k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()})
        if len(micro) == accumulate:
            break
    model.train()
    durations = []
    for _ in range(count):
        _sync()
        t = time.time()
        for batch in micro:
            (model(**batch).loss / accumulate).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        _sync()
        durations.append(time.time() - t)
    RECORD["bare_step_s"] = durations
    RECORD["bare_micro_batches"] = len(micro)


def _patch(module) -> None:
    handler = module.CallbackHandler
    on_train_begin, on_step_end = handler.on_train_begin, handler.on_step_end
    on_train_end = handler.on_train_end

    def timed_train_end(self, args, state, control, **kwargs):
        count = int(os.environ.get("BENCH_BARE_STEPS", "0"))
        if count and self.optimizer is not None and self.train_dataloader is not None:
            try:
                _bare_steps(self.model, self.optimizer, self.train_dataloader, args.gradient_accumulation_steps,
                            count)
            except Exception as e:  # the benchmark records it; the run itself is unaffected
                RECORD["bare_error"] = repr(e)
        return on_train_end(self, args, state, control, **kwargs)

    def timed_train_begin(self, args, state, control, **kwargs):
        now = time.time()
        if RECORD["t_train_begin"] is None:
            RECORD["t_train_begin"] = now
        RECORD["segments"].append({"t_train_begin": now, "step_ends": [],
                                   "micro_batch": args.per_device_train_batch_size,
                                   "accumulate": args.gradient_accumulation_steps})
        return on_train_begin(self, args, state, control, **kwargs)

    def timed_step_end(self, args, state, control, **kwargs):
        _sync()
        now = time.time()
        segment = RECORD["segments"][-1]
        segment["step_ends"].append(now)
        if len(RECORD["segments"]) == 1:
            RECORD["step_ends"].append(now)
        _profile(len(segment["step_ends"]))
        return on_step_end(self, args, state, control, **kwargs)

    handler.on_train_begin, handler.on_step_end = timed_train_begin, timed_step_end
    handler.on_train_end = timed_train_end


class _Hook(importlib.abc.MetaPathFinder):
    """Patches transformers.trainer_callback right after it executes, whoever imports it first."""

    def find_spec(self, name, path=None, target=None):
        if name != "transformers.trainer_callback":
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return None
        exec_module = spec.loader.exec_module

        def exec_and_patch(module):
            exec_module(module)
            _patch(module)

        spec.loader.exec_module = exec_and_patch
        return spec


def _write() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        RECORD["peak_allocated_gib"] = torch.cuda.max_memory_allocated() / 2**30
        RECORD["peak_reserved_gib"] = torch.cuda.max_memory_reserved() / 2**30
        RECORD["device"] = torch.cuda.get_device_name()
    RECORD["t_end"] = time.time()
    path = os.environ.get("BENCH_RESULT")
    if path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(RECORD, f, indent=1)


def main() -> None:
    args = sys.argv[1:]
    if not args:
        sys.exit(__doc__)
    sys.meta_path.insert(0, _Hook())
    atexit.register(_write)
    if args[0] == "-m":
        sys.argv = [args[1]] + args[2:]
        runpy.run_module(args[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = args
        sys.path.insert(0, os.path.dirname(os.path.abspath(args[0])))
        runpy.run_path(args[0], run_name="__main__")


if __name__ == "__main__":
    main()
