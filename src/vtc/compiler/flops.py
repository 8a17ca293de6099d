"""The model's arithmetic per token, for the run's model FLOP utilisation (MFU). A pure function over the registry's
architecture sizes; no I/O, no torch.

    model_flops(family, arch, geometry) -> {"per_text_token", "per_vision_patch", "language_parameters",
                                            "vision_parameters", "patch_size", "patch_extra_tokens"} | None

The convention of PaLM's MFU (Chowdhery et al. 2022, appendix B), without its attention term: training a token costs
6 x the parameters it passes through (2 for the forward pass's multiply-adds, 4 for the backward pass's gradients of
the inputs and of the weights). Counted are the parameters of the matrix multiplications, weights and biases:

- a text token (every non-padding position of the sequence, image placeholder tokens included) passes through the
  language model's Linear layers (attention and MLP of every layer) and the LM head (a matrix multiplication even
  when it shares its weights with the input embedding, whose lookup costs nothing);
- a vision patch (a patch_size x patch_size square of an image, or of one tile of it) passes through the patch
  embedding, every Linear layer of the vision tower, and its share of the projector: Qwen-VL's merger runs once per
  merge_size x merge_size patches (1/4 of its parameters a patch), Llama 3.2 Vision's projector once per patch.
  Llama 3.2 Vision's cross-attention layers project the image states to keys and values once per patch, so their
  k_proj and v_proj count for the patch; their q_proj and o_proj for the text token.

Not counted: the attention scores (quadratic in the sequence; a few per cent at these lengths), norms, activations,
the embedding lookup, and the recomputation of gradient checkpointing. LoRA's real arithmetic is lower than 6 x:
a frozen weight gets no weight gradient (about 4 x instead of 6 x), and a frozen vision tower needs no backward
pass at all (2 x). The convention counts what a full training step of the same model would cost, so that figures
compare across methods and with published MFU; docs/running.md, "Speed and utilisation", says so to users.
"""

from __future__ import annotations

from vtc.registry import linear_layers

# Forward (2) + backward (4) multiply-adds per parameter and token.
FLOPS_PER_PARAMETER = 6

# The vision tower's patch size where the image geometry does not name it (the published configs).
_PATCH_SIZE = {"mllama": 14, "gemma3": 14}
# Tokens the vision tower adds to each image (tile) besides its patches: Llama 3.2 Vision's class token.
_EXTRA_TOKENS = {"mllama": 1}


def model_flops(family: str | None, arch: dict | None, geometry: dict | None) -> dict | None:
    """FLOPs per text token and per vision patch (see the module docstring), the parameters behind them, and how a
    run counts patches in an image tensor: ``patch_size`` (pixels) and ``patch_extra_tokens`` (per image or tile).
    None when the architecture sizes are unknown (a Hub model or a local folder vtc has no sizes for)."""
    if not family or not arch:
        return None
    layers = linear_layers(family, arch)
    if not layers:
        return None
    vis = arch["vision"]
    geometry = geometry or {}
    merge = int(geometry.get("merge_size", 1) or 1)
    text = 0.0
    patch = 0.0
    for name, tower, _kind, fan_in, fan_out, bias, count in layers:
        params = (fan_in * fan_out + (fan_out if bias else 0)) * count
        if tower in ("language", "head"):
            leaf = name.rsplit(".", 1)[-1]
            if ".cross_attn." in name and leaf in ("k_proj", "v_proj"):
                patch += params  # keys and values of the image states: once per patch
            else:
                text += params
        elif tower == "vision":
            patch += params
        elif tower == "projector":
            patch += params / (merge * merge)
    size = _patch_size(family, vis, geometry)
    if size:
        temporal = int(vis.get("temporal_patch_size", 2)) if family.startswith("qwen") else 1
        patch += 3 * temporal * size * size * vis["hidden"]  # the patch embedding (a convolution, no bias)
    language, vision = int(round(text)), int(round(patch))
    return {"per_text_token": FLOPS_PER_PARAMETER * language, "per_vision_patch": FLOPS_PER_PARAMETER * vision,
            "language_parameters": language, "vision_parameters": vision,
            "patch_size": size, "patch_extra_tokens": _EXTRA_TOKENS.get(family, 0)}


def _patch_size(family: str, vis: dict, geometry: dict) -> int | None:
    """The vision tower's patch side in pixels: the architecture's, the geometry's (Qwen-VL, Pixtral), or the
    family's published one."""
    for value in (vis.get("patch_size"), geometry.get("patch_size") if geometry.get("kind") == "patches" else None,
                  _PATCH_SIZE.get(family)):
        if value:
            return int(value)
    return None
