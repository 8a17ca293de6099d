"""Video in the language and the compiler (issue 16, part A): the `video` clause (parse, fmt, lowering, schema), the
plan's `video` section and estimates, the semantic checks (VT120-VT122, VT222-VT224, pixel budgets of frames) and
the registry's pure functions (frame_size, sample_frames, video_tokens) that the runtime shares."""

from __future__ import annotations

import json
import math

import pytest

from vtc.compiler.explain import explain_plan
from vtc.compiler.fmt import format_source
from vtc.compiler.parser import parse_source
from vtc.compiler.pipeline import compile_source
from vtc.compiler.plan import summarize_plan
from vtc.registry import frame_size, load_registry, sample_frames, video_families, video_tokens

QWEN = "finetune all on qwen2.5-vl\nfrom ./x\n"
TINY = "finetune all on tiny-qwen2.5-vl\nfrom ./x\n"
GEOMETRY = {"kind": "patches", "patch_size": 14, "merge_size": 2}
VIDEO = {"fps": 2.0, "max_frames": 768, "min_frames": 4, "window": None, "temporal_patch": 2,
         "resize": {"mode": "pixels", "min_pixels": 100352, "max_pixels": 602112, "multiple": 28}}


def compiled(text: str, tmp_path=None):
    return compile_source(text, "/abs/r.vt", base_dir=str(tmp_path) if tmp_path else "/abs")


def codes(result) -> list[tuple[str, str]]:
    return [(d.code, d.severity) for d in result.diagnostics if d.code != "VT401"]


# --- the registry's pure functions ---------------------------------------------------------------------------------


def test_frame_size_longest_keeps_the_aspect_and_rounds_to_the_multiple():
    assert frame_size(640, 480, {"mode": "longest", "size": 336, "multiple": 28}) == (336, 252)
    assert frame_size(480, 640, {"mode": "longest", "size": 336, "multiple": 28}) == (252, 336)
    # a very thin frame keeps at least one multiple on its short side
    assert frame_size(1000, 10, {"mode": "longest", "size": 336, "multiple": 28}) == (336, 28)
    assert frame_size(64, 64, {"mode": "longest", "size": 56, "multiple": 28}) == (56, 56)


def test_frame_size_pixels_is_qwen_smart_resize():
    budget = VIDEO["resize"]
    w, h = frame_size(64, 64, budget)  # scaled up to the minimum
    assert w % 28 == 0 and h % 28 == 0 and w * h >= budget["min_pixels"] and w == h
    w, h = frame_size(1920, 1080, budget)  # scaled down to the maximum, aspect about kept
    assert w * h <= budget["max_pixels"] and w % 28 == 0 and h % 28 == 0 and abs(w / h - 16 / 9) < 0.15


def test_sample_frames_follows_qwen_rule_on_a_timed_clip():
    # 10 s at 4 fps, sampled at 2 fps: 20 frames, evenly over all 40
    indices, fps = sample_frames(40, 4.0, VIDEO)
    assert len(indices) == 20 and indices[0] == 0 and indices[-1] == 39 and fps == 2.0
    assert indices == sorted(set(indices))
    # a cap: at most 8 frames
    indices, fps = sample_frames(40, 4.0, dict(VIDEO, max_frames=8))
    assert len(indices) == 8 and fps == pytest.approx(0.8)
    # a short clip gets Qwen-VL's floor of min_frames (never more than it has)
    indices, _ = sample_frames(6, 10.0, VIDEO)  # 0.6 s: round(1.2) = 1 -> 4
    assert len(indices) == 4
    indices, _ = sample_frames(3, 10.0, VIDEO)  # 3 frames only: 3, floored to the temporal patch -> 2
    assert len(indices) == 2
    indices, _ = sample_frames(1, 10.0, VIDEO)
    assert indices == [0]


def test_sample_frames_floors_to_the_temporal_patch():
    indices, _ = sample_frames(100, 10.0, dict(VIDEO, fps=1.5))  # 10 s x 1.5 = 15 -> 14
    assert len(indices) == 14


