"""Training on clips: the collator's video batches, the processor's bounds, Unsloth's rows, the motion task.

The collator hands the processor each clip's frames as vtc sampled and sized them (``do_sample_frames=False``, the
rate in ``video_metadata``), so the model sees exactly those frames: the tests count the video tokens from the frame
sizes (Qwen-VL's formula, computed here independently), check Qwen2.5-VL's temporal positions follow the clip's fps
(second_per_grid_ts = temporal_patch / fps) and that video placeholders are never trained. The slow test trains
tiny-qwen2.5-vl on the motion task (vtc.runtime.tiny_data: a square moving left or right; no single frame tells
which) and shows that the order of the frames reaches the model: the reversed clips get the opposite answer.
"""

from __future__ import annotations

import json
import math
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch = pytest.importorskip("torch")
from PIL import Image  # noqa: E402

from runtime_helpers import MARKERS, make_plan, make_shapes, unsloth_backend_over_stand_ins  # noqa: E402
from video_helpers import MOTION_RECIPE  # noqa: E402
from vtc.runtime.collator import (VisionCollator, set_video_bounds, video_arguments,  # noqa: E402
                                  video_bounds)
from vtc.runtime.tiny_data import moving_square, write_motion_dataset  # noqa: E402
from vtc.runtime.tiny_models import ensure_tiny_model  # noqa: E402

NAME = "tiny-qwen2.5-vl"
QUESTION = "Which way does the square move?"
VIDEO = {"fps": 2.0, "max_frames": 16, "min_frames": 4, "window": None,
         "resize": {"mode": "longest", "size": 56, "multiple": 28}, "temporal_patch": 2,
         "multi_frame_files": "images"}


@pytest.fixture(scope="module")
def processor(tmp_path_factory):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(ensure_tiny_model(NAME, cache_dir=tmp_path_factory.mktemp("cache")))


def clip_part(frames, fps=2.0):
    w, h = frames[0].size
    return {"type": "video", "video": frames, "fps": fps, "resized_height": h, "resized_width": w}


def video_row(direction="left", n=4, size=56, fps=2.0, seed=0, reverse=False):
    frames = moving_square(direction, n=n, size=size, seed=seed)
    if reverse:
        frames = frames[::-1]
    return {"messages": [
        {"role": "user", "content": [{"type": "text", "text": QUESTION}, clip_part(frames, fps)]},
        {"role": "assistant", "content": [{"type": "text", "text": direction}]}]}


def image_row(answer="red"):
    return {"messages": [
        {"role": "user", "content": [{"type": "text", "text": "What colour?"},
                                     {"type": "image", "image": Image.new("RGB", (56, 56), (200, 0, 0))}]},
        {"role": "assistant", "content": [{"type": "text", "text": answer}]}]}


