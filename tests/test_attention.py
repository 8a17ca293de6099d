"""vtc.runtime.attention: Qwen-VL's windowed vision attention in one variable-length call per layer.

The kernel itself (torch's flash varlen_attn) needs a CUDA GPU; tests/gpu checks it there against transformers'
per-window attention. Here a reference kernel with varlen_attn's signature (plain SDPA per window) checks
everything vtc adds: which modules are switched, the layout in and out of the kernel, the window boundaries it is
given, that the language model keeps its attention, and that nothing else can be routed through it.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from vtc.runtime.attention import (NAME, make_varlen_attention, use_varlen_vision_attention,  # noqa: E402
                                   varlen_kernel_available)
from vtc.runtime.tiny_models import ensure_tiny_model  # noqa: E402


def reference_kernel(calls: list):
    """varlen_attn's contract on the CPU: (tokens, heads, dim) in and out, one softmax per [cu[i], cu[i+1])."""

    def kernel(q, k, v, cu_q, cu_k, max_q, max_k, scale=None):
        assert q.dim() == 3 and cu_q.dtype == torch.int32 and torch.equal(cu_q, cu_k)
        bounds = cu_q.tolist()
        assert max_q == max(b - a for a, b in zip(bounds, bounds[1:]))
        calls.append(len(bounds) - 1)
        out = [torch.nn.functional.scaled_dot_product_attention(
            q[a:b].transpose(0, 1), k[a:b].transpose(0, 1), v[a:b].transpose(0, 1), scale=scale).transpose(0, 1)
            for a, b in zip(bounds, bounds[1:])]
        return torch.cat(out)

    return kernel


@pytest.fixture(scope="module")
def tiny_qwen():
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_pretrained(ensure_tiny_model("tiny-qwen2.5-vl"),
                                                       attn_implementation="sdpa").eval()


def vision_output(model, pixels, grid):
    out = model.model.visual(pixels, grid_thw=grid)
    return getattr(out, "pooler_output", out)


def test_one_call_per_layer_gives_the_per_window_result(tiny_qwen):
    torch.manual_seed(0)
    # Two images of different sizes: the windowed layer sees many windows, the full-attention layer two images.
    grid = torch.tensor([[1, 16, 16], [1, 8, 12]])
    cfg = tiny_qwen.config.vision_config
    pixels = torch.randn(int(grid.prod(-1).sum()), 3 * cfg.temporal_patch_size * cfg.patch_size ** 2)
    with torch.no_grad():
        before = vision_output(tiny_qwen, pixels, grid)
        calls: list = []
        switched = use_varlen_vision_attention(tiny_qwen, reference_kernel(calls))
        after = vision_output(tiny_qwen, pixels, grid)
    assert switched == cfg.depth  # every vision block's attention
    assert tiny_qwen.config.vision_config._attn_implementation == NAME
    assert tiny_qwen.config.text_config._attn_implementation == "sdpa"  # the language model keeps SDPA
    # One call per layer (not one per window): the windowed layer's call covers many windows, the full layer's two.
    assert len(calls) == cfg.depth and max(calls) > 2 and min(calls) == 2
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)


def test_only_unmasked_windowed_attention_is_accepted():
    attention = make_varlen_attention(reference_kernel([]))
    q = torch.zeros(1, 2, 4, 8)
    cu = torch.tensor([0, 4])
    with pytest.raises(ValueError, match="only unmasked"):
        attention(torch.nn.Linear(1, 1), q, q, q, attention_mask=torch.ones(1, 1, 4, 4), cu_seq_lens_q=cu,
                  max_length_q=4)
    with pytest.raises(ValueError, match="only unmasked"):
        attention(torch.nn.Linear(1, 1), q, q, q, is_causal=True, cu_seq_lens_q=cu, max_length_q=4)
    with pytest.raises(ValueError, match="only unmasked"):
        attention(torch.nn.Linear(1, 1), q, q, q)  # no window boundaries


def test_a_model_without_a_windowed_vision_tower_is_left_alone():
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(ensure_tiny_model("tiny-llama-3.2-vision"))
    before = model.config.vision_config._attn_implementation
    assert use_varlen_vision_attention(model, reference_kernel([])) == 0
    assert model.config.vision_config._attn_implementation == before


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU answer")
def test_without_a_gpu_the_kernel_is_not_available_and_says_why():
    why = varlen_kernel_available()
    assert why and ("CUDA" in why or "torch.nn.attention.varlen" in why)


def test_the_plan_decides_and_the_cpu_keeps_transformers_attention(monkeypatch):
    """apply_plan: "per_window" leaves the model alone; "varlen" where the kernel cannot run (here: no GPU) leaves
    it alone too, silently on a CPU; a float32 vision tower on a GPU would get a note saying why not."""
    from transformers import AutoModelForImageTextToText

    from vtc.runtime import attention

    model = AutoModelForImageTextToText.from_pretrained(ensure_tiny_model("tiny-qwen2.5-vl"),
                                                        attn_implementation="sdpa")
    assert attention.apply_plan({"training": {"vision_attention": "per_window"}}, model) is None
    assert model.config.vision_config._attn_implementation == "sdpa"
    monkeypatch.setattr(attention, "varlen_kernel_available", lambda: None)  # as on a GPU with the kernel
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    note = attention.apply_plan({"training": {"vision_attention": "varlen"}}, model)
    assert "16 bits" in note and "float32" in note
    assert model.config.vision_config._attn_implementation == "sdpa"
    model = model.to(torch.bfloat16)
    note = attention.apply_plan({"training": {"vision_attention": "varlen"}}, model)
    assert "one variable-length flash call per layer" in note
    assert model.config.vision_config._attn_implementation == NAME
