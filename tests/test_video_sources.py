"""Clips in every data source kind: Record.videos, the raw video parts, rows[i]'s opened video parts (frames of the
planned size), row origins, placeholders, `video` clause modes, families without video, and the data fingerprint."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from runtime_helpers import recipe_plan, shape_image  # noqa: E402
from video_helpers import (moving_square, write_cine_dicom, write_frame_folder, write_tiff_stack,  # noqa: E402
                           write_video)

from vtc.diagnostics import VtcError  # noqa: E402
from vtc.runtime.sources import load_rows  # noqa: E402

pytest.importorskip("av")

# `frame size 56`: every 64 x 64 frame becomes 56 x 56; 4 frames at most.
CLAUSE = "video 2 fps, at most 4 frames, frame size 56"


def rows_of(tmp_path, *clauses, problems=None, video=CLAUSE, model="tiny-qwen2.5-vl"):
    extra = (video,) if video else ()
    return load_rows(recipe_plan(tmp_path, *clauses, *extra, model=model), problems=problems)


def codes(tmp_path, *clauses, video=CLAUSE) -> list[tuple[str, int | None]]:
    problems: list = []
    try:
        rows_of(tmp_path, *clauses, "bad rows skip", problems=problems, video=video)
    except VtcError as exc:
        problems.extend(exc.diagnostics)
    return [(d.code, d.span.line if d.span else None) for d in problems]


def write_jsonl(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def layout(messages: list[dict]) -> list[list[str]]:
    """Each message's parts as "image", "video" or the text."""
    return [[p["type"] if p["type"] in ("image", "video") else p["text"] for p in m["content"]] for m in messages]


def video_parts(row: dict) -> list[dict]:
    return [p for m in row["messages"] for p in m["content"] if p["type"] == "video"]


def assert_clip_part(part: dict, frames: int = 4, size: int = 56) -> None:
    """The part Unsloth's collator reads: a list of RGB frames of one (planned) size, fps and resized_*."""
    assert part["type"] == "video"
    assert len(part["video"]) == frames
    assert {im.size for im in part["video"]} == {(size, size)}
    assert {im.mode for im in part["video"]} == {"RGB"}
    assert part["resized_width"] == size and part["resized_height"] == size
    assert part["fps"] > 0


def clip_folder(tmp_path) -> Path:
    """data/: right.mp4, left/ (a frame folder), up.dcm (cine), down.tif (stack), red.png (an image)."""
    data = tmp_path / "data"
    write_video(data / "right.mp4", moving_square("right"), fps=4)
    write_frame_folder(data / "left", moving_square("left"))
    write_cine_dicom(data / "up.dcm", moving_square("up"), frame_time_ms=250)
    write_tiff_stack(data / "down.tif", moving_square("down"))
    shape_image("red", "circle", 64).save(data / "red.png")
    return data


# --- imagefolder ------------------------------------------------------------------------------------------------


def test_imagefolder_file_name_naming_a_video_or_a_frame_folder_is_a_clip(tmp_path):
    data = clip_folder(tmp_path)
    write_jsonl(data / "metadata.jsonl", [{"file_name": "right.mp4", "text": "right"},
                                          {"file_name": "left", "text": "left"},
                                          {"file_name": "red.png", "text": "red"}])
    rows = rows_of(tmp_path, "from ./data")
    assert [rows.videos(i) for i in range(3)] == [[data / "right.mp4"], [data / "left"], []]
    assert rows.images(2) == [data / "red.png"] and rows.images(0) == []
    # The origin names the metadata file and the row's line.
    assert (Path(rows.origin(1).file).name, rows.origin(1).line) == ("metadata.jsonl", 2)
    for i in range(2):
        row = rows[i]
        assert [part for m in layout(row["messages"]) for part in m if part in ("image", "video")] == ["video"]
        assert layout(row["messages"])[-2][-1] == "video"  # the user turn: instruction text, then the clip
        (part,) = video_parts(row)
        assert_clip_part(part)
    assert video_parts(rows[2]) == []


