"""The batch and how it is split (issue 12): `batch` is the samples per update, `micro batch` pins how many go
through at once, the old form (`accumulate`) keeps its meaning; the plan records the rule (training.batching); a run
picks the micro-batch from the free memory (vtc.runtime.batching), records it, retries once at half after an
out-of-memory error at the first steps, and a resumed run keeps the split it started with."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtime_helpers import make_plan, make_shapes, write_plan
from vtc.compiler import estimates as E
from vtc.compiler.explain import explain_plan, training_steps
from vtc.compiler.pipeline import compile_source
from vtc.compiler.plan import summarize_plan
from vtc.runtime import batching as B

HEAD = "finetune all on qwen2.5-vl-3b\nfrom ./x\n"


def compiled(text: str, files: dict | None = None, tmp_path: Path | None = None):
    if files:
        for name, body in files.items():
            (tmp_path / name).write_text(body, encoding="utf-8")
        (tmp_path / "main.vt").write_text(text, encoding="utf-8")
        from vtc.compiler.pipeline import compile_file

        return compile_file(str(tmp_path / "main.vt"))
    return compile_source(text, "r.vt", base_dir="/abs")


def plan_of(text: str) -> dict:
    result = compiled(text)
    assert result.plan is not None, [d.message for d in result.diagnostics]
    return result.plan


def codes(result) -> list[str]:
    return [d.code for d in result.diagnostics if d.code != "VT401"]


# --- what a recipe means ---------------------------------------------------------------------------------------------


def test_batch_is_samples_per_update_and_vtc_chooses_the_split():
    plan = plan_of(HEAD + "batch 8\n")
    t = plan["training"]
    assert (t["batch"], t["micro_batch"], t["batching"]["fallback"], t["batching"]["processes"]) == (8, "auto", 8, "world_size")
    assert t["batching"]["safety_margin"] == 0.1 and plan["provenance"]["/training/batching/safety_margin"] == "default"
    assert [row["micro_batch"] for row in t["batching"]["memory_gib"]] == [1, 2, 4, 8]
    assert plan["provenance"]["/training/batch"] == "r.vt:3"
    assert plan["provenance"]["/training/micro_batch"] == "default"
    default = plan_of(HEAD)["training"]
    assert (default["batch"], default["micro_batch"]) == (8, "auto")  # the notebooks' 2 x 4, vtc's to split


def test_the_memory_table_is_the_estimate_of_each_micro_batch_per_backend(monkeypatch):
    """Each row is estimates.memory_estimate at that micro-batch for that backend (called by keyword only: its
    internals and its other arguments are the estimate's business), and the headline estimate is the one at 1 (the
    least a run needs) when the micro-batch is vtc's to choose."""
    real = E.memory_estimate
    calls = []

    def recording(*args, **kwargs):
        assert not args, "memory_estimate is called by keyword"
        out = real(**kwargs)
        if "image_size" in kwargs["image"]:  # not the video estimate (one row holding the largest clip)
            calls.append((kwargs["batch"], kwargs["backend"], out["total"] if out else None))
        return out

    monkeypatch.setattr(E, "memory_estimate", recording)
    plan = plan_of(HEAD + "batch 4\n")
    t = plan["training"]
    table = {(row["micro_batch"], backend): row[backend] for row in t["batching"]["memory_gib"]
             for backend in ("unsloth", "transformers")}
    assert set(table) == {(m, b) for m in (1, 2, 4) for b in ("unsloth", "transformers")}
    assert all(table[(m, b)] == total for m, b, total in calls) and all(v is not None for v in table.values())
    assert plan["estimates"]["gpu_memory_gib"] == table[(1, "unsloth")]
    assert table[(1, "unsloth")] <= table[(2, "unsloth")] <= table[(4, "unsloth")]
    pinned = plan_of(HEAD + "batch 4\nmicro batch 2\n")
    assert pinned["estimates"]["gpu_memory_gib"] == pinned["training"]["batching"]["memory_gib"][1]["unsloth"]


