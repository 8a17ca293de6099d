"""The run folder and what goes into it.

One folder per run, never overwriting an earlier one: ``<outputs.dir>/run-NNN`` (run-001, run-002, ...; the next
number after the highest one present, finished or not). While the run works, the folder is ``run-NNN.partial``;
when everything is saved it is renamed to ``run-NNN``. A run that fails after its folder was created is renamed to
``run-NNN.failed`` with ``"state": "failed"`` and the error in its manifest. So a folder named ``run-NNN`` is always
a finished run. Problems with the recipe, the data or the model are found before the folder is created.

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
    tensorboard/        TensorBoard event files (when tensorboard is installed)
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

_RUN_NAME = re.compile(r"^run-(\d+)(\.partial|\.failed)?$")

LIBRARIES = ("torch", "torchvision", "transformers", "trl", "peft", "accelerate", "datasets", "tokenizers",
             "pillow", "bitsandbytes", "unsloth", "unsloth_zoo", "tensorboard", "matplotlib")


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


def final_name(partial: Path, suffix: str = "") -> Path:
    return partial.with_name(partial.name.removesuffix(".partial") + suffix)


def finish_run_dir(partial: Path) -> Path:
    """Rename ``run-NNN.partial`` to ``run-NNN``: from now on it is a finished run."""
    final = final_name(partial)
    os.replace(partial, final)
    return final


def fail_run_dir(partial: Path) -> Path:
    """Rename ``run-NNN.partial`` to ``run-NNN.failed``."""
    failed = final_name(partial, ".failed")
    os.replace(partial, failed)
    return failed


def write_json(path: str | Path, obj: Any) -> None:
    Path(path).write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")


def write_jsonl(path: str | Path, records: Iterable[dict]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False, default=str) + "\n")


def library_versions() -> dict[str, str | None]:
    """Installed versions of the libraries a run depends on (None when not installed)."""
    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


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


def data_paths(plan: dict) -> list[Path]:
    """The local data sources of a plan (train, then eval), resolved against the plan's base_dir."""
    base = Path(plan.get("base_dir") or ".")
    out = []
    for key in ("train", "eval"):
        src = (plan.get("data") or {}).get(key)
        if src and src.get("kind", "path") == "path":
            p = Path(os.path.expanduser(src["source"]))
            out.append(p if p.is_absolute() else base / p)
    return out


def data_fingerprint(plan: dict) -> dict[str, Any]:
    """sha256 over every data file's path (relative to its source) and bytes, in sorted order.

    The same files with the same contents give the same fingerprint wherever the folder lies; a renamed, added,
    removed or edited file changes it. Hub sources are recorded by name and split (their files live in the
    Hugging Face cache).
    """
    h = hashlib.sha256()
    files = size = 0
    for root in data_paths(plan):
        paths = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for p in paths:
            rel = p.relative_to(root).as_posix() if root.is_dir() else p.name
            h.update(rel.encode("utf-8") + b"\0")
            with open(p, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
                    size += len(block)
            h.update(b"\0")
            files += 1
    hub = [f"{s['source']}:{s.get('split')}" for k in ("train", "eval")
           if (s := (plan.get("data") or {}).get(k)) and s.get("kind") == "hub"]
    return {"sha256": h.hexdigest(), "files": files, "bytes": size, "hub": hub}


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
    fig.savefig(path)
    plt.close(fig)
    return True


def shorten(text: str, width: int) -> str:
    """One line of at most ``width`` characters (newlines shown as ⏎)."""
    text = str(text).replace("\n", " ⏎ ")
    return text if len(text) <= width else text[: width - 1] + "…"


def before_after_table(names: list[str], before: dict | None, after: dict, n: int, what: str) -> str:
    """The metrics table: one row per metric, before and after training."""
    from vtc.runtime.metrics import HIGHER_IS_BETTER

    lines = [f"{'metric':<16}{'before':>10}{'after':>10}   ({n} {what})"]
    for name in names:
        b = "-" if before is None else _pct(name, before[name])
        arrow = "higher is better" if HIGHER_IS_BETTER.get(name, True) else "lower is better"
        lines.append(f"{name:<16}{b:>10}{_pct(name, after[name]):>10}   {arrow}")
    return "\n".join(lines)


def _pct(name: str, value: float) -> str:
    return f"{value:.3f}" if name == "bleu" else f"{100 * value:.1f}%"


def examples_table(records: list[dict], k: int = 5) -> str:
    """A few example predictions: image, expected, before, after."""
    rows = records[:k]
    if not rows:
        return ""
    head = f"  {'image':<22}{'expected':<18}{'before':<22}after"
    out = [head]
    empty = '""'
    for r in rows:
        img = Path(r["images"][0]).name if r.get("images") else "-"
        before = "-" if r.get("before") is None else (r["before"] or empty)
        mark = "  ok" if r.get("after_scores", {}).get("exact_match") == 1.0 else ""
        out.append(f"  {shorten(img, 21):<22}{shorten(r['expected'], 17):<18}"
                   f"{shorten(before, 21):<22}{shorten(r['after'] or empty, 30)}{mark}")
    return "\n".join(out)
