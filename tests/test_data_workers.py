"""Data loading ahead of the step: the plan's training.data_loading reaches SFTConfig on both backends; batches
made in worker processes train exactly as batches made in the training process (same losses, same seed); an error
in a worker stops the run with the same diagnostics as without workers, never a worker's traceback; a worker
killed by the system is VT542."""

from __future__ import annotations

import copy
import errno
import json
import os
import signal
import sys
import types
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))

from runtime_helpers import make_plan, make_shapes, unsloth_backend_over_stand_ins, write_plan  # noqa: E402
from vtc.compiler.pipeline import compile_source  # noqa: E402
from vtc.diagnostics import Span, VtcError, error  # noqa: E402
from vtc.runtime.backends.base import data_loader_arguments  # noqa: E402
from vtc.runtime.collator import WorkerFailure, carried, worker_died, worker_errors  # noqa: E402

torch = pytest.importorskip("torch")
from torch.utils.data import DataLoader  # noqa: E402


def plan_of(text: str) -> dict:
    result = compile_source(text, "/abs/r.vt", base_dir="/abs")
    assert result.plan is not None, [d.message for d in result.diagnostics]
    return result.plan


QWEN = "finetune all on qwen2.5-vl-3b\nusing lora\nfrom ./x\nresize 504\n"


# --- the plan's rule -> the trainer's arguments ----------------------------------------------------------------

def test_the_plan_says_how_batches_are_made_on_each_device():
    plan = plan_of(QWEN)
    assert plan["training"]["data_loading"] == {"workers": {"gpu": 4, "cpu": 0},
                                                "pin_memory": {"gpu": True, "cpu": False},
                                                "prefetch_factor": 2, "persistent_workers": True}
    assert all(plan["provenance"][f"/training/data_loading/{key}"] == "default"
               for key in ("workers/gpu", "workers/cpu", "pin_memory/gpu", "prefetch_factor", "persistent_workers"))


def test_data_loader_arguments_follow_the_plan_and_the_machine():
    plan = plan_of(QWEN)
    gpu, notes = data_loader_arguments(plan, "gpu", 16, cores=16, shared_memory=64 * 2**30)
    assert gpu == {"dataloader_num_workers": 4, "dataloader_pin_memory": True, "dataloader_prefetch_factor": 2,
                   "dataloader_persistent_workers": True, "dataloader_multiprocessing_context": "fork"}
    assert notes == []
    cpu, notes = data_loader_arguments(plan, "cpu", 16, cores=2, shared_memory=64 * 2**30)
    assert cpu == {"dataloader_num_workers": 0, "dataloader_pin_memory": False} and notes == []  # no prefetch then
    # Never more workers than cores.
    args, notes = data_loader_arguments(plan, "gpu", 16, cores=2, shared_memory=64 * 2**30)
    assert args["dataloader_num_workers"] == 2
    assert notes == ["data loading: 2 workers instead of the plan's 4 (this machine lets vtc use 2 CPU cores)"]
    # Shared memory: a batch of 16 images of 504 px is 16 x 504 x 504 x 24 bytes (~93 MiB); 4 workers keep 9
    # batches in flight. 300 MiB hold 3 (one worker); Docker's 64 MB none.
    args, notes = data_loader_arguments(plan, "gpu", 16, cores=16, shared_memory=300 * 2**20)
    assert args["dataloader_num_workers"] == 1 and "has 300 MiB free for about 93 MiB a batch" in notes[0]
    args, notes = data_loader_arguments(plan, "gpu", 16, cores=16, shared_memory=64 * 2**20)
    assert args == {"dataloader_num_workers": 0, "dataloader_pin_memory": True}
    assert notes[0].startswith("data loading: no workers instead of 4: this machine's shared memory (/dev/shm)")