def qwen_video_tokens(frames: int, width: int, height: int) -> int:
    """Qwen-VL's count, written here from the formula: ceil(frames / 2) * (h / 28) * (w / 28)."""
    return math.ceil(frames / 2) * (height // 28) * (width // 28)


def make_collator(processor, video=VIDEO):
    set_video_bounds(processor, video)
    q, a = MARKERS[NAME]
    return VisionCollator(processor, train_on_responses_only=True, instruction_part=q, response_part=a,
                          max_seq_length=2048)


# --- the processor's arguments ------------------------------------------------------------------------------------


def test_video_arguments_carry_frames_and_rate_without_resampling():
    frames = moving_square("up", n=6, size=56)
    args = video_arguments([clip_part(frames, fps=3.0), clip_part(frames[:4], fps=1.5)])
    assert args["do_sample_frames"] is False
    assert [len(v) for v in args["videos"]] == [6, 4]
    assert args["video_metadata"][0] == {"fps": 3.0, "total_num_frames": 6, "frames_indices": list(range(6)),
                                         "duration": 2.0}
    assert args["video_metadata"][1]["fps"] == 1.5 and args["video_metadata"][1]["frames_indices"] == [0, 1, 2, 3]


def test_video_bounds_hold_every_frame_size_the_plan_allows():
    assert video_bounds(None) is None
    assert video_bounds({"resize": {"mode": "pixels", "min_pixels": 100352, "max_pixels": 602112,
                                    "multiple": 28}}) == (100352, 602112)
    lo, hi = video_bounds({"resize": {"mode": "longest", "size": 336, "multiple": 28}})
    assert lo == 28 * 28 and hi >= 336 * 336
    # 200 px rounds to 196 or 224: both within the bounds
    lo, hi = video_bounds({"resize": {"mode": "longest", "size": 200, "multiple": 28}})
    assert hi >= 224 * 224


def test_set_video_bounds_leaves_a_processor_without_video_alone():
    class NoVideo:
        pass

    p = NoVideo()
    set_video_bounds(p, VIDEO)
    assert not hasattr(p, "video_processor")


# --- the collator ---------------------------------------------------------------------------------------------------


def test_video_batch_has_the_frames_sizes_and_fps(processor):
    col = make_collator(processor)
    batch = col([video_row("left", n=4, fps=2.0), video_row("right", n=8, seed=1, fps=4.0)])
    # 56 px frames: 4x4 patches of 14 px, 2x2 merged; frames merged two by two in time
    assert batch["video_grid_thw"].tolist() == [[2, 4, 4], [4, 4, 4]]
    assert batch["pixel_values_videos"].shape[0] == 2 * 16 + 4 * 16
    # Qwen2.5-VL's temporal positions: seconds per temporal patch = 2 frames / fps
    assert batch["second_per_grid_ts"].tolist() == pytest.approx([1.0, 0.5])
    pad = processor.tokenizer.convert_tokens_to_ids("<|video_pad|>")
    counts = (batch["input_ids"] == pad).sum(dim=1).tolist()
    assert counts == [qwen_video_tokens(4, 56, 56), qwen_video_tokens(8, 56, 56)]
    labels = batch["labels"]
    assert not bool(((batch["input_ids"] == pad) & (labels != -100)).any())
    # the answer is trained: its tokens and <|im_end|>
    answer = processor.tokenizer("left", add_special_tokens=False)["input_ids"]
    trained = labels[0][labels[0] != -100].tolist()
    assert trained[: len(answer)] == answer and len(trained) == len(answer) + 1


def test_frames_larger_than_the_models_image_bounds_are_not_resized(processor):
    """336x252 frames (84672 px) exceed the tiny model's own 50176-pixel bound: with the plan's bounds the processor
    keeps them as vtc sized them."""
    video = dict(VIDEO, resize={"mode": "longest", "size": 336, "multiple": 28})
    col = make_collator(processor, video)
    frames = [Image.new("RGB", (336, 252), (i * 40, 0, 0)) for i in range(3)]
    r = {"messages": [{"role": "user", "content": [clip_part(frames, fps=4.0)]},
                      {"role": "assistant", "content": [{"type": "text", "text": "left"}]}]}
    batch = col([r])
    # 3 frames: padded to 4 by repeating the last (2 temporal patches); 252/14 x 336/14 patches
    assert batch["video_grid_thw"].tolist() == [[2, 18, 24]]
    pad = processor.tokenizer.convert_tokens_to_ids("<|video_pad|>")
    assert int((batch["input_ids"] == pad).sum()) == qwen_video_tokens(3, 336, 252)


def test_rows_mixing_video_images_and_text_in_one_batch(processor):
    col = make_collator(processor)
    text_only = {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]},
                              {"role": "assistant", "content": [{"type": "text", "text": "red"}]}]}
    batch = col([video_row(), image_row(), text_only])
    assert batch["video_grid_thw"].shape[0] == 1 and batch["image_grid_thw"].shape[0] == 1
    assert ((batch["labels"] != -100).sum(dim=1) > 0).all()
    # a row holding both an image and a clip
    both = video_row()
    both["messages"][0]["content"].append({"type": "image", "image": Image.new("RGB", (56, 56))})
    batch = col([both])
    assert batch["video_grid_thw"].shape[0] == 1 and batch["image_grid_thw"].shape[0] == 1


