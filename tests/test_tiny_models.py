"""The embedded tiny models: built locally, loaded offline with Auto classes, deterministic, real module names."""

from __future__ import annotations

import hashlib
import json
import os
import re

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

torch = pytest.importorskip("torch")
from PIL import Image  # noqa: E402

from vtc.diagnostics import VtcError  # noqa: E402
from vtc.paths import TINY_BUILD_VERSION, cache_root  # noqa: E402
from vtc.runtime import tiny_models as T  # noqa: E402

# Module names from shared/reference/unsloth-vision.md (transformers 5.17), written independently of the builder.
PARTS = {
    "qwen2_5_vl": {
        "vision_attention": r"model\.visual\.blocks\.\d+\.attn\.(qkv|proj)",
        "vision_mlp": r"model\.visual\.blocks\.\d+\.mlp\.(gate_proj|up_proj|down_proj)",
        "language_attention": r"model\.language_model\.layers\.\d+\.self_attn\.(q_proj|k_proj|v_proj|o_proj)",
        "language_mlp": r"model\.language_model\.layers\.\d+\.mlp\.(gate_proj|up_proj|down_proj)",
        "projector": r"model\.visual\.merger\.mlp\.(0|2)",
        "lm_head": r"lm_head",
    },
    "mllama": {
        "vision_attention":
            r"model\.vision_model\.(transformer|global_transformer)\.layers\.\d+\.self_attn\.(q_proj|k_proj|v_proj|o_proj)",
        "vision_mlp": r"model\.vision_model\.(transformer|global_transformer)\.layers\.\d+\.mlp\.(fc1|fc2)",
        "language_attention":
            r"model\.language_model\.layers\.\d+\.(self_attn|cross_attn)\.(q_proj|k_proj|v_proj|o_proj)",
        "language_mlp": r"model\.language_model\.layers\.\d+\.mlp\.(gate_proj|up_proj|down_proj)",
        "projector": r"model\.multi_modal_projector",
        "lm_head": r"lm_head",
    },
}

# Parameters (weights + biases) of the Linear layers in each part; the compiler's estimator must agree.
EXPECTED = {
    "tiny-qwen2.5-vl": {"total": 655296, "vision_attention": 33280, "vision_mlp": 49792,
                        "language_attention": 98816, "language_mlp": 196608, "projector": 98688, "lm_head": 50944},
    "tiny-llama-3.2-vision": {"total": 234759, "vision_attention": 12288, "vision_mlp": 12576,
                              "language_attention": 36864, "language_mlp": 73728, "projector": 6208,
                              "lm_head": 25152},
}
ARCH = {"tiny-qwen2.5-vl": ("qwen2_5_vl", "Qwen2_5_VLForConditionalGeneration", "Qwen2_5_VLProcessor"),
        "tiny-llama-3.2-vision": ("mllama", "MllamaForConditionalGeneration", "MllamaProcessor")}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("vtc-cache")
    return {name: T.ensure_tiny_model(name, cache_dir=root) for name in T.TINY_MODELS}, root


