"""Codes that no other test made vtc report, each from a real input through vtc's public functions.

Recipes are compiled with vtc.compiler.pipeline; data problems are built in tmp_path and read through a compiled
recipe's plan (vtc.runtime.sources.load_rows, vtc.runtime.validate.scan_data), so that the tests do not depend on the
plan's layout. Three codes guard against what no input is known to cause, and their tests simulate it (each says
how): VT098 and VT099 (a bug or a stack overflow in the compiler) and VT506 (a model whose layers are named otherwise
than its family's); each plan edited by hand has its one edit on a line marked PLAN EDIT.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from vtc.compiler.pipeline import compile_file, compile_source  # noqa: E402
from vtc.diagnostics import Span, VtcError, render_all  # noqa: E402

FIRST_LINES = "finetune all on tiny-qwen2.5-vl\nfrom ./data\n"


@pytest.fixture(autouse=True)
def image_cache(tmp_path, monkeypatch):
    """The data check stores prepared images in the image cache: keep the tests' out of the user's."""
    monkeypatch.setenv("VTC_IMAGE_CACHE", str(tmp_path / "image-cache"))


def only(diagnostics, code: str):
    """The one diagnostic of ``code`` among ``diagnostics``."""
    found = [d for d in diagnostics if d.code == code]
    assert len(found) == 1, render_all(diagnostics)
    return found[0]


def plan_for(folder: Path, recipe: str = FIRST_LINES) -> dict:
    """The plan of a recipe written into ``folder`` (its `from ./data` is folder/data)."""
    path = folder / "recipe.vt"
    path.write_text(recipe, encoding="utf-8")
    result = compile_file(str(path))
    assert result.plan is not None, render_all(result.diagnostics, result.sources)
    return result.plan


def png(path: Path, size=(160, 120)) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (200, 30, 30)).save(path)
    return path


def jsonl(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def load_error(plan: dict, which: str = "train") -> list:
    from vtc.runtime.sources import load_rows

    with pytest.raises(VtcError) as exc:
        load_rows(plan, which)
    return exc.value.diagnostics


# --- VT0xx, VT1xx, VT3xx: recipes ---------------------------------------------------------------------------------


def test_vt099_a_parser_that_runs_out_of_stack_reports_instead_of_crashing(monkeypatch):
    """Simulated: the parser reads a line at a time and no input is known to recurse deeply; this checks the
    last-resort guard in parse_source by making the parser itself raise RecursionError."""
    from vtc.compiler import parser

    def too_deep(*args, **kwargs):
        raise RecursionError

    monkeypatch.setattr(parser, "_parse_source", too_deep)
    result = compile_source(FIRST_LINES, "xray.vt")
    d = only(result.diagnostics, "VT099")
    assert result.plan is None and d.is_error
    assert d.span == Span("xray.vt", 1, 1, 1, 1) and "too deeply nested" in d.message


def test_vt099_a_compile_that_runs_out_of_stack_reports_instead_of_crashing(monkeypatch):
    """Simulated: includes nest at most 32 files deep (VT304), so lowering never exhausts the stack; this checks
    compile_source's last-resort guard by making the lowering stage raise RecursionError."""
    from vtc.compiler import lower

    def too_deep(*args, **kwargs):
        raise RecursionError

    monkeypatch.setattr(lower, "lower_with_sources", too_deep)
    result = compile_source(FIRST_LINES, "xray.vt")
    d = only(result.diagnostics, "VT099")
    assert result.plan is None and d.span.file == "xray.vt" and d.span.line == 1
    assert "too deeply nested" in d.message


def test_vt098_a_plan_that_fails_its_own_schema_is_reported_as_a_bug(monkeypatch, tmp_path):
    """Simulated: the compiler's plans pass their schema, so this makes the plan stage drop a required field and
    checks that compile_source reports the bug instead of returning the plan."""
    from vtc.compiler import plan as plan_stage

    build_plan = plan_stage.build_plan

    def without_method(*args, **kwargs):
        plan = build_plan(*args, **kwargs)
        del plan["method"]
        return plan

    monkeypatch.setattr(plan_stage, "build_plan", without_method)
    result = compile_source(FIRST_LINES, str(tmp_path / "xray.vt"))
    d = only(result.diagnostics, "VT098")
    assert result.plan is None and d.span == Span(str(tmp_path / "xray.vt"))
    assert "internal error: the plan vtc made has /method is missing" in d.message and "bug" in d.help


