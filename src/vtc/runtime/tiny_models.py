"""The embedded tiny models: tiny-qwen2.5-vl and tiny-llama-3.2-vision, built locally on first use.

Each is a real architecture (Qwen2_5_VLForConditionalGeneration, MllamaForConditionalGeneration) with a few hundred
thousand random weights from a fixed seed, a byte-level BPE tokenizer trained here on a small built-in corpus with the
family's special tokens, a chat template in the family's format and the family's real processor class. The folder
loads offline with ``AutoModelForImageTextToText.from_pretrained`` and ``AutoProcessor.from_pretrained``, so the
training code treats it exactly like a Hub model. The sizes (architecture and image geometry) are the registry's
entry for the model (src/vtc/registry/models.json), the one place they are written, so that the compiler's
parameter counts and token estimates describe exactly what is built; they come from sizes measured on 2-core CPUs
(the smallest that still learn): the models train in seconds and still learn the shapes demo.

The build is deterministic: the same version gives the same bytes. It is cached in the user's cache folder
(vtc.paths.tiny_model_dir: ``$VTC_CACHE``, else ``$XDG_CACHE_HOME/vtc``, else ``~/.cache/vtc``, then
``models/<name>-v<version>/``; the version is vtc.paths.TINY_BUILD_VERSION), built into
a temporary folder first and renamed into place, so an interrupted build never leaves a half folder behind.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from vtc.diagnostics import VtcError, error
from vtc.paths import TINY_BUILD_VERSION, tiny_model_dir
from vtc.registry import load_registry

TINY_MODELS = ("tiny-qwen2.5-vl", "tiny-llama-3.2-vision")

# Anything below that changes what gets built must bump vtc.paths.TINY_BUILD_VERSION.
SEED = 1234
# LoRA leaves lm_head frozen; with the default std 0.02 the frozen head caps the logits of a random tiny model and
# the loss stalls near 3.8 at chance accuracy. std 0.1 lets LoRA learn (measured when the tiny models were built).
LM_HEAD_STD = 0.1
# Vocabulary of the byte-level BPE before the special tokens are appended: 256 byte symbols + ~120 merges.
BPE_VOCAB = 384

QWEN_SPECIALS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
    "<|image_pad|>", "<|video_pad|>",
]
LLAMA_SPECIALS = [
    "<|begin_of_text|>", "<|end_of_text|>", "<|finetune_right_pad_id|>", "<|start_header_id|>", "<|end_header_id|>",
    "<|eom_id|>", "<|eot_id|>", "<|python_tag|>", "<|image|>",
]

# Qwen2.5-VL-Instruct's own chat template (default system prompt included), as shipped on the Hub.
QWEN_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Llama 3.2 Vision's turn format. The Hub template also writes a dated system block ("Today Date: ...") for
# text-only chats and drops the system prompt when images are present; this one keeps a given system prompt and
# writes no date, so that the same data always renders to the same tokens.
LLAMA_CHAT_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' }}"
    "{%- if message['content'] is string %}{{- message['content'] | trim if message['role'] == 'system' "
    "else message['content'] }}"
    "{%- else %}{%- for content in message['content'] %}"
    "{%- if content['type'] == 'image' %}{{- '<|image|>' }}"
    "{%- elif content['type'] == 'text' %}{{- content['text'] }}{%- endif %}"
    "{%- endfor %}{%- endif %}"
    "{{- '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{%- endif %}"
)

# The tokenizer's training text: words a vision fine-tune meets (colours, shapes, digits, punctuation, document,
# receipt and medical words, the default prompts). Repetition weights what the BPE merges first.
_CORPUS_WORDS = """
red green blue yellow orange purple pink brown black white grey gray colour color
circle square triangle rectangle star shape shapes the a an is of in on and or with to this that what which
What colour is the shape? Describe this image. Describe this X-ray. Describe accurately what you see in this image.
You are a helpful assistant. You are an expert radiographer. Answer with one word.
zero one two three four five six seven eight nine ten 0 1 2 3 4 5 6 7 8 9 10 100 2024 3.14 50% $12.99
. , : ; ! ? ' " ( ) [ ] { } - + = / \\ * & # @ _ < > |
image picture photo document page text line word letter number total date name address price receipt invoice form
field value amount tax item quantity table row column title caption label answer question
chest lung heart bone fracture scan x-ray radiograph left right upper lower normal abnormal no evidence of
patient findings impression opacity effusion pneumonia nodule mass tissue
cat dog person car tree house sky sea
system user assistant system user assistant
"""
_CORPUS = [line.strip() for line in _CORPUS_WORDS.strip().splitlines()] * 20 + [
    "red circle", "green square", "blue triangle", "yellow circle", "red square", "green triangle",
    "blue circle", "yellow square", "red triangle", "green circle", "blue square", "yellow triangle",
] * 40


def ensure_tiny_model(name: str, cache_dir: str | Path | None = None) -> Path:
    """The folder of a tiny model, built on first use; loads offline with Auto* classes.

    ``cache_dir`` replaces the cache root (the folder goes to ``cache_dir/models/<name>-v1``).
    """
    if name not in TINY_MODELS:
        from vtc.diagnostics import did_you_mean

        raise VtcError(error(
            "VT501", f"`{name}` is not one of vtc's tiny models",
            help=did_you_mean(name, TINY_MODELS) or f"the tiny models are {', '.join(TINY_MODELS)}",
        ))
    target = tiny_model_dir(name, cache_dir)
    if (target / "vtc_tiny.json").is_file():
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    except OSError as exc:
        raise VtcError(error(
            "VT502", f"cannot write the tiny model into the cache folder {target.parent}: {exc.strerror or exc}",
            help="set VTC_CACHE to a folder you can write to",
        )) from None
    try:
        build_tiny_model(name, tmp)
        try:
            os.replace(tmp, target)
        except OSError:
            # Another process finished the same build first: its folder is identical (deterministic build).
            if not (target / "vtc_tiny.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def build_tiny_model(name: str, out_dir: str | Path) -> Path:
    """Build a tiny model into ``out_dir`` (no caching): tokenizer, processor, config, weights, vtc_tiny.json."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if name == "tiny-qwen2.5-vl":
        _build_qwen(out)
    elif name == "tiny-llama-3.2-vision":
        _build_llama(out)
    else:
        raise ValueError(f"unknown tiny model {name!r}")
    info = {"name": name, "version": TINY_BUILD_VERSION, "seed": SEED, "family": _entry(name)["family"],
            "lm_head_std": LM_HEAD_STD, "built_by": "vtc.runtime.tiny_models"}
    (out / "vtc_tiny.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return out


# --- tokenizer ----------------------------------------------------------------------------------------------------


def _train_bpe(specials: list[str], bos: str | None = None):
    """A byte-level BPE trained on the built-in corpus, specials appended after the learned vocabulary."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=BPE_VOCAB, min_frequency=2, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[],
    )
    tok.train_from_iterator(_CORPUS, trainer=trainer)
    tok.add_special_tokens(specials)
    if bos is not None:
        # Like Llama 3's tokenizer: a plain tokenizer(...) call starts with <|begin_of_text|>.
        bos_id = tok.token_to_id(bos)
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, bos_id)],
        )
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


def _fast_tokenizer(tok, **special):
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **special)
    fast.padding_side = "right"
    return fast


# --- Qwen2.5-VL ---------------------------------------------------------------------------------------------------


def _entry(name: str) -> dict:
    """The registry's entry of a tiny model: its family, architecture sizes and image geometry."""
    return load_registry().models[name]


def _check_vocab(name: str, language: dict, vocab: int) -> None:
    """The registry's vocabulary size must be the trained tokenizer's (the compiler counts lm_head with it)."""
    if language["vocab_size"] != vocab:  # pragma: no cover - a registry edit that forgot the tokenizer
        raise AssertionError(f"{name}: models.json says vocab_size {language['vocab_size']}, the tokenizer has "
                             f"{vocab}")


def _build_qwen(out: Path) -> None:
    import torch
    from transformers import (Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor,
                              Qwen2VLImageProcessor)

    tok = _train_bpe(QWEN_SPECIALS)
    tokenizer = _fast_tokenizer(
        tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", model_max_length=32768,
        extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>",
                              "vision_bos_token": "<|vision_start|>", "vision_eos_token": "<|vision_end|>"},
    )
    tokenizer.chat_template = QWEN_CHAT_TEMPLATE
    ids = {t: tok.token_to_id(t) for t in QWEN_SPECIALS}
    entry = _entry("tiny-qwen2.5-vl")
    vision, language, geometry = entry["architecture"]["vision"], entry["architecture"]["language"], entry["geometry"]
    _check_vocab("tiny-qwen2.5-vl", language, tok.get_vocab_size())

    # 112x112 px -> 8x8 patches of 14 px -> 4x4 merged tokens = 16 image tokens (min 4, max 64 tokens an image).
    pixels = {"min_pixels": geometry["min_pixels"], "max_pixels": geometry["max_pixels"]}
    image_processor = Qwen2VLImageProcessor(
        **pixels, patch_size=vision["patch_size"], temporal_patch_size=vision["temporal_patch_size"],
        merge_size=vision["merge_size"],
    )
    video_processor = _qwen_video_processor(pixels)
    processor = Qwen2_5_VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                    video_processor=video_processor, chat_template=QWEN_CHAT_TEMPLATE)

    # mrope sections (temporal, height, width) sum to head_dim / 2: a quarter for time, the rest split between the
    # two image axes (head_dim 32: 4 + 6 + 6 = 16).
    half = language["head_dim"] // 2
    temporal = half // 4
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": language["vocab_size"], "hidden_size": language["hidden"],
            "intermediate_size": language["intermediate"], "num_hidden_layers": language["layers"],
            "num_attention_heads": language["heads"], "num_key_value_heads": language["kv_heads"],
            "max_position_embeddings": 4096,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0,
                                "mrope_section": [temporal, (half - temporal) // 2, (half - temporal) // 2]},
            "bos_token_id": None, "eos_token_id": ids["<|im_end|>"], "pad_token_id": ids["<|endoftext|>"],
            "tie_word_embeddings": language["tied_embeddings"],
        },
        vision_config={
            "depth": vision["layers"], "hidden_size": vision["hidden"], "intermediate_size": vision["intermediate"],
            "num_heads": vision["heads"], "patch_size": vision["patch_size"], "spatial_merge_size": vision["merge_size"],
            "temporal_patch_size": vision["temporal_patch_size"], "window_size": vision["window_size"],
            "fullatt_block_indexes": vision["fullatt_block_indexes"], "out_hidden_size": vision["out_hidden"],
        },
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=language["tied_embeddings"],
    )
    config.eos_token_id = ids["<|im_end|>"]
    config.pad_token_id = ids["<|endoftext|>"]
    torch.manual_seed(SEED)
    model = Qwen2_5_VLForConditionalGeneration(config)
    _finish_model(model, ids["<|im_end|>"], ids["<|endoftext|>"], None)
    model.save_pretrained(out)
    processor.save_pretrained(out)


