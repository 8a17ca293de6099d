"""`vtc ask RUN_DIR IMAGE [QUESTION]`: answers from a finished run's model.

RUN_DIR is a finished run folder (run-NNN), or the folder above the runs (then the newest finished run is used and
named). IMAGE is one image (the answer is printed) or a folder of images (every image, sorted by name; answers go
to ``-o answers.jsonl`` / ``answers.csv``, or to the screen as JSON lines). The question defaults to the recipe's
instruction; the system prompt and image size are the run's, so the model sees what it was trained on.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from pathlib import Path

from vtc.diagnostics import Span, VtcError, error
from vtc.plans import read_plan

_RUN = re.compile(r"^run-(\d+)$")


def find_run(run_dir: str | Path) -> Path:
    """The finished run folder to use (VT511 when there is none)."""
    path = Path(run_dir)
    if path.name.endswith((".partial", ".failed")):
        state = "is still running or was interrupted" if path.name.endswith(".partial") else "failed"
        raise VtcError(error("VT511", f"the run {path} {state}, so it has no finished model", Span(str(path)),
                             help="use a finished run folder (named run-NNN)"))
    if not path.is_dir():
        raise VtcError(error("VT511", f"run folder not found: {path}", Span(str(path)),
                             help="give a folder that `vtc run` printed at its end, e.g. runs/demo-shapes/run-001"))
    if (path / "plan.json").is_file():
        return path
    runs = sorted((int(m.group(1)), p) for p in path.iterdir()
                  if p.is_dir() and (m := _RUN.match(p.name)) and (p / "plan.json").is_file())
    if runs:
        chosen = runs[-1][1]
        print(f"using the newest finished run: {chosen}", file=sys.stderr)
        return chosen
    raise VtcError(error("VT511", f"{path} is not a finished vtc run (no plan.json in it or in a run-NNN folder)",
                         Span(str(path)), help="give a folder that `vtc run` printed at its end"))


def _image_files(image: Path) -> list[Path]:
    from vtc.runtime.images import is_image_file

    if image.is_dir():
        files = sorted(p for p in image.rglob("*") if p.is_file() and is_image_file(p))
        if not files:
            raise VtcError(error("VT512", f"no images in {image}", Span(str(image)),
                                 help="give an image file, or a folder with .png / .jpg images"))
        return files
    if not image.exists():
        raise VtcError(error("VT512", f"image not found: {image}", Span(str(image)),
                             help="check the path of the image"))
    return [image]


def ask_command(run_dir, image, question=None, *, output=None, backend: str = "auto") -> list[dict]:
    """Answer questions about one image (printed) or a folder of images (JSONL or CSV). Returns the answers as
    ``{"image", "question", "answer"}`` records."""
    from vtc.runtime.backends.base import choose_backend

    run = find_run(run_dir)
    images = _image_files(Path(image))
    if output is not None and Path(output).suffix.lower() not in (".jsonl", ".csv"):
        raise VtcError(error("VT513", f"cannot write answers to {output}: the file must end in .jsonl or .csv",
                             help="e.g. `-o answers.csv` or `-o answers.jsonl`"))
    plan = read_plan(run / "plan.json")
    model_dir = run / ("model" if plan["method"] == "full" else "adapter")
    if not model_dir.is_dir():
        raise VtcError(error("VT511", f"{run} has no {model_dir.name}/ folder", Span(str(run)),
                             help="the run did not save its model; run the recipe again"))

    be, reason = choose_backend(backend)  # before transformers is imported (unsloth must come first)
    print(reason, file=sys.stderr)
    from vtc.runtime.progress import quiet_libraries

    with quiet_libraries():
        records = _answer(plan, run, model_dir, images, question, be)
    _write(records, output, Path(image).is_dir())
    return records


def _answer(plan, run, model_dir, images, question, be) -> list[dict]:
    """Load the run's model and answer for every image, a batch at a time (images opened per batch)."""
    from vtc.runtime.evaluate import eval_batch_size, generate
    from vtc.runtime.images import open_image, standardise
    from vtc.runtime.model_path import resolve_model_path

    question = question or plan["data"]["instruction"]
    system = plan["data"]["system"]
    resize = plan["images"]["resize"]
    open_image(images[0])  # a bad first image fails before the model loads (VT410/VT411 name the file)

    model_path = resolve_model_path(plan)
    model, processor = be.load_trained(plan, model_path, str(model_dir))
    be.for_inference(model)
    batch = eval_batch_size(plan)
    answers: list[str] = []
    for start in range(0, len(images), batch):
        conversations = []
        for path in images[start : start + batch]:
            messages = []
            if system:
                messages.append({"role": "system", "content": [{"type": "text", "text": system}]})
            # The layout of the training rows: the instruction text, then the image.
            image = standardise(open_image(path), resize)
            messages.append({"role": "user", "content": [{"type": "text", "text": question},
                                                         {"type": "image", "image": image}]})
            conversations.append(messages)
        answers += generate(model, processor, conversations,
                            max_new_tokens=plan["evaluation"]["max_new_tokens"], batch_size=batch)
    return [{"image": str(p), "question": question, "answer": a} for p, a in zip(images, answers)]


def _write(records: list[dict], output, folder: bool) -> None:
    if output:
        out = Path(output)
        if out.suffix.lower() == ".csv":
            with open(out, "w", encoding="utf-8", newline="") as f:
                w = csv.DictWriter(f, fieldnames=["image", "question", "answer"])
                w.writeheader()
                w.writerows(records)
        else:
            with open(out, "w", encoding="utf-8") as f:
                for r in records:
                    f.write(json.dumps(r, ensure_ascii=False) + "\n")
        print(f"{len(records)} answer{'s' * (len(records) != 1)} written to {out}", file=sys.stderr)
    elif folder:
        for r in records:
            print(json.dumps(r, ensure_ascii=False))
    else:
        print(records[0]["answer"])
