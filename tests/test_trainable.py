"""What trains is exactly what the recipe's parts say, selected as Unsloth's flags select it, and nothing else moves.

The expected module names come from tests/runtime_helpers.MODULES, written from Unsloth's rules
(shared/reference/unsloth-vision.md) independently of the compiler's regex: the projector (Qwen's merger, Mllama's
multi_modal_projector) and lm_head are never targeted.
"""

import re

import pytest

from runtime_helpers import MODULES, make_shapes

pytest.importorskip("peft")

FAMILIES = {"tiny-qwen2.5-vl": "qwen2_5_vl", "tiny-llama-3.2-vision": "mllama"}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_shapes(tmp_path_factory.mktemp("trainable") / "shapes", n=8, seed=3)


def compile_plan(data, parts: str, model: str, extra: str = "", method: str = "lora") -> dict:
    from vtc.compiler.pipeline import compile_file

    recipe = data.parent / f"r-{parts.replace(',', '-')}-{model}-{method}.vt"
    recipe.write_text(
        f"finetune {parts} on {model}\nusing {method}\nfrom ./{data.name}\nask \"What colour is the shape?\"\n"
        f"resize 112\ntrain for 3 steps\nbatch 4\nlearning rate 5e-3\noptimizer adamw_torch\n{extra}",
        encoding="utf-8")
    result = compile_file(str(recipe))
    assert result.plan is not None, [d.render() for d in result.diagnostics]
    return result.plan


def expected_modules(model, family: str, parts: set[str]) -> set[str]:
    import torch

    towers = [t for t in ("vision", "language") if t in parts or "all" in parts]
    kinds = [k for k in ("attention", "mlp") if k in parts or "all" in parts]
    if not towers:
        towers = ["vision", "language"]
    if not kinds:
        kinds = ["attention", "mlp"]
    pats = [re.compile(MODULES[family][(t, k)]) for t in towers for k in kinds]
    # Linear layers, or the LoRA wrappers that replaced them (their Linear is then `<name>.base_layer`).
    linear = {n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) or hasattr(m, "base_layer")}
    return {n for n in linear if any(p.fullmatch(n) for p in pats)}


def lora_targets(peft_model) -> set[str]:
    prefix = "base_model.model."
    return {n[len(prefix):] for n, m in peft_model.named_modules() if hasattr(m, "lora_A") and n.startswith(prefix)}


def load(plan):
    from vtc.runtime.backends.transformers_backend import TransformersBackend
    from vtc.runtime.model_path import resolve_model_path

    be = TransformersBackend()
    model, processor = be.load(plan, resolve_model_path(plan))
    return be, model, processor


CASES = [("tiny-qwen2.5-vl", p) for p in ("vision,mlp", "language,attention", "vision,attention", "language,mlp",
                                          "all")] + \
        [("tiny-llama-3.2-vision", p) for p in ("vision,mlp", "language,attention", "all")]


@pytest.mark.parametrize("model_name,parts", CASES)
def test_lora_targets_match_unsloths_selection(data, model_name, parts):
    plan = compile_plan(data, parts, model_name)
    be, model, _ = load(plan)
    targeted = lora_targets(model)
    expected = expected_modules(model.get_base_model(), FAMILIES[model_name], set(parts.split(",")))
    assert expected, "the expectation selects nothing: the module table is out of date"
    assert targeted == expected
    for name in targeted:
        assert "merger" not in name and "multi_modal_projector" not in name and "lm_head" not in name
    # Nothing but LoRA matrices is trainable.
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)


@pytest.mark.parametrize("model_name,parts", [("tiny-qwen2.5-vl", "vision,mlp"),
                                              ("tiny-llama-3.2-vision", "language,attention")])
def test_training_changes_exactly_the_lora_weights(data, model_name, parts):
    import torch
    from vtc.runtime.sources import load_rows
    from vtc.runtime.backends.transformers_backend import sft_trainer_class

    plan = compile_plan(data, parts, model_name)
    be, model, processor = load(plan)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    rows = load_rows(plan, "train")
    trainer = be.trainer(plan, model, processor, rows, be.collator(plan, model, processor),
                         str(data.parent / f"out-{model_name}"), [])
    if not torch.cuda.is_available():
        assert type(trainer) is sft_trainer_class(False) and type(trainer).__name__ == "PortableSFTTrainer"
    be.for_training(model)
    result = trainer.train()
    assert result.global_step == 3 and torch.isfinite(torch.tensor(result.training_loss))
    changed, frozen_moved = set(), set()
    for n, p in model.named_parameters():
        same = torch.equal(before[n], p.detach())
        if p.requires_grad and not same:
            changed.add(n)
        if not p.requires_grad and not same:
            frozen_moved.add(n)
    assert not frozen_moved, f"frozen weights changed: {sorted(frozen_moved)[:5]}"
    lora = {n for n, p in model.named_parameters() if p.requires_grad}
    # After 3 Adam steps every A and B matrix has moved (B leaves zero at step 1, A follows once B is non-zero).
    assert changed == lora
    targeted = {re.sub(r"^base_model\.model\.|\.lora_[AB]\.default\.weight$", "", n) for n in changed}
    assert targeted == expected_modules(model.get_base_model(), FAMILIES[model_name], set(parts.split(",")))


def test_full_finetuning_unfreezes_only_the_chosen_parts(data):
    import torch

    plan_full = compile_plan(data, "vision,mlp", "tiny-qwen2.5-vl", method="full")
    assert plan_full["lora"] is None and plan_full["trainable_regex"].endswith(r"\.(?:weight|bias)")
    be, model, _ = load(plan_full)
    trainable = {n.rsplit(".", 1)[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == expected_modules(model, "qwen2_5_vl", {"vision", "mlp"})
    assert all(not p.requires_grad for n, p in model.named_parameters() if "lm_head" in n or "merger" in n)
    assert isinstance(model, torch.nn.Module) and not hasattr(model, "peft_config")
