"""Several GPUs in the compiler and `shard model` (FSDP2): the plan's processes and per-GPU memory, VT269 (bigger
than one GPU), the backend's choice (VT554) and FSDP2 arguments, and a sharded run of two CPU processes.

FSDP2 on the CPU: torch's fully_shard runs over gloo, but accelerate 1.15 takes its FSDP plugin only for GPU runs
(accelerate/state.py: the MULTI_GPU kinds; on MULTI_CPU the plugin is ignored and the Trainer wraps the model in
DDP, which vtc notes). The two-process test tells accelerate's state to shard on the CPU too (in the child
processes only, _CHILD below), so that vtc's own sharded path -- the Trainer's FSDP2 arguments, training, the whole
adapter gathered on rank 0 -- runs here as it will on GPUs.
"""

from __future__ import annotations

import json

import pytest

from runtime_helpers import two_processes
from vtc.compiler.estimates import GATHERED_LAYERS, GIB, layer_bytes, sharded_estimate
from vtc.compiler.explain import explain_plan
from vtc.compiler.pipeline import compile_source
from vtc.compiler.plan import summarize_plan
from vtc.diagnostics import VtcError
from vtc.runtime import distributed
from vtc.runtime.backends import base


def compiled(text: str, tmp_path=None):
    return compile_source(text, "r.vt", base_dir=str(tmp_path or "/nonexistent"))


def plan_of(text: str) -> dict:
    result = compiled(text)
    assert result.plan is not None, [d.message for d in result.diagnostics]
    return result.plan


# --- the compiler ----------------------------------------------------------------------------------------------------


def test_gpus_all_and_shard_model_reach_the_plan_with_their_lines():
    plan = plan_of("finetune all on qwen2.5-vl\nfrom ./x\nusing lora\ngpus all\nshard model\n")
    assert plan["hardware"]["gpus"] == "all" and plan["provenance"]["/hardware/gpus"] == "r.vt:4"
    assert plan["hardware"]["distributed"]["strategy"] == "fsdp2"
    assert plan["provenance"]["/hardware/distributed/strategy"] == "r.vt:5"
    plain = plan_of("finetune all on qwen2.5-vl\nfrom ./x\ngpus 2\n")
    assert plain["hardware"]["gpus"] == 2 and plain["hardware"]["distributed"]["strategy"] == "ddp"
    assert plain["estimates"]["gpu_memory_sharded_gib"] is None  # qlora is never sharded


def test_gpus_values_and_mistakes():
    assert [d.code for d in compiled("finetune all on qwen2.5-vl\nfrom ./x\ngpus 0\n").diagnostics] == ["VT104"]
    [d] = compiled("finetune all on qwen2.5-vl\nfrom ./x\ngpus 65\n").diagnostics
    assert d.code == "VT104" and "`gpus all`" in d.help
    [d] = compiled("finetune all on qwen2.5-vl\nfrom ./x\ngpus every\n").diagnostics
    assert d.code == "VT012" and "a whole number or `all`" in d.message
    [d] = compiled("finetune all on qwen2.5-vl\nfrom ./x\nshard weights\n").diagnostics
    assert d.code == "VT102" and "`model`" in d.help


