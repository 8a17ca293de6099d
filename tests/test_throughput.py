"""Speed and utilisation (vtc.runtime.throughput, compiler/flops.py, registry/cards.json): the FLOPs per token the
compiler puts in the plan equal a hand count over the tiny models' real modules; a tiny run's token, patch and sample
counts equal what the data holds, counted here without vtc; model FLOP utilisation is null on a CPU, with the
reason, and the share of the card's peak on a card the table knows."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))

from runtime_helpers import make_plan, make_shapes, write_plan  # noqa: E402
from vtc.compiler.pipeline import compile_source  # noqa: E402
from vtc.runtime import throughput as T  # noqa: E402

torch = pytest.importorskip("torch")

QUESTION = "What colour is the shape?"


def plan_of(text: str) -> dict:
    result = compile_source(text, "/abs/r.vt", base_dir="/abs")
    assert result.plan is not None, [d.message for d in result.diagnostics]
    return result.plan


# --- FLOPs per token: the plan's numbers against the modules of the real tiny models ----------------------------

def _params(module) -> int:
    return sum(p.numel() for p in module.parameters())


def _hand_count(model, family: str) -> tuple[int, int]:
    """(parameters a text token passes through, parameters a vision patch passes through), from the loaded model's
    modules by name, by the rule docs/running.md states: the matrix multiplications (Linear layers, the patch
    embedding); Qwen's merger once per 2 x 2 patches; Llama's cross-attention keys and values once per patch."""
    text = vision = 0.0
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            n = _params(module)
            if name == "lm_head":
                text += n
            elif family == "qwen" and name.startswith("model.language_model."):
                text += n
            elif family == "qwen" and name.startswith("model.visual.blocks."):
                vision += n
            elif family == "qwen" and name.startswith("model.visual.merger."):
                vision += n / 4
            elif family == "mllama" and name.startswith("model.language_model."):
                if ".cross_attn." in name and name.rsplit(".", 1)[1] in ("k_proj", "v_proj"):
                    vision += n
                else:
                    text += n
            elif family == "mllama" and (name.startswith("model.vision_model.")
                                         or name == "model.multi_modal_projector"):
                vision += n
            else:
                raise AssertionError(f"a Linear layer the hand count does not place: {name}")
        elif isinstance(module, (torch.nn.Conv2d, torch.nn.Conv3d)):
            vision += module.weight.numel()  # the patch embedding (no bias in either tiny model)
    return int(text), int(vision)


@pytest.mark.parametrize("name,family", [("tiny-qwen2.5-vl", "qwen"), ("tiny-llama-3.2-vision", "mllama")])
def test_the_flops_per_token_equal_a_hand_count_of_the_tiny_model(tmp_path, name, family):
    from transformers import AutoModelForImageTextToText

    from vtc.runtime.tiny_models import ensure_tiny_model

    folder = ensure_tiny_model(name, cache_dir=tmp_path)
    model = AutoModelForImageTextToText.from_pretrained(folder)
    text, vision = _hand_count(model, family)
    flops = plan_of(f"finetune all on {name}\nusing lora\nfrom ./d\n")["estimates"]["flops"]
    assert (flops["language_parameters"], flops["vision_parameters"]) == (text, vision)
    assert (flops["per_text_token"], flops["per_vision_patch"]) == (6 * text, 6 * vision)
    assert flops["patch_size"] == 14 and flops["patch_extra_tokens"] == (1 if family == "mllama" else 0)


def test_a_model_of_unknown_sizes_has_no_flops_in_its_plan():
    assert plan_of("finetune all on someorg/unknown-vlm\nfrom ./d\nresize none\n")["estimates"]["flops"] is None
    # The issue's own count for the 3B shape: 6 x ~3.1 B a text token, 6 x ~0.64 B a patch.
    flops = plan_of("finetune all on qwen2.5-vl-3b\nusing lora\nfrom ./d\n")["estimates"]["flops"]
    assert 3.0e9 < flops["language_parameters"] < 3.2e9 and 0.6e9 < flops["vision_parameters"] < 0.7e9


# --- counting a batch ------------------------------------------------------------------------------------------

def test_a_batch_is_counted_as_the_model_computes_it():
    qwen = {"per_text_token": 6, "per_vision_patch": 6, "patch_size": 14, "patch_extra_tokens": 0}
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    batch = {"input_ids": torch.zeros(2, 4, dtype=torch.long), "attention_mask": mask,
             "pixel_values": torch.zeros(128, 1176), "image_grid_thw": torch.tensor([[1, 8, 8], [1, 8, 8]])}
    samples, text, patches = T.count_batch(batch, qwen)
    assert (samples, int(text), patches) == (2, 7, 128)
    # Llama 3.2 Vision: (batch, images, tiles, C, H, W), every tile (padding tiles too) with its class token.
    mllama = {**qwen, "patch_extra_tokens": 1}
    batch = {"input_ids": torch.zeros(3, 5, dtype=torch.long), "attention_mask": torch.ones(3, 5),
             "pixel_values": torch.zeros(3, 1, 4, 3, 56, 56)}
    assert T.count_batch(batch, mllama)[2] == 3 * 4 * (4 * 4 + 1)
    # Pixtral: images padded to the largest; each one's own size counts.
    pixtral = {**qwen, "patch_size": 16}
    batch = {"input_ids": torch.zeros(2, 3, dtype=torch.long), "pixel_values": torch.zeros(2, 3, 64, 64),
             "image_sizes": torch.tensor([[64, 64], [32, 48]])}
    samples, text, patches = T.count_batch(batch, pixtral)
    assert (samples, text, int(patches)) == (2, 6, 16 + 6)  # no attention mask: every position counts
    assert T.count_batch({"input_ids": torch.zeros(1, 2, dtype=torch.long)}, None) == (1, 2, 0)  # text only


# --- the card table --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("reported,card", [
    ("NVIDIA H200", "NVIDIA H200 SXM"), ("NVIDIA H200 NVL", "NVIDIA H200 NVL"),
    ("NVIDIA H100 80GB HBM3", "NVIDIA H100 SXM"), ("NVIDIA H100 PCIe", "NVIDIA H100 PCIe"),
    ("NVIDIA H100 NVL", "NVIDIA H100 NVL"), ("NVIDIA A100-SXM4-80GB", "NVIDIA A100 80GB"),
    ("NVIDIA A100 80GB PCIe", "NVIDIA A100 80GB"), ("NVIDIA A100-SXM4-40GB", "NVIDIA A100 40GB"),
    ("NVIDIA A100-PCIE-40GB", "NVIDIA A100 40GB"), ("NVIDIA L4", "NVIDIA L4"), ("NVIDIA L40S", "NVIDIA L40S"),
    ("NVIDIA L40", "NVIDIA L40"), ("NVIDIA A10G", "NVIDIA A10G"), ("NVIDIA A10", "NVIDIA A10"),
    ("NVIDIA GeForce RTX 4090", "NVIDIA GeForce RTX 4090"), ("NVIDIA GeForce RTX 3090", "NVIDIA GeForce RTX 3090"),
    ("NVIDIA RTX A6000", "NVIDIA RTX A6000"), ("Tesla T4", "NVIDIA T4"), ("Tesla V100-SXM2-16GB", "NVIDIA V100 SXM2"),
    ("Tesla V100-PCIE-32GB", "NVIDIA V100 PCIe"), ("Tesla V100S-PCIE-32GB", "NVIDIA V100S PCIe"),
    ("NVIDIA B200", "NVIDIA B200"), ("AMD Instinct MI300X", None), ("NVIDIA GeForce GTX 1080", None),
])
def test_each_card_name_torch_reports_finds_its_entry(reported, card):
    found = T.card_for(reported)
    assert (found["name"] if found else None) == card


def test_the_card_table_says_its_source_and_has_a_peak_for_every_card():
    cards = T.load_cards()
    assert "NVIDIA" in cards["source"] and "dense" in cards["comment"]
    for card in cards["cards"]:
        assert card["memory_gib"] > 0 and card["sheet"]
        assert any(card["tflops"][dtype] for dtype in ("bf16", "fp16")), card["name"]
    assert T.card_for("NVIDIA H200")["tflops"]["bf16"] == 989  # the H200 SXM sheet: 1,979 with sparsity


# --- model FLOP utilisation ------------------------------------------------------------------------------------

def _meter_with(monkeypatch, *, device: str, name: str, bf16=True, fp16=False, flops=None, steps=4,
                seconds_a_step=0.5, rows=8, tokens=400, patches=1000) -> T.Meter:
    """A Meter that saw ``steps`` steps of ``rows`` rows, ``tokens`` text tokens and ``patches`` patches each, a
    step every ``seconds_a_step`` seconds, on a device called ``name`` (no GPU needed)."""
    plan = {"estimates": {"flops": flops if flops is not None else
                          {"per_text_token": 6e9, "per_vision_patch": 3e9, "patch_size": 14, "patch_extra_tokens": 0}}}
    meter = T.Meter(plan)
    monkeypatch.setattr(meter, "_device_name", lambda: name)
    monkeypatch.setattr(meter, "_peak_memory", lambda: {"gpu_allocated": 12.4, "gpu_reserved": 14.0,
                                                          "gpu_total": 139.8, "host": 3.0})
    clock = iter(range(1000))
    monkeypatch.setattr(T, "_now", lambda: next(clock) * seconds_a_step)
    meter.started(SimpleNamespace(device=SimpleNamespace(type=device), bf16=bf16, fp16=fp16,
                                  dataloader_num_workers=4, dataloader_pin_memory=True), 0)
    meter.waits = True
    for step in range(1, steps + 1):
        meter.count({"input_ids": torch.zeros(rows, tokens // rows, dtype=torch.long),
                     "pixel_values": torch.zeros(patches, 1176)})
        meter.waited(0.05 * seconds_a_step)
        meter.step_ended(step)
    meter.ended()
    return meter


def test_mfu_is_the_share_of_the_cards_peak(monkeypatch):
    summary = _meter_with(monkeypatch, device="cuda", name="NVIDIA H200").summary()
    # Steps 3-4 counted (1-2 are warm-up): 2 steps in 2 x 0.5 s, each 400 tokens x 6e9 + 1000 patches x 3e9 FLOPs.
    assert summary["steps"]["left_out"] == [1, 2] and (summary["steps"]["first"], summary["steps"]["last"]) == (3, 4)
    assert (summary["samples"], summary["text_tokens"], summary["vision_patches"]) == (16, 800, 2000)
    assert summary["tokens_per_second"] == 800.0 and summary["samples_per_second"] == 16.0
    flops_per_second = (800 * 6e9 + 2000 * 3e9) / 1.0
    assert summary["mfu"] == round(flops_per_second / 989e12, 4) and summary["mfu_reason"] is None
    assert summary["card"] == "NVIDIA H200 SXM" and summary["peak_tflops"] == 989
    assert summary["data_wait_share"] == pytest.approx(0.05)
    assert summary["whole_run"]["samples"] == 32 and summary["whole_run"]["steps"] == 4
    text = "\n".join(T.lines(summary))
    assert "800 tokens/s, 16.0 samples/s" in text and "1.1% model FLOP utilisation" in text
    assert "NVIDIA H200 SXM's 989 TFLOP/s" in text and "12.4 GiB allocated" in text


def test_mfu_is_null_with_the_reason(monkeypatch):
    cases = {
        "it is a share of a GPU's peak arithmetic, and this run trained on the CPU": dict(device="cpu", name="cpu"),
        "vtc does not know the peak arithmetic of the AMD Instinct MI300X":
            dict(device="cuda", name="AMD Instinct MI300X"),
        "the model trained in 32-bit floating point": dict(device="cuda", name="NVIDIA A100-SXM4-80GB", bf16=False),
        "the NVIDIA T4 has no bf16 tensor cores": dict(device="cuda", name="Tesla T4"),
        "vtc does not know this model's sizes": dict(device="cuda", name="NVIDIA L4", flops={}),
    }
    for reason, how in cases.items():
        summary = _meter_with(monkeypatch, **how).summary()
        assert summary["mfu"] is None and summary["mfu_reason"].startswith(reason), (how, summary["mfu_reason"])
        assert f"no model FLOP utilisation: {reason}" in "\n".join(T.lines(summary))
    t4 = _meter_with(monkeypatch, device="cuda", name="Tesla T4", bf16=False, fp16=True).summary()
    assert t4["mfu"] == round((800 * 6e9 + 2000 * 3e9) / 65e12, 4)  # fp16 on a T4 has its peak


def test_a_run_of_few_steps_counts_every_step_and_says_so(monkeypatch):
    summary = _meter_with(monkeypatch, device="cpu", name="cpu", steps=2).summary()
    assert summary["steps"]["left_out"] == [] and summary["samples"] == 16
    assert summary["steps"]["why"].startswith("only 2 steps: every step is counted")
    assert "the warm-up included" in "\n".join(T.lines(summary))


def test_a_gpu_that_waits_for_data_gets_vt543(monkeypatch):
    summary = _meter_with(monkeypatch, device="cuda", name="NVIDIA L4").summary()
    assert T.data_wait_warning(summary) is None  # 5% is the limit
    summary["data_wait_share"] = 0.38
    summary["data_wait_seconds"] = 0.04
    assert T.data_wait_warning(summary) is None  # 40 ms of waiting in a short run: nothing to act on
    summary["data_wait_seconds"] = 30.0
    found = T.data_wait_warning(summary)
    assert found.code == "VT543" and found.severity.value == "warning"
    assert "waited for its data 38% of the time (steps 3-4; 4 data-loading workers" in found.message
    assert "training.data_loading.workers.gpu" in found.help and "`resize`" in found.help
    assert T.data_wait_warning({**summary, "device": "cpu"}) is None  # a CPU run makes its batches itself


def test_the_summary_goes_from_training_to_the_runs_end(tmp_path):
    T.keep(tmp_path / "run-001.partial", {"x": 1})
    assert T.take(tmp_path / "run-001.partial") == {"x": 1} and T.take(tmp_path / "run-001.partial") is None


# --- a tiny run, counted against the data ----------------------------------------------------------------------

def _expected_counts(folder: Path) -> tuple[int, int, int]:
    """(rows, text tokens, image patches) of the dataset, from the processor alone: each row rendered as the chat
    a model reads (question and image, then the answer) and tokenized without padding; each 112 x 112 image is
    (112 / 14)^2 = 64 patches of 14 x 14 pixels."""
    from PIL import Image
    from transformers import AutoProcessor

    from vtc.runtime.tiny_models import ensure_tiny_model

    processor = AutoProcessor.from_pretrained(ensure_tiny_model("tiny-qwen2.5-vl"))
    rows = [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines()]
    tokens = 0
    for row in rows:
        image = Image.open(folder / row["file_name"]).convert("RGB")
        chat = [{"role": "user", "content": [{"type": "text", "text": QUESTION}, {"type": "image"}]},
                {"role": "assistant", "content": [{"type": "text", "text": row["text"]}]}]
        text = processor.apply_chat_template(chat, tokenize=False, add_generation_prompt=False)
        tokens += len(processor(text=[text], images=[[image]], add_special_tokens=False)["input_ids"][0])
    return len(rows), tokens, len(rows) * (112 // 14) ** 2


@pytest.mark.slow
def test_a_tiny_runs_counts_equal_the_data_and_its_mfu_is_null_on_the_cpu(tmp_path, capsys):
    from vtc.commands import run_target

    train = make_shapes(tmp_path / "train", n=16, seed=1)
    # 4 steps of 4 rows: every row once.
    plan = make_plan(train, steps=4, batch=4, outputs_dir=tmp_path / "runs")
    run = run_target(str(write_plan(plan, tmp_path / "plan.json")), allow_changed=True)
    out = capsys.readouterr().out
    speed = json.loads((run / "manifest.json").read_text())["throughput"]
    rows, tokens, patches = _expected_counts(train)
    whole = speed["whole_run"]
    assert (whole["steps"], whole["samples"], whole["text_tokens"], whole["vision_patches"]) == \
        (4, rows, tokens, patches)
    assert speed["steps"]["left_out"] == [1, 2] and speed["samples"] == 8  # steps 3 and 4
    assert 0 < speed["text_tokens"] < tokens and speed["vision_patches"] == 8 * 64
    # (seconds are kept to 0.1 ms)
    assert speed["tokens_per_second"] == pytest.approx(speed["text_tokens"] / speed["seconds"], rel=0.02)
    assert speed["mfu"] is None and "trained on the CPU" in speed["mfu_reason"]
    assert speed["model_tflops_per_second"] > 0 and speed["device"] == "cpu" and speed["dtype"] == "fp32"
    assert speed["peak_memory_gib"]["gpu_allocated"] is None and speed["peak_memory_gib"]["host"] > 0
    assert speed["data_workers"] == 0 and speed["data_wait_share"] is not None
    # The closing summary says it in words, after the save and before "finished".
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("speed "))
    assert "tokens/s" in lines[at] and "samples/s" in lines[at] and "steps 3-4" in lines[at]
    assert lines[at + 1].startswith("utilisation         no model FLOP utilisation: it is a share of a GPU's")
    assert lines[at + 2].startswith("memory ") and "host memory" in lines[at + 2]
    assert any(line.startswith("save ") for line in lines[:at]) and any(line.startswith("finished:")
                                                                       for line in lines[at:])


def test_figures_that_could_not_be_counted_are_left_out_not_guessed(monkeypatch):
    meter = _meter_with(monkeypatch, device="cuda", name="NVIDIA L4")
    meter.count({"input_ids": torch.zeros(2, 2, dtype=torch.long), "pixel_values": "not a tensor of patches"})
    meter.count({"input_ids": object()})  # a batch of a shape vtc does not know
    summary = meter.summary()
    assert summary["samples"] is None and summary["tokens_per_second"] is None and summary["mfu"] is None
    assert summary["counting_failed"].startswith("AttributeError")
    assert "the batches could not be counted" in summary["mfu_reason"]
    text = T.lines(summary)
    assert text[0].startswith("speed               not counted: AttributeError") and text[2].startswith("memory")
    # A trainer that never calls training_step (another training loop): nothing counted, nothing made up.
    unseen = T.Meter({"estimates": {"flops": None}})
    unseen.started(SimpleNamespace(device=SimpleNamespace(type="cpu")), 0)
    for step in (1, 2, 3):
        unseen.step_ended(step)
    summary = unseen.summary()
    assert summary["samples"] is None and "no batch went through" in summary["counting_failed"]
    assert summary["data_wait_share"] is None  # get_batch_samples never ran either


def test_the_processes_of_a_run_add_up_their_speed():
    """Two processes, each with its own figures: rates and counts add up, MFU is the mean, memory the largest."""
    def one(tokens, samples, mfu, reserved, wait):
        return {"steps": {"first": 3, "last": 10, "counted": 8, "left_out": [1, 2], "why": ""}, "seconds": 4.0,
                "samples": samples * 4, "text_tokens": tokens * 4, "vision_patches": None,
                "samples_per_second": samples, "tokens_per_second": tokens, "vision_patches_per_second": None,
                "model_tflops_per_second": 100.0 * mfu, "mfu": mfu, "mfu_reason": None, "card": "NVIDIA H200",
                "peak_tflops": 989.0, "dtype": "bf16", "data_workers": 4, "data_wait_share": wait,
                "whole_run": {"first": 1, "last": 10, "steps": 10, "seconds": 6.0, "samples": samples * 6,
                              "text_tokens": tokens * 6, "vision_patches": None},
                "peak_memory_gib": {"gpu_allocated": reserved - 1, "gpu_reserved": reserved, "gpu_total": 139.8,
                                    "host": None}}

    a, b = one(4000.0, 10.0, 0.12, 8.2, 0.01), one(3900.0, 9.75, 0.10, 9.0, 0.03)
    assert T.combine([a]) is a
    both = T.combine([a, b])
    assert both["tokens_per_second"] == 7900.0 and both["samples_per_second"] == 19.75
    assert both["text_tokens"] == 4 * 7900 and both["whole_run"]["text_tokens"] == 6 * 7900
    assert both["vision_patches_per_second"] is None  # unknown in one process: unknown for the run
    assert both["mfu"] == 0.11 and both["data_wait_share"] == 0.03
    assert both["peak_memory_gib"]["gpu_reserved"] == 9.0
    assert [p["rank"] for p in both["processes"]] == [0, 1] and both["processes"][1]["tokens_per_second"] == 3900.0
    text = "\n".join(T.lines(both))
    assert "7,900 tokens/s" in text and "the 2 processes together" in text
    assert "of 2 x the NVIDIA H200's 989 TFLOP/s" in text and "(the process that used the most)" in text


def test_clip_patches_count_as_vision_patches():
    """Qwen-VL's clips (pixel_values_videos: one row per patch of two frames) go through the vision tower like an
    image's patches, so the FLOPs and MFU count them; a batch of clips only is not zero vision work."""
    clips = {"input_ids": torch.zeros(2, 10, dtype=torch.long), "pixel_values_videos": torch.zeros(288, 1176)}
    assert T._patches(clips, None) == 288
    both = {**clips, "pixel_values": torch.zeros(64, 1176)}
    assert T._patches(both, None) == 288 + 64
    assert T._patches({"input_ids": clips["input_ids"]}, None) == 0