def test_the_transformers_backend_passes_them_to_sftconfig(tmp_path):
    pytest.importorskip("trl")
    from vtc.runtime.backends.transformers_backend import TransformersBackend

    plan = plan_of("finetune all on tiny-qwen2.5-vl\nusing lora\nfrom ./x\ntrain for 3 steps\n")
    config = TransformersBackend().sft_config(plan, str(tmp_path), ["none"])  # no GPU here: the "cpu" rule
    assert (config.dataloader_num_workers, config.dataloader_pin_memory, config.dataloader_prefetch_factor) == \
        (0, False, None)
    plan["training"]["data_loading"]["workers"]["cpu"] = 1
    plan["training"]["data_loading"]["prefetch_factor"] = 3
    config = TransformersBackend().sft_config(plan, str(tmp_path), ["none"])
    assert (config.dataloader_num_workers, config.dataloader_prefetch_factor, config.dataloader_persistent_workers,
            config.dataloader_multiprocessing_context) == (1, 3, True, "fork")


@pytest.fixture
def unsloth_backend(monkeypatch):
    """vtc.runtime.backends.unsloth_backend imported over stand-ins for unsloth (a collator that counts rows)."""
    class UnslothVisionDataCollator:
        def __init__(self, *args, **kwargs):
            pass

        def __call__(self, examples):
            return {"rows": torch.tensor([len(e["messages"]) for e in examples])}

    module = unsloth_backend_over_stand_ins(monkeypatch, UnslothVisionDataCollator)
    yield module
    sys.modules.pop("vtc.runtime.backends.unsloth_backend", None)


def test_the_unsloth_backend_passes_the_gpu_rule_to_sftconfig(unsloth_backend, tmp_path):
    pytest.importorskip("trl")
    plan = plan_of(QWEN)
    plan["training"]["data_loading"]["workers"]["gpu"] = 1  # the CI machine may have 2 cores
    model = types.SimpleNamespace(dtype=torch.float32)
    config = unsloth_backend.UnslothBackend().sft_config(plan, model, str(tmp_path))
    assert (config.dataloader_num_workers, config.dataloader_pin_memory, config.dataloader_prefetch_factor,
            config.dataloader_persistent_workers, config.dataloader_multiprocessing_context) == (1, True, 2, True, "fork")


def test_the_unsloth_collator_sends_a_workers_error_back_whole(unsloth_backend):
    class Rows:
        def __getitem__(self, i):
            if i == 3:
                raise VtcError(error("VT411", "cannot read image img-003.png", Span("metadata.jsonl", 4),
                                     help="replace it"))
            return {"messages": [{"role": "user", "content": []}]}

    collator = unsloth_backend.VtcUnslothCollator()
    collator.rows = Rows()
    loader = DataLoader([{"row": i} for i in range(4)], batch_size=2, num_workers=2, collate_fn=collator)
    with pytest.raises(VtcError) as caught:
        list(loader)
    [found] = caught.value.diagnostics
    assert (found.code, found.message, found.span, found.help) == \
        ("VT411", "cannot read image img-003.png", Span("metadata.jsonl", 4), "replace it")


# --- errors in workers -------------------------------------------------------------------------------------------

class Custom(Exception):
    def __init__(self, a, b):  # not a built-in: it comes back as a RuntimeError that names it
        super().__init__(f"{a}/{b}")


def _collate(batch):
    with worker_errors():
        if 1 in batch:
            raise VtcError([error("VT430", "row too long", Span("data.jsonl", 2), help="raise `max length`"),
                            error("VT430", "another", Span("data.jsonl", 3))])
        if 3 in batch:
            raise OSError(errno.ENOSPC, "No space left on device")
        if 5 in batch:
            raise Custom("x", "y")
        if 7 in batch:
            raise ValueError("a value")
        return torch.tensor(batch)


