"""`learning rate 2e-4, vision 2e-5, projector 1e-4`: per-part learning rates. The plan keeps the base rate in
training.learning_rate and lists the parts with their rate and the regex of their parameter names
(training.part_learning_rates); the trainer's optimizer has one parameter group per part (and weight-decay split),
and each group steps with its own rate.
"""

import re

import pytest

from runtime_helpers import compile_text, make_shapes, text_plan, two_processes


QWEN = ("finetune vision, language, projector on tiny-qwen2.5-vl\nusing lora\nfrom ./data\n"
        "learning rate 2e-4, vision 2e-5, projector 1e-4\n")


def test_the_plan_lists_each_part_with_its_rate_and_pattern(tmp_path):
    plan = text_plan(tmp_path, QWEN)
    training = plan["training"]
    assert training["learning_rate"] == 2e-4
    assert [(x["part"], x["learning_rate"]) for x in training["part_learning_rates"]] == [
        ("vision", 2e-5), ("projector", 1e-4)]
    assert plan["provenance"]["/training/part_learning_rates"] == "r.vt:4"
    assert plan["provenance"]["/training/learning_rate"] == "r.vt:4"
    vision, projector = (re.compile(x["pattern"]) for x in training["part_learning_rates"])
    # re.search over parameter names, with or without PEFT's prefixes
    assert vision.search("base_model.model.model.visual.blocks.0.attn.qkv.lora_A.default.weight")
    assert vision.search("model.visual.patch_embed.proj.weight")
    assert not vision.search("base_model.model.model.visual.merger.mlp.0.lora_A.default.weight")
    assert projector.search("base_model.model.model.visual.merger.mlp.0.lora_A.default.weight")
    assert projector.search("model.visual.merger.ln_q.weight")
    assert not projector.search("model.language_model.layers.0.mlp.up_proj.weight")


def test_no_part_rates_by_default(tmp_path):
    plan = text_plan(tmp_path, "finetune all on tiny-qwen2.5-vl\nfrom ./data\nlearning rate 1e-4\n")
    assert plan["training"]["part_learning_rates"] == [] and plan["training"]["learning_rate"] == 1e-4


def test_llama_parts(tmp_path):
    plan = text_plan(tmp_path, "finetune all on tiny-llama-3.2-vision\nusing full\nfrom ./data\n"
                             "learning rate 1e-5, language 2e-5, projector 1e-4, vision 1e-6\n")
    patterns = {x["part"]: re.compile(x["pattern"]) for x in plan["training"]["part_learning_rates"]}
    assert list(patterns) == ["language", "projector", "vision"]
    assert patterns["projector"].search("model.multi_modal_projector.weight")
    assert patterns["vision"].search("model.vision_model.transformer.layers.0.mlp.fc1.weight")
    assert patterns["language"].search("model.language_model.layers.1.cross_attn.q_proj.weight")
    assert patterns["language"].search("lm_head.weight")


@pytest.mark.parametrize("line, code", [
    ("learning rate 2e-4, visoin 2e-5", "VT213"),
    ("learning rate 2e-4, mlp 2e-5", "VT213"),
    ("learning rate 2e-4, projector 1e-4", "VT214"),
    ("learning rate 2e-4, vision 2e-5, vision 1e-5", "VT215"),
    ("learning rate 2e-4, vision 0", "VT104"),
    ("learning rate 2e-4, vision 2", "VT104"),
])
def test_rate_mistakes(tmp_path, line, code):
    result = compile_text(tmp_path, f"finetune vision, mlp on tiny-qwen2.5-vl\nfrom ./data\n{line}\n")
    found = [d for d in result.diagnostics if d.code == code]
    assert found and result.plan is None, [d.render(result.sources) for d in result.diagnostics]
    assert found[0].span is not None and found[0].span.line == 3 and found[0].help


