"""Issue 15 on the Unsloth backend (a CUDA GPU): other tools' dataset formats with multi-turn conversations, a pixel
budget, the projector (in full and with LoRA) and per-part learning rates, each through `vtc run --backend unsloth`
on both tiny families.

What the CPU suite cannot prove and this does: Unsloth's get_peft_model takes the plan's target_modules regex and
modules_to_save (its own flags never reach the projector), Unsloth's patched SFTTrainer builds its optimizer
through vtc's parameter groups (the run prints the rates each part got), and UnslothVisionDataCollator trains a
ShareGPT / LLaVA multi-turn row (every answer, responses only) with images of several sizes under a pixel budget.
The processes run at the same time, as in test_unsloth_backend.py (whose process helpers this reuses).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from test_unsloth_backend import SHAPES, Proc, _env, _run_dir, _vtc

pytestmark = pytest.mark.gpu


def _shapes() -> list[tuple[str, str]]:
    """(image file, colour) of the demo's training shapes."""
    rows = [json.loads(line) for line in (SHAPES / "train" / "metadata.jsonl").open()]
    return [(str(SHAPES / "train" / r["file_name"]), r["text"]) for r in rows]


def _sharegpt(folder: Path) -> Path:
    """LLaMA-Factory's ShareGPT: `conversations` from/value, `<image>` placeholders, images relative to the file;
    three turns, images in the first and third, each image copied at its own size (a pixel budget keeps them)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "images").mkdir(exist_ok=True)
    shapes = _shapes()
    rows = []
    for i in range(0, len(shapes) - 1, 2):
        (a, ca), (b, cb) = shapes[i], shapes[i + 1]
        sizes = [(160 + 8 * (i % 5), 120), (120, 200 - 4 * (i % 7))]
        names = []
        for path, size, k in ((a, sizes[0], 0), (b, sizes[1], 1)):
            name = f"images/{i:03d}-{k}.png"
            Image.open(path).convert("RGB").resize(size).save(folder / name)
            names.append(name)
        rows.append({"conversations": [
            {"from": "system", "value": "You name the colour of shapes."},
            {"from": "human", "value": "<image>What colour is the shape?"},
            {"from": "gpt", "value": ca},
            {"from": "human", "value": "Is it bright?"},
            {"from": "gpt", "value": "yes" if ca in ("yellow", "green") else "no"},
            {"from": "human", "value": "<image>And this one?"},
            {"from": "gpt", "value": cb}], "images": names})
    path = folder / "chats.json"
    path.write_text(json.dumps(rows, indent=1))
    return path


def _llava(folder: Path) -> Path:
    """LLaVA's instruction file: `image` (relative to the images folder, the shapes here) and `conversations` with
    `<image>\\n` in the first human turn."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"id": str(i), "image": os.path.relpath(path, SHAPES),
             "conversations": [{"from": "human", "value": "<image>\nWhat colour is the shape?"},
                               {"from": "gpt", "value": colour}]}
            for i, (path, colour) in enumerate(_shapes())]
    path = folder / "llava.json"
    path.write_text(json.dumps(rows))
    return path


@pytest.fixture(scope="session")
def wave(tmp_path_factory):
    from vtc.runtime.tiny_models import ensure_tiny_model

    tmp = tmp_path_factory.mktemp("gpu15")
    env = _env(tmp)
    env["VTC_CACHE"] = str(tmp / "cache")
    for name in ("tiny-qwen2.5-vl", "tiny-llama-3.2-vision"):
        ensure_tiny_model(name)
    chats = _sharegpt(tmp / "sharegpt")
    # LLaVA's file names images outside its own folder: `images from folder` names where they are.
    llava = _llava(tmp / "llava")
    recipes = {
        "qwen": f"""finetune all, projector on tiny-qwen2.5-vl
using lora
projector full
with responses_only
from {chats}
holdout 20%
resize between 12k and 40k pixels
train for 12 steps
batch 4
micro batch 4
learning rate 2e-3, vision 2e-4, projector 1e-3
warmup 0 steps
schedule constant
optimizer adamw_torch
""",
        "llama": f"""finetune language, projector on tiny-llama-3.2-vision
using lora
with responses_only
from {llava} format llava
images from folder {SHAPES}
holdout 20%
train for 12 steps
batch 4
micro batch 4
learning rate 2e-3, projector 5e-4
warmup 0 steps
schedule constant
optimizer adamw_torch
""",
    }
    procs = {}
    for name, text in recipes.items():
        recipe = tmp / f"{name}.vt"
        recipe.write_text(text)
        procs[name] = Proc(f"i15-{name}", _vtc("run", str(recipe), "--backend", "unsloth", "--runs-dir",
                                               str(tmp / f"runs-{name}")), tmp / f"w-{name}", env)
    for p in procs.values():
        p.wait()
    return {"procs": procs, "runs": {name: tmp / f"runs-{name}" for name in recipes}}


def _adapter_keys(run: Path) -> list[str]:
    from safetensors import safe_open

    with safe_open(str(run / "adapter" / "adapter_model.safetensors"), "pt") as f:
        return list(f.keys())


@pytest.mark.parametrize("family,projector,rates", [
    ("qwen", "merger", ("base 0.002", "vision 0.0002", "projector 0.001")),
    ("llama", "multi_modal_projector", ("base 0.002", "projector 0.0005")),
])
def test_formats_projector_and_part_rates_train_on_unsloth(wave, family, projector, rates):
    out = wave["procs"][family].check()
    run = _run_dir(wave["runs"][family])
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["state"] == "finished" and manifest["backend"]["name"] == "unsloth", manifest["backend"]
    # Unsloth's trainer built its optimizer through vtc's groups: the run says each part's rate.
    line = next((x for x in out.splitlines() if x.startswith("optimizer: ")), None)
    assert line is not None, out[-3000:]
    for rate in rates:
        assert rate in line, line
    plan = json.loads((run / "plan.json").read_text())
    keys = _adapter_keys(run)
    if plan["parts"]["projector"] == "full":  # modules_to_save: the projector's own weights, saved whole
        assert any(projector in k and k.endswith(".weight") and "lora_" not in k for k in keys), keys[:40]
    else:  # LoRA on the projector's Linear layers, which Unsloth's flags alone never target
        assert any(projector in k and "lora_A" in k for k in keys), keys[:40]
    logged = [json.loads(x) for x in (run / "metrics.jsonl").open()]
    assert [m["step"] for m in logged] == list(range(1, 13))
    assert all(math.isfinite(m["loss"]) for m in logged)
    preds = [json.loads(x) for x in (run / "predictions.jsonl").open()]
    assert preds and all(p["after"] is not None for p in preds)
    if family == "qwen":  # multi-turn: the last user turn is the question, the last answer the expected one
        assert {p["question"] for p in preds} == {"And this one?"}
        assert all(len(p["images"]) == 2 for p in preds)
