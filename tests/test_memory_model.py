"""The GPU memory model (compiler/estimates.py) against the peaks measured on an H200, and what the plan says with it.

bench/results/memory-calibration-h200-2026-12-01.json holds every measured point (docs/gpu.md, "The memory
model"); bench/fit_memory.py evaluates the model at each. A change of a coefficient that moves any estimate more
than 15% from its measurement fails here.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from vtc.compiler import estimates as E
from vtc.compiler.pipeline import compile_file

ROOT = Path(__file__).resolve().parent.parent
CALIBRATION = ROOT / "bench" / "results" / "memory-calibration-h200-2026-12-01.json"


@pytest.fixture(scope="module")
def fit():
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import fit_memory
    finally:
        sys.path.remove(str(ROOT / "bench"))
    return fit_memory


def test_every_measured_peak_is_estimated_within_15_percent(fit):
    rows = fit.rows(CALIBRATION)
    # 3B (LoRA, QLoRA, full, no checkpointing, transformers), 7B and 11B: every configuration the data holds.
    assert {(r["model"], r["backend"], r["method"], r["checkpointing"]) for r in rows} >= {
        ("qwen2.5-vl-3b", "unsloth", "lora", "unsloth"), ("qwen2.5-vl-7b", "unsloth", "lora", "unsloth"),
        ("llama-3.2-vision-11b", "unsloth", "lora", "unsloth"), ("qwen2.5-vl-3b", "unsloth", "qlora", "unsloth"),
        ("qwen2.5-vl-3b", "transformers", "lora", "true"), ("qwen2.5-vl-3b", "unsloth", "lora", "false")}
    worst = max(rows, key=lambda r: abs(r["error"]))
    assert abs(worst["error"]) <= 0.15, worst


def test_the_estimate_grows_with_the_micro_batch_and_the_image_and_offloading_keeps_it_small():
    from vtc.registry import load_registry, model_geometry, total_params

    registry = load_registry()
    entry = registry.models["qwen2.5-vl-3b"]
    family, arch = entry["family"], entry["architecture"]
    geometry = model_geometry(family, entry, registry)
    flags = {"vision": True, "language": True, "attention": True, "mlp": True}
    trainable = E.trainable_parameters("lora", flags, family, arch, 16, total_params(family, entry))

    def total(micro, size=504, backend="unsloth", checkpointing=True):
        image = E.image_estimate(geometry, {"mode": "longest", "size": size})
        return E.memory_estimate(method="lora", family=family, arch=arch, total=total_params(family, entry),
                                 trainable=trainable, image=image, batch=micro, max_length=8192,
                                 optim="adamw_8bit", checkpointing=checkpointing, backend=backend,
                                 geometry=geometry)["total"]

    assert total(1) < total(8) < total(64)
    assert total(8, 504) < total(8, 1008)
    # Unsloth offloads checkpointed activations; transformers keeps every layer's input and the full logits.
    assert total(16, backend="unsloth") < total(16, backend="transformers") < total(16, checkpointing=False)


def test_a_local_model_folder_gets_estimates_from_its_config(tmp_path):
    """A folder saved with save_pretrained (here: the tiny Qwen's config.json) gives the same parameter count as
    the registry's model of that shape, and so a memory table for vtc's choice of micro-batch."""
    from vtc.runtime.tiny_models import ensure_tiny_model

    folder = tmp_path / "my-model"
    folder.mkdir()
    shutil.copy(ensure_tiny_model("tiny-qwen2.5-vl") / "config.json", folder / "config.json")
    (tmp_path / "data").mkdir()
    (tmp_path / "r.vt").write_text("finetune all on ./my-model\nfrom ./data\nresize 112\nbatch 8\n")
    result = compile_file(str(tmp_path / "r.vt"))
    assert result.plan is not None, [d.message for d in result.diagnostics]
    plan = result.plan
    assert plan["estimates"]["total_parameters"] == 655296  # the tiny model's, counted from its sizes
    assert all(row["unsloth"] is not None for row in plan["training"]["batching"]["memory_gib"])
    assert plan["estimates"]["flops"] is not None


def test_plan_and_explain_say_which_cards_it_fits(tmp_path):
    from vtc.compiler.explain import explain_plan
    from vtc.compiler.plan import summarize_plan

    (tmp_path / "data").mkdir()
    (tmp_path / "r.vt").write_text("finetune all on llama-3.2-vision-11b\nusing lora\nfrom ./data\nbatch 8\n")
    plan = compile_file(str(tmp_path / "r.vt")).plan
    table = {row["micro_batch"]: row["unsloth"] for row in plan["training"]["batching"]["memory_gib"]}
    fits = E.card_fits(plan["training"]["batching"]["memory_gib"], "unsloth", 0.1)
    by_size = {gib: micro for gib, _names, micro in fits}
    assert by_size[16] is None and by_size[24] is None  # 16-bit weights of 11 B parameters alone are ~20 GiB
    for gib, micro in by_size.items():  # the largest micro-batch within the card less context and margin
        usable = (gib - E.CUDA_CONTEXT_GIB) * 0.9
        assert micro == max((m for m, need in table.items() if need <= usable), default=None)
    assert by_size[141] == 8
    smallest = min(gib for gib, micro in by_size.items() if micro is not None)
    text = summarize_plan(plan)
    assert "cards (unsloth)" in text and "24 GiB: too small" in text and "all 8" in text
    words = explain_plan(plan)
    assert f"It fits a GPU with {smallest} GiB" in words and "takes all 8 at once" in words
    json.dumps(plan)  # still plain JSON
