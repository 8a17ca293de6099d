"""The dataset formats of other tools (issue 15, A): ShareGPT (LLaMA-Factory, ms-swift, Axolotl), LLaVA, TRL's
prompt/completion, read as they are: detection, the `format` pin, `images from folder`, a LLaMA-Factory folder with
dataset_info.json, every diagnostic (VT204, VT441-VT449) and a short training run per format family."""

from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from runtime_helpers import recipe_plan, shape_image  # noqa: E402
from vtc.diagnostics import VtcError  # noqa: E402
from vtc.runtime.sources import detect_source, load_rows  # noqa: E402


@pytest.fixture(autouse=True)
def image_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VTC_IMAGE_CACHE", str(tmp_path / "image-cache"))


COLOURS = ("red", "blue", "green", "yellow")


def images(folder: Path, n: int = 4) -> list[str]:
    """n shape images in ``folder`` (names relative to the folder's parent)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        shape_image(COLOURS[i % 4], "circle", size=56, seed=i).save(folder / f"{i}.png")
    return [f"{folder.name}/{i}.png" for i in range(n)]


def write(path: Path, rows: list, jsonl: bool | None = None) -> Path:
    if jsonl if jsonl is not None else path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    else:  # a JSON array, one row a line (so that a row's line is its index + 2)
        path.write_text("[\n" + ",\n".join(json.dumps(r) for r in rows) + "\n]\n", encoding="utf-8")
    return path


def sharegpt_rows(paths: list[str]) -> list[dict]:
    """LLaMA-Factory's mllm_demo shape: `messages` with string content, <image> placeholders, `images`."""
    return [{"messages": [{"role": "user", "content": f"<image>What colour is the shape? ({i})"},
                          {"role": "assistant", "content": COLOURS[i % 4]}],
             "images": [p]} for i, p in enumerate(paths)]


def llava_rows(paths: list[str]) -> list[dict]:
    return [{"id": str(i), "image": p.split("/", 1)[1],
             "conversations": [{"from": "human", "value": "<image>\nWhat colour is the shape?"},
                               {"from": "gpt", "value": COLOURS[i % 4]}]} for i, p in enumerate(paths)]


def prompt_completion_rows(paths: list[str]) -> list[dict]:
    return [{"prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What colour?"}]}],
             "completion": [{"role": "assistant", "content": [{"type": "text", "text": COLOURS[i % 4]}]}],
             "images": [p]} for i, p in enumerate(paths)]


def rows_of(tmp_path, *clauses, problems=None):
    return load_rows(recipe_plan(tmp_path, *clauses), problems=problems)


def codes(tmp_path, *clauses) -> list[tuple[str, int | None]]:
    problems: list = []
    try:
        load_rows(recipe_plan(tmp_path, *clauses, "bad rows skip"), problems=problems)
    except VtcError as exc:
        problems.extend(exc.diagnostics)
    return [(d.code, d.span.line if d.span else None) for d in problems]


def parts(messages: list[dict]) -> list[list[str]]:
    """Each message's parts as "image" or the text, for comparing layouts."""
    return [[p["type"] if p["type"] == "image" else p["text"] for p in m["content"]] for m in messages]


def no_literal_marker(rows) -> None:
    for i in range(len(rows)):
        for m in rows[i]["messages"]:
            for p in m["content"]:
                assert p["type"] == "image" or "<image>" not in p["text"]


# --- reading each format ------------------------------------------------------------------------------------------


def test_sharegpt_messages_with_placeholders_become_image_parts(tmp_path):
    paths = images(tmp_path / "img")
    write(tmp_path / "mllm_demo.json", sharegpt_rows(paths))
    info = detect_source(tmp_path / "mllm_demo.json")
    assert (info.kind, info.format) == ("chats", "sharegpt")
    rows = rows_of(tmp_path, "from ./mllm_demo.json")
    assert len(rows) == 4
    assert parts(rows[1]["messages"]) == [["image", "What colour is the shape? (1)"], ["blue"]]
    assert rows[1]["messages"][0]["content"][0]["image"].size[0] > 0  # opened: a PIL image
    assert rows.images(1) == [tmp_path / "img" / "1.png"]
    assert rows.answer(1) == "blue"
    no_literal_marker(rows)


