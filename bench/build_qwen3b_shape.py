"""Build a Qwen2.5-VL model folder with random weights: the 3B shape for the benchmark, or a tiny one for probes.

The GPU machine has no network, so the benchmark cannot download Qwen/Qwen2.5-VL-3B-Instruct. Speed and memory
depend on the shapes, not on the weights, so this builds the same architecture with the 3B sizes (from the public
config.json of Qwen/Qwen2.5-VL-3B-Instruct) and random weights, plus a tokenizer trained here on a small corpus,
with Qwen's special tokens and chat template. Its vocabulary is small, but the embedding and lm_head keep the
real 151936 rows, so the model costs what the real one costs.

    python bench/build_qwen3b_shape.py --out /tmp/qwen3b --size 3b      # 3.75 B parameters, ~7 GB bf16, GPU
    python bench/build_qwen3b_shape.py --out /tmp/qwen7b --size 7b      # 8.29 B parameters, ~16 GB bf16, GPU
    python bench/build_qwen3b_shape.py --out /tmp/tinyq --size tiny     # 0.7 M parameters, CPU is fine

Nothing here imports vtc or unsloth.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

# Qwen's special tokens in their real order (their ids differ here: the trained vocabulary comes first).
SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
]

# Qwen2.5-VL's chat template, kept to what images, clips and text need: the default system turn, then each turn's
# parts in order (an image part becomes <|vision_start|><|image_pad|><|vision_end|>, a video part the same with
# <|video_pad|>, each expanded by the processor).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Words of the synthetic captions; the tokenizer is trained on them so that each is one token and every row of
# the benchmark data set has the same length (tokens per step is then exact, not an average).
WORDS = (
    "red green blue yellow orange purple white black circle square triangle star small large left right top "
    "bottom centre corner shape picture image shows there is a an the of in on with and near far bright dark "
    "striped dotted plain background foreground describe this detail please what colour"
).split()

# Public config of Qwen/Qwen2.5-VL-3B-Instruct (text 2048 x 36 layers, vision 1280 x 32 blocks).
SIZES = {
    "3b": {
        "text": dict(hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
                     num_key_value_heads=2, max_position_embeddings=128000, rms_norm_eps=1e-6,
                     rope_parameters={"rope_type": "default", "rope_theta": 1000000.0,
                                      "mrope_section": [16, 24, 24]},
                     vocab_size=151936),
        "vision": dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=2048,
                       patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                       fullatt_block_indexes=[7, 15, 23, 31], tokens_per_second=2),
        "tie_word_embeddings": True,
    },
    # Public config of Qwen/Qwen2.5-VL-7B-Instruct (text 3584 x 28 layers, vision as 3B's but projecting to 3584).
    "7b": {
        "text": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                     num_key_value_heads=4, max_position_embeddings=128000, rms_norm_eps=1e-6,
                     rope_parameters={"rope_type": "default", "rope_theta": 1000000.0,
                                      "mrope_section": [16, 24, 24]},
                     vocab_size=152064),
        "vision": dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=3584,
                       patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                       fullatt_block_indexes=[7, 15, 23, 31], tokens_per_second=2),
        "tie_word_embeddings": False,
    },
    # The tiny shape of ../shared/reference/cpu-stack.md (mrope sections sum to head_dim / 2 = 16).
    "tiny": {
        "text": dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=2, max_position_embeddings=4096, rms_norm_eps=1e-6,
                     rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 6, 6]},
                     vocab_size=None),
        "vision": dict(depth=2, hidden_size=64, intermediate_size=128, num_heads=4, out_hidden_size=128,
                       patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                       fullatt_block_indexes=[1], tokens_per_second=2),
        "tie_word_embeddings": False,
    },
}


def build_tokenizer():
    """A byte-level BPE tokenizer trained on WORDS, with Qwen's special tokens and chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [" ".join(WORDS)] * 4 + [w for w in WORDS] + [" " + w for w in WORDS]
    corpus += ["0123456789 .,:;!?'\"()-_/\n system user assistant You are a helpful assistant."] * 4
    trainer = trainers.BpeTrainer(vocab_size=600, min_frequency=1, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    tok.add_special_tokens(SPECIAL_TOKENS)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token=None,
        padding_side="right", model_max_length=32768,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_processor(tokenizer, max_pixels: int):
    """Qwen2_5_VLProcessor over the tokenizer (min_pixels 4*28*28 as the real one)."""
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    image_processor = Qwen2VLImageProcessor(min_pixels=4 * 28 * 28, max_pixels=max_pixels, patch_size=14,
                                            merge_size=2, temporal_patch_size=2)
    video_processor = Qwen2VLVideoProcessor()
    return Qwen2_5_VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                               video_processor=video_processor, chat_template=CHAT_TEMPLATE)


def build(out: Path, size: str = "3b", device: str = "cuda", seed: int = 3407) -> dict:
    """Write config, random weights (bf16 for 3b, fp32 for tiny), tokenizer and processor to `out`."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    # 16384 * 28 * 28 is Qwen's max_pixels; the tiny model keeps images small (64 * 28 * 28).
    processor = build_processor(tokenizer, max_pixels=(64 if size == "tiny" else 16384) * 28 * 28)
    spec = SIZES[size]
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    text = dict(spec["text"])
    if text["vocab_size"] is None:
        text["vocab_size"] = len(tokenizer)
    text.update(bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
                pad_token_id=ids["<|endoftext|>"])
    dtype = torch.float32 if size == "tiny" else torch.bfloat16
    config = Qwen2_5_VLConfig(
        text_config=text, vision_config=dict(spec["vision"]),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=spec["tie_word_embeddings"],
    )
    config.text_config.dtype = dtype
    config.dtype = dtype
    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = Qwen2_5_VLForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(previous)
    if size == "tiny":
        # A frozen lm_head with std 0.02 caps the logits of a tiny random model (cpu-stack.md): 0.1 lets LoRA learn.
        with torch.no_grad():
            model.lm_head.weight.normal_(0.0, 0.1)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    n_params = sum(p.numel() for p in model.parameters())
    t_build = time.perf_counter() - t0
    model.save_pretrained(out)
    processor.save_pretrained(out)
    info = {"size": size, "parameters": n_params, "dtype": str(dtype), "build_s": round(t_build, 1),
            "total_s": round(time.perf_counter() - t0, 1), "tokenizer_vocab": len(tokenizer),
            "special_ids": ids}
    (out / "bench_model.json").write_text(json.dumps(info, indent=2) + "\n")
    del model
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--size", choices=sorted(SIZES), default="3b")
    ap.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    args = ap.parse_args()
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    print(json.dumps(build(args.out, args.size, device)))


if __name__ == "__main__":
    main()
