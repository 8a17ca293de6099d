"""The plan is a contract: every plan vtc writes passes plan.schema.json, and `vtc run plan.json` refuses a plan that
is malformed, of another version, or edited into something invalid, with a diagnostic that names the JSON pointer
and what is expected -- never a KeyError or a silent fallback."""

import copy
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from vtc.cli import cli
from vtc.compiler.pipeline import compile_source
from vtc.plans import PLAN_VERSION, plan_problems, plan_schema, plan_to_json, read_plan

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = sorted((Path(__file__).parent / "golden" / "plans").glob("*.json"))

VARIANTS = {
    "full-hub-data": "finetune all on llama-3.2-vision\nusing full\nfrom unsloth/Radiology_mini split train\n"
                     "holdout 10%\ntrain for 60 steps\nwarmup 3%\nexport merged\n",
    "lora-every-clause": "finetune language on qwen2.5-vl-3b\nusing lora\nfrom ./d\nevaluate on ./v split test\n"
                         "lora rank 8 alpha 32 dropout 0.05\nwith rslora\nwithout gradient_checkpointing\n"
                         "schedule cosine\noptimizer adamw_torch\nweight decay 0.01\nmax length 4096\nseed 7\n"
                         "metric exact_match, cer\nsave to ./out\ncheckpoint every 0 steps\nresize 640x480\n"
                         'system "Be brief."\nanswer from column report\nimages from column img\nbad rows skip\n'
                         "window 40 400\ntiff pages all\nprecision bf16\nbatch 12\nmicro batch 3\n",
    "unknown-family": "finetune all on someorg/unknown-vlm\nfrom ./d\nresize none\n",
}


def compiled(name: str) -> dict:
    result = compile_source(VARIANTS[name], "/abs/r.vt", base_dir="/abs")
    assert result.plan is not None, [d.message for d in result.diagnostics]
    return result.plan


def tiny_plan() -> dict:
    return json.loads(GOLDEN[[p.stem for p in GOLDEN].index("demo-shapes")].read_text())


@pytest.mark.parametrize("engine", ["fast", "jsonschema"])
def test_every_plan_vtc_makes_passes_its_schema(engine):
    plans = [json.loads(p.read_text()) for p in GOLDEN] + [compiled(name) for name in VARIANTS]
    for plan in plans:
        assert plan["plan_version"] == PLAN_VERSION
        assert plan_problems(plan, engine) == [], plan["recipe"]