def test_imagefolder_rows_may_mix_an_image_column_and_a_video_column(tmp_path):
    data = clip_folder(tmp_path)
    write_jsonl(data / "metadata.jsonl", [{"file_name": "red.png", "video": "right.mp4", "text": "red, right"},
                                          {"video": ["left", "right.mp4"], "text": "two clips"},
                                          {"file_name": "red.png", "text": "just red"}])
    rows = rows_of(tmp_path, "from ./data")
    assert len(rows) == 3
    assert rows.images(0) == [data / "red.png"] and rows.videos(0) == [data / "right.mp4"]
    assert rows.videos(1) == [data / "left", data / "right.mp4"] and rows.images(1) == []
    user = layout(rows[0]["messages"])[0]
    assert user[1:] == ["image", "video"]  # instruction text, then images, then clips
    assert len(video_parts(rows[1])) == 2


def test_imagefolder_missing_clip_and_empty_frame_folder_name_their_rows(tmp_path):
    data = clip_folder(tmp_path)
    (data / "empty").mkdir()
    write_jsonl(data / "metadata.jsonl", [{"file_name": "right.mp4", "text": "right"},
                                          {"video": "gone.mp4", "text": "x"},
                                          {"video": "empty", "text": "x"},
                                          {"video": "../outside.mp4", "text": "x"}])
    assert codes(tmp_path, "from ./data") == [("VT409", 2), ("VT452", 3), ("VT415", 4)]


# --- table files ------------------------------------------------------------------------------------------------


def test_table_image_column_naming_a_clip_and_a_video_column_of_frames(tmp_path):
    data = clip_folder(tmp_path)
    frames = sorted(str(p.relative_to(data)) for p in (data / "left").iterdir())
    write_jsonl(data / "rows.jsonl", [{"image": "right.mp4", "answer": "right"},
                                      {"image": "red.png", "video": [frames], "answer": "red, left"}])
    rows = rows_of(tmp_path, "from ./data/rows.jsonl")
    assert rows.videos(0) == [data / "right.mp4"]
    assert rows.videos(1) == [tuple(data / f for f in frames)] and rows.images(1) == [data / "red.png"]
    assert_clip_part(video_parts(rows[1])[0])


def test_table_with_only_a_video_column(tmp_path):
    data = clip_folder(tmp_path)
    (data / "rows.csv").write_text("video,label\nright.mp4,right\nleft,left\n")
    rows = rows_of(tmp_path, "from ./data/rows.csv")
    assert [rows.answer(i) for i in range(2)] == ["right", "left"]
    assert rows.videos(1) == [data / "left"]
    assert_clip_part(video_parts(rows[0])[0])


# --- conversations ----------------------------------------------------------------------------------------------


def test_conversation_video_parts_paths_frame_lists_and_placeholders(tmp_path):
    data = clip_folder(tmp_path)
    frames = [f"left/frame_{i:03d}.png" for i in range(8)]
    user = [{"type": "text", "text": "Which way?"}, {"type": "image", "image": "red.png"},
            {"type": "video", "video": "right.mp4"}]
    write_jsonl(data / "chats.jsonl", [
        {"messages": [{"role": "user", "content": user},
                      {"role": "assistant", "content": [{"type": "text", "text": "right"}]}]},
        {"messages": [{"role": "user", "content": [{"type": "video", "path": "left"}]},
                      {"role": "assistant", "content": [{"type": "text", "text": "left"}]}]},
        {"messages": [{"role": "user", "content": [{"type": "video", "video": frames}]},
                      {"role": "assistant", "content": [{"type": "text", "text": "left"}]}]},
        {"messages": [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "?"}]},
                      {"role": "assistant", "content": [{"type": "text", "text": "right"}]}],
         "videos": ["right.mp4"]},
    ])
    rows = rows_of(tmp_path, "from ./data/chats.jsonl")
    assert [rows.videos(i) for i in range(4)] == [[data / "right.mp4"], [data / "left"],
                                                  [tuple(data / f for f in frames)], [data / "right.mp4"]]
    # A text + image + video row: the parts stay where the row puts them.
    row = rows[0]
    assert layout(row["messages"]) == [["Which way?", "image", "video"], ["right"]]
    assert_clip_part(video_parts(row)[0])
    assert layout(rows[3]["messages"])[0] == ["video", "?"]
    assert_clip_part(video_parts(rows[2])[0])


