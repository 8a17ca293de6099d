"""Pixel budgets (issue 15, part C): `resize between A and B pixels` / `resize up to B pixels`.

The clause and its errors (VT205-VT208, VT230), the plan's fourth resize form with its provenance, the token range
`vtc plan` and `vtc explain` give, the resize rule on odd sizes, the cache keys, the arguments the backends get,
the tiny Qwen processor's tokens for a budgeted image, and one short training run.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from vtc.compiler import estimates as E
from vtc.compiler.explain import explain_plan as explain
from vtc.compiler.fmt import format_source
from vtc.compiler.lower import amount_text, pixel_amount
from vtc.compiler.pipeline import compile_source
from vtc.compiler.plan import summarize_plan
from vtc.runtime.images import budget_size, standardise, target_size

QWEN = "tiny-qwen2.5-vl"  # registry geometry: patch 14, merge 2, 3136..50176 pixels (the processor's own bounds)


def compile_text(tmp_path: Path, *lines: str, model: str = QWEN):
    (tmp_path / "data").mkdir(exist_ok=True)
    text = f"finetune vision,mlp on {model}\nfrom ./data\n" + "".join(line + "\n" for line in lines)
    return compile_source(text, str(tmp_path / "t.vt"), base_dir=str(tmp_path))


def codes(result) -> list[str]:
    return [d.code for d in result.diagnostics if d.code != "VT401"]


def only(result, code: str):
    found = [d for d in result.diagnostics if d.code == code]
    assert len(found) == 1, [d.to_json() for d in result.diagnostics]
    return found[0]


# --- amounts ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, pixels", [
    ("200000", 200_000), ("200k", 200_000), ("200K", 200_000), ("1m", 1_000_000), ("1.2m", 1_200_000),
    ("1.25M", 1_250_000), ("0.5k", 500), ("256x28x28", 200_704), ("448x448", 200_704), ("3136", 3136),
    ("1.2345k", None), ("1mb", None), ("1e6", None), ("12x", None), ("1.5", None), ("x28", None),
])
def test_pixel_amounts_in_every_accepted_form(text, pixels):
    assert pixel_amount(text) == pixels


@pytest.mark.parametrize("pixels, text", [(1_000_000, "1m"), (200_000, "200k"), (1_200_000, "1.2m"),
                                          (1_250_000, "1.25m"), (3136, "3136"), (1500, "1500")])
def test_amount_text_is_the_shortest_form_that_reads_back(pixels, text):
    assert amount_text(pixels) == text and pixel_amount(text) == pixels


# --- the clause: parse, fmt, plan, provenance -----------------------------------------------------------------------

def test_a_budget_becomes_the_plans_pixels_form_with_its_line(tmp_path):
    result = compile_text(tmp_path, "resize between 4x28x28 and 36x28x28 pixels")
    assert codes(result) == []
    assert result.plan["images"]["resize"] == {"mode": "pixels", "min_pixels": 3136, "max_pixels": 28224,
                                               "multiple": 28}
    provenance = result.plan["provenance"]
    assert {k: v for k, v in provenance.items() if k.startswith("/images/resize")} and \
        all(v == "t.vt:3" for k, v in provenance.items() if k.startswith("/images/resize"))
    # the estimates are for the largest image: 28224 px = 36 tokens of 28x28, 6x6 of them
    assert result.plan["estimates"]["image_size"] == [168, 168]
    assert result.plan["estimates"]["image_tokens_per_image"] == 36


def test_up_to_takes_the_models_own_minimum(tmp_path):
    plan = compile_text(tmp_path, "resize up to 50176 pixels").plan
    assert plan["images"]["resize"] == {"mode": "pixels", "min_pixels": 3136, "max_pixels": 50176, "multiple": 28}
    assert plan["estimates"]["image_tokens_per_image"] == 64  # 50176 / 784


def test_llama_vision_budgets_in_tiles_with_multiple_1(tmp_path):
    # tiny-llama-3.2-vision: 4 tiles of 56 px at most -> 12544 pixels
    plan = compile_text(tmp_path, "resize between 1k and 6k pixels", model="tiny-llama-3.2-vision").plan
    assert plan["images"]["resize"] == {"mode": "pixels", "min_pixels": 1000, "max_pixels": 6000, "multiple": 1}
    assert plan["estimates"]["image_size"] == [77, 77]  # the largest: a square of 6000 px
    assert plan["estimates"]["tiles_per_image"] == 4  # 77 px a side: two 56 px tiles each way
    assert E.budget_token_range(plan["model"]["geometry"], plan["images"]["resize"]) == \
        {"unit": "tiles", "low": 1, "high": 4}
    assert "covers 1 to 4 tiles of 56 pixels" in explain(plan)


def test_fmt_keeps_the_budget_as_written(tmp_path):
    text = "finetune all on qwen2.5-vl\nresize   between 200k and  1.2m pixels\n"
    assert "resize between 200k and 1.2m pixels\n" in format_source(text, "t.vt")[0]
    text = "finetune all on qwen2.5-vl\nresize up  to 256x28x28 pixels\n"
    assert "resize up to 256x28x28 pixels\n" in format_source(text, "t.vt")[0]


def test_later_resize_overrides_an_included_budget(tmp_path):
    (tmp_path / "base.vt").write_text("resize between 200k and 1m pixels\n")
    (tmp_path / "data").mkdir()
    text = 'finetune all on qwen2.5-vl\nfrom ./data\ninclude "base.vt"\nresize 512\n'
    plan = compile_source(text, str(tmp_path / "t.vt"), base_dir=str(tmp_path)).plan
    assert plan["images"]["resize"] == {"mode": "longest", "size": 512}
    text = 'finetune all on qwen2.5-vl\nfrom ./data\nresize 640x480\ninclude "base.vt"\n'
    plan = compile_source(text, str(tmp_path / "t.vt"), base_dir=str(tmp_path)).plan
    assert plan["images"]["resize"] == {"mode": "pixels", "min_pixels": 200_000, "max_pixels": 1_000_000,
                                        "multiple": 28}


def test_plan_and_explain_give_the_token_range_and_memory_at_the_largest(tmp_path):
    result = compile_text(tmp_path, "resize between 200k and 1m pixels", model="qwen2.5-vl-3b")
    plan = result.plan
    assert plan["images"]["resize"]["multiple"] == 28
    spread = E.budget_token_range(plan["model"]["geometry"], plan["images"]["resize"])
    assert spread == {"unit": "tokens", "low": math.ceil(200_000 / 784), "high": 1260}  # 35 x 36 of 28 px
    assert plan["estimates"]["image_tokens_per_image"] == 1260
    assert plan["estimates"]["image_size"] == [36 * 28, 35 * 28]
    table = summarize_plan(plan)
    assert "between 200,000 and 1,000,000 pixels an" in table and "image, aspect kept, sides multiples of 28 px" in table
    assert "256 to 1,260 image tokens an image (memory: at the largest)" in table
    assert "largest image            1008x980 px -> 1260 image tokens" in table
    text = explain(plan)
    assert ("Images keep their own shape and are scaled to between 200 thousand and 1 million pixels each, each "
            "side a multiple of 28 pixels, which makes between 256 and 1,260 image tokens") in text
    assert "the memory estimate is for the largest" in text
    # memory follows the largest image: a larger budget needs more
    bigger = compile_text(tmp_path, "resize between 200k and 2m pixels", "max length 4096",
                          model="qwen2.5-vl-3b").plan
    assert bigger["estimates"]["gpu_memory_gib"] > plan["estimates"]["gpu_memory_gib"]


# --- errors -------------------------------------------------------------------------------------------------------

def test_vt205_minimum_above_maximum(tmp_path):
    d = only(compile_text(tmp_path, "resize between 36x28x28 and 4x28x28 pixels"), "VT205")
    assert d.is_error and (d.span.line, d.span.column) == (3, 1)
    assert "28,224" in d.message and "3,136" in d.message
    assert d.help.endswith("`resize between 3136 and 28224 pixels`")


@pytest.mark.parametrize("clause, column, words", [
    ("resize between 1000 and 20k pixels", 16, "below"),
    ("resize up to 60k pixels", 14, "above"),
    ("resize between 3136 and 448x448 pixels", 25, "above"),
])
def test_vt206_amounts_out_of_the_models_range(tmp_path, clause, column, words):
    d = only(compile_text(tmp_path, clause), "VT206")
    assert d.is_error and (d.span.line, d.span.column) == (3, column)
    assert words in d.message
    assert "3,136 to 50,176 pixels" in d.help
    assert compile_text(tmp_path, clause).plan is None


@pytest.mark.parametrize("model, words", [("gemma-3-4b", "one input size (896x896 px)"),
                                          ("someorg/some-model", "turns images into tokens")])
def test_vt207_a_model_vtc_cannot_budget_for(tmp_path, model, words):
    d = only(compile_text(tmp_path, "resize up to 1m pixels", model=model), "VT207")
    assert d.is_error and words in d.message and "resize 512" in d.help


@pytest.mark.parametrize("amount, close", [("1mb", "1m"), ("1MP", "1m"), ("256*28*28", "256x28x28"),
                                           ("1e6", "1m"), ("200kpx", "200k"), ("1.2.3", None)])
def test_vt208_a_malformed_amount_says_what_was_meant(tmp_path, amount, close):
    result = compile_text(tmp_path, f"resize up to {amount} pixels")
    d = only(result, "VT208")
    assert d.is_error and (d.span.column, d.span.end_column) == (14, 14 + len(amount))
    assert d.message == f"`{amount}` is not a number of pixels"
    if close:
        assert d.help.startswith(f"did you mean `{close}`?")
    else:
        assert d.help.startswith("write a whole number")
    assert result.plan is None


def test_vt230_warns_of_a_budget_above_a_million_pixels(tmp_path):
    d = only(compile_text(tmp_path, "resize up to 2m pixels", "max length 4096", model="qwen2.5-vl-3b"), "VT230")
    assert d.severity.value == "warning" and "2,000,000 pixels" in d.message
    assert "`resize up to 1m pixels`" in d.help
    assert "VT230" not in codes(compile_text(tmp_path, "resize between 200k and 1m pixels", model="qwen2.5-vl-3b"))


def test_syntax_errors_of_the_clause_show_a_budget(tmp_path):
    d = compile_text(tmp_path, "resize between 200k 1m pixels").diagnostics[0]
    assert d.code == "VT012" and "`resize between 200k and 1m pixels`" in d.help
    d = compile_text(tmp_path, "resize 1m").diagnostics[0]
    assert d.code == "VT012" and "`between` or `up to`" in d.message and "`resize up to 1m pixels`" in d.help


# --- the resize rule ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [(1, 1), (3, 500), (640, 480), (501, 2000), (4000, 3000), (9000, 45), (45, 9000),
                                  (100_000, 10), (28, 28), (29, 27)])
@pytest.mark.parametrize("bounds", [(3136, 50176), (200_000, 1_000_000), (3136, 12_845_056)])
def test_the_rule_keeps_sides_multiples_and_the_area_in_the_budget(size, bounds):
    low, high = bounds
    w, h = budget_size(*size, 28, low, high)
    assert w % 28 == 0 and h % 28 == 0 and w >= 28 and h >= 28
    assert w * h <= high
    if max(size) / min(size) < 50:  # aspect kept (to the rounding of one 28 px step), and the minimum reached
        assert w * h >= low
        assert abs(w / h - size[0] / size[1]) <= (size[0] / size[1]) * (28 / min(w, h)) + 1e-9
    resize = {"mode": "pixels", "min_pixels": low, "max_pixels": high, "multiple": 28}
    assert target_size(size, resize) == (w, h)


@pytest.mark.parametrize("size", [(1, 1), (640, 480), (4000, 3000), (501, 2000), (123, 77)])
def test_the_runtime_rule_is_the_compilers_and_qwens(size):
    assert budget_size(*size, 28, 3136, 1_000_000) == E.smart_resize(*size, 28, 3136, 1_000_000)


def test_the_rule_with_multiple_1_keeps_the_aspect():
    assert budget_size(1120, 560, 1, 1000, 6000) == (109, 54)  # scaled down by the square root, rounded down
    assert budget_size(10, 5, 1, 1000, 6000) == (45, 23)


def test_standardise_gives_the_budgeted_image():
    from PIL import Image

    resize = {"mode": "pixels", "min_pixels": 3136, "max_pixels": 12544, "multiple": 28}
    big = standardise(Image.new("RGB", (300, 200), "red"), resize)
    assert big.size == (112, 84)  # Qwen's rule: 300x200 scaled by sqrt(60000 / 12544), each side down to 28 px
    small = standardise(Image.new("RGB", (20, 10), "red"), resize)
    assert small.size == (84, 56) and small.size[0] * small.size[1] >= 3136
    exact = Image.new("RGB", (112, 56), "red")
    assert standardise(exact, resize) is exact  # already in the budget: not resampled


def test_the_budget_is_part_of_the_cache_key():
    from vtc.runtime.cache import entry_key
    from vtc.runtime.prepare import settings_for

    one = {"mode": "pixels", "min_pixels": 3136, "max_pixels": 12544, "multiple": 28}
    keys = {entry_key("d", 0, settings_for("a.png", r, None)) for r in (
        one, {**one, "max_pixels": 50176}, {**one, "min_pixels": 6272}, {**one, "multiple": 14},
        {"mode": "longest", "size": 112})}
    assert len(keys) == 5


# --- backends ------------------------------------------------------------------------------------------------------

def test_unsloth_collator_does_not_resize_budgeted_images(tmp_path, monkeypatch):
    import sys

    from runtime_helpers import unsloth_backend_over_stand_ins

    plan = compile_text(tmp_path, "resize between 4x28x28 and 36x28x28 pixels", "with responses_only").plan
    backend = unsloth_backend_over_stand_ins(monkeypatch)
    try:
        args = backend.collator_arguments(plan)
    finally:
        sys.modules.pop("vtc.runtime.backends.unsloth_backend", None)
    assert args["resize"] == "max" and "resize_dimension" not in args  # "max": the collator's "no resize"
    assert args["train_on_responses_only"] is True


def test_out_of_memory_advice_halves_the_largest_image(tmp_path):
    from vtc.runtime.failures import oom_error

    plan = compile_text(tmp_path, "resize between 200k and 1m pixels", "micro batch 1", model="qwen2.5-vl-3b").plan
    d = oom_error(plan, "training", None)
    assert d.code == "VT520" and "`resize between 200000 and 500000 pixels`" in d.help


# --- the processor and a run ---------------------------------------------------------------------------------------

def test_tiny_qwen_processor_keeps_budgeted_images_and_counts_their_tokens():
    pytest.importorskip("torch")
    from PIL import Image
    from transformers import AutoProcessor

    from vtc.runtime.tiny_models import ensure_tiny_model

    processor = AutoProcessor.from_pretrained(ensure_tiny_model(QWEN))
    resize = {"mode": "pixels", "min_pixels": 3136, "max_pixels": 28224, "multiple": 28}
    for size in [(300, 200), (20, 10), (1000, 90), (168, 168)]:
        image = standardise(Image.new("RGB", size, "white"), resize)
        w, h = image.size
        out = processor.image_processor(images=[image], return_tensors="pt")
        t, rows, cols = out["image_grid_thw"][0].tolist()
        assert (t, rows * 14, cols * 14) == (1, h, w)  # the processor did not resize again
        assert rows * cols // 4 == (w // 28) * (h // 28)  # image tokens: one per 28x28 px
        lo_hi = E.budget_token_range(
            {"kind": "patches", "patch_size": 14, "merge_size": 2, "min_pixels": 3136, "max_pixels": 50176}, resize)
        assert lo_hi["low"] <= (w // 28) * (h // 28) <= lo_hi["high"]


def test_tiny_llama_processor_tiles_a_budgeted_image_as_estimated():
    pytest.importorskip("torch")
    from PIL import Image
    from transformers import AutoProcessor

    from vtc.runtime.tiny_models import ensure_tiny_model

    processor = AutoProcessor.from_pretrained(ensure_tiny_model("tiny-llama-3.2-vision"))
    geometry = {"kind": "tiles", "tile_size": 56, "max_tiles": 4, "tokens_per_tile": 17, "text_tokens_per_image": 1}
    for low, high, size in [(1000, 6000, (400, 400)), (1000, 3000, (400, 400)), (196, 12544, (30, 30))]:
        resize = {"mode": "pixels", "min_pixels": low, "max_pixels": high, "multiple": 1}
        image = standardise(Image.new("RGB", size, "white"), resize)
        assert low <= image.size[0] * image.size[1] <= high
        out = processor.image_processor(images=[[image]], return_tensors="pt")
        assert out["num_tiles"][0][0] == E.budget_token_range(geometry, resize)["high"] if size[0] > 100 else 1


@pytest.mark.slow
def test_a_two_step_run_with_a_pixel_budget_on_tiny_qwen(tmp_path, capsys):
    pytest.importorskip("torch")
    from PIL import Image
    from runtime_helpers import make_shapes

    from vtc.commands import run_target

    data = make_shapes(tmp_path / "data", n=8, seed=3)
    for i, size in enumerate([(300, 200), (60, 150), (90, 40)]):  # sizes the budget must change
        path = data / f"img-{i:03d}.png"
        Image.open(path).resize(size).save(path)
    recipe = tmp_path / "pixels.vt"
    recipe.write_text(
        f"finetune vision,mlp on {QWEN}\nusing lora\nfrom ./data\nask \"What colour is the shape?\"\n"
        "resize between 4x28x28 and 16x28x28 pixels\ntrain for 2 steps\nbatch 2\nmicro batch 2\n"
        "learning rate 2e-3\nwarmup 0 steps\nmax length 256\nwith responses_only\n"
        f"save to \"{tmp_path / 'runs'}\"\n", encoding="utf-8")
    run = run_target(str(recipe))
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["state"] == "finished"
    plan = json.loads((run / "plan.json").read_text())
    assert plan["images"]["resize"] == {"mode": "pixels", "min_pixels": 3136, "max_pixels": 12544, "multiple": 28}
    losses = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in losses if "loss" in m][:2] == [1, 2]
    assert all(math.isfinite(m["loss"]) for m in losses if "loss" in m)