def test_sharded_estimate_divides_weights_and_state_not_activations():
    whole = {"weights": 16.0, "training_state": 8.0, "activations": 3.0, "overhead": 0.85, "total": 27.9}
    four = sharded_estimate(whole, 4, layer=GIB // 2)
    assert four["weights"] == 4.0 and four["training_state"] == 2.0
    assert four["activations"] == 3.0 and four["overhead"] == 0.85  # each process's own rows; fixed
    assert four["gathered"] == GATHERED_LAYERS * 0.5 and four["total"] == round(4 + 2 + 3 + 0.85 + 1.0, 1)
    assert sharded_estimate(None, 2, 0) is None
    # The layer a process gathers whole: Llama 3.2 Vision 90B's language layer, tens of times the 11B's... at least
    # larger; and nothing without sizes.
    from vtc.registry import load_registry
    models = load_registry().models
    big, small = (layer_bytes("mllama", models[m]["architecture"]) for m in ("llama-3.2-vision-90b",
                                                                             "llama-3.2-vision-11b"))
    assert big > small > 0 and layer_bytes(None, None) == 0


def test_plan_and_explain_say_the_processes_what_each_holds_and_the_memory_per_gpu():
    plan = plan_of("finetune all on llama-3.2-vision-90b\nfrom ./x\nusing lora\ngpus 4\nshard model\nbatch 8\n")
    rows = {r["processes"]: r["gib"] for r in plan["estimates"]["gpu_memory_sharded_gib"]}
    assert sorted(rows) == [2, 4, 8] and rows[2] > rows[4] > rows[8]
    summary = summarize_plan(plan)
    assert "4 on each machine, one per GPU" in summary
    assert "1/4 of the weights, gradients and optimizer" in summary and "2 of the 8 samples per" in summary
    assert f"about {rows[4]} GiB per GPU" in summary
    text = explain_plan(plan)
    assert "4 processes, one per GPU" in text and "holds 1/4 of the weights" in text
    assert f"Each GPU needs roughly {rows[4]} GiB" in text and "more than the largest GPU" not in text
    ddp = plan_of("finetune all on qwen2.5-vl\nfrom ./x\ngpus 2\n")
    assert "the whole model, and 4 of the 8" in summarize_plan(ddp)
    assert "Each process holds the whole model on its own GPU and trains 4 of each update's 8" in explain_plan(ddp)
    one = plan_of("finetune all on qwen2.5-vl\nfrom ./x\n")
    assert "processes, one per GPU" not in explain_plan(one)  # one GPU: the paragraph is as before


def test_vt269_bigger_than_one_gpu_says_what_would_fit():
    result = compiled("finetune all on llama-3.2-vision-90b\nfrom ./x\nusing lora\n")
    [d] = [d for d in result.diagnostics if d.code == "VT269"]
    assert d.severity.value == "warning" and result.plan is not None
    assert "needs about 169.1 GiB per GPU even one example at a time" in d.message and "NVIDIA B200" in d.message
    assert "`using qlora`: about 54.5 GiB, fits an NVIDIA A100 80GB" in d.help
    assert "`finetune attention`: about" in d.help and "still too big" in d.help
    assert "`shard model`" in d.help and "`gpus 2` 90.3 GiB, `gpus 4` 48.4 GiB, `gpus 8` 27.5 GiB" in d.help
    # Full fine-tuning of the 72B: LoRA would fit the largest card.
    [d] = [d for d in compiled("finetune all on qwen2.5-vl-72b\nfrom ./x\nusing full\n").diagnostics
           if d.code == "VT269"]
    assert "`using lora`: about 139.5 GiB, fits an NVIDIA B200" in d.help
    # Sharded over enough GPUs, or a model that fits: no warning.
    for text in ("finetune all on llama-3.2-vision-90b\nfrom ./x\nusing lora\ngpus 2\nshard model\n",
                 "finetune all on llama-3.2-vision-90b\nfrom ./x\n", "finetune all on qwen2.5-vl\nfrom ./x\n"):
        assert "VT269" not in [d.code for d in compiled(text).diagnostics], text
    # Sharded over too few: still too big, and it says over how many.
    [d] = [d for d in compiled("finetune all on qwen2.5-vl-72b\nfrom ./x\nusing full\ngpus 2\nshard model\n")
           .diagnostics if d.code == "VT269"]
    assert "with `shard model` over `gpus 2`" in d.message


def test_a_sharded_qlora_plan_or_a_batch_the_gpus_do_not_divide_is_refused_when_read():
    from vtc.plans import plan_problems

    plan = plan_of("finetune all on qwen2.5-vl\nfrom ./x\nusing lora\ngpus 2\nshard model\n")
    assert plan_problems(plan) == []
    bad = json.loads(json.dumps(plan))
    bad["method"], bad["lora"] = "qlora", plan["lora"]
    assert ("/hardware/distributed/strategy", 'must be "ddp" with method "qlora" (4-bit weights are not sharded)') \
        in plan_problems(bad)
    bad = json.loads(json.dumps(plan))
    bad["hardware"]["gpus"] = 3
    assert any(p[0] == "/hardware/gpus" for p in plan_problems(bad))


# --- the backend -----------------------------------------------------------------------------------------------------


@pytest.fixture
def machine(monkeypatch):
    monkeypatch.setattr(base, "cuda_available", lambda: True)
    monkeypatch.setattr(base, "unsloth_installed", lambda: True)
    monkeypatch.setattr(base, "load_backend", lambda name: name)


def test_a_sharded_plan_takes_transformers_and_refuses_unsloth(machine):
    sharded = plan_of("finetune all on qwen2.5-vl\nfrom ./x\nusing lora\ngpus 2\nshard model\n")
    backend, reason = base.choose_backend("auto", sharded)
    assert backend == "transformers" and "`shard model`" in reason and "Unsloth holds it whole" in reason
    with pytest.raises(VtcError) as caught:
        base.choose_backend("unsloth", sharded)
    [d] = caught.value.diagnostics
    assert d.code == "VT554" and "without `--backend unsloth`" in d.help
    assert base.choose_backend("transformers", sharded)[0] == "transformers"
    # Without sharding nothing changes: auto still takes unsloth on a GPU machine with unsloth.
    assert base.choose_backend("auto", plan_of("finetune all on qwen2.5-vl\nfrom ./x\ngpus 2\n"))[0] == "unsloth"


def test_fsdp_arguments_only_for_a_sharded_plan_with_several_processes(monkeypatch):
    from vtc.runtime.backends.transformers_backend import fsdp_arguments

    sharded = plan_of("finetune all on qwen2.5-vl\nfrom ./x\nusing lora\ngpus 2\nshard model\n")
    monkeypatch.setattr(distributed, "world", lambda: distributed.World(0, 0, 1, 1, 0, "h"))
    assert fsdp_arguments(sharded) == {}  # one process: nothing changes
    monkeypatch.setattr(distributed, "world", lambda: distributed.World(1, 1, 2, 2, 0, "h"))
    args = fsdp_arguments(sharded)
    assert args["fsdp"] is True and args["fsdp_config"]["version"] == 2
    assert args["fsdp_config"]["auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    assert args["fsdp_config"]["state_dict_type"] == "FULL_STATE_DICT"
    assert fsdp_arguments(plan_of("finetune all on qwen2.5-vl\nfrom ./x\ngpus 2\n")) == {}  # ddp


# --- two CPU processes, sharded ----------------------------------------------------------------------------------------

_CHILD = r'''
from vtc.compiler.pipeline import compile_source
from vtc.runtime.backends.transformers_backend import TransformersBackend
from vtc.runtime.distributed import world
from vtc.runtime.sources import load_rows
from vtc.runtime.tiny_models import ensure_tiny_model
recipe = os.path.join(sys.argv[3], "recipes", "demo-shapes.vt")
text = open(recipe).read().replace("train for 80 steps", "train for 3 steps\nmicro batch 2\ngpus 2")
if mode == "fsdp2":
    text += "shard model\n"
plan = compile_source(text, recipe, base_dir=os.path.dirname(recipe)).plan
be = TransformersBackend()
model, processor = be.load(plan, str(ensure_tiny_model("tiny-qwen2.5-vl")))
rows = load_rows(plan, "train")
trainer = be.trainer(plan, model, processor, rows, be.collator(plan, model, processor), out + "/ckpt", [])
trainer.train()
losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
if mode == "fsdp2" or world().leader:  # sharded: every process gathers, rank 0 writes
    be.save_adapter(model, processor, out + "/adapter")
# Evaluation as `vtc run` makes it: each process answers its share of 5 rows (3 and 2: the shorter share topped up,
# generating in step when the weights are sharded), rank 0 gathers them in row order.
from vtc.runtime import distributed as D
from vtc.runtime.evaluate import answer_rows
D.start(plan)
answers = answer_rows(be, model, processor, load_rows(plan, "eval").subset(range(5)), plan)
if world().leader:
    with open(out + "/result.json", "w") as f:
        json.dump({"losses": losses, "sharded": trainer.is_fsdp_enabled,
                   "wrapped": type(trainer.model_wrapped).__name__, "notes": be.notes, "answers": answers,
                   "sharded_weights": be.sharded_weights(model)}, f)
'''


def _two_processes(tmp_path, mode: str) -> dict:
    result, out = two_processes(tmp_path, _CHILD, mode)
    return result | {"adapter": out / "adapter"}


@pytest.mark.slow
def test_two_cpu_processes_train_sharded_as_they_train_data_parallel_and_save_the_whole_adapter(tmp_path):
    """FSDP2 over gloo (2 processes x micro-batch 2, 3 steps of the tiny Qwen, LoRA) against DDP with the same
    plan: the same losses (fp32 on the CPU; the sums of gradients differ only in their order: 1e-4 relative), and the
    adapter gathered whole on rank 0 equals the DDP run's (every LoRA matrix present, the same values)."""
    from safetensors.torch import load_file

    sharded = _two_processes(tmp_path, "fsdp2")
    ddp = _two_processes(tmp_path, "ddp")
    assert sharded["sharded"] and sharded["wrapped"].startswith("FSDP"), sharded
    assert not ddp["sharded"] and ddp["wrapped"] == "DistributedDataParallel"
    assert len(sharded["losses"]) == len(ddp["losses"]) == 3
    assert sharded["losses"] == pytest.approx(ddp["losses"], rel=1e-4)
    mine = load_file(str(sharded["adapter"] / "adapter_model.safetensors"))
    theirs = load_file(str(ddp["adapter"] / "adapter_model.safetensors"))
    assert sorted(mine) == sorted(theirs) and len(mine) > 0
    for key in theirs:
        assert mine[key].shape == theirs[key].shape, key
        assert (mine[key] - theirs[key]).abs().max().item() < 1e-4, key
    assert (sharded["adapter"] / "adapter_config.json").is_file()
    # Generation with sharded weights (in step, synced_gpus) gives every row's answer, as data parallel does.
    assert sharded["sharded_weights"] and not ddp["sharded_weights"]
    assert len(sharded["answers"]) == len(ddp["answers"]) == 5
    assert sharded["answers"] == ddp["answers"]


@pytest.mark.multigpu
@pytest.mark.skipif(not __import__("shutil").which("nvidia-smi"), reason="needs two CUDA GPUs (NCCL)")
def test_sharded_run_on_two_gpus(tmp_path):
    """On a machine with two or more GPUs: the same sharded run over NCCL, without the CPU stand-in."""
    import torch

    if torch.cuda.device_count() < 2:
        pytest.skip("needs two CUDA GPUs")
    result, out = two_processes(tmp_path, _CHILD, "fsdp2", fsdp_on_cpu=False, timeout=600)
    assert result["sharded"] and (out / "adapter" / "adapter_model.safetensors").is_file()