def test_micro_batch_pins_the_split():
    result = compiled(HEAD + "batch 12\nmicro batch 3\n")
    assert codes(result) == []
    t = result.plan["training"]
    assert (t["batch"], t["micro_batch"], t["batching"]["fallback"]) == (12, 3, None)
    assert result.plan["provenance"]["/training/micro_batch"] == "r.vt:4"


@pytest.mark.parametrize("text,batch,micro,words", [
    ("batch 2\naccumulate 4\n", 8, 2, "`batch 2` with `accumulate 4` is the old way of writing the batch: it still "
                                      "means 8 samples per update, 2 at a time"),
    ("accumulate 3\n", 6, 2, "`accumulate 3` (with the old default `batch 2`)"),
    ("batch 4\naccumulate 1\n", 4, 4, "still means 4 samples per update, 4 at a time"),
])
def test_the_old_form_keeps_its_meaning_with_a_note(text, batch, micro, words):
    result = compiled(HEAD + text)
    assert result.plan is not None and codes(result) == ["VT246"]
    note = next(d for d in result.diagnostics if d.code == "VT246")
    assert note.severity.value == "note" and words in note.message
    assert f"write `batch {batch}` to let vtc choose" in note.help
    assert f"`batch {batch}` and `micro batch {micro}` to keep {micro} at a time" in note.help
    t = result.plan["training"]
    assert (t["batch"], t["micro_batch"], t["batching"]["fallback"]) == (batch, micro, None)
    # What the note says to write means the same plan.
    new = plan_of(HEAD + f"batch {batch}\nmicro batch {micro}\n")["training"]
    assert (new["batch"], new["micro_batch"], new["batching"]) == (t["batch"], t["micro_batch"], t["batching"])


def test_the_old_form_across_includes_keeps_its_meaning(tmp_path):
    """A base recipe of the old form and a main recipe that sets `batch` after including it: as before, the main
    recipe's batch is the rows per step and the base's accumulate the steps per update (16 x 4)."""
    result = compiled('include "base.vt"\n' + HEAD + "batch 16\n", {"base.vt": "batch 2\naccumulate 4\n"}, tmp_path)
    assert result.plan is not None
    t = result.plan["training"]
    assert (t["batch"], t["micro_batch"]) == (64, 16)
    assert result.plan["provenance"]["/training/micro_batch"] == "main.vt:4"


def test_micro_batch_must_divide_the_batch():
    result = compiled(HEAD + "batch 8\nmicro batch 3\n")
    assert result.plan is None and codes(result) == ["VT247"]
    d = result.diagnostics[-1]
    assert d.message == "`micro batch 3` does not divide `batch 8`: each update must be a whole number of micro-batches"
    assert d.help == "choose one of 1, 2, 4, 8 (the divisors of 8), or change `batch`"
    assert (d.span.line, d.span.column) == (4, 13)
    larger = compiled(HEAD + "micro batch 16\n")
    assert codes(larger) == ["VT247"]
    assert "is more than `batch 8` (the default), the samples per update" in larger.diagnostics[-1].message


def test_micro_batch_with_accumulate_is_two_ways_of_splitting():
    result = compiled(HEAD + "batch 4\nmicro batch 2\naccumulate 4\n")
    assert result.plan is None and codes(result) == ["VT248"]
    assert result.diagnostics[-1].help == "write `batch 8` and `micro batch 2`, without `accumulate`"


def test_the_old_form_beyond_the_largest_batch():
    result = compiled(HEAD + "batch 64\naccumulate 128\n")
    assert result.plan is None and codes(result) == ["VT249"]
    assert "is 8,192 samples per update, more than the 4,096 vtc takes" in result.diagnostics[-1].message