def test_conversation_video_problems_name_their_rows(tmp_path):
    data = clip_folder(tmp_path)

    def row(part):
        return {"messages": [{"role": "user", "content": [part]},
                             {"role": "assistant", "content": [{"type": "text", "text": "x"}]}]}

    write_jsonl(data / "chats.jsonl", [
        row({"type": "video", "video": "right.mp4"}),  # 1: fine
        row({"type": "video", "video": "https://example.org/a.mp4"}),  # 2: VT445
        row({"type": "text", "text": "<video> which way?"}),  # 3: VT441 (literal text in `messages`)
        row({"type": "video"}),  # 4: VT414 (no clip, no `videos` list)
        row({"type": "video", "video": "nope.mp4"}),  # 5: VT409
    ])
    assert codes(tmp_path, "from ./data/chats.jsonl") == [("VT445", 2), ("VT441", 3), ("VT414", 4), ("VT409", 5)]


# --- ShareGPT / LLaMA-Factory / ms-swift / LLaVA-Video ------------------------------------------------------------


def sharegpt(text: str, answer: str = "right", **lists) -> dict:
    return {"messages": [{"role": "user", "content": text}, {"role": "assistant", "content": answer}], **lists}


def test_sharegpt_video_placeholders_take_the_videos_list(tmp_path):
    data = clip_folder(tmp_path)
    frames = [f"left/frame_{i:03d}.png" for i in range(8)]
    write_jsonl(data / "chats.jsonl", [
        sharegpt("<image>A shape, then <video>which way?", images=["red.png"], videos=["right.mp4"]),
        sharegpt("Which way?", images=["red.png"], videos=["left", frames]),  # no placeholders
        sharegpt("<video><video>", videos=["right.mp4", "left"]),
    ])
    rows = rows_of(tmp_path, "from ./data/chats.jsonl")
    assert layout(rows[0]["messages"]) == [["image", "A shape, then ", "video", "which way?"], ["right"]]
    # Without placeholders: images first, then the clips, at the start of the first user turn.
    assert layout(rows[1]["messages"])[0] == ["image", "video", "video", "Which way?"]
    assert rows.videos(1) == [data / "left", tuple(data / f for f in frames)]
    assert rows.videos(2) == [data / "right.mp4", data / "left"]
    for part in video_parts(rows[1]):
        assert_clip_part(part)


def test_sharegpt_video_placeholder_count_must_match(tmp_path):
    data = clip_folder(tmp_path)
    write_jsonl(data / "chats.jsonl", [
        sharegpt("<video>fine", videos=["right.mp4"]),
        sharegpt("<video><video> two", videos=["right.mp4"]),  # 2: VT442
        sharegpt("<video> none"),  # 3: VT442
        sharegpt("<video>", videos=["https://example.org/a.mp4"]),  # 4: VT445
    ])
    found = codes(tmp_path, "from ./data/chats.jsonl")
    assert found == [("VT442", 2), ("VT442", 3), ("VT445", 4)]
    with pytest.raises(VtcError) as exc:
        rows_of(tmp_path, "from ./data/chats.jsonl")
    assert "2 <video> placeholders but 1 video" in exc.value.diagnostics[0].message


def test_llamafactory_dataset_info_videos_column_and_llava_video_rows(tmp_path):
    data = clip_folder(tmp_path)
    write_jsonl(data / "clips.jsonl", [sharegpt("<video>Which way?", clips=["right.mp4"])])
    (data / "dataset_info.json").write_text(json.dumps(
        {"demo": {"file_name": "clips.jsonl", "formatting": "sharegpt", "columns": {"messages": "messages",
                                                                                    "videos": "clips"}}}))
    rows = rows_of(tmp_path, "from ./data")
    assert rows.videos(0) == [data / "right.mp4"]
    # LLaVA-Video-178K: a `video` key and from/value conversations.
    write_jsonl(tmp_path / "lv" / "llava_video.jsonl", [
        {"id": "1", "video": "right.mp4", "conversations": [{"from": "human", "value": "<video>\nWhich way?"},
                                                             {"from": "gpt", "value": "right"}]}])
    write_video(tmp_path / "lv" / "right.mp4", moving_square("right"))
    rows = rows_of(tmp_path, "from ./lv/llava_video.jsonl")
    assert rows.videos(0) == [tmp_path / "lv" / "right.mp4"]
    assert layout(rows[0]["messages"]) == [["video", "Which way?"], ["right"]]