def test_a_rate_for_an_unknown_models_part(tmp_path):
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "something_new", "architectures": ["X"]}')
    result = compile_text(tmp_path, "finetune all on ./my-model\nusing full\nfrom ./data\n"
                                    "learning rate 2e-4, vision 2e-5\n")
    assert "VT218" in [d.code for d in result.diagnostics], [d.render(result.sources) for d in result.diagnostics]


def test_vtc_plan_shows_the_rates(tmp_path):
    from vtc.compiler.explain import explain_plan
    from vtc.compiler.plan import summarize_plan

    plan = text_plan(tmp_path, QWEN)
    assert re.search(r"vision\s+2e-05\s+r\.vt:4", summarize_plan(plan))
    assert "the image encoder at 2e-05" in explain_plan(plan)


# --- the optimizer's parameter groups ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    pytest.importorskip("peft")
    return make_shapes(tmp_path_factory.mktemp("rates") / "shapes", n=8, seed=7)


def _trainer(shapes, tmp_path, model: str, finetune: str, method: str, rates: str, schedule: str = "constant",
             steps: int = 1, weight_decay: str = "0", rep=None):
    from vtc.compiler.pipeline import compile_file
    from vtc.runtime.backends.transformers_backend import TransformersBackend
    from vtc.runtime.model_path import resolve_model_path
    from vtc.runtime.sources import load_rows
    from vtc.runtime.train import use_part_learning_rates

    recipe = shapes.parent / f"rates-{tmp_path.name}.vt"
    recipe.write_text(
        f"finetune {finetune} on {model}\nusing {method}\nfrom ./{shapes.name}\nask \"What colour is the shape?\"\n"
        f"resize 112\ntrain for {steps} steps\nbatch 2\nmicro batch 2\nlearning rate {rates}\nwarmup 0 steps\n"
        f"schedule {schedule}\noptimizer adamw_torch\nweight decay {weight_decay}\nmax length 512\n", encoding="utf-8")
    result = compile_file(str(recipe))
    assert result.plan is not None, [d.render(result.sources) for d in result.diagnostics]
    plan = result.plan
    be = TransformersBackend()
    model_, processor = be.load(plan, resolve_model_path(plan))
    trainer = be.trainer(plan, model_, processor, load_rows(plan, "train"), be.collator(plan, model_, processor),
                         str(tmp_path / "ck"), [])
    use_part_learning_rates(trainer, plan, rep)
    be.for_training(model_)
    return plan, model_, trainer


def _group_of(optimizer) -> dict:
    """parameter -> (part, lr, weight_decay) of its group."""
    return {id(p): (g["part"], g["lr"], g["weight_decay"]) for g in optimizer.param_groups for p in g["params"]}


def test_the_groups_follow_the_plan(shapes, tmp_path):
    import io

    from vtc.runtime.progress import Reporter

    out = io.StringIO()
    plan, model, trainer = _trainer(shapes, tmp_path, "tiny-qwen2.5-vl", "all", "full",
                                    "1e-3, vision 1e-5, projector 1e-4", weight_decay="0.01",
                                    rep=Reporter(out, quiet=False))
    optimizer = trainer.create_optimizer()
    # The run says the rates the optimizer got, part by part, with the weights each part trains.
    said = out.getvalue()
    assert said.startswith("optimizer: base 0.001 (") and ", vision 1e-05 (" in said and ", projector 0.0001 (" in said
    weights = {g["part"]: 0 for g in optimizer.param_groups}
    for g in optimizer.param_groups:
        weights[g["part"]] += sum(p.numel() for p in g["params"])
    assert f"projector 0.0001 ({weights['projector']:,} weights)" in said
    decayed = set(trainer.get_decay_parameter_names(model))
    groups = _group_of(optimizer)
    names = {n: groups[id(p)] for n, p in model.named_parameters() if p.requires_grad}
    assert set(names) == {n for n, p in model.named_parameters() if p.requires_grad}  # every trainable one, once
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(names)
    for name, (part, lr, decay) in names.items():
        if name.startswith("model.visual.merger."):
            assert (part, lr) == ("projector", 1e-4), name
        elif name.startswith("model.visual."):
            assert (part, lr) == ("vision", 1e-5), name
        else:
            assert (part, lr) == ("base", 1e-3), name
        # transformers' own split (no weight decay for biases and the norms it recognises), kept
        assert decay == (0.01 if name in decayed else 0.0), name
        if name.endswith(".bias"):
            assert decay == 0.0, name
    assert optimizer.param_groups[0]["part"] == "base"  # the trainer logs the first group's rate


