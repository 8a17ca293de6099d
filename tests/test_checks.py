"""One test per semantic check (VT2xx): the code, the severity and the span it points at."""

import pytest

from vtc.compiler.pipeline import compile_source

BASE = "finetune all on qwen2.5-vl\nfrom ./x\n"


def diags(text, model_line=BASE):
    result = compile_source(model_line + text, "r.vt", base_dir="/abs")
    return result, [(d.code, d.severity.value, d.span.line if d.span else None) for d in result.diagnostics]


def codes(text, base=BASE):
    return [c for c, _, _ in diags(text, base)[1]]


def test_clean_recipe_has_no_diagnostics():
    result, found = diags("")
    assert found == [] and result.plan is not None


def test_vt201_unknown_model_suggests():
    result = compile_source("finetune all on qwen2.5-v\nfrom ./x\n", "r.vt", base_dir="/abs")
    [d] = result.diagnostics
    assert d.code == "VT201" and "did you mean `qwen2.5-vl`?" in d.help and result.plan is None


def test_vt202_hub_family_guessed_is_a_note():
    _, found = diags("", "finetune all on unsloth/Qwen2.5-VL-3B-Instruct\nfrom ./x\n")
    assert found == [("VT202", "note", 1)]


def test_vt203_local_folder_without_config():
    _, found = diags("", "finetune all on ./nowhere\nfrom ./x\n")
    assert found == [("VT203", "warning", 1)]


def test_vt221_all_with_others():
    assert codes("", "finetune all,vision on qwen2.5-vl\nfrom ./x\n") == ["VT221"]


def test_vt230_resize_outside_300_1000():
    assert diags("resize 1200\n")[1][0][:2] == ("VT230", "warning")
    assert codes("resize 200\n") == ["VT230"]
    assert codes("resize 512\n") == []


def test_vt230_not_for_tiny_models():
    assert codes("resize 112\n", "finetune all on tiny-qwen2.5-vl\nusing lora\nfrom ./x\n") == []


def test_vt231_resize_zero():
    assert diags("resize 0\n")[1] == [("VT231", "error", 3)]


def test_vt232_max_length_with_numbers():
    result, found = diags("resize 1000\nmax length 512\n")
    assert ("VT232", "error", 4) in found
    msg = next(d.message for d in result.diagnostics if d.code == "VT232")
    assert "1008x1008 px is 1296 image tokens" in msg
    assert ("VT232", "warning", 4) in diags("resize 504\nmax length 380\n")[1]  # 324 + 2 tokens leave 54
    # Llama 3.2 Vision: the image enters through cross-attention, 1 token in the text.
    assert codes("max length 128\n", "finetune all on llama-3.2-vision\nfrom ./x\n") == []


def test_vt233_resize_none():
    assert codes("resize none\n") == ["VT233"]


def test_vt240_responses_only_unknown_markers():
    assert ("VT240", "error", 3) in diags("with responses_only\n", "finetune all on org/thing\nfrom ./x\n")[1]


def test_vt241_full_on_4bit_checkpoint():
    base = "finetune all on unsloth/Qwen2.5-VL-7B-Instruct-bnb-4bit\nfrom ./x\n"
    assert ("VT241", "error", 3) in diags("using full\n", base)[1]
    assert ("VT241", "warning", 3) in diags("using lora\n", base)[1]


def test_vt242_vt243_lora_settings_with_full():
    found = codes("using full\nwith rslora\nlora rank 8\n")
    assert "VT242" in found and "VT243" in found


def test_vt244_merged_with_qlora_is_a_note():
    assert diags("export adapter, merged\n")[1] == [("VT244", "note", 3)]


def test_vt245_adapter_with_full():
    assert codes("using full\nexport adapter\n") == ["VT245"]


@pytest.mark.parametrize("pct,bad", [("0%", True), ("50%", True), ("49%", False), ("0.5%", False)])
def test_vt250_holdout_range(pct, bad):
    assert (codes(f"holdout {pct}\n") == ["VT250"]) is bad


def test_vt251_answer_column_rules():
    # The grammar requires the column after `answer from column`; the check guards documents built otherwise.
    from vtc.compiler.checks import check
    from vtc.compiler.resolve import resolve
    from vtc.registry import load_registry

    def found(doc):
        resolved, _ = resolve(doc, {}, load_registry(), "/abs")
        return [d.code for d in check(resolved)]

    doc = {"model": "qwen2.5-vl", "parts": ["all"], "train_data": {"source": "./x"}, "answer": {"from": "column"}}
    assert found(doc) == ["VT251"]
    doc["answer"] = {"from": "folders", "column": "x"}
    assert found(doc) == ["VT251"]


