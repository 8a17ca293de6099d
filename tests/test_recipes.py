"""Every shipped recipe compiles without errors; golden plans (VTC_UPDATE_GOLDEN=1 pytest tests/test_recipes.py
rewrites them)."""

import json
import os
import re
from pathlib import Path

import pytest

from vtc.compiler.pipeline import compile_file
from vtc.plans import plan_to_json

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "recipes").glob("*.vt"))
GOLDEN = Path(__file__).parent / "golden" / "plans"


def _included(paths):
    """Recipes that other recipes include (site bases): they are compiled through their includers."""
    names = set()
    for p in paths:
        names.update(re.findall(r'^\s*include\s+"([^"]+)"', p.read_text(encoding="utf-8"), re.M))
    return names


BASES = _included(RECIPES)
MAINS = [p for p in RECIPES if p.name not in BASES]


def test_there_are_recipes_and_a_base():
    assert len(MAINS) >= 5 and BASES


@pytest.mark.parametrize("path", MAINS, ids=lambda p: p.name)
def test_recipe_compiles(path):
    result = compile_file(str(path))
    errors = [d.render(result.sources) for d in result.diagnostics if d.is_error]
    assert not errors, "\n".join(errors)
    assert result.plan is not None
    text = path.read_text(encoding="utf-8")
    assert text.startswith("#") and "Run:" in text and "Needs:" in text  # each recipe says how to run it


@pytest.mark.parametrize("path", MAINS, ids=lambda p: p.name)
def test_golden_plan(path):
    plan = compile_file(str(path)).plan
    text = plan_to_json(plan).replace(json.dumps(plan["base_dir"])[1:-1], "<BASE_DIR>")
    golden = GOLDEN / (path.stem + ".json")
    if os.environ.get("VTC_UPDATE_GOLDEN"):
        golden.write_text(text, encoding="utf-8")
    assert golden.exists(), f"missing golden {golden}; run VTC_UPDATE_GOLDEN=1 pytest {__file__}"
    assert text == golden.read_text(encoding="utf-8")


def test_plan_is_deterministic():
    a = plan_to_json(compile_file(str(ROOT / "recipes" / "receipts.vt")).plan)
    b = plan_to_json(compile_file(str(ROOT / "recipes" / "receipts.vt")).plan)
    assert a == b and a.endswith("}\n")


def test_include_provenance_names_the_base():
    plan = compile_file(str(ROOT / "recipes" / "receipts.vt")).plan
    assert plan["recipe"]["files"] == ["receipts.vt", "site-base.vt"]
    assert plan["provenance"]["/training/learning_rate"] == "site-base.vt:9"
    assert plan["provenance"]["/training/epochs"] == "receipts.vt:13"
    assert plan["provenance"]["/evaluation/max_new_tokens"] == "default"
    assert plan["provenance"]["/model/id"] == "registry"