def test_each_group_steps_with_its_own_rate(shapes, tmp_path):
    """Adam's first step moves each weight by about lr (m / sqrt(v) = g / |g|): the median move of each group's
    weights is its own rate, and the scheduler's rate per group is its own."""
    import torch

    plan, model, trainer = _trainer(shapes, tmp_path, "tiny-qwen2.5-vl", "all", "full",
                                    "1e-3, vision 1e-5, projector 1e-4")
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    trainer.train()
    assert [g["lr"] for g in trainer.optimizer.param_groups] == trainer.lr_scheduler.get_last_lr()
    moves: dict[str, list] = {"base": [], "vision": [], "projector": []}
    groups = _group_of(trainer.optimizer)
    for name, p in model.named_parameters():
        if name in before:
            delta = (p.detach() - before[name]).abs().flatten()
            moves[groups[id(p)][0]].append(delta[delta > 0])
    expected = {"base": 1e-3, "vision": 1e-5, "projector": 1e-4}
    for part, chunks in moves.items():
        median = torch.cat(chunks).median().item()
        assert median == pytest.approx(expected[part], rel=0.05), (part, median)


def test_the_schedule_scales_each_group(shapes, tmp_path):
    """A linear schedule over 2 steps: after the first step every group is at half its own rate."""
    plan, model, trainer = _trainer(shapes, tmp_path, "tiny-llama-3.2-vision", "language, projector", "lora",
                                    "1e-3, projector 1e-4, language 4e-4", schedule="linear", steps=2)
    optimizer = trainer.create_optimizer()
    trainer.create_scheduler(num_training_steps=2, optimizer=optimizer)
    optimizer.step()
    trainer.lr_scheduler.step()
    rates = {g["part"]: g["lr"] for g in optimizer.param_groups}
    assert rates == {"projector": pytest.approx(5e-5), "language": pytest.approx(2e-4)} or \
        rates == {"base": pytest.approx(5e-4), "projector": pytest.approx(5e-5), "language": pytest.approx(2e-4)}


def test_without_part_rates_the_trainer_keeps_its_optimizer(shapes, tmp_path):
    plan, model, trainer = _trainer(shapes, tmp_path, "tiny-qwen2.5-vl", "vision, mlp", "lora", "1e-3")
    optimizer = trainer.create_optimizer()
    assert all("part" not in g for g in optimizer.param_groups)
    assert {g["lr"] for g in optimizer.param_groups} == {1e-3}


def test_the_groups_of_a_lora_model(shapes, tmp_path):
    from vtc.runtime.train import parameter_groups

    plan, model, trainer = _trainer(shapes, tmp_path, "tiny-llama-3.2-vision", "all, projector", "lora",
                                    "1e-3, vision 1e-5, projector 1e-4")
    named = list(model.named_parameters())
    groups = parameter_groups(named, plan, {n for n, _ in named}, 0.0)
    by_param = {id(p): g for g in groups for p in g["params"]}
    for name, p in named:
        if not p.requires_grad:
            assert id(p) not in by_param
            continue
        g = by_param[id(p)]
        part = ("projector" if "multi_modal_projector" in name else "vision" if "vision_model" in name else "base")
        assert g["part"] == part and g.get("lr", 1e-3) == {"projector": 1e-4, "vision": 1e-5, "base": 1e-3}[part]


