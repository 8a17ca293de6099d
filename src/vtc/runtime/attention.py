"""Qwen-VL's vision tower with one attention call per layer instead of one per window.

transformers' Qwen2-VL / Qwen2.5-VL vision attention, under any implementation but flash attention, splits the
patches at every window boundary and calls attention once per window (modeling_qwen2_5_vl.py, "Process each chunk
separately"): a 504 px image has 25 windows of 8 x 8 patches, so a micro-batch of 16 makes 400 attention calls in
each of the 28 windowed layers, about 11,000 small kernels (and a host synchronisation, `lengths.tolist()`, per
layer) in a forward pass, and as many again in recomputation and backward. The GPU waits on Python.

Flash attention does the same in one variable-length call per layer, but the flash-attn package is compiled for
one torch and one CUDA and rarely installs cleanly. torch >= 2.10 ships the same kernel as
``torch.nn.attention.varlen.varlen_attn``. vtc registers it with transformers' AttentionInterface under a name that
contains "flash": that is how the vision attention chooses its variable-length branch
(transformers.utils.generic.is_flash_attention_requested), which hands it the window boundaries (cu_seqlens). It
is set on the vision tower's config only: the language model keeps SDPA, whose padding mask this function does not
take. The plan decides whether to use it (``runtime.vision_attention``); the run records what was used.
"""

from __future__ import annotations

from typing import Callable

NAME = "vtc_flash_varlen"  # must contain "flash" (see the docstring)


def varlen_kernel_available() -> str | None:
    """None when torch's variable-length flash kernel can run here, else why not (in words)."""
    import torch

    try:
        from torch.nn.attention.varlen import varlen_attn  # noqa: F401
    except ImportError:
        return f"torch {torch.__version__} has no torch.nn.attention.varlen (torch 2.10 or newer has it)"
    if not torch.cuda.is_available():
        return "the variable-length flash kernel needs a CUDA GPU"
    major, _minor = torch.cuda.get_device_capability()
    if major < 8:
        return "the variable-length flash kernel needs a GPU of compute capability 8.0 or newer (Ampere)"
    return None


def make_varlen_attention(kernel: Callable | None = None) -> Callable:
    """An attention function in transformers' AttentionInterface form over ``kernel`` (varlen_attn's signature:
    q, k, v of shape (tokens, heads, dim), cu_seq_q, cu_seq_k, max_q, max_k, scale=...). The kernel is a parameter
    so that the tests can check the layout on a CPU with a reference kernel."""

    def varlen_attention(module, query, key, value, attention_mask=None, scaling=None, dropout=0.0,
                         cu_seq_lens_q=None, cu_seq_lens_k=None, max_length_q=None, max_length_k=None,
                         is_causal=False, **kwargs):
        nonlocal kernel
        if attention_mask is not None or is_causal or cu_seq_lens_q is None or dropout:
            # Only the vision tower's non-causal, unmasked, windowed attention is routed here.
            raise ValueError(f"{NAME} handles only unmasked, non-causal attention with window boundaries "
                             f"(called from {type(module).__name__})")
        if kernel is None:
            from torch.nn.attention.varlen import varlen_attn as kernel
        # transformers passes (1, heads, tokens, dim); the kernel takes (tokens, heads, dim).
        q, k, v = (t[0].transpose(0, 1).contiguous() for t in (query, key, value))
        cu_k = cu_seq_lens_k if cu_seq_lens_k is not None else cu_seq_lens_q
        out = kernel(q, k, v, cu_seq_lens_q.int(), cu_k.int(), int(max_length_q),
                     int(max_length_k if max_length_k is not None else max_length_q), scale=scaling)
        return out.unsqueeze(0), None  # (1, tokens, heads, dim), as the flash branch expects

    return varlen_attention


def use_varlen_vision_attention(model, kernel: Callable | None = None) -> int:
    """Route the vision tower's windowed attention of ``model`` through one variable-length call per layer.
    Returns how many attention modules now use it (0: the model has no such tower, nothing changed)."""
    from transformers import AttentionInterface

    AttentionInterface.register(NAME, make_varlen_attention(kernel))
    modules = windowed_vision_attentions(model)
    for config in {id(m.config): m.config for m in modules}.values():
        config._attn_implementation = NAME
    return len(modules)


def windowed_vision_attentions(model) -> list:
    """The vision attention modules of ``model`` that take window boundaries (cu_seqlens) and read their
    implementation from their config: Qwen2-VL's VisionAttention, Qwen2.5-VL's, Qwen3-VL's, GLM-4V's."""
    import inspect

    return [module for module in model.modules()
            if type(module).__name__.endswith("VisionAttention") and hasattr(module, "config")
            and "cu_seqlens" in inspect.signature(module.forward).parameters]


def apply_plan(plan: dict, model) -> str | None:
    """Give ``model``'s vision tower the attention plan["training"]["vision_attention"] asks for. Returns a note for
    the run's log and manifest when there is something to say: on a GPU, which attention the windowed vision
    tower uses and, when the plan's choice cannot run here, why not. None for models without such a tower and on
    the CPU (where the kernel never runs and transformers' per-window attention is the expected path)."""
    import torch

    modules = windowed_vision_attentions(model)
    if plan["training"]["vision_attention"] != "varlen" or not modules:
        return None
    why_not = varlen_kernel_available()
    dtype = next(modules[0].parameters()).dtype
    if why_not is None and dtype not in (torch.float16, torch.bfloat16):
        why_not = f"the variable-length flash kernel runs in 16 bits and the vision tower is {dtype}"
    if why_not:
        return None if not torch.cuda.is_available() else \
            f"vision attention: one call per window (transformers' own): {why_not}"
    count = use_varlen_vision_attention(model)
    return f"vision attention: one variable-length flash call per layer in {count} vision blocks (torch's varlen_attn)"