# --- captions and classes ---------------------------------------------------------------------------------------


def test_captions_of_video_files(tmp_path):
    data = tmp_path / "data"
    write_video(data / "a.mp4", moving_square("right"))
    (data / "a.txt").write_text("right")
    shape_image("red", "circle", 64).save(data / "b.png")
    (data / "b.txt").write_text("red")
    rows = rows_of(tmp_path, "from ./data")
    assert rows.videos(0) == [data / "a.mp4"] and rows.images(1) == [data / "b.png"]
    assert (Path(rows.origin(0).file).name) == "a.txt"
    assert_clip_part(video_parts(rows[0])[0])


@pytest.mark.parametrize("video", [CLAUSE, None])
def test_captions_of_frame_folders_with_or_without_a_video_clause(tmp_path, video):
    data = tmp_path / "data"
    write_frame_folder(data / "beat1", moving_square("left", seed=1))
    (data / "beat1.txt").write_text("left")
    write_frame_folder(data / "beat2", moving_square("up", seed=2))
    (data / "beat2.txt").write_text("up")
    (data / "empty").mkdir()
    (data / "empty.txt").write_text("x")
    problems: list = []
    rows = rows_of(tmp_path, "from ./data", "bad rows skip", problems=problems, video=video)
    assert [(rows.answer(i), rows.videos(i)) for i in range(len(rows))] == [("left", [data / "beat1"]),
                                                                           ("up", [data / "beat2"])]
    assert [(d.code, Path(d.span.file).name) for d in problems] == [("VT452", "empty")]
    if video:
        assert_clip_part(video_parts(rows[1])[0])


def test_classes_of_videos_and_frame_folders(tmp_path):
    data = tmp_path / "data"
    write_video(data / "right" / "r1.mp4", moving_square("right", seed=1))
    write_frame_folder(data / "left" / "l1", moving_square("left", seed=2))
    write_frame_folder(data / "left" / "l2", moving_square("left", seed=3))
    rows = rows_of(tmp_path, "from ./data")
    # With a `video` clause a sub-folder of frames is one row, one clip.
    assert [(rows.answer(i), rows.videos(i)) for i in range(len(rows))] == [
        ("left", [data / "left" / "l1"]), ("left", [data / "left" / "l2"]), ("right", [data / "right" / "r1.mp4"])]
    assert_clip_part(video_parts(rows[0])[0])
    # Without one, the frames are images of their own (as before); the video file is still a clip.
    rows = rows_of(tmp_path, "from ./data", video=None)
    assert len(rows) == 17 and rows.videos(16) == [data / "right" / "r1.mp4"]
    assert rows.images(0) == [data / "left" / "l1" / "frame_000.png"]


# --- multi-frame files: images by default, clips with a `video` clause -----------------------------------------------


def test_multi_frame_dicom_and_tiff_are_clips_only_with_a_video_clause(tmp_path):
    data = clip_folder(tmp_path)
    write_jsonl(data / "metadata.jsonl", [{"file_name": "up.dcm", "text": "up"},
                                          {"file_name": "down.tif", "text": "down"}])
    rows = rows_of(tmp_path, "from ./data")
    assert rows.videos(0) == [data / "up.dcm"] and rows.videos(1) == [data / "down.tif"]
    assert_clip_part(video_parts(rows[0])[0])
    assert_clip_part(video_parts(rows[1])[0])
    plain = rows_of(tmp_path, "from ./data", video=None)
    assert plain.videos(0) == [] and plain.images(0) == [data / "up.dcm"]


def test_a_family_without_video_reads_the_row_and_refuses_to_open_it(tmp_path):
    data = clip_folder(tmp_path)
    write_jsonl(data / "metadata.jsonl", [{"file_name": "right.mp4", "text": "right"}])
    plan = recipe_plan(tmp_path, "from ./data")
    plan["video"] = None  # a family without video (mllama, pixtral, gemma3)
    rows = load_rows(plan)
    assert rows.videos(0) == [data / "right.mp4"]
    with pytest.raises(VtcError) as exc:
        rows[0]
    assert exc.value.diagnostics[0].code == "VT458"
    assert Path(exc.value.diagnostics[0].span.file).name == "metadata.jsonl"