def test_length_check_counts_video_tokens(processor):
    col = make_collator(processor)
    counts = col.token_counts(video_row(n=8))
    assert counts["image"] >= qwen_video_tokens(8, 56, 56)  # video pads (+ vision start/end) count as image tokens
    from vtc.diagnostics import VtcError

    with pytest.raises(VtcError) as info:
        col.check_lengths([video_row(n=8)], max_seq_length=20)
    assert info.value.diagnostics[0].code == "VT430"


def test_the_transformers_backend_sets_the_plans_frame_bounds(processor, tmp_path):
    from vtc.runtime.backends.transformers_backend import TransformersBackend

    plan = make_plan(make_shapes(tmp_path / "data", n=4))
    plan["video"] = dict(VIDEO, resize={"mode": "pixels", "min_pixels": 784, "max_pixels": 123456,
                                        "multiple": 28})
    TransformersBackend().collator(plan, None, processor)
    size = processor.video_processor.size
    assert (size["shortest_edge"], size["longest_edge"]) == (784, 123456)


def test_unsloth_gets_the_video_rows_as_they_are_and_the_bounds(monkeypatch, processor, tmp_path):
    seen = {}

    class Recorder:
        def __init__(self, model, processor, **kwargs):
            seen["kwargs"] = kwargs
            self.processor = processor

        def __call__(self, examples):
            seen["examples"] = examples
            return {"ok": True}

    module = unsloth_backend_over_stand_ins(monkeypatch, Recorder)
    plan = make_plan(make_shapes(tmp_path / "data", n=4))
    plan["video"] = dict(VIDEO, resize={"mode": "longest", "size": 336, "multiple": 28})
    backend = module.UnslothBackend()
    col = backend.collator(plan, object(), processor)
    rows = [video_row("left"), video_row("right", seed=3)]
    col.rows = rows
    assert col([{"row": 0}, {"row": 1}]) == {"ok": True}
    sent = seen["examples"]
    part = sent[0]["messages"][0]["content"][1]
    # the list branch of unsloth_zoo's fetch_video: frames, fps and resized_height/width, unchanged
    assert part["type"] == "video" and part["video"] is rows[0]["messages"][0]["content"][1]["video"]
    assert (part["fps"], part["resized_height"], part["resized_width"]) == (2.0, 56, 56)
    size = processor.video_processor.size
    assert size["shortest_edge"] == 784 and size["longest_edge"] >= 336 * 336
    assert processor.video_processor.do_sample_frames is False


# --- the motion task ------------------------------------------------------------------------------------------------


def _square_x(frame) -> float:
    """The x of the square's left edge (the first column holding white pixels, counting the wrap-around)."""
    px = frame.convert("L").load()
    w, h = frame.size
    cols = [x for x in range(w) if any(px[x, y] > 200 for y in range(h))]
    gaps = [x for x in cols if (x - 1) % w not in cols]
    return gaps[0]


def test_moving_square_moves_one_way_from_a_random_start():
    for seed in range(5):
        for direction, sign in (("right", 1), ("left", -1)):
            frames = moving_square(direction, n=4, size=56, seed=seed)
            xs = [_square_x(f) for f in frames]
            steps = {(b - a) % 56 for a, b in zip(xs, xs[1:])}
            assert len(steps) == 1, xs  # the same step each frame
            step = steps.pop()
            assert 0 < (step if sign > 0 else 56 - step) < 28, xs  # moving one way by less than half the frame
    # one frame does not tell the direction: first frames of both directions lie all over the frame
    starts = {d: [_square_x(moving_square(d, n=4, size=56, seed=s)[0]) for s in range(40)] for d in ("left", "right")}
    for xs in starts.values():
        assert min(xs) < 14 and max(xs) > 42
    assert moving_square("up", seed=5)[2].tobytes() == moving_square("up", seed=5)[2].tobytes()
    with pytest.raises(ValueError):
        moving_square("sideways")