def test_vt103_a_number_too_large_for_a_float_is_the_wrong_kind_of_value():
    # The grammar reads `1e400` as a number; it is infinite as a float, so lowering keeps the text, and the schema
    # says it is not a number.
    result = compile_source(FIRST_LINES + "learning rate 1e400\n", "xray.vt")
    d = only(result.diagnostics, "VT103")
    assert result.plan is None and d.is_error
    assert (d.span.file, d.span.line, d.span.column) == ("xray.vt", 3, 15)
    assert "`learning rate` needs a number, not `1e400`" in d.message and "2e-4" in d.help


def test_vt107_an_empty_value():
    result = compile_source('finetune all on tiny-qwen2.5-vl\nfrom ""\n', "xray.vt")
    d = only(result.diagnostics, "VT107")
    assert result.plan is None
    assert (d.span.line, d.span.column, d.span.end_column) == (2, 6, 8)
    assert "`from` is empty" in d.message


def test_vt304_includes_nested_too_deep(tmp_path):
    for i in range(40):
        (tmp_path / f"level{i:02d}.vt").write_text(f'include "level{i + 1:02d}.vt"\n' if i < 39 else "batch 2\n",
                                                   encoding="utf-8")
    recipe = tmp_path / "xray.vt"
    recipe.write_text(FIRST_LINES + 'include "level00.vt"\n', encoding="utf-8")
    result = compile_file(str(recipe))
    d = only(result.diagnostics, "VT304")
    assert result.plan is None
    # The main file includes level00.vt, ... level30.vt is the 32nd file of the chain: its include is refused.
    assert (Path(d.span.file).name, d.span.line, d.span.column) == ("level30.vt", 1, 9)
    assert "includes nest deeper than 32 files" in d.message


# --- VT4xx: data ---------------------------------------------------------------------------------------------------


def test_vt400_the_rest_of_a_long_list_of_bad_rows_when_loading(tmp_path):
    jsonl(tmp_path / "data" / "metadata.jsonl", [{"file_name": f"gone-{i}.png", "text": "x"} for i in range(23)])
    diagnostics = load_error(plan_for(tmp_path))
    assert [d.code for d in diagnostics] == ["VT409"] * 20 + ["VT400"]
    last = diagnostics[-1]
    assert last.is_error and last.message == "... and 3 more problem rows" and "vtc check --data" in last.help


def test_vt400_the_rest_of_one_code_in_the_data_check(tmp_path):
    from vtc.runtime.validate import scan_data

    png(tmp_path / "data" / "ok.png")
    jsonl(tmp_path / "data" / "metadata.jsonl",
          [{"file_name": "ok.png", "text": "fine"}] + [{"file_name": f"gone-{i}.png", "text": "x"} for i in range(12)])
    report = scan_data(plan_for(tmp_path))
    shown = report.shown()
    assert [d.code for d in shown] == ["VT409"] * 10 + ["VT400"]
    more = shown[-1]
    assert more.severity.value == "warning" and more.span is None
    assert more.message == "... and 2 more VT409 (listed file missing) not shown"
    assert "VT409" in report.table() and "12" in report.table()  # the summary table counts every one


def test_vt407_no_column_holds_the_image_paths(tmp_path):
    png(tmp_path / "data" / "a.png")
    rows = jsonl(tmp_path / "rows.jsonl", [{"picture": "data/a.png", "text": "red"}])
    d = only(load_error(plan_for(tmp_path, FIRST_LINES.replace("./data", "./rows.jsonl"))), "VT407")
    assert d.span == Span(str(rows), 1)
    assert "cannot tell which column of rows.jsonl holds the image paths (columns: picture, text)" in d.message
    assert "images from column" in d.help


def test_vt407_the_image_column_named_in_the_recipe_does_not_exist(tmp_path):
    png(tmp_path / "data" / "a.png")
    meta = jsonl(tmp_path / "data" / "metadata.jsonl", [{"file_name": "a.png", "text": "red"}])
    plan = plan_for(tmp_path, FIRST_LINES + "images from column photo_file_name\n")
    d = only(load_error(plan), "VT407")
    assert d.span == Span(str(meta))
    assert "no image column `photo_file_name`" in d.message and "file_name" in d.help


