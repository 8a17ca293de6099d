"""`finetune ... projector`: the vision-language projector (Qwen-VL's model.visual.merger, Llama 3.2 Vision's
model.multi_modal_projector) trains with LoRA, or in full (`projector full`: PEFT modules_to_save; `using full`),
the plan says so with its provenance, both backends get it, and the adapter loads with plain transformers + PEFT.
"""

import re

import pytest

from runtime_helpers import compile_text, make_shapes, text_plan

MERGER = ("model.visual.merger.mlp.0", "model.visual.merger.mlp.2")
MLLAMA = "model.multi_modal_projector"


def codes(tmp_path, text: str) -> list[str]:
    return [d.code for d in compile_text(tmp_path, text).diagnostics if d.is_error]


# --- the plan -----------------------------------------------------------------------------------------------------


def test_projector_with_lora_is_in_the_target_regex(tmp_path):
    plan = text_plan(tmp_path, "finetune language, projector on tiny-qwen2.5-vl\nusing lora\nfrom ./data\n")
    assert plan["parts"]["projector"] == "lora"
    assert plan["provenance"]["/parts/projector"] == "r.vt:1"
    target = re.compile(plan["lora"]["target_modules"])
    assert all(target.fullmatch(name) for name in MERGER)
    assert target.fullmatch("model.language_model.layers.0.self_attn.q_proj")
    assert not target.fullmatch("model.visual.blocks.0.attn.qkv") and not target.fullmatch("lm_head")
    assert plan["lora"]["modules_to_save"] == []
    trainable = plan["estimates"]["trainable_parameters"]
    assert trainable["projector"] > 0 and trainable["vision"] == {"attention": 0, "mlp": 0}


def test_projector_full_under_lora_is_a_module_to_save(tmp_path):
    plan = text_plan(tmp_path, "finetune language, projector on tiny-llama-3.2-vision\nusing lora\nprojector full\n"
                             "from ./data\n")
    assert plan["parts"]["projector"] == "full"
    assert plan["provenance"]["/parts/projector"] == "r.vt:3"
    assert plan["lora"]["modules_to_save"] == [MLLAMA]
    assert plan["provenance"]["/lora/modules_to_save"] == "r.vt:3"
    assert not re.compile(plan["lora"]["target_modules"]).fullmatch(MLLAMA)
    lora = text_plan(tmp_path, "finetune language, projector on tiny-llama-3.2-vision\nusing lora\nfrom ./data\n")
    assert re.compile(lora["lora"]["target_modules"]).fullmatch(MLLAMA)
    # In full the projector counts every weight and bias; with LoRA rank x (in + out).
    assert plan["estimates"]["trainable_parameters"]["projector"] > lora["estimates"]["trainable_parameters"][
        "projector"] > 0


def test_projector_under_full_finetuning(tmp_path):
    plan = text_plan(tmp_path, "finetune vision, projector on tiny-qwen2.5-vl\nusing full\nfrom ./data\n")
    assert plan["parts"]["projector"] == "full" and plan["lora"] is None
    regex = re.compile(plan["trainable_regex"])
    for name in ("model.visual.merger.mlp.0.weight", "model.visual.merger.mlp.2.bias",
                 "model.visual.merger.ln_q.weight", "model.visual.blocks.0.attn.qkv.weight"):
        assert regex.fullmatch(name), name
    assert not regex.fullmatch("model.language_model.layers.0.self_attn.q_proj.weight")
    alone = text_plan(tmp_path, "finetune projector on tiny-qwen2.5-vl\nusing full\nfrom ./data\n")
    assert not any(alone["parts"][k] for k in ("vision", "language", "attention", "mlp"))
    regex = re.compile(alone["trainable_regex"])
    assert regex.fullmatch("model.visual.merger.mlp.0.weight")
    assert not regex.fullmatch("model.visual.blocks.0.attn.qkv.weight")


def test_all_keeps_its_meaning(tmp_path):
    """`all` under LoRA: the towers' layers as before, not the projector; under full: every weight, so the plan
    says the projector trains in full."""
    lora = text_plan(tmp_path, "finetune all on tiny-qwen2.5-vl\nusing lora\nfrom ./data\n")
    assert lora["parts"]["projector"] == "frozen" and lora["lora"]["modules_to_save"] == []
    assert not any(re.compile(lora["lora"]["target_modules"]).fullmatch(n) for n in MERGER)
    full = text_plan(tmp_path, "finetune all on tiny-qwen2.5-vl\nusing full\nfrom ./data\n")
    assert full["parts"]["projector"] == "full" and full["trainable_regex"] == ".*"