def test_write_motion_dataset_is_an_imagefolder_of_frame_folders(tmp_path):
    out = write_motion_dataset(tmp_path / "motion", train=6, test=2, frames=4, size=56)
    lines = [json.loads(x) for x in (out / "train" / "metadata.jsonl").read_text().splitlines()]
    assert [x["text"] for x in lines] == ["left", "right"] * 3
    clip = out / "train" / lines[0]["file_name"]
    assert sorted(p.name for p in clip.iterdir()) == [f"frame_{i:03d}.png" for i in range(4)]
    assert len((out / "test" / "metadata.jsonl").read_text().splitlines()) == 2


def test_write_motion_dataset_as_mp4(tmp_path):
    pytest.importorskip("av")
    out = write_motion_dataset(tmp_path / "motion", train=2, test=1, frames=4, size=56, kind="mp4")
    lines = [json.loads(x) for x in (out / "train" / "metadata.jsonl").read_text().splitlines()]
    assert lines[0]["file_name"].endswith(".mp4") and (out / "train" / lines[0]["file_name"]).stat().st_size > 0


@pytest.mark.slow
def test_tiny_qwen_learns_the_direction_from_the_order_of_frames(tmp_path):
    """The transformers backend on the CPU: after training, the held-out clips are answered far above chance (50%),
    and the same clips played backwards get the opposite answer: the model reads the frames in order."""
    from vtc.runtime.backends.transformers_backend import TransformersBackend
    from vtc.runtime.evaluate import generate

    plan = make_plan(make_shapes(tmp_path / "data", n=4), steps=300, lr=2e-3, batch=8, max_new_tokens=3)
    plan["video"] = VIDEO
    train = [video_row(("left", "right")[i % 2], seed=i) for i in range(64)]
    test_seeds = range(10_000, 10_024)
    test = [video_row(("left", "right")[i % 2], seed=s) for i, s in enumerate(test_seeds)]
    backward = [video_row(("left", "right")[i % 2], seed=s, reverse=True) for i, s in enumerate(test_seeds)]
    backend = TransformersBackend()
    model, processor = backend.load(plan, str(ensure_tiny_model(NAME, cache_dir=tmp_path / "cache")))
    collator = backend.collator(plan, model, processor)
    backend.trainer(plan, model, processor, train, collator, str(tmp_path / "out"), []).train()
    backend.for_inference(model)

    def answers(rows):
        return generate(model, processor, [r["messages"][:1] for r in rows], max_new_tokens=3, batch_size=8)

    expected = [r["messages"][1]["content"][0]["text"] for r in test]
    forward = answers(test)
    accuracy = sum(a == e for a, e in zip(forward, expected)) / len(test)
    assert accuracy >= 0.8, (accuracy, forward)
    opposite = {"left": "right", "right": "left"}
    reversed_answers = answers(backward)
    flipped = sum(a == opposite[e] for a, e in zip(reversed_answers, expected)) / len(test)
    assert flipped >= 0.8, (flipped, reversed_answers)


# --- vtc ask on clips (what it reads; the answering itself is the slow test below and the GPU test) ------------------


def _plan_with(video):
    return {"video": video, "model": {"family": "mllama"}, "images": {"window": None}}