def test_micro_batch_values_are_checked_like_every_number():
    assert codes(compiled(HEAD + "micro batch 0\n")) == ["VT104"]
    assert [d.code for d in compiled(HEAD + "micro batch two\n").diagnostics] == ["VT012"]
    near = compiled(HEAD + "per_device_train_batch_size 4\n").diagnostics
    assert near[0].code == "VT010" and "`micro batch 4`" in near[0].help


def test_an_unknown_model_has_no_estimates_and_a_fallback():
    plan = plan_of("finetune all on someorg/unknown-vlm\nfrom ./x\nbatch 12\n")
    rule = plan["training"]["batching"]
    assert rule["fallback"] == 6  # the largest divisor of 12 up to 8
    assert all(row["unsloth"] is None and row["transformers"] is None for row in rule["memory_gib"])
    assert "no estimate: starts at 6, halved once" in summarize_plan(plan)
    assert "with no memory estimate for this model it starts with 6" in explain_plan(plan)


def test_plan_and_explain_say_it_plainly():
    auto = plan_of(HEAD + "batch 8\n")
    summary = summarize_plan(auto)
    assert "8 per update" in summary and "auto (vtc chooses from the free memory)" in summary
    assert "GiB by micro batch" in summary and "unsloth:" in summary and "transformers:" in summary
    text = explain_plan(auto)
    table = ", ".join(f"{row['micro_batch']} -> {row['unsloth']:g} GiB"
                      for row in auto["training"]["batching"]["memory_gib"])
    assert ("each step learning from 8 examples (the batch)" in text and "vtc chooses how many go through the GPU "
            f"at once from its free memory (estimates with Unsloth: {table}), keeping 10% of it free" in text)
    pinned = plan_of(HEAD + "batch 8\nmicro batch 2\n")
    assert "2 at a time, 4 passes an update" in summarize_plan(pinned)
    assert "They go through the GPU 2 at a time, 4 times before each update" in explain_plan(pinned)