def test_sharegpt_conversations_from_value_with_system_and_three_turns(tmp_path):
    paths = images(tmp_path / "img")
    write(tmp_path / "chat.jsonl", [{
        "conversations": [{"from": "system", "value": "Be brief."},
                          {"from": "human", "value": "Look: <image> what is it?"},
                          {"from": "gpt", "value": "a circle"},
                          {"from": "human", "value": "And now?"},
                          {"from": "gpt", "value": "still a circle"},
                          {"from": "human", "value": "<image><image>Compare."},
                          {"from": "gpt", "value": "same colour"}],
        "images": paths[:3]}])
    rows = rows_of(tmp_path, "from ./chat.jsonl")
    assert parts(rows[0]["messages"]) == [["Be brief."], ["Look: ", "image", " what is it?"], ["a circle"],
                                          ["And now?"], ["still a circle"], ["image", "image", "Compare."],
                                          ["same colour"]]
    assert [m["role"] for m in rows[0]["messages"]] == ["system", "user", "assistant", "user", "assistant", "user",
                                                         "assistant"]
    assert rows.images(0) == [tmp_path / "img" / f"{k}.png" for k in range(3)]
    assert rows.answer(0) == "same colour"


def test_swift_messages_without_placeholders_put_the_images_first(tmp_path):
    """ms-swift / Axolotl: `messages` + `images` without <image> tags: the images open the first user turn."""
    paths = images(tmp_path / "img", 2)
    write(tmp_path / "swift.jsonl", [{"messages": [{"role": "user", "content": "What colours?"},
                                                   {"role": "assistant", "content": "red and blue"}],
                                      "images": paths}])
    rows = rows_of(tmp_path, "from ./swift.jsonl")
    assert parts(rows[0]["messages"]) == [["image", "image", "What colours?"], ["red and blue"]]


def test_sharegpt_base64_images_are_decoded(tmp_path, monkeypatch):
    monkeypatch.setenv("VTC_CACHE", str(tmp_path / "cache"))
    buf = io.BytesIO()
    shape_image("red", "circle", size=56).save(buf, format="PNG")
    data = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    write(tmp_path / "inline.jsonl", [{"messages": [{"role": "user", "content": "<image>Colour?"},
                                                    {"role": "assistant", "content": "red"}], "images": [data]}])
    rows = rows_of(tmp_path, "from ./inline.jsonl")
    image = rows[0]["messages"][0]["content"][0]["image"]
    assert image.size[0] > 0
    assert rows.images(0)[0].parent == tmp_path / "cache" / "inline-images"
    assert "base64" not in json.dumps(parts(rows[0]["messages"]))


def test_llava_instruction_file(tmp_path):
    paths = images(tmp_path / "images")
    write(tmp_path / "llava_instruct.json", llava_rows(paths))
    info = detect_source(tmp_path / "llava_instruct.json")
    assert (info.kind, info.format) == ("chats", "llava")
    # LLaVA's image paths start at the image folder: `images from folder`
    rows = rows_of(tmp_path, "from ./llava_instruct.json", "images from folder ./images")
    assert parts(rows[2]["messages"]) == [["image", "What colour is the shape?"], ["green"]]
    assert rows.images(2) == [tmp_path / "images" / "2.png"]
    no_literal_marker(rows)


def test_trl_prompt_completion_with_typed_parts_and_strings(tmp_path):
    paths = images(tmp_path / "img", 2)
    rows_ = prompt_completion_rows(paths[:1]) + [{"prompt": "<image>Colour?", "completion": "blue",
                                                  "images": [paths[1]]}]
    write(tmp_path / "trl.jsonl", rows_)
    assert detect_source(tmp_path / "trl.jsonl").format == "prompt_completion"
    rows = rows_of(tmp_path, "from ./trl.jsonl")
    assert parts(rows[0]["messages"]) == [["image", "What colour?"], ["red"]]
    assert parts(rows[1]["messages"]) == [["image", "Colour?"], ["blue"]]