def test_vt414_a_malformed_conversation_row(tmp_path):
    png(tmp_path / "data" / "a.png")
    good = {"messages": [{"role": "user", "content": [{"type": "image", "image": "a.png"},
                                                       {"type": "text", "text": "What colour?"}]},
                         {"role": "assistant", "content": "red"}]}
    bad = {"messages": [{"content": "What colour?"}, {"role": "assistant", "content": "red"}]}
    chats = jsonl(tmp_path / "data" / "chats.jsonl", [good, bad])
    d = only(load_error(plan_for(tmp_path, FIRST_LINES.replace("./data", "./data/chats.jsonl"))), "VT414")
    assert d.span == Span(str(chats), 2)
    assert d.message == "line 2 of chats.jsonl: every message needs a role: system, user or assistant"
    assert '"role": "user"' in d.help


def test_vt417_a_parquet_file_that_cannot_be_read(tmp_path):
    pytest.importorskip("datasets")
    broken = tmp_path / "data" / "train.parquet"
    broken.parent.mkdir()
    broken.write_bytes(b"PAR1 this is not parquet data")
    d = only(load_error(plan_for(tmp_path, FIRST_LINES.replace("./data", "./data/train.parquet"))), "VT417")
    assert d.span == Span(str(broken))
    assert d.message.startswith("cannot read parquet file train.parquet: ") and "complete" in d.help


def test_vt418_a_holdout_of_a_single_row(tmp_path):
    png(tmp_path / "data" / "a.png")
    jsonl(tmp_path / "data" / "metadata.jsonl", [{"file_name": "a.png", "text": "red"}])
    d = only(load_error(plan_for(tmp_path, FIRST_LINES + "holdout 10%\n"), "eval"), "VT418")
    assert d.span.file == str(tmp_path / "data" / "metadata.jsonl")
    assert d.message == "cannot hold out 10% of 1 row for evaluation" and "evaluate on" in d.help


# --- VT5xx: the runtime --------------------------------------------------------------------------------------------


def test_vt514_a_plan_file_edited_by_hand(tmp_path):
    from vtc.plans import plan_to_json, read_plan

    plan = plan_for(tmp_path)
    plan["method"] = "sideways"  # PLAN EDIT: the value a hand edit broke
    saved = tmp_path / "plan.json"
    saved.write_text(plan_to_json(plan), encoding="utf-8")
    with pytest.raises(VtcError) as exc:
        read_plan(saved)
    d = only(exc.value.diagnostics, "VT514")
    line = next(n for n, text in enumerate(saved.read_text().splitlines(), 1) if '"method": "sideways"' in text)
    assert d.span == Span(str(saved), line)
    assert d.message.startswith("/method must be one of ") and d.message.endswith('not "sideways"')
    assert "vtc plan recipe.vt -o plan.json" in d.help


# A target regex that names no layer of the tiny model: it stands for a model whose layers are named otherwise than
# the compiler expects for its family.
NO_LAYER = r"no\.such\.layer"


def load_for_training(plan: dict):
    from vtc.runtime.backends.transformers_backend import TransformersBackend
    from vtc.runtime.model_path import resolve_model_path

    return TransformersBackend().load(plan, resolve_model_path(plan))


def test_vt506_lora_parts_that_match_no_layer_of_the_model(tmp_path):
    """Simulated at the plan: the compiler builds its LoRA regex from the layer names of the model's family, so no
    recipe for a model vtc knows selects nothing (see VT220)."""
    pytest.importorskip("peft")
    from runtime_helpers import make_plan, make_shapes

    plan = make_plan(make_shapes(tmp_path / "shapes", n=2), method="lora")
    plan["lora"]["target_modules"] = NO_LAYER  # PLAN EDIT (plan_version 2 layout): the one hand-made value
    with pytest.raises(VtcError) as exc:
        load_for_training(plan)
    d = only(exc.value.diagnostics, "VT506")
    assert d.message == "the parts chosen for LoRA match no layer of this model (tiny-qwen2.5-vl)"
    assert "finetune" in d.help and d.span.line == 1  # at the recipe's `finetune` clause


def test_vt506_full_fine_tuning_parts_that_match_no_weight_of_the_model(tmp_path):
    """Simulated at the plan, as for LoRA above."""
    pytest.importorskip("torch")
    from runtime_helpers import make_plan, make_shapes

    plan = make_plan(make_shapes(tmp_path / "shapes", n=2), method="full")
    plan["trainable_regex"] = NO_LAYER  # PLAN EDIT (plan_version 2 layout): the one hand-made value
    with pytest.raises(VtcError) as exc:
        load_for_training(plan)
    d = only(exc.value.diagnostics, "VT506")
    assert d.message == "the parts chosen for full fine-tuning match no weight of this model (tiny-qwen2.5-vl)"
    assert "finetune" in d.help and d.span.line == 1  # at the recipe's `finetune` clause