@pytest.mark.parametrize("rows,expected", [(100, (13, 13)), (8, (1, 1)), (3, (1, 1)), (17, (3, 3))])
def test_steps_come_from_the_batch_whatever_the_split(rows, expected):
    """The Trainer counts ceil(ceil(rows / micro) / accumulate) steps an epoch, which is ceil(rows / batch) for
    every split: explain's count does not depend on what the run will choose."""
    import math

    for text in ("batch 8\n", "batch 8\nmicro batch 2\n", "batch 8\nmicro batch 1\n", "batch 2\naccumulate 4\n"):
        plan = plan_of(HEAD + text)
        assert training_steps(plan, rows) == expected
    for micro in (1, 2, 4, 8):
        assert max(math.ceil(math.ceil(rows / micro) / (8 // micro)), 1) == expected[0]


# --- the runtime's rule --------------------------------------------------------------------------------------------


def _free(gib: float, gpu: bool = True) -> B.Free:
    return B.Free(gib, "NVIDIA Test" if gpu else "this machine (no GPU)", gpu)


def test_pick_takes_the_largest_that_fits_less_the_margin():
    plan = plan_of(HEAD + "batch 8\n")
    table = {row["micro_batch"]: row["unsloth"] for row in plan["training"]["batching"]["memory_gib"]}
    # Exactly enough for 4 at a time once 10% is kept free; not for 8.
    free = table[4] / 0.9 + 0.01
    assert table[8] > free * 0.9
    split = B.pick(plan, "unsloth", _free(free))
    assert (split.batch, split.micro_batch, split.accumulate, split.processes, split.how) == (8, 4, 2, 1, "fits")
    assert split.line() == (f"batch 8: 4 rows at a time, 2 passes an update (needs ~{table[4]:.1f} GiB of the "
                            f"{free:.1f} GiB free on NVIDIA Test; 8 at a time would need ~{table[8]:.1f})")
    record = split.record()
    assert (record["micro_batch"], record["accumulate"], record["how"], record["backend"]) == (4, 2, "fits", "unsloth")
    assert record["memory"]["needs_gib"] == table[4] and record["memory"]["safety_margin"] == 0.1
    assert record["memory"]["usable_gib"] == round(free * 0.9, 2) and record["retry"] is None
    everything = B.pick(plan, "unsloth", _free(1000))
    assert (everything.micro_batch, everything.accumulate) == (8, 1)
    assert everything.line().startswith("batch 8: 8 rows at a time, no accumulation (needs ~")
    assert B.does_not_fit(everything, None) is None


def test_pick_reads_the_backends_own_column():
    plan = plan_of(HEAD + "batch 8\n")
    for row in plan["training"]["batching"]["memory_gib"]:
        row["transformers"] = 2 * row["unsloth"]  # as if transformers kept more activations
    free = plan["training"]["batching"]["memory_gib"][-1]["unsloth"] / 0.9 + 0.01
    assert B.pick(plan, "unsloth", _free(free)).micro_batch == 8
    assert B.pick(plan, "transformers", _free(free)).micro_batch < 8


def test_when_nothing_fits_the_smallest_is_tried_with_a_warning():
    plan = plan_of(HEAD + "batch 8\n")
    split = B.pick(plan, "unsloth", _free(1.0))
    assert (split.micro_batch, split.accumulate, split.how) == (1, 8, "smallest")
    assert "even 1 at a time needs ~" in split.reason and "trying anyway" in split.reason
    warn = B.does_not_fit(split, None)
    assert warn.code == "VT540" and warn.severity.value == "warning" and "may not fit" in warn.message


def test_a_pinned_micro_batch_is_kept_and_warned_about():
    plan = plan_of(HEAD + "batch 8\nmicro batch 4\n")
    split = B.pick(plan, "unsloth", _free(1.0))
    assert (split.micro_batch, split.accumulate, split.how) == (4, 2, "pinned")
    assert split.reason.startswith("pinned by the recipe's `micro batch`; needs ~")
    warn = B.does_not_fit(split, None)
    assert warn.code == "VT540" and "write a smaller `micro batch` (one of 1, 2)" in warn.help
    assert B.does_not_fit(B.pick(plan, "unsloth", _free(1000)), None) is None


def test_without_an_estimate_or_a_measurement_the_fallback():
    unknown = plan_of("finetune all on someorg/unknown-vlm\nfrom ./x\nbatch 12\n")
    split = B.pick(unknown, "unsloth", _free(80))
    assert (split.micro_batch, split.accumulate, split.how) == (6, 2, "fallback")
    assert "no memory estimate for this model: it starts at 6" in split.reason
    known = plan_of(HEAD + "batch 8\n")
    unmeasured = B.pick(known, "unsloth", None)
    assert (unmeasured.micro_batch, unmeasured.how) == (8, "fallback")
    assert "the free memory cannot be read here" in unmeasured.reason


def test_the_chooser_takes_a_world_size():
    """Issue 13 runs one process per GPU: micro x accumulate x processes = batch, and the micro-batch divides the
    batch of one process."""
    plan = plan_of(HEAD + "batch 12\n")
    split = B.pick(plan, "unsloth", _free(1000), processes=2)
    assert (split.micro_batch, split.accumulate, split.processes) == (6, 1, 2)
    assert split.line().startswith("batch 12: 6 rows at a time, no accumulation, on each of 2 processes")
    table = {row["micro_batch"]: row["unsloth"] for row in plan["training"]["batching"]["memory_gib"]}
    tight = B.pick(plan, "unsloth", _free(table[4] / 0.9 + 0.01), processes=2)  # 4 does not divide 6
    assert (tight.micro_batch, tight.accumulate) == (3, 2)
    assert B.halved(split, 0, "oom").micro_batch == 3


@pytest.mark.parametrize("batch,micro,after", [(8, 8, (4, 2)), (12, 6, (3, 4)), (12, 4, (2, 6)), (7, 7, (1, 7)),
                                              (8, 1, None)])
def test_halved_keeps_the_batch(batch, micro, after):
    split = B.Split(batch, micro, batch // micro, 1, "fits", "r")
    smaller = B.halved(split, 1, "CUDA out of memory")
    if after is None:
        assert smaller is None
        return
    assert (smaller.micro_batch, smaller.accumulate, smaller.batch) == (*after, batch)
    assert smaller.retry == {"from_micro_batch": micro, "from_accumulate": batch // micro, "at_step": 1,
                             "error": "CUDA out of memory"}
    warn = B.retry_warning(split, smaller, None)
    assert warn.code == "VT540" and "out of memory at training step 2" in warn.message
    assert f"(still {batch} samples per update)" in warn.message and f"`micro batch {after[0]}`" in warn.help


def test_the_split_in_force(tmp_path):
    from vtc.runtime.backends.base import sft_arguments
    from vtc.runtime.evaluate import eval_batch_size

    plan = plan_of(HEAD + "batch 8\n")
    assert B.in_force(plan).how == "planned" and sft_arguments(plan, "/o", ["none"])[
        "per_device_train_batch_size"] == 8
    with B.scope():
        B.use(B.pick(plan, "unsloth", _free(plan["training"]["batching"]["memory_gib"][1]["unsloth"] / 0.9 + 0.01)))
        args = sft_arguments(plan, "/o", ["none"])
        assert (args["per_device_train_batch_size"], args["gradient_accumulation_steps"]) == (2, 4)
        assert eval_batch_size(plan) == 4
        other = plan_of(HEAD + "batch 4\nmicro batch 4\n")  # another plan's batch: not this run's split
        assert sft_arguments(other, "/o", ["none"])["per_device_train_batch_size"] == 4
    assert B.in_force(plan).how == "planned"  # the run's split ends with its scope


def test_recorded_split_for_resume(tmp_path):
    plan = plan_of(HEAD + "batch 8\n")
    good = {"batch": {"batch": 8, "micro_batch": 2, "accumulate": 4, "processes": 1, "backend": "unsloth",
                      "retry": {"from_micro_batch": 4, "at_step": 0}}}
    split = B.recorded(good, plan, tmp_path)
    assert (split.micro_batch, split.accumulate, split.how, split.retry["from_micro_batch"]) == (2, 4, "resumed", 4)
    assert split.line() == ("batch 8: 2 rows at a time, 4 passes an update (as the run chose when it started: a "
                            "checkpoint's data order depends on it)")
    for manifest, words in [({}, "does not record how the batch was split"),
                            ({"batch": {**good["batch"], "accumulate": 2}}, "records 2 x 2 x 1 for a batch of 8"),
                            ({"batch": {**good["batch"], "micro_batch": True}}, "does not record"),
                            ({"batch": {**good["batch"], "batch": 16, "accumulate": 8}}, "plan has a batch of 8")]:
        with pytest.raises(B.VtcError) as info:
            B.recorded(manifest, plan, tmp_path)
        d = info.value.diagnostics[0]
        assert d.code == "VT541" and words in d.message and "start a new run" in d.help
    pinned = plan_of(HEAD + "batch 8\nmicro batch 4\n")
    with pytest.raises(B.VtcError) as info:
        B.recorded(good, pinned, tmp_path)
    assert "and its plan pins 4" in info.value.diagnostics[0].message


def test_ask_answers_in_batches_of_twice_the_runs_micro_batch():
    from vtc.runtime.evaluate import eval_batch_size

    plan = plan_of(HEAD + "batch 8\n")
    manifest = {"batch": {"batch": 8, "micro_batch": 2, "accumulate": 4, "processes": 1}}
    with B.scope():
        B.use(B.recorded_or_planned(manifest, plan))
        assert eval_batch_size(plan) == 4
    assert B.recorded_or_planned(None, plan).micro_batch == 8  # nothing recorded: the plan's fallback
    assert B.recorded_or_planned({"batch": {"batch": 8}}, plan).how == "planned"


def test_free_memory_of_this_machine(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       16000000 kB\nMemFree:         1000000 kB\nMemAvailable:    8000000 kB\n")
    assert B.host_available(str(meminfo)) == 8000000 * 1024
    assert B.host_available(str(tmp_path / "nowhere")) is None
    meminfo.write_text("MemTotal: 1 kB\n")
    assert B.host_available(str(meminfo)) is None
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        free = B.free_memory()
        assert free is None or (free.gpu is False and free.where == "this machine (no GPU)" and free.gib > 0)


# --- runs (CPU, tiny model) ------------------------------------------------------------------------------------------


def _metrics(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def _run(tmp_path: Path, name: str, **kw):
    from vtc.commands import run_target

    data = make_shapes(tmp_path / "shapes", n=8, seed=5)
    plan = make_plan(data, steps=4, batch=4, outputs_dir=tmp_path / f"runs-{name}", **kw)
    target = write_plan(plan, tmp_path / f"{name}.json")
    return run_target(str(target), allow_changed=True)


def _forward_limit(monkeypatch, most: int | None, sizes: list[int], fail_after: int | None = None):
    """The tiny model's training forward raises torch.OutOfMemoryError for a batch of more than ``most`` rows (from
    its ``fail_after``-th training call on, when given), and records the rows of every training call."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    real = Qwen2_5_VLForConditionalGeneration.forward
    calls = {"n": 0}

    def forward(self, *args, **kwargs):
        ids = kwargs.get("input_ids")
        if kwargs.get("labels") is not None and ids is not None:  # training, not generation
            calls["n"] += 1
            if most is not None and ids.shape[0] > most and (fail_after is None or calls["n"] > fail_after):
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (a test)")
            sizes.append(int(ids.shape[0]))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Qwen2_5_VLForConditionalGeneration, "forward", forward)


@pytest.mark.slow
def test_a_run_records_its_choice(tmp_path, capsys):
    folder = _run(tmp_path, "auto", micro=None)
    out = capsys.readouterr().out
    manifest = json.loads((folder / "manifest.json").read_text())
    got = manifest["batch"]
    # The tiny model's estimate (about 1 GiB) fits any machine that runs the tests: 4 at a time.
    assert (got["batch"], got["micro_batch"], got["accumulate"], got["processes"], got["how"]) == (4, 4, 1, 1, "fits")
    assert got["backend"] == "transformers" and got["memory"]["gpu"] is False and got["retry"] is None
    assert got["memory"]["free_gib"] > got["memory"]["usable_gib"] >= got["memory"]["needs_gib"] > 0
    import re

    line = re.search(r"batch 4: 4 rows at a time, no accumulation \(needs ~([\d.]+) GiB of the ([\d.]+) GiB of memory "
                     r"available on this machine \(no GPU\)\)\n", out)
    assert line is not None, out
    assert float(line[1]) == pytest.approx(got["memory"]["needs_gib"], abs=0.05)
    assert float(line[2]) == pytest.approx(got["memory"]["free_gib"], abs=0.06)


@pytest.mark.slow
def test_out_of_memory_at_the_first_step_retries_with_half(tmp_path, monkeypatch, capsys):
    """Out of memory with 4 rows at a time: the run says so (VT540), trains again with 2 at a time and 2 passes an
    update, and finishes with the same 4 samples per update; the manifest says why. Its losses are those of a run
    pinned to 2 at a time from the start (the weights went back to where they were)."""
    sizes: list[int] = []
    _forward_limit(monkeypatch, 2, sizes, fail_after=1)  # the first micro-batch of 4 passes: step 1 completes
    folder = _run(tmp_path, "retry", micro=None)
    out = capsys.readouterr().out
    assert "warning[VT540]: out of memory at training step 2 with 4 rows at a time: training again from the start " \
           "with 2 rows at a time, 2 passes an update (still 4 samples per update)" in out
    assert "write `micro batch 2`" in out
    got = json.loads((folder / "manifest.json").read_text())["batch"]
    assert (got["batch"], got["micro_batch"], got["accumulate"], got["how"]) == (4, 2, 2, "fits")
    assert got["retry"]["from_micro_batch"] == 4 and got["retry"]["at_step"] == 1
    assert "OutOfMemoryError: CUDA out of memory" in got["retry"]["error"]
    assert got["reason"] == "out of memory at step 2 with 4 at a time; retried with 2"
    assert sizes[:1] == [4] and set(sizes[1:]) == {2} and len(sizes) == 1 + 4 * 2  # 4 steps of 2 x 2 after the retry
    retried = _metrics(folder)
    assert [r["step"] for r in retried] == [1, 2, 3, 4]  # the failed attempt's step 1 is not kept

    monkeypatch.undo()
    pinned = _metrics(_run(tmp_path, "pinned2", micro=2))
    assert [r["loss"] for r in retried] == pytest.approx([r["loss"] for r in pinned], rel=1e-5)
    whole = _metrics(_run(tmp_path, "whole", micro=4))  # the same mathematics, 4 at once
    assert [r["loss"] for r in whole] == pytest.approx([r["loss"] for r in pinned], rel=1e-3)


@pytest.mark.slow
def test_a_second_out_of_memory_error_is_the_failure_with_micro_batch_in_its_help(tmp_path, monkeypatch):
    from vtc.diagnostics import VtcError

    _forward_limit(monkeypatch, 1, [])
    with pytest.raises(VtcError) as info:
        _run(tmp_path, "twice", micro=None)
    d = info.value.diagnostics[0]
    assert d.code == "VT520"
    assert "2 rows at a time (batch 4) (after a first try with 4 at a time)" in d.message
    assert "fewer rows at a time for the same batch of 4 (`micro batch 1`)" in d.help
    failed = next((tmp_path / "runs-twice").glob("run-*.failed"))
    got = json.loads((failed / "manifest.json").read_text())["batch"]
    assert (got["micro_batch"], got["accumulate"], got["retry"]["from_micro_batch"]) == (2, 2, 4)


@pytest.mark.slow
def test_a_pinned_micro_batch_is_not_retried(tmp_path, monkeypatch):
    from vtc.diagnostics import VtcError

    _forward_limit(monkeypatch, 2, [])
    with pytest.raises(VtcError) as info:
        _run(tmp_path, "pinned", micro=4)
    d = info.value.diagnostics[0]
    assert d.code == "VT520" and "4 rows at a time (batch 4)" in d.message and "after a first try" not in d.message
    assert "`micro batch 2`" in d.help


@pytest.mark.slow
def test_resume_keeps_the_recorded_split(tmp_path, monkeypatch):
    """A run that retried at 2 at a time, then failed after its checkpoint at step 2: resumed without any limit on
    the memory (a fresh choice would take 4 at a time), it trains on with 2 at a time, 2 passes an update."""
    from vtc.runtime.run import resume_run

    sizes: list[int] = []
    _forward_limit(monkeypatch, 2, sizes)
    from transformers import TrainerCallback

    from vtc.runtime.backends.transformers_backend import TransformersBackend

    real = TransformersBackend.trainer

    class Boom(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            if state.global_step == 2 and args.per_device_train_batch_size == 2:
                raise RuntimeError("a failure after the checkpoint at step 2")

    def trainer(self, *a, **kw):
        t = real(self, *a, **kw)
        t.add_callback(Boom())
        return t

    monkeypatch.setattr(TransformersBackend, "trainer", trainer)
    data = make_shapes(tmp_path / "shapes", n=8, seed=5)
    plan = make_plan(data, steps=4, batch=4, outputs_dir=tmp_path / "runs", micro=None)
    plan["checkpoint"] = {"every_steps": 2}
    target = write_plan(plan, tmp_path / "plan.json")
    from vtc.commands import run_target

    with pytest.raises(RuntimeError):
        run_target(str(target), allow_changed=True)
    failed = next((tmp_path / "runs").glob("run-*.failed"))
    assert json.loads((failed / "manifest.json").read_text())["batch"]["micro_batch"] == 2

    monkeypatch.undo()
    seen: list[int] = []
    _forward_limit(monkeypatch, None, seen)
    finished = resume_run(str(failed), allow_changed=True)
    got = json.loads((finished / "manifest.json").read_text())["batch"]
    assert (got["micro_batch"], got["accumulate"], got["retry"]["from_micro_batch"]) == (2, 2, 4)
    assert seen and set(seen) == {2} and len(seen) == 2 * 2  # steps 3 and 4, 2 passes of 2 each
    assert [r["step"] for r in _metrics(finished)] == [1, 2, 3, 4]


def test_resume_refuses_a_run_without_a_recorded_split(tmp_path):
    from click.testing import CliRunner

    from vtc.cli import cli
    from vtc.lockfile import model_fingerprint
    from vtc.runtime.outputs import data_fingerprint

    data = make_shapes(tmp_path / "shapes", n=3)
    folder = tmp_path / "runs" / "run-001.interrupted"
    folder.mkdir(parents=True)
    plan = make_plan(data)
    write_plan(plan, folder / "plan.json")
    (folder / "manifest.json").write_text(json.dumps({
        "state": "interrupted", "data": {"fingerprint": data_fingerprint(plan)},
        "model": {"fingerprint": model_fingerprint(plan, content=False)}}))
    result = CliRunner().invoke(cli, ["run", "--resume", str(folder)])
    text = result.output
    assert result.exit_code == 1 and "error[VT541]" in text and "does not record how the batch was split" in text
    assert "Traceback" not in text


def _old_run(runs: Path, name: str, version: int, batch: int, accumulate: int | None) -> None:
    (runs / name).mkdir(parents=True)
    training = {"batch": batch} if accumulate is None else {"batch": batch, "accumulate": accumulate}
    (runs / name / "plan.json").write_text(json.dumps({"plan_version": version, "training": training,
                                                       "hardware": {"gpus": 1}}))


def test_a_recipe_whose_last_run_trained_another_batch_gets_a_note(tmp_path):
    """`batch 8` alone meant 8 at a time x the default `accumulate 4` before plan version 3. When the recipe's
    runs folder shows that its last run trained 32 per update, VT266 says so and how to keep it; a last run of the
    new meaning, a run that trained the same number, or a pinned `micro batch` give no note."""
    recipe = "finetune all on qwen2.5-vl-3b\nfrom ./x\nbatch 8\nsave to runs\n"
    assert "VT266" not in codes(compiled(recipe, {"x.txt": ""}, tmp_path))  # no runs yet
    _old_run(tmp_path / "runs", "run-001", 2, 8, 4)
    _old_run(tmp_path / "runs", "run-002.interrupted", 2, 8, 4)
    result = compiled(recipe, {"x.txt": ""}, tmp_path)
    found = [d for d in result.diagnostics if d.code == "VT266"]
    assert len(found) == 1 and found[0].severity == "note" and result.plan is not None
    assert "run-002.interrupted" in found[0].message and "32 per update" in found[0].message
    assert "`batch 32`" in found[0].help and found[0].span.line == 3
    assert "VT266" not in codes(compiled(recipe.replace("batch 8", "batch 8\nmicro batch 4"), {"x.txt": ""},
                                         tmp_path))
    _old_run(tmp_path / "runs", "run-003", 2, 2, 4)  # 8 per update: the same as now
    assert "VT266" not in codes(compiled(recipe, {"x.txt": ""}, tmp_path))
    _old_run(tmp_path / "runs", "run-004", 3, 8, None)
    assert "VT266" not in codes(compiled(recipe, {"x.txt": ""}, tmp_path))