@pytest.mark.parametrize("workers", [0, 2])
def test_an_error_in_a_worker_is_the_error_without_workers(workers):
    def first_error(start):
        try:
            list(DataLoader([start, start + 1], batch_size=2, num_workers=workers, collate_fn=_collate))
        except Exception as exc:  # noqa: BLE001 (the test compares what comes out)
            return exc
        raise AssertionError("no error")

    vtc = first_error(0)
    assert type(vtc) is VtcError and [(d.code, d.message, d.span, d.help) for d in vtc.diagnostics] == [
        ("VT430", "row too long", Span("data.jsonl", 2), "raise `max length`"),
        ("VT430", "another", Span("data.jsonl", 3), None)]
    disk = first_error(2)
    assert type(disk) is OSError and disk.errno == errno.ENOSPC  # still VT522 for the run
    odd = first_error(4)
    if workers:
        assert type(odd) is RuntimeError and str(odd) == "Custom in a data-loading worker: x/y"
        assert "raised in a data-loading worker process" in "".join(getattr(vtc, "__notes__", []))
        assert 'raise Custom("x", "y")' in "".join(odd.__notes__)  # the worker's traceback, for a bug report
    else:
        assert type(odd) is Custom
    value = first_error(6)
    assert type(value) is ValueError and str(value) == "a value"


def test_a_workerfailure_made_from_other_text_is_itself():
    assert type(WorkerFailure("just text")) is WorkerFailure
    assert type(WorkerFailure(WorkerFailure.MARK + "not-base64!")) is WorkerFailure


def test_a_workerfailure_that_arrives_as_itself_gives_up_what_it_carries():
    """Should a torch rebuild a worker's exception otherwise than from its text, the run (lifecycle.failed) still
    unpacks it."""
    failure = WorkerFailure.carrying(VtcError(error("VT434", "mixed batch", help="write `batch 1`")))
    assert type(failure) is WorkerFailure  # as raised in the worker
    found = carried(failure)
    assert type(found) is VtcError and [(d.code, d.message) for d in found.diagnostics] == [("VT434", "mixed batch")]
    other = ValueError("x")
    assert carried(other) is other


def test_torch_words_for_a_killed_worker_are_recognised():
    assert worker_died(RuntimeError("DataLoader worker (pid 4242) is killed by signal: Killed. ")) == \
        "killed by signal: Killed"
    assert worker_died(RuntimeError("x")) is None
    outer = RuntimeError("wrapped")
    outer.__cause__ = RuntimeError("DataLoader worker (pid(s) 7, 8) exited unexpectedly")
    assert worker_died(outer) == "exited unexpectedly"


# --- tiny runs with and without workers --------------------------------------------------------------------------

def _run(tmp_path: Path, plan: dict, name: str):
    from vtc.commands import run_target

    return run_target(str(write_plan(plan, tmp_path / f"{name}.json")), allow_changed=True)


def _losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_two_workers_train_exactly_as_none(tmp_path):
    train = make_shapes(tmp_path / "train", n=16, seed=3)
    plan = make_plan(train, steps=6, batch=4, outputs_dir=tmp_path / "runs")
    assert plan["training"]["data_loading"]["workers"]["cpu"] == 0  # the CPU's rule: batches made in the process
    none = _run(tmp_path, plan, "none")
    two = copy.deepcopy(plan)
    two["training"]["data_loading"]["workers"]["cpu"] = 2
    both = _run(tmp_path, two, "two")
    assert len(_losses(none)) == 6 and _losses(both) == _losses(none)
    speed = [json.loads((run / "manifest.json").read_text())["throughput"] for run in (none, both)]
    assert [s["data_workers"] for s in speed] == [0, 2]
    assert [s["whole_run"]["text_tokens"] for s in speed][0] == [s["whole_run"]["text_tokens"] for s in speed][1]


@pytest.fixture
def image_broken_after_the_check(monkeypatch, tmp_path):
    """A dataset whose img-005.png becomes unreadable right after the run's checks (the data check and the length
    check open every image; as if the file were replaced then): the error comes from the collator, while training."""
    from vtc.runtime import run

    train = make_shapes(tmp_path / "train", n=8, seed=4)
    good = (train / "img-005.png").read_bytes()
    check = run.check_lengths

    def then_break(*args, **kwargs):
        found = check(*args, **kwargs)
        (train / "img-005.png").write_bytes(b"not a PNG any more")
        return found

    monkeypatch.setattr(run, "check_lengths", then_break)
    return train, lambda: (train / "img-005.png").write_bytes(good)


