"""Build a Llama 3.2 Vision model folder with the 11B shape and random weights (for memory calibration on the GPU).

The sizes are the registry's llama-3.2-vision-11b entry (the public config of
meta-llama/Llama-3.2-11B-Vision-Instruct: text 4096 x 40 layers with cross-attention at 3, 8, ..., 38, vision
1280 x 32 + 8 global layers, 560 px tiles of 14 px patches, up to 4 tiles). The tokenizer and chat template are
vtc's tiny Llama ones (trained locally); the embedding keeps the real 128256 rows, so the model costs what the real
one costs. Cross-attention gates are set to 1 as in vtc's tiny Llama (a fresh model's tanh(0) gates would cut
the image off).

    python bench/build_llama11b_shape.py --out /tmp/llama11b
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))


def build(out: Path, device: str = "cuda") -> dict:
    import torch
    from transformers import MllamaConfig, MllamaForConditionalGeneration, MllamaImageProcessor, MllamaProcessor

    from vtc.registry import load_registry
    from vtc.runtime import tiny_models as T

    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    tok = T._train_bpe(T.LLAMA_SPECIALS, bos="<|begin_of_text|>")
    tokenizer = T._fast_tokenizer(tok, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>",
                                  pad_token="<|finetune_right_pad_id|>", model_max_length=131072)
    tokenizer.chat_template = T.LLAMA_CHAT_TEMPLATE
    ids = {t: tok.token_to_id(t) for t in T.LLAMA_SPECIALS}
    arch = load_registry().models["llama-3.2-vision-11b"]["architecture"]
    vision, language = arch["vision"], arch["language"]
    processor = MllamaProcessor(image_processor=MllamaImageProcessor(size={"height": 560, "width": 560},
                                                                     max_image_tiles=4),
                                tokenizer=tokenizer, chat_template=T.LLAMA_CHAT_TEMPLATE)
    config = MllamaConfig(
        vision_config={"hidden_size": vision["hidden"], "num_hidden_layers": vision["layers"],
                       "num_global_layers": vision["global_layers"], "attention_heads": vision["heads"],
                       "intermediate_size": vision["intermediate"], "image_size": 560, "patch_size": 14,
                       "max_num_tiles": 4, "intermediate_layers_indices": [3, 7, 15, 23, 30],
                       "vision_output_dim": vision["output_dim"]},
        text_config={"vocab_size": language["vocab_size"], "hidden_size": language["hidden"],
                     "intermediate_size": language["intermediate"], "num_hidden_layers": language["layers"],
                     "num_attention_heads": language["heads"], "num_key_value_heads": language["kv_heads"],
                     "cross_attention_layers": language["cross_attention_layers"],
                     "max_position_embeddings": 131072,
                     "rope_parameters": {"rope_type": "default", "rope_theta": 500000.0},
                     "bos_token_id": ids["<|begin_of_text|>"], "eos_token_id": ids["<|eot_id|>"],
                     "pad_token_id": ids["<|finetune_right_pad_id|>"], "tie_word_embeddings": False},
        image_token_index=ids["<|image|>"],
    )
    config.bos_token_id, config.eos_token_id = ids["<|begin_of_text|>"], ids["<|eot_id|>"]
    config.pad_token_id = ids["<|finetune_right_pad_id|>"]
    torch.manual_seed(3407)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            model = MllamaForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(previous)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith(("cross_attn_attn_gate", "cross_attn_mlp_gate")):
                parameter.fill_(1.0)
    T._finish_model(model, ids["<|eot_id|>"], ids["<|finetune_right_pad_id|>"], ids["<|begin_of_text|>"])
    n_params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(out)
    processor.save_pretrained(out)
    info = {"size": "llama-11b", "parameters": n_params, "total_s": round(time.perf_counter() - t0, 1)}
    (out / "bench_model.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()
    print(json.dumps(build(args.out, args.device)))


if __name__ == "__main__":
    main()