def _hashes(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def test_cache_layout_and_build_record(cache):
    paths, root = cache
    for name, path in paths.items():
        assert path == root / "models" / f"{name}-v{TINY_BUILD_VERSION}"
        info = json.loads((path / "vtc_tiny.json").read_text())
        assert (info["name"], info["version"], info["seed"]) == (name, TINY_BUILD_VERSION, T.SEED)
        config = json.loads((path / "config.json").read_text())
        assert config["model_type"] == ARCH[name][0]
        assert config["architectures"] == [ARCH[name][1]]
        # No half-built temporary folders are left behind.
        assert [p.name for p in (root / "models").iterdir() if p.name.startswith(".")] == []


def test_second_call_reuses_the_cache(cache):
    paths, root = cache
    before = (paths["tiny-qwen2.5-vl"] / "model.safetensors").stat().st_mtime_ns
    again = T.ensure_tiny_model("tiny-qwen2.5-vl", cache_dir=root)
    assert again == paths["tiny-qwen2.5-vl"]
    assert (again / "model.safetensors").stat().st_mtime_ns == before


def test_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("VTC_CACHE", str(tmp_path / "a"))
    assert cache_root() == tmp_path / "a"
    monkeypatch.delenv("VTC_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "vtc"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "vtc"


def test_unknown_tiny_model_is_a_diagnostic():
    with pytest.raises(VtcError) as exc:
        T.ensure_tiny_model("tiny-qwen2-vl")
    d = exc.value.diagnostics[0]
    assert d.code == "VT501" and "tiny-qwen2.5-vl" in d.help


@pytest.mark.parametrize("name", T.TINY_MODELS)
def test_build_is_deterministic(cache, tmp_path, name):
    paths, _ = cache
    again = T.build_tiny_model(name, tmp_path / name)
    assert _hashes(again) == _hashes(paths[name])


@pytest.mark.parametrize("name", T.TINY_MODELS)
def test_loads_offline_and_runs_with_an_image(cache, name):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    path = cache[0][name]
    processor = AutoProcessor.from_pretrained(path)
    model = AutoModelForImageTextToText.from_pretrained(path)
    assert type(model).__name__ == ARCH[name][1]
    assert type(processor).__name__ == ARCH[name][2]
    image = Image.new("RGB", (112, 112), (220, 30, 30))
    messages = [{"role": "user", "content": [{"type": "text", "text": "What colour is the shape?"},
                                             {"type": "image", "image": image}]},
                {"role": "assistant", "content": [{"type": "text", "text": "red"}]}]
    text = processor.apply_chat_template(messages, tokenize=False)
    batch = processor(text=[text], images=[[image]], return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = model(**batch)
    assert out.logits.shape == (1, batch["input_ids"].shape[1], model.config.get_text_config().vocab_size)
    assert torch.isfinite(out.logits).all()
    if name == "tiny-qwen2.5-vl":
        # 112 x 112 px -> (112/28)^2 = 16 image tokens.
        pad = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
        assert int((batch["input_ids"] == pad).sum()) == 16
        assert text.endswith("<|im_start|>assistant\nred<|im_end|>\n")
    else:
        assert text.startswith("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n")
        assert text.endswith("<|start_header_id|>assistant<|end_header_id|>\n\nred<|eot_id|>")
    # Generation stops at the family's end-of-turn token.
    eos = {"tiny-qwen2.5-vl": "<|im_end|>", "tiny-llama-3.2-vision": "<|eot_id|>"}[name]
    assert model.generation_config.eos_token_id == processor.tokenizer.convert_tokens_to_ids(eos)
    assert processor.tokenizer.eos_token == eos


@pytest.mark.parametrize("name", T.TINY_MODELS)
def test_tokenizer_has_family_specials_and_small_vocab(cache, name):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(cache[0][name])
    specials = T.QWEN_SPECIALS if name == "tiny-qwen2.5-vl" else T.LLAMA_SPECIALS
    for s in specials:
        assert tok.tokenize(s) == [s], s
    assert 350 <= len(tok) <= 420
    # The demo's answers are single tokens, so the tiny model learns them quickly.
    for word in ("red", "green", "blue", "yellow"):
        assert len(tok(word, add_special_tokens=False)["input_ids"]) == 1
    assert tok.decode(tok("A chest X-ray: no fracture.", add_special_tokens=False)["input_ids"]) == \
        "A chest X-ray: no fracture."


@pytest.mark.parametrize("name", T.TINY_MODELS)
def test_module_names_and_parameter_counts_per_part(cache, name):
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(cache[0][name])
    family = ARCH[name][0]
    linear = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    counts, covered = {"total": sum(p.numel() for p in model.parameters())}, set()
    for part, rx in PARTS[family].items():
        names = [n for n in linear if re.fullmatch(rx, n)]
        assert names, f"no {part} modules in {name}"
        covered.update(names)
        counts[part] = sum(p.numel() for n in names for p in linear[n].parameters())
    assert counts == EXPECTED[name]
    # Every Linear layer belongs to exactly one part: nothing else for LoRA to target.
    assert covered == set(linear)
    # lm_head initialised with std 0.1 so that LoRA can learn.
    assert 0.09 < float(model.lm_head.weight.detach().std()) < 0.11