def test_subsets_keep_the_clips_and_the_video_settings(tmp_path):
    data = clip_folder(tmp_path)
    write_jsonl(data / "metadata.jsonl", [{"file_name": "right.mp4", "text": "right"},
                                          {"file_name": "left", "text": "left"}])
    rows = rows_of(tmp_path, "from ./data")
    sub = rows.subset([1])
    assert sub.videos(0) == [data / "left"] and sub.video == rows.video
    assert_clip_part(video_parts(sub[0])[0])


# --- the data fingerprint ---------------------------------------------------------------------------------------


def test_the_data_fingerprint_covers_clips_and_frame_folders(tmp_path):
    from vtc.runtime.outputs import data_fingerprint

    clips = tmp_path / "clips"
    write_video(clips / "right.mp4", moving_square("right"))
    write_frame_folder(clips / "left", moving_square("left"))
    write_jsonl(tmp_path / "data" / "chats.jsonl", [sharegpt("<video><video>", videos=["right.mp4", "left"])])
    plan = recipe_plan(tmp_path, "from ./data/chats.jsonl", "images from folder ./clips", CLAUSE)
    first = data_fingerprint(plan)["sha256"]
    assert data_fingerprint(plan)["sha256"] == first
    write_video(clips / "right.mp4", moving_square("right", seed=5))
    second = data_fingerprint(plan)["sha256"]
    assert second != first
    moving_square("up")[0].save(clips / "left" / "frame_003.png")
    assert data_fingerprint(plan)["sha256"] != second


# --- `datasets` sources -------------------------------------------------------------------------------------------


def test_a_parquet_column_of_clip_paths_gives_clips(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    data = clip_folder(tmp_path)
    pq.write_table(pa.Table.from_pylist([{"video": "right.mp4", "text": "right"}, {"video": "left", "text": "left"},
                                         {"video": "nope.mp4", "text": "x"}]), data / "train.parquet")
    (data / "red.png").unlink()
    problems: list = []
    rows = rows_of(tmp_path, "from ./data/train.parquet", "bad rows skip", problems=problems)
    assert [d.code for d in problems] == ["VT410"] and problems[0].span.line == 3
    assert [rows.videos(i) for i in range(2)] == [[data / "right.mp4"], [data / "left"]]
    assert_clip_part(video_parts(rows[1])[0])


def test_a_datasets_video_feature_is_refused_with_a_diagnostic(tmp_path):
    datasets = pytest.importorskip("datasets")

    data = clip_folder(tmp_path)
    ds = datasets.Dataset.from_dict({"video": [str(data / "right.mp4")], "text": ["right"]})
    ds = ds.cast_column("video", datasets.Video(decode=False))
    ds.save_to_disk(str(tmp_path / "saved"))
    with pytest.raises(VtcError) as exc:
        rows_of(tmp_path, "from ./saved")
    (d,) = exc.value.diagnostics
    assert d.code == "VT460" and "torchcodec" in d.message and "video" in d.help


def test_frame_folders_and_clips_leading_outside_the_data_folder_are_refused(tmp_path):
    outside = write_frame_folder(tmp_path / "elsewhere" / "loop", moving_square("left"))
    write_video(tmp_path / "elsewhere" / "secret.mp4", moving_square("up"))
    data = clip_folder(tmp_path)
    (data / "link").symlink_to(outside, target_is_directory=True)
    (data / "secret.mp4").symlink_to(tmp_path / "elsewhere" / "secret.mp4")
    write_jsonl(data / "metadata.jsonl", [{"video": "link", "text": "x"}, {"file_name": "secret.mp4", "text": "x"},
                                          {"video": "../elsewhere/loop", "text": "x"},
                                          {"file_name": "right.mp4", "text": "right"}])
    assert codes(tmp_path, "from ./data") == [("VT415", 1), ("VT415", 2), ("VT415", 3)]
    conv = [{"messages": [{"role": "user", "content": [{"type": "video", "video": name}]},
                          {"role": "assistant", "content": [{"type": "text", "text": "x"}]}]}
            for name in ("link", "../elsewhere/loop", ["../elsewhere/loop/frame_000.png"], "secret.mp4")]
    write_jsonl(data / "chats.jsonl", conv)
    assert codes(tmp_path, "from ./data/chats.jsonl") == [("VT415", 1), ("VT415", 2), ("VT415", 3), ("VT415", 4)]