@pytest.mark.slow
def test_a_bad_image_gives_the_same_diagnostics_with_workers(tmp_path, image_broken_after_the_check):
    train, restore = image_broken_after_the_check
    plan = make_plan(train, steps=2, batch=4, outputs_dir=tmp_path / "runs")
    found = {}
    for workers in (0, 2):
        restore()
        plan["training"]["data_loading"]["workers"]["cpu"] = workers
        with pytest.raises(VtcError) as caught:
            _run(tmp_path, plan, f"w{workers}")
        found[workers] = [(d.code, d.message, d.span, d.help) for d in caught.value.diagnostics]
    assert found[0] == found[2] and found[0][0][0] == "VT411", found
    assert "img-005.png" in found[0][0][1]
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["run-001.failed", "run-002.failed"]


@pytest.mark.slow
def test_a_killed_worker_is_vt542(tmp_path, monkeypatch):
    from vtc.runtime import collator as C

    train = make_shapes(tmp_path / "train", n=8, seed=5)
    plan = make_plan(train, steps=2, batch=4, outputs_dir=tmp_path / "runs")
    plan["training"]["data_loading"]["workers"]["cpu"] = 2
    call = C.VisionCollator.__call__

    def killed_in_a_worker(self, rows):
        if C.in_worker():
            os.kill(os.getpid(), signal.SIGKILL)  # as the out-of-memory killer does
        return call(self, rows)

    monkeypatch.setattr(C.VisionCollator, "__call__", killed_in_a_worker)
    with pytest.raises(VtcError) as caught:
        _run(tmp_path, plan, "killed")
    [found] = caught.value.diagnostics
    assert found.code == "VT542" and found.message.startswith(
        "a data-loading worker process stopped while training: killed by signal: Killed (Linux's out-of-memory")
    assert "training.data_loading.workers to 0" in found.help
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["run-001.failed"]


def test_tiff_pages_dicom_and_the_image_cache_give_the_same_batches_in_workers(tmp_path, monkeypatch):
    """Rows opened in forked workers (multi-page TIFF pages, a DICOM file, PNGs; standardised images from the image
    cache the data check filled) give exactly the batches the training process makes itself."""
    import numpy as np
    from PIL import Image
    from transformers import AutoProcessor

    from runtime_helpers import recipe_plan, shape_image
    from vtc.runtime.backends.transformers_backend import TransformersBackend
    from vtc.runtime.tiny_models import ensure_tiny_model
    from vtc.runtime.validate import validate_for_run

    monkeypatch.setenv("VTC_IMAGE_CACHE", str(tmp_path / "image-cache"))
    data = tmp_path / "scans"
    data.mkdir()
    pages = [Image.new("RGB", (150, 120), c) for c in ((250, 0, 0), (0, 250, 0), (0, 0, 250))]
    pages[0].save(data / "stack.tif", save_all=True, append_images=pages[1:])
    rows = [{"file_name": "stack.tif", "text": "stack"}]
    for i, colour in enumerate(("red", "blue", "green")):
        shape_image(colour, "circle", seed=i).save(data / f"s{i}.png")
        rows.append({"file_name": f"s{i}.png", "text": colour})
    try:
        from test_dicom import ramp, write_dicom

        write_dicom(data / "ct.dcm", np.tile(ramp(), (16, 16)))
        rows.append({"file_name": "ct.dcm", "text": "ct"})
    except ImportError:  # pydicom is optional
        pass
    (data / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    plan = recipe_plan(tmp_path, "from ./scans", 'ask "What is it?"', "resize 112", "tiff pages all", "seed 1")
    train = validate_for_run(plan).train
    assert len(train) == len(rows) + 2  # three pages of the TIFF
    processor = AutoProcessor.from_pretrained(ensure_tiny_model("tiny-qwen2.5-vl"))
    collator = TransformersBackend().collator(plan, None, processor)

    def collate(batch):
        with worker_errors():
            return collator([train[i] for i in batch])

    def batches(workers):
        return list(DataLoader(list(range(len(train))), batch_size=2, num_workers=workers, collate_fn=collate))

    alone, forked = batches(0), batches(2)
    assert len(alone) == len(forked) == (len(train) + 1) // 2
    for a, b in zip(alone, forked):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