def test_all_with_the_projector_adds_it_without_a_warning(tmp_path):
    result = compile_text(tmp_path, "finetune all, projector on tiny-qwen2.5-vl\nusing lora\nfrom ./data\n")
    assert result.plan["parts"]["projector"] == "lora" and all(
        result.plan["parts"][k] for k in ("vision", "language", "attention", "mlp"))
    assert "VT221" not in [d.code for d in result.diagnostics]
    warned = compile_text(tmp_path, "finetune all, vision on tiny-qwen2.5-vl\nusing lora\nfrom ./data\n")
    assert "VT221" in [d.code for d in warned.diagnostics]


def test_plan_and_explain_say_it_in_words(tmp_path):
    from vtc.compiler.explain import explain_plan
    from vtc.compiler.plan import summarize_plan

    plan = text_plan(tmp_path, "finetune language, projector on tiny-qwen2.5-vl\nusing lora\nprojector full\n"
                             "from ./data\n")
    table = summarize_plan(plan)
    assert re.search(r"projector\s+in full\s+r\.vt:3", table)
    assert "trains in full" in explain_plan(plan)


@pytest.mark.parametrize("text, code", [
    ("finetune vision, mlp on tiny-qwen2.5-vl\nprojector full\nfrom ./data\n", "VT216"),
    ("finetune all on tiny-qwen2.5-vl\nusing lora\nprojector lora\nfrom ./data\n", "VT216"),
    ("finetune language, projector on tiny-qwen2.5-vl\nusing full\nprojector lora\nfrom ./data\n", "VT217"),
    ("finetune language, projector on gemma-3\nfrom ./data\n", "VT218"),
    ("finetune projector on tiny-qwen2.5-vl\nusing lora\nprojector full\nfrom ./data\n", "VT219"),
    ("finetune projector on tiny-qwen2.5-vl\nprojector most\nfrom ./data\n", "VT102"),
])
def test_projector_mistakes(tmp_path, text, code):
    result = compile_text(tmp_path, text)
    found = [d for d in result.diagnostics if d.code == code]
    assert found and result.plan is None, [d.render(result.sources) for d in result.diagnostics]
    assert found[0].span is not None and found[0].help


def test_fmt_keeps_the_projector_clause():
    from vtc.compiler.fmt import format_source

    text = "finetune language,projector on x\nprojector   full\nfrom ./d\nlearning rate 2e-4,projector 1e-4\n"
    out, problems = format_source(text, "r.vt")
    assert not problems and "learning rate 2e-4, projector 1e-4" in out
    assert "finetune language, projector on x" in out and "projector full" in out


# --- the backends' arguments -----------------------------------------------------------------------------------


@pytest.fixture
def unsloth_backend(monkeypatch):
    """vtc.runtime.backends.unsloth_backend imported over stand-ins for unsloth (it cannot run here)."""
    import sys

    from runtime_helpers import unsloth_backend_over_stand_ins

    module = unsloth_backend_over_stand_ins(monkeypatch)
    yield module
    sys.modules.pop("vtc.runtime.backends.unsloth_backend", None)


def test_unsloth_gets_the_target_regex_and_modules_to_save_only_for_the_projector(tmp_path, unsloth_backend):
    peft_arguments = unsloth_backend.peft_arguments

    frozen = text_plan(tmp_path, "finetune vision, mlp on tiny-qwen2.5-vl\nusing lora\nfrom ./data\n")
    args = peft_arguments(frozen)
    assert "target_modules" not in args and "modules_to_save" not in args
    assert args["finetune_vision_layers"] and args["finetune_mlp_modules"]
    lora = text_plan(tmp_path, "finetune vision, projector on tiny-qwen2.5-vl\nusing lora\nfrom ./data\n")
    args = peft_arguments(lora)
    assert args["target_modules"] == lora["lora"]["target_modules"] and "modules_to_save" not in args
    full = text_plan(tmp_path, "finetune vision, projector on tiny-llama-3.2-vision\nprojector full\nfrom ./data\n")
    args = peft_arguments(full)
    assert args["target_modules"] == full["lora"]["target_modules"] and args["modules_to_save"] == [MLLAMA]