def _qwen_video_processor(pixels: dict):
    """Qwen2.5-VL's processor requires a video processor; the real one needs torchvision."""
    try:
        from transformers import Qwen2VLVideoProcessor

        return Qwen2VLVideoProcessor(**pixels)
    except (ImportError, RuntimeError, ValueError) as exc:  # torchvision missing or broken
        raise VtcError(error(
            "VT503", "cannot build tiny-qwen2.5-vl: its video processor needs torchvision, which does not import",
            help=f"install the training extra (`pip install -e '.[train]'`) so that torch and torchvision match "
                 f"({type(exc).__name__}: {exc})",
        )) from None


# --- Llama 3.2 Vision (Mllama) ------------------------------------------------------------------------------------


def _build_llama(out: Path) -> None:
    import torch
    from transformers import MllamaConfig, MllamaForConditionalGeneration, MllamaImageProcessor, MllamaProcessor

    tok = _train_bpe(LLAMA_SPECIALS, bos="<|begin_of_text|>")
    tokenizer = _fast_tokenizer(
        tok, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>", pad_token="<|finetune_right_pad_id|>",
        model_max_length=131072,
    )
    tokenizer.chat_template = LLAMA_CHAT_TEMPLATE
    ids = {t: tok.token_to_id(t) for t in LLAMA_SPECIALS}
    entry = _entry("tiny-llama-3.2-vision")
    vision, language, geometry = entry["architecture"]["vision"], entry["architecture"]["language"], entry["geometry"]
    _check_vocab("tiny-llama-3.2-vision", language, tok.get_vocab_size())

    # 56 px tiles of 14 px patches, up to 4 tiles an image (real model: 560 px tiles).
    tile = geometry["tile_size"]
    image_processor = MllamaImageProcessor(size={"height": tile, "width": tile}, max_image_tiles=geometry["max_tiles"])
    processor = MllamaProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                chat_template=LLAMA_CHAT_TEMPLATE)

    config = MllamaConfig(
        vision_config={
            "hidden_size": vision["hidden"], "num_hidden_layers": vision["layers"],
            "num_global_layers": vision["global_layers"], "attention_heads": vision["heads"],
            "intermediate_size": vision["intermediate"], "image_size": vision["image_size"],
            "patch_size": vision["patch_size"], "max_num_tiles": vision["max_tiles"],
            # vision_output_dim = hidden * (len(intermediate_layers_indices) + 1) = 32 * 3.
            "intermediate_layers_indices": vision["intermediate_layers_indices"],
            "vision_output_dim": vision["output_dim"],
        },
        text_config={
            "vocab_size": language["vocab_size"], "hidden_size": language["hidden"],
            "intermediate_size": language["intermediate"], "num_hidden_layers": language["layers"],
            "num_attention_heads": language["heads"], "num_key_value_heads": language["kv_heads"],
            "cross_attention_layers": language["cross_attention_layers"],
            "max_position_embeddings": 4096, "rope_parameters": {"rope_type": "default", "rope_theta": 500000.0},
            "bos_token_id": ids["<|begin_of_text|>"], "eos_token_id": ids["<|eot_id|>"],
            "pad_token_id": ids["<|finetune_right_pad_id|>"], "tie_word_embeddings": language["tied_embeddings"],
        },
        image_token_index=ids["<|image|>"],
    )
    config.bos_token_id = ids["<|begin_of_text|>"]
    config.eos_token_id = ids["<|eot_id|>"]
    config.pad_token_id = ids["<|finetune_right_pad_id|>"]
    torch.manual_seed(SEED)
    model = MllamaForConditionalGeneration(config)
    # Mllama's cross-attention gates start at 0 and pass through tanh, so a fresh model multiplies everything the
    # image contributes by tanh(0) = 0: the text never sees the image and LoRA on cross-attention gets no gradient.
    # Real checkpoints carry learned gates; 1.0 (tanh = 0.76) lets the tiny model see its images.
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith(("cross_attn_attn_gate", "cross_attn_mlp_gate")):
                parameter.fill_(1.0)
    _finish_model(model, ids["<|eot_id|>"], ids["<|finetune_right_pad_id|>"], ids["<|begin_of_text|>"])
    model.save_pretrained(out)
    processor.save_pretrained(out)


def _finish_model(model, eos_id: int, pad_id: int, bos_id: int | None) -> None:
    """lm_head std 0.1 (see LM_HEAD_STD), generation ids, float32."""
    import torch

    gen = torch.Generator().manual_seed(SEED + 1)
    with torch.no_grad():
        head = model.get_output_embeddings()
        head.weight.copy_(torch.randn(head.weight.shape, generator=gen) * LM_HEAD_STD)
    model.generation_config.eos_token_id = eos_id
    model.generation_config.pad_token_id = pad_id
    model.generation_config.bos_token_id = bos_id
    model.generation_config.do_sample = False
    model.to(torch.float32)