def test_openai_messages_with_typed_parts_still_read_as_before(tmp_path):
    images(tmp_path / "img", 1)
    write(tmp_path / "typed.jsonl", [{"messages": [
        {"role": "user", "content": [{"type": "image", "image": "img/0.png"}, {"type": "text", "text": "Colour?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "red"}]}]}])
    info = detect_source(tmp_path / "typed.jsonl")
    assert (info.kind, info.format) == ("conversations", "messages")
    assert parts(rows_of(tmp_path, "from ./typed.jsonl")[0]["messages"]) == [["image", "Colour?"], ["red"]]


# --- the pin, the images folder, the folder ---------------------------------------------------------------------


def test_format_pin_reaches_the_plan_and_the_reader(tmp_path):
    paths = images(tmp_path / "img", 2)
    write(tmp_path / "d.json", sharegpt_rows(paths))
    plan = recipe_plan(tmp_path, "from ./d.json format sharegpt")
    assert plan["data"]["train"]["format"] == "sharegpt"
    assert plan["provenance"]["/data/train/format"] == "test.vt:2"
    assert recipe_plan(tmp_path, "from ./d.json")["provenance"]["/data/train/format"] == "default"
    assert len(load_rows(plan)) == 2
    # a pinned format that does not fit the rows: VT449 naming the row
    assert codes(tmp_path, "from ./d.json format llava") == [("VT449", 2), ("VT449", 3)]


def test_unknown_format_word_is_vt204_with_did_you_mean(tmp_path):
    from vtc.compiler.pipeline import compile_source

    result = compile_source("finetune all on tiny-qwen2.5-vl\nfrom ./d.json format sharegtp\n",
                            str(tmp_path / "r.vt"), base_dir=str(tmp_path))
    found = [d for d in result.diagnostics if d.code == "VT204"]
    assert found and "format sharegpt" in found[0].help and found[0].span.line == 2


def test_format_and_images_folder_round_trip_through_fmt(tmp_path):
    from vtc.compiler.fmt import format_source

    text = "finetune all on tiny-qwen2.5-vl\nfrom ./d.json   split train   format  llava\nimages from folder ./media\n"
    out, problems = format_source(text, str(tmp_path / "r.vt"))
    assert not problems and "from ./d.json split train format llava" in out and "images from folder ./media" in out


def test_images_folder_confines_and_resolves(tmp_path):
    images(tmp_path / "media", 1)
    (tmp_path / "data").mkdir()
    write(tmp_path / "data" / "d.json",
          [{"messages": [{"role": "user", "content": "<image>Colour?"}, {"role": "assistant", "content": "red"}],
            "images": ["0.png"]}])
    plan = recipe_plan(tmp_path, "from ./data/d.json", "images from folder ./media")
    assert plan["data"]["images_folder"] == "./media"
    assert load_rows(plan).images(0) == [tmp_path / "media" / "0.png"]
    # without the clause the path starts at the data file's folder: missing (VT409)
    assert codes(tmp_path, "from ./data/d.json") == [("VT409", 2)]


def test_llamafactory_folder_with_dataset_info(tmp_path):
    """data/: mllm_demo.json + dataset_info.json + mllm_demo_data/: read the file (not class folders)."""
    data = tmp_path / "data"
    paths = images(data / "mllm_demo_data")
    rows_ = [{"chat": [{"speaker": "me", "text": r["messages"][0]["content"]},
                       {"speaker": "bot", "text": r["messages"][1]["content"]}], "pics": r["images"]}
             for r in sharegpt_rows(paths)]
    write(data / "mllm_demo.json", rows_)
    (data / "dataset_info.json").write_text(json.dumps({"mllm_demo": {
        "file_name": "mllm_demo.json", "formatting": "sharegpt",
        "columns": {"messages": "chat", "images": "pics"},
        "tags": {"role_tag": "speaker", "content_tag": "text", "user_tag": "me", "assistant_tag": "bot"}}}))
    info = detect_source(data)
    assert (info.kind, info.format, info.path) == ("chats", "sharegpt", data / "mllm_demo.json")
    rows = rows_of(tmp_path, "from ./data")
    assert len(rows) == 4 and rows.answer(0) == "red"
    assert parts(rows[0]["messages"])[0] == ["image", "What colour is the shape? (0)"]


def test_folder_with_a_chat_file_and_no_dataset_info(tmp_path):
    data = tmp_path / "data"
    paths = images(data / "images")
    write(data / "train.jsonl", sharegpt_rows(paths))
    info = detect_source(data)
    assert (info.kind, info.path) == ("chats", data / "train.jsonl")


def test_folder_with_an_unknown_json_beside_image_folders_is_vt447(tmp_path):
    data = tmp_path / "data"
    images(data / "cats")
    (data / "notes.json").write_text('[{"title": "x"}]')
    with pytest.raises(VtcError) as exc:
        detect_source(data)
    assert exc.value.diagnostics[0].code == "VT447"
    write(data / "a.json", sharegpt_rows(["cats/0.png"]))
    write(data / "b.json", sharegpt_rows(["cats/1.png"]))
    (data / "notes.json").unlink()
    with pytest.raises(VtcError) as exc:
        detect_source(data)
    assert exc.value.diagnostics[0].code == "VT447" and "several" in exc.value.diagnostics[0].message


def test_dataset_info_with_several_datasets_or_a_missing_file_is_vt448(tmp_path):
    data = tmp_path / "data"
    images(data / "img")
    (data / "dataset_info.json").write_text(json.dumps({"a": {"file_name": "a.json"}, "b": {"file_name": "b.json"}}))
    with pytest.raises(VtcError) as exc:
        detect_source(data)
    assert exc.value.diagnostics[0].code == "VT448" and "from ./data/a.json" in exc.value.diagnostics[0].help
    (data / "dataset_info.json").write_text(json.dumps({"a": {"file_name": "gone.json"}}))
    with pytest.raises(VtcError) as exc:
        detect_source(data)
    assert exc.value.diagnostics[0].code == "VT448"


# --- the row diagnostics --------------------------------------------------------------------------------------------


def chat(*turns, images_=None):
    row = {"messages": [{"role": r, "content": c} for r, c in turns]}
    if images_ is not None:
        row["images"] = images_
    return row


def test_every_row_diagnostic_names_its_row(tmp_path):
    paths = images(tmp_path / "img", 2)
    write(tmp_path / "bad.json", [
        chat(("user", "<image>ok"), ("assistant", "red"), images_=paths[:1]),  # line 2: fine
        chat(("user", "<image><image>two"), ("assistant", "red"), images_=paths[:1]),  # 3: VT442
        chat(("user", "<video>clip"), ("assistant", "red")),  # 4: VT442 (a <video> placeholder, no clip)
        chat(("user", "<image>x"), ("function_call", "{}"), ("assistant", "red"), images_=paths[:1]),  # 5: VT443
        chat(("user", "<image>x"), ("assistant", "red"), ("user", "more?"), images_=paths[:1]),  # 6: VT444
        chat(("user", "<image>x"), ("assistant", "red"), images_=["https://example.org/1.png"]),  # 7: VT445
        chat(("user", ""), ("assistant", "red")),  # 8: VT446
        chat(("user", "<image>x"), ("assistant", ""), images_=paths[:1]),  # 9: VT412
        chat(("user", "<image>x"), ("assistant", "red"), images_=["img/nope.png"]),  # 10: VT409
        chat(("user", "<image>x"), ("assistant", "red"), images_=["../outside.png"]),  # 11: VT415
        chat(("doctor", "x"), ("assistant", "red")),  # 12: VT443
    ])
    found = codes(tmp_path, "from ./bad.json")
    assert found == [("VT442", 3), ("VT442", 4), ("VT443", 5), ("VT444", 6), ("VT445", 7), ("VT446", 8),
                     ("VT412", 9), ("VT409", 10), ("VT415", 11), ("VT443", 12)]


def test_literal_image_marker_in_the_messages_format_is_vt441(tmp_path):
    write(tmp_path / "typed.jsonl", [{"messages": [
        {"role": "user", "content": [{"type": "text", "text": "<image>What?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "red"}]}]}])
    assert codes(tmp_path, "from ./typed.jsonl") == [("VT441", 1)]


def test_the_data_check_counts_the_new_problems(tmp_path):
    from vtc.runtime.validate import scan_data

    paths = images(tmp_path / "img", 2)
    write(tmp_path / "d.jsonl", [chat(("user", "<image>ok"), ("assistant", "red"), images_=paths[:1]),
                                 chat(("user", "<image><image>two"), ("assistant", "red"), images_=paths[:1])])
    report = scan_data(recipe_plan(tmp_path, "from ./d.jsonl"), use_cache=False)
    assert [d.code for d in report.diagnostics if d.is_error] == ["VT442"]
    assert "placeholders and images differ" in report.table()


def test_data_fingerprint_covers_the_images_a_conversation_file_names(tmp_path):
    from vtc.lockfile import data_fingerprint

    paths = images(tmp_path / "img", 2)
    write(tmp_path / "d.jsonl", sharegpt_rows(paths))
    plan = recipe_plan(tmp_path, "from ./d.jsonl")
    before = data_fingerprint(plan, content=True)["train"]
    shape_image("green", "circle", size=56, seed=1).save(tmp_path / "img" / "1.png")
    after = data_fingerprint(plan, content=True)["train"]
    assert before["sha256"] != after["sha256"] and after["files"] == 3


# --- one short training run per format family (tiny Qwen, CPU) -------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["sharegpt", "llava", "prompt_completion"])
def test_each_format_trains_the_tiny_model(tmp_path, fmt):
    from vtc.commands import run_target
    from runtime_helpers import write_plan

    paths = images(tmp_path / "img", 4)
    if fmt == "llava":
        rows_ = [dict(r, image=p) for r, p in zip(llava_rows(paths), paths)]
    else:
        rows_ = {"sharegpt": sharegpt_rows, "prompt_completion": prompt_completion_rows}[fmt](paths)
    write(tmp_path / "d.json", rows_)
    plan = recipe_plan(tmp_path, f"from ./d.json format {fmt}", "using lora", "resize 56", "train for 2 steps",
                       "batch 2", "max length 256", f"save to {tmp_path / 'runs'}", "metric exact_match")
    plan["evaluation"]["max_new_tokens"] = 2
    run = run_target(str(write_plan(plan, tmp_path / "plan.json")), allow_changed=True)
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["data"]["train_rows"] == 4


def test_images_folder_applies_to_the_messages_format_and_to_evaluation(tmp_path):
    images(tmp_path / "media", 2)
    (tmp_path / "data").mkdir()
    write(tmp_path / "data" / "typed.jsonl", [{"messages": [
        {"role": "user", "content": [{"type": "image", "image": "1.png"}, {"type": "text", "text": "Colour?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "blue"}]}]}])
    write(tmp_path / "data" / "val.json", llava_rows(["media/0.png"]))
    plan = recipe_plan(tmp_path, "from ./data/typed.jsonl", "evaluate on ./data/val.json format llava",
                       "images from folder ./media")
    assert plan["data"]["eval"]["format"] == "llava"
    assert load_rows(plan).images(0) == [tmp_path / "media" / "1.png"]
    assert load_rows(plan, "eval").images(0) == [tmp_path / "media" / "0.png"]


def test_a_sharegpt_parquet_dataset_gets_image_parts_not_literal_markers(tmp_path):
    """Data read with `datasets` (parquet, saved, Hub): `<image>` placeholders in string content become images too."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    data = tmp_path / "data"
    paths = images(data / "img", 2)
    rows_ = sharegpt_rows(paths)
    rows_[1] = {"messages": [{"role": "user", "content": "<video>clip"}, {"role": "assistant", "content": "red"}],
                "images": [paths[1]]}
    pq.write_table(pa.Table.from_pylist(rows_), data / "train.parquet")
    problems: list = []
    rows = rows_of(tmp_path, "from ./data", "images from column images", "bad rows skip", problems=problems)
    assert [d.code for d in problems] == ["VT441"]
    assert parts(rows[0]["messages"]) == [["image", "What colour is the shape? (0)"], ["red"]]


def test_a_text_only_first_row_does_not_hide_typed_image_parts_later(tmp_path):
    """Detected as sharegpt from a text-only first row, a later row's typed parts naming files still read."""
    images(tmp_path / "img", 2)
    write(tmp_path / "mixed.jsonl", [
        {"messages": [{"role": "user", "content": "Hello?"}, {"role": "assistant", "content": "hi"}]},
        {"messages": [{"role": "user", "content": [{"type": "image", "image": "img/1.png"},
                                                   {"type": "text", "text": "Colour?"}]},
                      {"role": "assistant", "content": [{"type": "text", "text": "blue"}]}]}])
    rows = rows_of(tmp_path, "from ./mixed.jsonl")
    assert parts(rows[1]["messages"]) == [["image", "Colour?"], ["blue"]]
    assert rows.images(1) == [tmp_path / "img" / "1.png"] and rows.images(0) == []


def test_plan_and_explain_say_the_pinned_format(tmp_path):
    from vtc.compiler.explain import explain_plan
    from vtc.compiler.plan import summarize_plan

    plan = recipe_plan(tmp_path, "from ./d.json format llava", "images from folder ./media")
    assert "read as LLaVA's conversations" in explain_plan(plan)
    text = summarize_plan(plan)
    assert "train format" in text and "llava" in text and "images from folder" in text


def test_format_on_a_hub_dataset_is_vt209(tmp_path):
    """`format` pins a data file's format; on a Hub dataset (read by its columns) it changes nothing, and says so."""
    from vtc.compiler.pipeline import compile_source

    result = compile_source("finetune all on tiny-qwen2.5-vl\nfrom hf://org/chats format sharegpt\n",
                            str(tmp_path / "r.vt"), base_dir=str(tmp_path))
    [d] = [d for d in result.diagnostics if d.code == "VT209"]
    assert not d.is_error and (d.span.line, d.span.column) == (2, 28)
    assert "has no effect on the Hub dataset `hf://org/chats`" in d.message
    assert result.plan is not None and result.plan["data"]["train"]["format"] == "sharegpt"


def test_a_pinned_format_on_a_folder_without_a_data_file_is_vt449(tmp_path):
    """`format` names a conversation file's format: on class folders or an imagefolder it would be ignored, so it is
    refused, saying what the folder holds and how to name the file."""
    from runtime_helpers import make_shapes

    make_shapes(tmp_path / "shapes", n=4)  # an imagefolder (metadata.jsonl)
    for kind in ("red", "blue"):
        images(tmp_path / "classes" / kind, 2)
    for folder, holds in (("shapes", "holds an imagefolder (metadata.jsonl)"),
                          ("classes", "holds images, and no .json or .jsonl data file")):
        with pytest.raises(VtcError) as info:
            rows_of(tmp_path, f"from ./{folder} format sharegpt")
        [d] = info.value.diagnostics
        assert d.code == "VT449" and d.message == (f"`format sharegpt` pins the format of a conversation file, but "
                                                   f"{folder} {holds}"), d.message
        assert f"`from ./{folder}/chats.json format sharegpt`" in d.help
    assert len(rows_of(tmp_path, "from ./shapes")) == 4  # without `format`: read as it is
