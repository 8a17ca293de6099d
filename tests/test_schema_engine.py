"""The fast schema evaluator (vtc.schema_engine) earns its place: both shipped schemas use only the keywords it
implements, and on every generated document -- recipe documents lowered from the fuzz corpus's recipes, and recipe
documents and plans mutated at random -- it reports exactly the errors jsonschema (the reference engine) reports.

VTC_FUZZ_EXAMPLES=5000 runs a longer search, as for tests/test_fuzz.py.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from test_fuzz import CLAUSES
from vtc import schema_engine
from vtc.compiler.lower import lower_with_sources
from vtc.compiler.parser import parse_source
from vtc.compiler.pipeline import compile_source
from vtc.compiler.validate import schema as recipe_schema
from vtc.plans import plan_schema

ROOT = Path(__file__).resolve().parents[1]
_N = int(os.environ.get("VTC_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=_N, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                       HealthCheck.data_too_large])


def agree(document, schema) -> None:
    fast = [(k, p) for k, p, _, _ in schema_engine.raw_errors(document, schema, "fast")]
    reference = [(k, p) for k, p, _, _ in schema_engine.raw_errors(document, schema, "jsonschema")]
    assert fast == reference, json.dumps(document, default=str)[:2000]


@pytest.mark.parametrize("name,schema", [("recipe", recipe_schema), ("plan", plan_schema)])
def test_the_schemas_use_only_keywords_the_fast_engine_implements(name, schema):
    unknown = schema_engine.keywords_used(schema()) - schema_engine.KEYWORDS - schema_engine.ANNOTATIONS
    assert not unknown, f"{name} schema uses {sorted(unknown)}: implement them in vtc.schema_engine or avoid them"


def test_the_keyword_check_would_notice():
    schema = {"type": "object", "properties": {"x": {"type": "string", "pattern": "^a"}}}
    assert "pattern" in schema_engine.keywords_used(schema) - schema_engine.KEYWORDS


# --- documents lowered from the fuzz corpus's recipes --------------------------------------------------------------


@FUZZ
@given(st.lists(CLAUSES, min_size=1, max_size=12))
def test_engines_agree_on_fuzzed_recipes(clauses):
    recipe, _ = parse_source("\n".join(clauses) + "\n", "r.vt", partial=True)
    if recipe is None:
        return
    document, *_ = lower_with_sources(recipe, None)
    agree(document, recipe_schema())


# --- documents and plans mutated at random -------------------------------------------------------------------------


def _base_documents() -> list[dict]:
    docs = []
    for path in sorted((ROOT / "recipes").glob("*.vt")) + sorted((ROOT / "tests" / "golden" / "bad").glob("*.vt")):
        recipe, _ = parse_source(path.read_text(encoding="utf-8"), str(path), partial=True)
        if recipe is not None:
            docs.append(lower_with_sources(recipe, None)[0])
    return docs


def _base_plans() -> list[dict]:
    plans = [json.loads(p.read_text()) for p in sorted((ROOT / "tests" / "golden" / "plans").glob("*.json"))]
    for text in ("finetune all on llama-3.2-vision\nusing full\nfrom org/data\nholdout 10%\nwarmup 3%\n",
                 "finetune mlp on someorg/vlm\nfrom ./d\nresize none\nevaluate on ./v\n",
                 "finetune vision on gemma-3\nfrom ./d\nresize 640x480\nwindow 40 400\n"):
        plans.append(compile_source(text, "/abs/r.vt", base_dir="/abs").plan)
    return plans


DOCUMENTS = _base_documents()
PLANS = _base_plans()


def _enums(schema) -> list:
    found = []

    def walk(node):
        if isinstance(node, dict):
            found.extend(node.get("enum", []))
            if "const" in node:
                found.append(node["const"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)
    walk(schema)
    return found


# Values that sit on the schemas' edges: bounds, integral floats, booleans that equal 0 and 1, enum words.
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from([0, 1, 2, 16, 50, 64, 1024, 4096, 8192, 8193,
                                                                   2**32, -100001]),
    st.sampled_from([0.0, 0.5, 1.0, 2.0, 0.49, 1e-3, 100.0, -0.0, 1.5]), st.text(max_size=6),
    st.sampled_from(sorted({str(v) for v in _enums(recipe_schema()) + _enums(plan_schema()) if isinstance(v, str)})),
)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["x", "mode", "size", "source", "kind", "split",
                                                                  "rank", "from", "column", "unit", "amount"]),
                                                 inner, max_size=3)), max_leaves=6)


def _paths(value, path=()) -> list[tuple]:
    out = [path]
    if isinstance(value, dict):
        for key, sub in value.items():
            out += _paths(sub, path + (key,))
    elif isinstance(value, list):
        for i, sub in enumerate(value):
            out += _paths(sub, path + (i,))
    return out


@st.composite
def mutated(draw, bases):
    document = copy.deepcopy(draw(st.sampled_from(bases)))
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(document) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = document
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["replace", "delete", "add", "duplicate"]))
        if action == "replace":
            parent[path[-1]] = draw(VALUES)
        elif action == "delete":
            del parent[path[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.sampled_from(["extra", "rnk", "batchh", "mode", "size"]))] = draw(VALUES)
        elif action == "duplicate" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[path[-1]]))
    return document


def test_engines_agree_on_the_shipped_recipes_goldens_and_odd_documents():
    for document in DOCUMENTS + [{}, {"model": 3, "parts": [], "train_data": {}}, {
            "model": "x", "parts": ["all", "all"], "train_data": {"source": ""}, "resize": "big", "batch": 2.5,
            "lora": {"rank": 16.0, "rnk": 1}, "flags": {"packing": True, "pakcing": False}, "holdout": -1,
            "warmup": {"amount": 1}}]:
        agree(document, recipe_schema())
    for plan in PLANS:
        agree(plan, plan_schema())


@FUZZ
@given(mutated(DOCUMENTS))
def test_engines_agree_on_mutated_recipe_documents(document):
    agree(document, recipe_schema())


@FUZZ
@given(mutated(PLANS))
def test_engines_agree_on_mutated_plans(plan):
    agree(plan, plan_schema())