# --- the runtime: train, save, reload with plain PEFT -------------------------------------------------------------


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    pytest.importorskip("peft")
    return make_shapes(tmp_path_factory.mktemp("projector") / "shapes", n=8, seed=5)


def _plan(shapes, model: str, setting: str) -> dict:
    from runtime_helpers import make_plan

    return make_plan(shapes, model=model, steps=2, lr=5e-3, finetune="language, attention, projector",
                     clauses=(f"projector {setting}", "optimizer adamw_torch"))


def _projector_params(model, family_name: str) -> dict:
    return {n: p.detach().clone() for n, p in model.named_parameters() if family_name in n}


@pytest.mark.parametrize("model_name, where", [("tiny-qwen2.5-vl", "visual.merger"),
                                               ("tiny-llama-3.2-vision", "multi_modal_projector")])
@pytest.mark.parametrize("setting", ["lora", "full"])
def test_the_projector_trains_and_the_adapter_reloads_with_plain_peft(shapes, tmp_path, model_name, where, setting):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    from vtc.runtime.backends.transformers_backend import TransformersBackend
    from vtc.runtime.model_path import resolve_model_path
    from vtc.runtime.sources import load_rows

    plan = _plan(shapes, model_name, setting)
    assert plan["parts"]["projector"] == setting
    be = TransformersBackend()
    path = resolve_model_path(plan)
    model, processor = be.load(plan, path)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad and where in n}
    if setting == "lora":
        assert trainable and all(".lora_" in n for n in trainable)
    else:
        assert trainable and all(".modules_to_save.default." in n for n in trainable)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if n in trainable}
    rows = load_rows(plan, "train")
    trainer = be.trainer(plan, model, processor, rows, be.collator(plan, model, processor), str(tmp_path / "ck"), [])
    be.for_training(model)
    assert trainer.train().global_step == 2
    moved = {n for n, p in model.named_parameters() if n in before and not torch.equal(before[n], p.detach())}
    assert moved, "the projector did not train"

    out = tmp_path / "adapter"
    be.save_adapter(model, processor, str(out))
    trained = {n: p.detach().clone() for n, p in model.named_parameters() if where in n}
    # Plain transformers + PEFT, no vtc: the base model, then the adapter.
    base = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32)
    reloaded = PeftModel.from_pretrained(base, str(out))
    again = dict(reloaded.named_parameters())
    assert set(trained) <= set(again)
    for name, value in trained.items():
        assert torch.equal(again[name].detach().to(value.dtype), value), name
    if setting == "full":  # the projector's weights in use are the trained ones, not the base model's
        merged = reloaded.merge_and_unload()
        projector = {n: p for n, p in merged.named_parameters() if where in n}
        assert projector
        base_fresh = dict(AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32).named_parameters())
        assert any(not torch.equal(p.detach(), base_fresh[n].detach()) for n, p in projector.items())


def test_a_short_run_trains_the_projector(shapes, tmp_path):
    """`vtc run` end to end (2 steps) with `projector full`: the adapter folder holds the projector's weights."""
    from runtime_helpers import quoted

    from vtc.commands import run_target

    recipe = shapes.parent / "projector-run.vt"
    recipe.write_text(
        f"finetune language, projector on tiny-qwen2.5-vl\nusing lora\nprojector full\nfrom ./{shapes.name}\n"
        'ask "What colour is the shape?"\nresize 112\ntrain for 2 steps\nbatch 2\nmicro batch 2\n'
        "learning rate 1e-3, projector 1e-4\noptimizer adamw_torch\nmax length 512\n"
        f"save to {quoted(tmp_path / 'runs')}\n", encoding="utf-8")
    run = run_target(str(recipe))
    adapters = list(run.rglob("adapter_model.safetensors"))
    assert adapters, sorted(str(p) for p in run.rglob("*"))
    from safetensors import safe_open

    with safe_open(str(adapters[0]), "pt") as f:
        keys = list(f.keys())
    assert any("visual.merger" in k for k in keys) and any("lora_A" in k for k in keys)