def test_sample_frames_inside_the_window():
    video = dict(VIDEO, window={"start": 1.5, "end": 8.0}, max_frames=16)
    indices, fps = sample_frames(100, 10.0, video)  # frames 15..79: 6.5 s x 2 = 13 -> 12
    assert len(indices) == 12 and indices[0] == 15 and indices[-1] == 79
    assert fps == pytest.approx(12 / 6.5)
    indices, _ = sample_frames(100, 10.0, dict(VIDEO, window={"start": 5.0, "end": None}))
    assert indices[0] == 50 and indices[-1] == 99 and len(indices) == 10
    with pytest.raises(ValueError, match="starts at 12 s but the clip lasts 10 s"):
        sample_frames(100, 10.0, dict(VIDEO, window={"start": 12.0, "end": 20.0}))
    with pytest.raises(ValueError, match="no frames"):
        sample_frames(0, 10.0, VIDEO)


def test_sample_frames_without_timing_takes_every_frame_thinned_to_the_cap():
    indices, fps = sample_frames(8, None, VIDEO)
    assert indices == list(range(8)) and fps == 2.0
    indices, fps = sample_frames(30, None, dict(VIDEO, max_frames=10))
    assert len(indices) == 10 and indices[0] == 0 and indices[-1] == 29
    assert fps == pytest.approx(10 / 15)  # 30 frames at 2 fps are 15 s
    # the window, in seconds of frames at `fps`
    indices, _ = sample_frames(10, None, dict(VIDEO, window={"start": 2.0, "end": None}))
    assert indices == list(range(4, 10))


def test_video_tokens_merges_two_frames_in_time():
    assert video_tokens(16, 336, 336, GEOMETRY, 2) == 8 * 12 * 12 == 1152
    assert video_tokens(5, 336, 252, GEOMETRY, 2) == 3 * 9 * 12  # 5 frames padded to 6
    assert video_tokens(1, 56, 56, GEOMETRY, 2) == 4


def test_the_registry_says_which_families_read_video():
    registry = load_registry()
    assert video_families(registry) == ["Qwen2-VL", "Qwen2.5-VL"]
    for family, info in registry.families.items():
        assert isinstance(info.get("video"), bool), family
        if info["video"]:
            assert info["temporal_patch"] == 2 and info["geometry"]["kind"] == "patches"


# --- the clause: parse, fmt, document ------------------------------------------------------------------------------

FORMS = [
    ("video 2 fps, at most 16 frames, between 1.5 and 8 seconds, frame size 336",
     {"fps": 2, "max_frames": 16, "window": {"start": 1.5, "end": 8}, "resize": 336}),
    ("video 1 fps", {"fps": 1}),
    ("video at most 8 frames, frame size up to 200k pixels", {"max_frames": 8, "resize": {"max_pixels": 200000}}),
    ("video frame size between 50k and 150k pixels",
     {"resize": {"min_pixels": 50000, "max_pixels": 150000}}),
    ("video after 2.5 seconds, 0.5 fps", {"window": {"start": 2.5}, "fps": 0.5}),
    ("video", {}),
]


@pytest.mark.parametrize("line,document", FORMS)
def test_each_form_parses_formats_and_lowers(line, document):
    from vtc.compiler.lower import lower

    text = QWEN + line + "\n"
    recipe, problems = parse_source(text, "r.vt")
    assert problems == [] and recipe is not None
    video = recipe.statements[-1]
    assert video.keyword == "video" and video.span.line == 3
    assert format_source(text, "r.vt")[0] == text  # canonical already: fmt keeps it
    doc = lower(recipe)[0]
    assert doc["video"] == document


def test_fmt_puts_video_after_the_image_clauses_and_normalises_spacing():
    text = QWEN + "video   2 fps ,at most 4 frames\nresize 512\n"
    out = format_source(text, "r.vt")[0]
    assert out == QWEN + "resize 512\nvideo 2 fps, at most 4 frames\n"