# --- two processes: DDP and FSDP2 (over gloo on the CPU, as tests/test_fsdp.py runs them) -------------------------

_CHILD = r'''
from vtc.compiler.pipeline import compile_source
from vtc.runtime.backends.transformers_backend import TransformersBackend
from vtc.runtime.distributed import world
from vtc.runtime.sources import load_rows
from vtc.runtime.tiny_models import ensure_tiny_model
from vtc.runtime.train import use_part_learning_rates
recipe = os.path.join(root, "recipes", "demo-shapes.vt")
text = open(recipe).read().replace("train for 80 steps", "train for 2 steps\nmicro batch 2\ngpus 2")
text = "".join(line for line in text.splitlines(True) if not line.startswith(("learning rate", "optimizer")))
text += "learning rate 2e-3, vision 1e-5, language 1e-4\noptimizer adamw_torch\n"
if mode == "fsdp2":
    text += "shard model\n"
compiled = compile_source(text, recipe, base_dir=os.path.dirname(recipe))
assert compiled.plan is not None, [d.message for d in compiled.diagnostics]
plan = compiled.plan
be = TransformersBackend()
model, processor = be.load(plan, str(ensure_tiny_model("tiny-qwen2.5-vl")))
trainer = be.trainer(plan, model, processor, load_rows(plan, "train"), be.collator(plan, model, processor),
                     out + "/ckpt", [])
use_part_learning_rates(trainer, plan)
trainer.train()
live = {id(p) for p in trainer.model_wrapped.parameters()}
groups = [{"part": g["part"], "lr": g["lr"], "params": len(g["params"]),
           "live": all(id(p) in live for p in g["params"])} for g in trainer.optimizer.param_groups]
if world().leader:
    with open(out + "/result.json", "w") as f:
        json.dump({"groups": groups, "sharded": trainer.is_fsdp_enabled,
                   "wrapped": type(trainer.model_wrapped).__name__}, f)
'''


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["ddp", "fsdp2"])
def test_the_groups_under_two_processes(tmp_path, mode):
    """The optimizer is built after the model is wrapped: under DDP and FSDP2 its groups hold the parameters the
    wrapped model trains (FSDP2's sharded ones), each part at its own rate after the steps (constant schedule)."""
    result, _out = two_processes(tmp_path, _CHILD, mode)
    assert result["sharded"] == (mode == "fsdp2"), result
    rates = {g["part"]: g["lr"] for g in result["groups"]}
    assert rates == {"base": 2e-3, "vision": 1e-5, "language": 1e-4} or \
        rates == {"vision": 1e-5, "language": 1e-4}, result
    assert all(g["params"] > 0 and g["live"] for g in result["groups"]), result


def test_a_hand_edited_pattern_that_is_no_regex_is_a_diagnostic(tmp_path):
    from vtc.diagnostics import VtcError
    from vtc.runtime.train import parameter_groups

    plan = text_plan(tmp_path, QWEN)
    plan["training"]["part_learning_rates"][0]["pattern"] = "(unclosed"
    with pytest.raises(VtcError) as caught:
        parameter_groups([], plan, set(), 0.0)
    assert caught.value.diagnostics[0].code == "VT514"


def test_a_missing_comma_before_the_projectors_rate_says_so(tmp_path):
    """Without the comma, `projector 1e-4` reads as the `projector` clause: the help says where the comma goes."""
    result = compile_text(tmp_path, "finetune all, projector on tiny-qwen2.5-vl\nfrom ./data\n"
                                    "learning rate 2e-4, vision 2e-5 projector 1e-4\n")
    [d] = [d for d in result.diagnostics if d.is_error]
    assert d.code == "VT102" and d.message == "unknown projector `1e-4`"
    assert (d.span.line, d.span.column) == (3, 43)
    assert "put a comma before `projector`: `learning rate ..., projector 1e-4`" in d.help
