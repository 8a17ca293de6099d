"""The run folder and what goes into it.

One folder per run, never overwriting an earlier one: ``<outputs.dir>/run-NNN`` (run-001, run-002, ...; the next
number after the highest one present, in any state). The folder's name says the run's state, and so does the
``state`` in its manifest:

    run-NNN.partial       running (or killed without a chance to say so: see the manifest's pid)
    run-NNN.interrupted   stopped by Ctrl-C or SIGTERM; `vtc run --resume run-NNN.interrupted` continues it
    run-NNN.failed        stopped by an error (in the manifest); resumable from its last checkpoint, if any
    run-NNN               finished: everything saved

So a folder named ``run-NNN`` is always a finished run. Problems with the recipe, the data or the model are found
before the folder is created. Every file vtc writes is written under a temporary name and renamed into place
(``write_json``, ``write_jsonl``, ``atomic_dir``), so a killed process leaves either the old file or the new one,
never half of one, and never an ``adapter/`` that looks finished but is not.

Contents of a finished run::

    adapter/            PEFT adapter (adapter_config.json, adapter_model.safetensors) + processor files
                        (full fine-tuning: model/ with the whole model instead)
    merged/             with `export merged`: LoRA merged into a 16-bit copy of the base model + processor
    plan.json           the plan that ran
    manifest.json       versions, backend, device, data fingerprint, timings, state
    metrics.jsonl       one JSON object per logged training step
    eval.json           metrics before and after training
    predictions.jsonl   per evaluation row: image(s), question, expected, before, after
    loss.png            the training loss curve
    run.log             everything the run printed (appended to by a resume)
    tensorboard/        TensorBoard event files (when tensorboard is installed)

While it works (and after an interruption) the folder also holds ``checkpoints/`` (see checkpoints.py) and
``eval-base.json`` (the base model's answers, so that a resumed run does not evaluate the base model again).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable

from vtc.plans import RUN_NAME as _RUN_NAME  # one pattern, shared with the `save to` rule (runs_folder_problem)

STATE_SUFFIX = {"running": ".partial", "interrupted": ".interrupted", "failed": ".failed", "finished": ""}

LIBRARIES = ("torch", "torchvision", "transformers", "trl", "peft", "accelerate", "datasets", "tokenizers",
             "pillow", "bitsandbytes", "unsloth", "unsloth_zoo", "tensorboard", "matplotlib")


def command(*words: str) -> str:
    """A command for the user to paste, each word quoted for a POSIX shell where it needs it (shlex.quote): a folder
    named `runs-$(id)` is printed as 'runs-$(id)', never run by the shell it is pasted into."""
    import shlex

    return " ".join(shlex.quote(str(word)) for word in words)


def next_run_dir(parent: str | Path) -> Path:
    """Create and return ``parent/run-NNN.partial`` for the next free number (never reusing one)."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    while True:
        numbers = [int(m.group(1)) for p in parent.iterdir() if (m := _RUN_NAME.match(p.name))]
        n = max(numbers, default=0) + 1
        path = parent / f"run-{n:03d}.partial"
        try:
            path.mkdir()  # fails if another run took this number meanwhile: try the next
            return path
        except FileExistsError:
            continue


def run_name(path: Path) -> str:
    """``run-NNN`` of a run folder in any state."""
    m = _RUN_NAME.match(Path(path).name)
    return f"run-{m.group(1)}" if m else Path(path).name


def state_of(path: Path) -> str | None:
    """The state a run folder's name says: running, interrupted, failed, finished (None: not a run folder)."""
    m = _RUN_NAME.match(Path(path).name)
    if not m:
        return None
    return {".partial": "running", ".interrupted": "interrupted", ".failed": "failed", None: "finished"}[m.group(2)]


def move_run_dir(path: Path, state: str) -> Path:
    """Rename a run folder to the name of ``state`` (running, interrupted, failed, finished)."""
    target = Path(path).with_name(run_name(path) + STATE_SUFFIX[state])
    if target != Path(path):
        os.replace(path, target)
    return target


def finish_run_dir(partial: Path) -> Path:
    """Rename ``run-NNN.partial`` to ``run-NNN``: from now on it is a finished run."""
    return move_run_dir(partial, "finished")


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def write_json(path: str | Path, obj: Any) -> None:
    """Write JSON (sorted keys, two-space indent) under a temporary name, then rename it into place."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_text(path: str | Path, text: str) -> None:
    """Write a text file atomically: a temporary name in the same folder, then os.replace."""
    path = Path(path)
    tmp = _tmp_name(path)
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_jsonl(path: str | Path, records: Iterable[dict]) -> None:
    write_text(path, "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in records))


@contextmanager
def atomic_dir(path: str | Path):
    """Yield a temporary folder beside ``path``; when the block succeeds, rename it to ``path``. On failure the
    temporary folder is removed, so ``path`` exists only when everything in it was written."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def library_versions() -> dict[str, str | None]:
    """Installed versions of the libraries a run depends on (None when not installed)."""
    from vtc.lockfile import NOT_INSTALLED, library_versions as installed

    versions = installed(LIBRARIES)
    return {"python": platform.python_version(), **{k: None if v == NOT_INSTALLED else v for k, v in versions.items()}}