def test_vtc_plan_output_is_checked(tmp_path):
    (tmp_path / "r.vt").write_text("finetune all on tiny-qwen2.5-vl\nusing lora\nfrom ./d\n")
    out = tmp_path / "plan.json"
    result = CliRunner().invoke(cli, ["plan", str(tmp_path / "r.vt"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert read_plan(out)["inputs"]["fingerprint"] == "quick"  # the saved plan, inputs included, reads back


def test_schema_command_prints_the_plan_schema():
    import jsonschema

    result = CliRunner().invoke(cli, ["schema", "--plan"])
    assert result.exit_code == 0
    assert json.loads(result.output) == plan_schema()
    jsonschema.Draft202012Validator.check_schema(json.loads(result.output))


# --- every required key, removed or corrupted, is refused by `vtc run` --------------------------------------------


def _node_for(value, node: dict, root: dict) -> dict:
    """The schema node that describes ``value`` (following $ref, and the oneOf form the value matches)."""
    from vtc.schema_engine import raw_errors_at

    while True:
        if "$ref" in node:
            node = root["$defs"][node["$ref"].rsplit("/", 1)[-1]]
        elif "oneOf" in node:
            node = next(alt for alt in node["oneOf"] if not raw_errors_at(value, alt, (), root))
        else:
            return node


def members(plan: dict) -> list[tuple[tuple, bool]]:
    """(path, required) of every object member of the plan (the provenance table's entries excluded)."""
    root = plan_schema()
    found = []

    def walk(value, node, path):
        node = _node_for(value, node, root)
        if isinstance(value, dict):
            for key, sub in value.items():
                found.append((path + (key,), key in node.get("required", [])))
                if path + (key,) == ("provenance",):
                    continue
                child = node.get("properties", {}).get(key, node.get("additionalProperties", {}))
                walk(sub, child if isinstance(child, dict) else {}, path + (key,))
        elif isinstance(value, list):
            for i, sub in enumerate(value):
                walk(sub, node.get("items", {}), path + (i,))
    walk(plan, root, ())
    return found


def pointer(path) -> str:
    return "".join(f"/{p}" for p in path)


def _edit(plan: dict, path: tuple, action: str) -> dict:
    plan = copy.deepcopy(plan)
    parent = plan
    for key in path[:-1]:
        parent = parent[key]
    if action == "remove":
        del parent[path[-1]]
    else:  # a value of another kind
        parent[path[-1]] = "corrupted" if isinstance(parent[path[-1]], (dict, list)) else {"corrupted": True}
    return plan


def _run(tmp_path, plan: dict):
    target = tmp_path / "plan.json"
    target.write_text(plan_to_json(plan))
    result = CliRunner().invoke(cli, ["run", str(target), "--runs-dir", str(tmp_path / "runs")])
    return result, result.output + (getattr(result, "stderr", "") or "")


def _cases():
    plans = {"tiny-lora": tiny_plan(), "full-hub-data": compiled("full-hub-data")}
    out = []
    for name, plan in plans.items():
        for path, required in members(plan):
            if required:
                out.append(pytest.param(name, plan, path, "remove", id=f"{name}:remove:{pointer(path)}"))
            if path[0] != "provenance" or len(path) == 1:
                out.append(pytest.param(name, plan, path, "corrupt", id=f"{name}:corrupt:{pointer(path)}"))
    return out


def test_the_cases_cover_every_section():
    sections = {path[0] for _name, plan, path, action in (c.values for c in _cases()) if action == "remove"}
    assert sections == set(plan_schema()["required"])


@pytest.mark.parametrize("name,plan,path,action", _cases())
def test_vtc_run_refuses_a_broken_plan(tmp_path, name, plan, path, action):
    result, text = _run(tmp_path, _edit(plan, path, action))
    assert result.exit_code == 1, text
    assert "Traceback" not in text and (result.exception is None or isinstance(result.exception, SystemExit))
    if path == ("plan_version",):
        assert "error[VT510]" in text, text
    else:
        assert "error[VT514]" in text and pointer(path) in text, text
    assert not (tmp_path / "runs").exists()  # refused before anything ran


# --- the rules between fields, the version, the place -------------------------------------------------------------


@pytest.mark.parametrize("edit,where,words", [
    (lambda p: p.update(method="full"), "/lora", "must be null with method \"full\""),
    (lambda p: p["training"].update(epochs=1), "/training/steps", "exactly one of /training/steps"),
    (lambda p: p["training"].update(warmup_ratio=0.1), "/training/warmup_steps", "exactly one of"),
    (lambda p: p["data"].update(holdout=0.1), "/data/holdout", "one or the other"),
    (lambda p: p["model"].update(markers=None), "/training/responses_only", "needs /model/markers"),
    (lambda p: p.update(trainable_regex=".*"), "/trainable_regex", "must be null with method \"lora\""),
    (lambda p: p["training"].update(micro_batch=3), "/training/micro_batch", "must divide /training/batch"),
    (lambda p: p["training"].update(micro_batch=2), "/training/batching/fallback", "null when it is pinned"),
    (lambda p: p["training"]["batching"].update(fallback=3), "/training/batching/fallback", "must divide"),
    (lambda p: p["training"]["batching"]["memory_gib"].reverse(), "/training/batching/memory_gib",
     "smallest first"),
])
def test_rules_between_fields(tmp_path, edit, where, words):
    plan = tiny_plan()
    plan["training"]["responses_only"] = True
    edit(plan)
    target = tmp_path / "plan.json"
    target.write_text(plan_to_json(plan))
    with pytest.raises(Exception) as info:
        read_plan(target)
    found = info.value.diagnostics
    assert {d.code for d in found} == {"VT514"}
    assert any(d.message.startswith(where) and words in d.message for d in found), [d.message for d in found]


def test_messages_say_what_is_expected_and_where(tmp_path):
    plan = tiny_plan()
    plan["training"]["batch"] = "two"
    plan["images"]["resize"] = {"mode": "longest", "size": [112, 112]}
    plan["training"]["optimiser"] = "adamw_torch"
    target = tmp_path / "plan.json"
    text = plan_to_json(plan)
    target.write_text(text)
    with pytest.raises(Exception) as info:
        read_plan(target)
    found = {d.message: d.span.line for d in info.value.diagnostics}
    line = {key: text.splitlines().index(next(l for l in text.splitlines() if l.strip().startswith(f'"{key}"'))) + 1
            for key in ("batch", "optimiser")}
    assert found['/training/batch must be a whole number, not "two"'] == line["batch"]
    assert found["/images/resize/size must be a whole number, not [112, 112]"] > 0
    assert found["/training/optimiser is not a field of a plan (misspelt, or from another version of vtc)"] == \
        line["optimiser"]


def test_another_version_or_not_a_plan(tmp_path):
    target = tmp_path / "plan.json"
    plan = tiny_plan()
    plan["plan_version"] = 1
    target.write_text(json.dumps(plan))
    result, text = _run(tmp_path, plan)
    assert result.exit_code == 1 and "plan_version 1, made by an older vtc; this vtc runs version 6" in text
    plan["plan_version"] = 2  # batch was rows per step then: the message says what changed
    result, text = _run(tmp_path, plan)
    assert result.exit_code == 1 and "plan_version 2 (version 3 changed what training.batch means" in text
    assert "start the run again" in text
    target.write_text("[1, 2]")
    with pytest.raises(Exception) as info:
        read_plan(target)
    assert info.value.diagnostics[0].code == "VT510" and "not a vtc plan" in info.value.diagnostics[0].message


def test_a_compiler_bug_is_reported_not_run(monkeypatch):
    """VT098: the plan is checked before it leaves the compiler. No recipe is known to produce a plan that fails its
    schema, so the bug is simulated: the projection loses a value."""
    import vtc.compiler.plan as P

    real = P.build_plan

    def lossy(resolved):
        plan = real(resolved)
        del plan["training"]["seed"]
        return plan

    monkeypatch.setattr(P, "build_plan", lossy)
    result = compile_source("finetune all on qwen2.5-vl\nfrom ./x\n", "r.vt", base_dir="/abs")
    assert result.plan is None
    [d] = [d for d in result.diagnostics if d.is_error]
    assert d.code == "VT098" and "/training/seed is missing" in d.message and "bug in vtc" in d.help