def test_syntax_errors_name_the_new_words():
    _, problems = parse_source(QWEN + "video 2\n", "r.vt")
    assert problems[0].message == "missing `fps` after `video 2`"
    _, problems = parse_source(QWEN + "video 2 fps at most 3 frames\n", "r.vt")
    assert problems[0].code == "VT013" and "commas" in problems[0].help
    _, problems = parse_source(QWEN + "video 2 fps,\n", "r.vt")
    assert "`at most`" in problems[0].message and "`frame size`" in problems[0].message
    # a pixel amount where a side is expected, and an unfinished budget: the budget's example
    _, problems = parse_source(QWEN + "video frame size 200k\n", "r.vt")
    assert problems[0].help == "write it like `video frame size up to 200k pixels`"
    _, problems = parse_source(QWEN + "video 2 fps, frame size between 1k\n", "r.vt")
    assert "`video frame size between 50k and 150k pixels`" in problems[0].help
    # the window's `between` keeps the clause's own example
    _, problems = parse_source(QWEN + "video frame size 336, between 1 and\n", "r.vt")
    assert "`video 2 fps, at most 16 frames, between 1.5 and 8 seconds, frame size 336`" in problems[0].help


def test_vt115_a_huge_number_in_video_names_the_setting():
    result = compiled(QWEN + "video " + "1" * 45 + " fps\n")
    [d] = [d for d in result.diagnostics if d.code == "VT115"]
    assert "after `video fps`" in d.message and d.help == "`video fps` takes values from 0 to 60"


# --- the plan ------------------------------------------------------------------------------------------------------


def test_the_plan_of_each_form_with_provenance():
    plan = compiled(QWEN + "video 2 fps, at most 16 frames, between 1.5 and 8 seconds, frame size 336\n").plan
    assert plan["plan_version"] == 6
    assert plan["video"] == {"fps": 2.0, "max_frames": 16, "min_frames": 4, "window": {"start": 1.5, "end": 8.0},
                             "resize": {"mode": "longest", "size": 336, "multiple": 28}, "temporal_patch": 2,
                             "multi_frame_files": "clips"}
    prov = plan["provenance"]
    assert prov["/video/fps"] == prov["/video/max_frames"] == prov["/video/window/start"] == "r.vt:3"
    assert prov["/video/resize/size"] == "r.vt:3" and prov["/video/multi_frame_files"] == "r.vt:3"
    assert prov["/video/min_frames"] == "default" and prov["/video/temporal_patch"] == "registry"
    e = plan["estimates"]
    # 6.5 s x 2 fps = 13 frames -> 12 (a multiple of the temporal patch), of 336x336: 6 x 12 x 12
    assert e["video_frame_size"] == [336, 336] and e["video_frames_per_clip_max"] == 12
    assert e["video_tokens_per_clip_max"] == 864 and e["video_tokens_per_second"] == 144
    assert e["gpu_memory_video_gib"] > 0 and prov["/estimates/video_tokens_per_clip_max"] == "derived"

    budget = compiled(QWEN + "video frame size between 50k and 150k pixels\n").plan["video"]["resize"]
    assert budget == {"mode": "pixels", "min_pixels": 50000, "max_pixels": 150000, "multiple": 28}
    up_to = compiled(QWEN + "video frame size up to 200k pixels\n").plan["video"]["resize"]
    assert up_to == {"mode": "pixels", "min_pixels": 100352, "max_pixels": 200000, "multiple": 28}
    small = compiled(QWEN + "video frame size up to 50k pixels\n").plan["video"]["resize"]
    assert small["min_pixels"] == small["max_pixels"] == 50000  # the default floor never above the cap
    after = compiled(QWEN + "video after 2 seconds\n").plan["video"]["window"]
    assert after == {"start": 2.0, "end": None}