def device_info() -> dict[str, Any]:
    """The machine the run used: CPU threads, and the GPU's name and memory when there is one."""
    import torch

    info: dict[str, Any] = {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                            "torch_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(kind="cuda", gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    gpu_count=torch.cuda.device_count(), cuda=torch.version.cuda)
    else:
        info["kind"] = "cpu"
    return info


def data_fingerprint(plan: dict) -> dict[str, Any]:
    """sha256 over every data file's path (relative to its source), size and bytes, per source; combined.

    The same files with the same contents give the same fingerprint wherever the folder lies; a renamed, added,
    removed or edited file changes it. Hub sources are recorded by name, split and the revision the local cache
    holds. ``sources`` keeps each source's own fingerprint (what a lock file records and `--resume` compares).
    """

    from vtc.lockfile import data_fingerprint as per_source

    sources = per_source(plan, content=True)
    h = hashlib.sha256()
    files = size = 0
    for key in sorted(sources):
        h.update(key.encode() + b"\0" + json.dumps(sources[key], sort_keys=True).encode() + b"\0")
        files += sources[key].get("files", 0)
        size += sources[key].get("bytes", 0)
    hub = [f"{s['hub']}:{s.get('split')}" for s in sources.values() if "hub" in s]
    return {"sha256": h.hexdigest(), "files": files, "bytes": size, "hub": hub, "sources": sources}


def plot_loss(history: list[dict], path: str | Path, title: str = "training loss") -> bool:
    """Save the loss curve as a PNG (matplotlib's Agg backend, no display needed). False when there is nothing to
    plot or matplotlib is missing."""
    points = [(r["step"], r["loss"]) for r in history if r.get("loss") is not None]
    if not points:
        return False
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot([p[0] for p in points], [p[1] for p in points], linewidth=1.5)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    if min(p[1] for p in points) > 0 and max(p[1] for p in points) / max(min(p[1] for p in points), 1e-12) > 50:
        ax.set_yscale("log")  # a loss that falls by orders of magnitude reads better on a log scale
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    tmp = _tmp_name(path).with_suffix(".png")
    try:
        fig.savefig(tmp)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if tmp.exists():
            tmp.unlink()
    return True


def shorten(text: str, width: int) -> str:
    """One line of at most ``width`` characters (newlines shown as ⏎)."""
    text = str(text).replace("\n", " ⏎ ")
    # An untrained model can emit control characters and broken UTF-8 (shown as U+FFFD): print them as "?" so that
    # the table's columns stay aligned on any terminal.
    text = "".join(c if c.isprintable() and c != "\ufffd" else "?" for c in text)
    return text if len(text) <= width else text[: width - 1] + "…"


def before_meaning(plan: dict) -> str:
    """What the "before" column shows, for the tables' headings: a tiny model starts from random weights, so its
    answers before training are random text, not a baseline."""
    if plan["model"]["source"] == "tiny":
        return "the untrained tiny model, whose random weights give random text"
    return f"the base model {plan['model']['id']}, not fine-tuned"


def before_after_table(names: list[str], before: dict | None, after: dict, n: int, what: str,
                       before_is: str | None = None) -> str:
    """The metrics table: one row per metric, before and after training (``before_is``: what "before" means)."""
    from vtc.runtime.metrics import HIGHER_IS_BETTER

    lines = [f"{'metric':<16}{'before':>10}{'after':>10}   ({n} {what})"]
    if before_is:
        lines.insert(0, f"before = {before_is}; after = the fine-tuned model")
    for name in names:
        b = "-" if before is None else _pct(name, before[name])
        arrow = "higher is better" if HIGHER_IS_BETTER.get(name, True) else "lower is better"
        lines.append(f"{name:<16}{b:>10}{_pct(name, after[name]):>10}   {arrow}")
    return "\n".join(lines)


def _pct(name: str, value: float) -> str:
    return f"{value:.3f}" if name == "bleu" else f"{100 * value:.1f}%"


def examples_table(records: list[dict], k: int = 5, before_is: str | None = None) -> str:
    """A few example predictions: image, expected, before, after (``before_is``: what "before" means)."""
    rows = records[:k]
    if not rows:
        return ""
    head = f"  {'image':<22}{'expected':<18}{'before':<22}after"
    out = [f"examples (before = {before_is})" if before_is else "examples", head]
    empty = '""'
    for r in rows:
        img = Path(r["images"][0]).name if r.get("images") else "-"
        before = "-" if r.get("before") is None else (r["before"] or empty)
        mark = "  ok" if r.get("after_scores", {}).get("exact_match") == 1.0 else ""
        out.append(f"  {shorten(img, 21):<22}{shorten(r['expected'], 17):<18}"
                   f"{shorten(before, 21):<22}{shorten(r['after'] or empty, 30)}{mark}")
    return "\n".join(out)