def test_ask_reads_a_frame_folder_as_one_clip_only_with_a_video_clause(tmp_path):
    from vtc.runtime import ask as A

    out = write_motion_dataset(tmp_path / "m", train=3, test=1, frames=4, size=56)
    clip = out / "train" / "clip_000"
    clips = dict(VIDEO, multi_frame_files="clips")
    assert A._image_files(clip, A._clip_settings(_plan_with(clips))) == [clip]
    # a folder of frame folders: one item a clip, in name order
    assert A._image_files(out / "train", A._clip_settings(_plan_with(clips))) == [
        out / "train" / f"clip_{i:03d}" for i in range(3)]
    # without a `video` clause (multi_frame_files "images") a folder is a folder of images, as before video
    assert A._image_files(clip, A._clip_settings(_plan_with(VIDEO))) == sorted(clip.iterdir())
    part, problem = A._open(clip, {"mode": "longest", "size": 56, "multiple": 28}, False, _plan_with(clips))
    assert problem is None
    assert part["type"] == "video" and len(part["video"]) == 4 and part["video"][0].size == (56, 56)
    assert (part["resized_height"], part["resized_width"]) == (56, 56)


def test_ask_reads_a_video_file_and_refuses_it_for_an_image_only_run(tmp_path):
    pytest.importorskip("av")
    from vtc.runtime import ask as A
    from vtc.runtime.tiny_data import write_mp4

    clip = write_mp4(tmp_path / "right.mp4", moving_square("right", n=8, size=56, seed=2), fps=4)
    assert A._image_files(clip, None) == [clip]
    listing = A._image_files(tmp_path, None)
    assert listing == [clip]
    part, problem = A._open(clip, {"mode": "longest", "size": 56, "multiple": 28}, False, _plan_with(VIDEO))
    assert problem is None and part["type"] == "video"
    # 8 frames at 4 fps = 2 s; at 2 fps that is 4 samples
    assert len(part["video"]) == 4 and part["fps"] == pytest.approx(2.0)
    part, problem = A._open(clip, {"mode": "longest", "size": 56, "multiple": 28}, False, _plan_with(None))
    assert part is None and problem.code == "VT458"
    assert "Qwen" in (problem.help or "") and "remove" not in (problem.help or "")




@pytest.mark.slow
def test_vtc_run_learns_the_motion_task_and_asks_a_clip(tmp_path, capsys):
    """The whole path: a recipe with a `video` clause over frame folders (imagefolder metadata), `vtc run` (the run's
    own evaluation: exact match far above chance), then `vtc ask` on one clip forwards and backwards."""
    from click.testing import CliRunner

    from vtc.cli import cli
    from vtc.commands import run_target

    write_motion_dataset(tmp_path / "motion", train=64, test=24, frames=4, size=56)
    recipe = tmp_path / "motion.vt"
    recipe.write_text(MOTION_RECIPE.format(steps=100))
    run = run_target(str(recipe))
    capsys.readouterr()
    ev = json.loads((run / "eval.json").read_text())
    assert ev["after"]["exact_match"] >= 0.8, ev  # two directions: chance is 50%

    frames = moving_square("right", n=4, size=56, seed=4242)
    answers = []
    for name, clip in (("forward", frames), ("backward", frames[::-1])):
        folder = tmp_path / "ask" / name
        folder.mkdir(parents=True)
        for i, frame in enumerate(clip):
            frame.save(folder / f"frame_{i:03d}.png")
        result = CliRunner().invoke(cli, ["ask", str(run), str(folder)])
        assert result.exit_code == 0, result.output
        answers.append(result.stdout.strip().splitlines()[-1])
    assert answers == ["right", "left"], answers


def test_preview_names_a_clip_and_its_tokens(tmp_path):
    """`vtc preview` marks a clip's placeholder run as a clip, with its tokens: 4 frames of 56 px = 8 video tokens,
    plus Qwen-VL's vision start and end."""
    from click.testing import CliRunner

    from vtc.cli import cli

    write_motion_dataset(tmp_path / "motion", train=4, test=2, frames=4, size=56)
    recipe = tmp_path / "motion.vt"
    recipe.write_text(MOTION_RECIPE.format(steps=1))
    result = CliRunner().invoke(cli, ["preview", str(recipe), "--rows", "1"])
    assert result.exit_code == 0, result.output
    rows = result.output.split("\n", 1)[1]  # below the legend
    assert "[clip: 10 tokens]" in rows and "[image:" not in rows