def test_defaults_without_a_clause_for_a_family_with_video():
    plan = compiled(QWEN).plan
    assert plan["video"] == {"fps": 2.0, "max_frames": 768, "min_frames": 4, "window": None,
                             "resize": {"mode": "pixels", "min_pixels": 100352, "max_pixels": 602112,
                                        "multiple": 28},
                             "temporal_patch": 2, "multi_frame_files": "images"}
    prov = plan["provenance"]
    assert prov["/video/fps"] == "default" and prov["/video/resize/max_pixels"] == "registry"
    assert prov["/video/multi_frame_files"] == "default"
    # the worst case: 768 frames of the largest frame
    e = plan["estimates"]
    w, h = e["video_frame_size"]
    assert e["video_tokens_per_clip_max"] == 384 * (w // 28) * (h // 28)
    # `video` alone: the same, but DICOM and TIFF files become clips
    alone = compiled(QWEN + "video\n").plan
    assert alone["video"]["multi_frame_files"] == "clips" and alone["video"]["fps"] == 2.0


def test_a_tiny_model_keeps_its_own_pixel_bounds():
    plan = compiled(TINY).plan
    assert plan["video"]["resize"]["max_pixels"] == plan["model"]["geometry"]["max_pixels"] == 50176


@pytest.mark.parametrize("model", ["llama-3.2-vision", "gemma-3", "pixtral", "qwen3-vl"])
def test_families_without_video_have_no_video_section(model):
    plan = compiled(f"finetune all on {model}\nfrom ./x\n").plan
    assert plan["video"] is None and plan["provenance"]["/video"] == "default"
    assert all(plan["estimates"][k] is None for k in plan["estimates"] if "video" in k)


def test_every_plan_passes_its_schema():
    from vtc.plans import plan_problems

    for text in [QWEN, TINY, "finetune all on llama-3.2-vision\nfrom ./x\n"] + [QWEN + f + "\n" for f, _ in FORMS]:
        plan = compiled(text).plan
        assert plan is not None and plan_problems(plan) == [], text


# --- diagnostics ---------------------------------------------------------------------------------------------------


def test_vt222_a_family_without_video_names_those_with_it():
    result = compiled("finetune all on llama-3.2-vision\nfrom ./x\nvideo 2 fps\n")
    assert result.plan is None
    [d] = [d for d in result.diagnostics if d.code == "VT222"]
    assert d.severity == "error" and d.span.line == 3
    assert d.message == "Llama 3.2 Vision does not read video; the families that do are Qwen2-VL, Qwen2.5-VL"
    assert "`finetune ... on qwen2.5-vl`" in d.help and "remove the `video` clause" in d.help


def test_vt120_a_setting_twice_and_vt210_the_clause_twice():
    result = compiled(QWEN + "video 2 fps, frame size 336, at most 8 frames, frame size up to 1m pixels\n")
    [d] = [d for d in result.diagnostics if d.code == "VT120"]
    assert "frame size" in d.message and d.span.column == 48 and d.related[0][0].column == 14
    result = compiled(QWEN + "video between 1 and 2 seconds, after 3 seconds\n")
    assert ("VT120", "error") in codes(result)
    result = compiled(QWEN + "video 2 fps\nvideo 1 fps\n")
    assert ("VT210", "error") in codes(result)


def test_vt121_a_window_that_ends_before_it_starts():
    result = compiled(QWEN + "video between 8 and 1.5 seconds\n")
    [d] = [d for d in result.diagnostics if d.code == "VT121"]
    assert d.help == "write the start first: `between 1.5 and 8 seconds`"
    result = compiled(QWEN + "video between 2 and 2 seconds\n")
    assert [c for c in codes(result)] == [("VT121", "error")]


def test_values_out_of_range():
    result = compiled(QWEN + "video 0 fps\n")
    [d] = result.diagnostics[-1:]
    assert (d.code, d.message) == ("VT104", "`video fps` must be more than 0 (found 0)")
    assert codes(compiled(QWEN + "video 61 fps\n")) == [("VT104", "error")]
    assert codes(compiled(QWEN + "video at most 1 frames\n")) == [("VT104", "error")]
    assert codes(compiled(QWEN + "video at most 2.5 frames\n"))[0][0] == "VT012"  # a whole number (syntax)
    assert codes(compiled(QWEN + "video between -1 and 2 seconds\n")) == [("VT104", "error")]


def test_vt122_frame_size_out_of_range():
    for size in (0, 20, 9000):
        result = compiled(QWEN + f"video frame size {size}\n")
        assert codes(result) == [("VT122", "error")], size
        assert result.plan is None


def test_frame_pixel_budgets_reuse_the_pixel_budget_codes():
    assert codes(compiled(QWEN + "video frame size between 500k and 20k pixels\n")) == [("VT205", "error")]
    assert codes(compiled(QWEN + "video frame size up to 500 pixels\n")) == [("VT206", "error")]
    assert codes(compiled(QWEN + "video frame size up to 20m pixels\n")) == [("VT206", "error")]
    result = compiled(QWEN + "video frame size up to 1mb pixels\n")
    assert codes(result) == [("VT208", "error")] and "`1m`" in result.diagnostics[-1].help


def test_vt223_video_with_tiff_pages_all():
    result = compiled(QWEN + "video\ntiff pages all\n")
    [d] = [d for d in result.diagnostics if d.code == "VT223"]
    assert d.severity == "error" and d.span.line == 4 and d.related[0][0].line == 3
    assert codes(compiled(QWEN + "video\ntiff pages first\n")) == []


def test_vt224_a_clip_longer_than_max_length_with_the_formula():
    result = compiled(QWEN + "video 2 fps, at most 16 frames, frame size 336\nmax length 1024\n")
    [d] = [d for d in result.diagnostics if d.code == "VT224"]
    assert d.severity == "warning" and result.plan is not None
    assert "16 frames / 2 x 12 x 12 = 1,152 tokens > max length 1,024" in d.message
    assert "`at most 12 frames`" in d.help and "`max length 1536`" in d.help
    # at the window's frames: 10 s x 2 fps = 20 frames of 336 px = 1,440 tokens
    result = compiled(QWEN + "video between 0 and 10 seconds, frame size 336\nmax length 1024\n")
    assert ("VT224", "warning") in codes(result)
    # within max length: no warning
    assert codes(compiled(QWEN + "video at most 8 frames, frame size 336\nmax length 1024\n")) == []


@pytest.mark.parametrize("text", [QWEN, QWEN + "video\n", QWEN + "video 30 fps\n", QWEN + "max length 512\nvideo\n",
                                  QWEN + "video frame size 336\n", QWEN + "video after 5 seconds\n"])
def test_defaults_alone_never_warn(text):
    """The default cap (768 frames) is far above any max length: only the recipe's own bounds warn."""
    assert [c for c in codes(compiled(text)) if c[0].startswith("VT22")] == []


# --- plan and explain in words --------------------------------------------------------------------------------------


def test_vtc_plan_shows_the_settings_the_formula_and_the_largest_clip():
    plan = compiled(QWEN + "video 2 fps, at most 16 frames, frame size 336\nmax length 4096\n").plan
    text = summarize_plan(plan)
    assert "\nvideo\n" in text
    assert "  frames per second        2" in text and "r.vt:3" in text
    assert "ceil(frames / 2) x (height / 28) x (width / 28)" in text
    assert "16 frames of 336x336 px: ceil(16 / 2) x 12 x 12 = 1,152 tokens" in text
    assert "144 tokens (2 frames)" in text
    worst = summarize_plan(compiled(QWEN).plan)
    assert "(the default cap, a worst case)" in worst and "read as images" in worst
    assert "\nvideo\n" not in summarize_plan(compiled("finetune all on gemma-3\nfrom ./x\n").plan)


def test_vtc_explain_says_how_clips_are_read():
    text = explain_plan(compiled(QWEN + "video 2 fps, at most 16 frames, frame size 336\n").plan)
    assert "sampled at 2 frames a second over each whole clip, at least 4 and at most 16 frames" in text
    assert "ceil(frames / 2) x (height / 28) x (width / 28) tokens" in text and "1,152 tokens" in text
    assert "Clips in the data, if any" in explain_plan(compiled(QWEN).plan)
    assert "Clips" not in explain_plan(compiled("finetune all on gemma-3\nfrom ./x\n").plan)


def test_echo_video_recipe_compiles_with_its_clips(tmp_path):
    """The shipped recipe (its golden plan: tests/test_recipes.py) compiles with the clips it ships (frame folders in
    recipes/data/motion), without a warning."""
    from pathlib import Path

    from vtc.compiler.pipeline import compile_file

    path = Path(__file__).resolve().parents[1] / "recipes" / "echo-video.vt"
    result = compile_file(str(path))
    assert result.plan is not None and [d.code for d in result.diagnostics] == []
    v = result.plan["video"]
    assert (v["fps"], v["max_frames"], v["resize"]) == (2.0, 4, {"mode": "longest", "size": 56, "multiple": 28})
    assert result.plan["estimates"]["video_tokens_per_clip_max"] == 8
    json.dumps(result.plan)


def test_check_plan_explain_import_no_torch_with_video(tmp_path):
    import subprocess
    import sys

    recipe = tmp_path / "v.vt"
    recipe.write_text(QWEN + "video 2 fps, at most 16 frames\n", encoding="utf-8")
    code = ("import sys\nfrom click.testing import CliRunner\nfrom vtc.cli import cli\n"
            f"outs = [CliRunner().invoke(cli, [cmd, {str(recipe)!r}]).output for cmd in ('check', 'plan', "
            "'explain')]\n"
            "print('SHOWN', 'video tokens a clip' in outs[1], 'merges 2 frames' in outs[2])\n"
            "bad = [m for m in ('torch', 'transformers', 'av') if m in sys.modules]\n"
            "print('IMPORTED', bad)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "SHOWN True True" in out.stdout and "IMPORTED []" in out.stdout, out.stdout + out.stderr


def test_the_formula_in_words_matches_the_function():
    for frames, side in ((16, 336), (7, 448), (2, 56)):
        n = side // 28
        assert video_tokens(frames, side, side, GEOMETRY, 2) == math.ceil(frames / 2) * n * n


@pytest.mark.parametrize("change,pointer", [
    (lambda v, p: v.update(window={"start": 5.0, "end": 2.0}), "/video/window/end"),
    (lambda v, p: v.update(min_frames=10, max_frames=8), "/video/min_frames"),
    (lambda v, p: v["resize"].update(min_pixels=10**6), "/video/resize/min_pixels"),
    (lambda v, p: p["images"].update(tiff_pages="all"), "/images/tiff_pages"),
])
def test_the_plan_rules_between_video_fields(change, pointer):
    """A hand-edited plan whose video section contradicts itself is refused where it is read (VT514)."""
    from vtc.plans import plan_problems

    plan = compiled(QWEN + "video\n").plan
    change(plan["video"], plan)
    assert [p for p, _ in plan_problems(plan)] == [pointer]


def test_vt222_a_local_model_of_unknown_family(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "config.json").write_text('{"model_type": "weird"}', encoding="utf-8")
    result = compile_source("finetune all on ./mine\nfrom ./x\nvideo\n", str(tmp_path / "r.vt"),
                            base_dir=str(tmp_path))
    [d] = [d for d in result.diagnostics if d.code == "VT222"]
    assert d.message.startswith("vtc does not know the family of `./mine`") and "Qwen2.5-VL" in d.message
    # an unknown name is VT201 alone
    result = compiled("finetune all on nosuchmodel\nfrom ./x\nvideo\n")
    assert "VT222" not in [d.code for d in result.diagnostics]


def test_vt224_an_odd_cap_says_the_frames_are_rounded_up():
    result = compiled(QWEN + "video at most 15 frames, frame size 336\nmax length 1024\n")
    [d] = [d for d in result.diagnostics if d.code == "VT224"]
    assert "ceil(15 frames / 2) x 12 x 12 = 1,152 tokens > max length 1,024" in d.message


@pytest.mark.parametrize("line", ["resize 9 " + "9" * 5000, "video frame size up to " + "9" * 5000 + " pixels",
                                  "video frame size " + "9" * 5000, "resize up to " + "9" * 5000 + " pixels"])
def test_a_pixel_amount_of_thousands_of_digits_is_a_diagnostic(line):
    """Python refuses to convert more than 4,300 digits: a diagnostic, never a traceback (found by test_fuzz)."""
    result = compiled(QWEN + line + "\n")
    assert result.plan is None and any(d.is_error for d in result.diagnostics)