def test_vt260_packing_refused():
    result, found = diags("with packing\n")
    assert found == [("VT260", "error", 3)] and "TRL" in result.diagnostics[0].message


def test_vt261_the_batch_must_divide_over_the_gpus():
    assert diags("gpus 4\n")[1] == []  # the default batch 8: 2 per GPU
    assert diags("gpus all\n")[1] == []  # known at run time only: the run checks
    result, found = diags("batch 6\ngpus 4\n")
    assert found == [("VT261", "error", 4)]
    [d] = result.diagnostics
    assert d.help == "write `batch 8` or `batch 4` (2 or 1 per GPU), or `gpus 2` or `gpus 3`"
    result, found = diags("gpus 3\n")  # the default batch
    assert found == [("VT261", "error", 3)] and "the default `batch 8`" in result.diagnostics[0].message
    assert "`batch 9` or `batch 6`" in result.diagnostics[0].help
    result, found = diags("batch 2\ngpus 4\n")  # nothing below: only the batch above
    assert found == [("VT261", "error", 4)] and result.diagnostics[0].help.startswith("write `batch 4` (1 per GPU)")
    # A pinned micro-batch must divide each GPU's share (8 over 2 GPUs is 4 a GPU).
    result, found = diags("batch 8\nmicro batch 8\ngpus 2\n")
    assert found == [("VT261", "error", 4)] and "is 4 a GPU" in result.diagnostics[0].message
    assert diags("batch 8\nmicro batch 2\ngpus 2\n")[1] == []


def test_vt267_vt268_shard_model_needs_several_gpus_and_16_bit_weights():
    assert diags("using lora\nshard model\n")[1] == [("VT267", "warning", 4)]
    assert diags("using lora\ngpus 2\nshard model\n")[1] == []
    assert diags("using full\ngpus all\nshard model\n")[1] == []
    result, found = diags("gpus 2\nshard model\n")
    assert found == [("VT268", "error", 4)] and "the default method" in result.diagnostics[0].message
    assert diags("using qlora\ngpus 2\nshard model\n")[1] == [("VT268", "error", 5)]


def test_vt262_learning_rate():
    assert codes("learning rate 0.05\n") == ["VT262"]
    assert codes("learning rate 0.05\n", "finetune all on tiny-qwen2.5-vl\nusing lora\nfrom ./x\n") == []


def test_vt263_trust_remote_code():
    assert diags("with trust_remote_code\n")[1] == [("VT263", "warning", 3)]


def test_vt264_warmup_longer_than_training():
    assert codes("train for 10 steps\nwarmup 10 steps\n") == ["VT264"]


def test_vt210_conflicts_point_at_both():
    result, found = diags("seed 1\nseed 2\n")
    [d] = result.diagnostics
    assert d.code == "VT210" and d.span.line == 4 and d.related[0][0].line == 3


def test_vt220_parts_that_select_no_layer_of_the_model():
    """The guard for registry entries: every model in models.json has layers of every part, so the check is shown
    on a registry with one more entry, a Qwen2.5-VL whose vision tower has no layers."""
    import copy

    from vtc.compiler.checks import check
    from vtc.compiler.resolve import resolve
    from vtc.diagnostics import Span
    from vtc.registry import Registry, load_registry

    real = load_registry()
    entry = copy.deepcopy(real.models["tiny-qwen2.5-vl"])
    entry["architecture"]["vision"]["layers"] = 0
    registry = Registry(real.families, {**real.models, "headless-vl": entry}, real.aliases)
    spans = {"": Span("r.vt"), "/parts": Span("r.vt", 1, 1, 1, 40), "/model": Span("r.vt", 1, 27, 1, 38)}
    doc = {"model": "headless-vl", "parts": ["vision", "attention"], "train_data": {"source": "./x"}}
    [d] = [d for d in check(resolve(doc, spans, registry, "/abs")[0]) if d.code == "VT220"]
    assert d.message == "`vision, attention` trains nothing in headless-vl" and d.span.line == 1 and d.is_error
    doc["parts"] = ["language"]
    assert "VT220" not in [d.code for d in check(resolve(doc, spans, registry, "/abs")[0])]
