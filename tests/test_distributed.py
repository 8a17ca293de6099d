"""Several training processes under torchrun (vtc.runtime.distributed), proven on the CPU with gloo.

The slow tests start `python -m torch.distributed.run` (torchrun) on this machine: two processes, or two "machines"
(two torchrun agents on localhost with node ranks 0 and 1), on the tiny Qwen2.5-VL model, a few steps of 8 rows.
The fast ones drive the pieces that need no processes in-process (the split over a world size, the quiet reporter
of a process other than rank 0, naming the process that failed, each new diagnostic code).

Tolerance of the loss comparison (2 processes x micro-batch 2 against 1 process x micro-batch 4): the same samples
make every update (accelerate deals the consecutive micro-batches of one shuffled order to the processes) and the
logged loss is the mean over the processes, so only the order of floating-point sums differs: measured here, the
losses agree to 1e-7 relative in fp32 on the CPU; the test allows 1e-5 relative.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runtime_helpers import make_plan, make_shapes, write_plan
from vtc.diagnostics import VtcError
from vtc.runtime import batching as B
from vtc.runtime import distributed as D

STEPS = 8


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(cwd: Path, *args: str, nproc: int = 2, launch: tuple = (), env: dict | None = None) -> subprocess.Popen:
    """`torchrun --nproc-per-node N -m vtc run ARGS` in ``cwd`` (stdout and stderr together)."""
    launch = launch or ("--master-addr", "127.0.0.1", "--master-port", str(free_port()))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), *launch, "-m", "vtc", "run",
           *args]
    return subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **(env or {})})


def finish(proc: subprocess.Popen, timeout: float = 240) -> str:
    out, _ = proc.communicate(timeout=timeout)
    return out


def losses(folder: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (folder / "metrics.jsonl").read_text().splitlines()]


def manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def worker_exit_codes(out: str) -> list[int]:
    """The workers' exit codes in torchrun's failure summary (`exitcode  : 143 (pid: ...)`)."""
    return [int(line.split(":", 1)[1].split()[0]) for line in out.splitlines() if line.strip().startswith("exitcode")]


def when_logged(proc: subprocess.Popen, folder: Path, steps: int, timeout: float = 180) -> dict:
    """Wait until the run folder's metrics.jsonl has ``steps`` records; its manifest then (the processes' pids)."""
    deadline = time.time() + timeout
    metrics = folder / "metrics.jsonl"
    while time.time() < deadline and proc.poll() is None:
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= steps:
            return manifest(folder)
        time.sleep(0.05)
    out = finish(proc, 30) if proc.poll() is not None else ""
    raise AssertionError(f"training did not reach step {steps}:\n{out[-3000:]}")


def setup_plan(root: Path, *, micro, timeout_s: int = 600, steps: int = STEPS) -> Path:
    """8 training rows and 6 evaluation rows (a 43% hold-out of 14), batch 4: two updates an epoch, no short one."""
    data = make_shapes(root / "shapes", n=14, seed=3)
    plan = make_plan(data, steps=steps, batch=4, holdout=0.43, outputs_dir=root / "runs", micro=micro)
    plan["checkpoint"] = {"every_steps": 2}
    plan["hardware"]["distributed"]["timeout_s"] = timeout_s
    return write_plan(plan, root / "plan.json")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run of 2 processes x micro-batch 2: the curve every other run here is compared with."""
    root = tmp_path_factory.mktemp("ddp-reference")
    setup_plan(root, micro=2)
    out = finish(torchrun(root, "plan.json", "--allow-changed"))
    runs = sorted((root / "runs").iterdir())
    assert [p.name for p in runs] == ["run-001"], out[-3000:]
    return root, runs[0], out


# ---- two processes ---------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_two_processes_train_like_one_with_twice_the_micro_batch(reference, tmp_path, monkeypatch):
    root, run, out = reference
    m = manifest(run)
    assert m["state"] == "finished" and m["distributed"]["world_size"] == 2
    assert [(p["rank"], p["local_rank"]) for p in m["distributed"]["processes"]] == [(0, 0), (1, 1)]
    assert (m["batch"]["batch"], m["batch"]["micro_batch"], m["batch"]["accumulate"], m["batch"]["processes"]) == \
        (4, 2, 1, 2)
    # Rank 0 alone prints the run's lines: each once.
    assert out.count("run folder: ") == 1 and out.count("finished: ") == 1 and out.count("scan data ") == 1
    assert "processes: 2 (2 on 1 machine, gloo" in out and "Traceback" not in out

    # The same plan with micro-batch 4 in one process (in-process, as `vtc run` runs without torchrun).
    from vtc.commands import run_target

    one = tmp_path / "one"
    setup_plan(one, micro=4)
    single = run_target(str(one / "plan.json"), allow_changed=True)
    two, ref = losses(run), losses(single)
    assert len(two) == len(ref) == STEPS
    for a, b in zip(two, ref):
        assert a == pytest.approx(b, rel=1e-5), (two, ref)
    # The evaluation, sharded over the two processes (3 rows each) and gathered: the same answers and scores.
    assert json.loads((run / "eval.json").read_text())["before"] == json.loads((single / "eval.json").read_text())["before"]
    pairs = lambda folder: [(r["row"], r["before"], r["after"]) for r in
                            map(json.loads, (folder / "predictions.jsonl").read_text().splitlines())]
    assert pairs(run) == pairs(single) and len(pairs(run)) == 6


@pytest.mark.slow
def test_sigterm_to_one_rank_stops_both_then_resume_with_two_or_one(reference, tmp_path):
    _root, ref_run, _out = reference
    setup_plan(tmp_path, micro=2)
    proc = torchrun(tmp_path, "plan.json", "--allow-changed")
    pids = when_logged(proc, tmp_path / "runs" / "run-001.partial", 3)["distributed"]["processes"]
    os.kill(pids[1]["pid"], signal.SIGTERM)  # rank 1 only
    out = finish(proc)
    stopped = tmp_path / "runs" / "run-001.interrupted"
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["run-001.interrupted"], out[-3000:]
    assert worker_exit_codes(out) == [143, 143], out[-3000:]
    assert f"rank 1 ({pids[1]['host']}): SIGTERM: finishing this training step" in out
    m = manifest(stopped)
    step = m["interrupted"]["checkpoint_step"]
    assert m["state"] == "interrupted" and m["interrupted"]["signal"] == "SIGTERM" and 3 <= step < STEPS
    assert [json.loads(line)["step"] for line in (stopped / "metrics.jsonl").read_text().splitlines()] == \
        list(range(1, step + 1))  # both stopped after the same step: one checkpoint, complete, with both parts
    ckpt = stopped / "checkpoints" / f"checkpoint-{step}"
    for name in ("vtc-complete.json", "optimizer.pt", "rng_state_0.pth", "rng_state_1.pth", "trainer_state.json"):
        assert (ckpt / name).is_file(), name
    assert "resume with: vtc run --resume runs/run-001.interrupted" in out

    copy = tmp_path / "copy" / "run-001.interrupted"
    shutil.copytree(stopped, copy)
    # The same number of processes: the exact continuation.
    out = finish(torchrun(tmp_path, "--resume", str(stopped)))
    final = tmp_path / "runs" / "run-001"
    assert manifest(final)["state"] == "finished", out[-3000:]
    assert losses(final) == pytest.approx(losses(ref_run), rel=1e-5)
    assert manifest(final)["resumes"][0]["processes"] == 2
    # One process: allowed; the same batch per update, split again (2 rows at a time, 2 passes an update).
    out = finish(torchrun(tmp_path / "copy", "--resume", str(copy), nproc=1))
    final = tmp_path / "copy" / "run-001"
    m = manifest(final)
    assert m["state"] == "finished", out[-3000:]
    assert "note: the run had 2 processes, this resume has 1" in out
    assert (m["batch"]["micro_batch"], m["batch"]["accumulate"], m["batch"]["processes"]) == (2, 2, 1)
    assert m["resumes"][0]["processes"] == 1
    # Every update learns from the same samples (docs/distributed.md, "Resume"): the curve continues as well.
    assert losses(final) == pytest.approx(losses(ref_run), rel=1e-4)


@pytest.mark.slow
def test_a_killed_rank_ends_the_run_with_a_diagnostic_naming_it(tmp_path):
    setup_plan(tmp_path, micro=2, steps=40)
    proc = torchrun(tmp_path, "plan.json", "--allow-changed")
    pids = when_logged(proc, tmp_path / "runs" / "run-001.partial", 3)["distributed"]["processes"]
    os.kill(pids[1]["pid"], signal.SIGKILL)
    out = finish(proc, timeout=120)
    assert "error[VT547]: a process of the run stopped while training" in out, out[-3000:]
    assert f"rank 1 (host {pids[1]['host']}, local rank 1, pid {pids[1]['pid']}): killed" in out
    failed = tmp_path / "runs" / "run-001.failed"
    assert manifest(failed)["state"] == "failed" and "rank 1: killed" in manifest(failed)["error"]
    assert "vtc run --resume runs/run-001.failed" in out  # its checkpoint (step 2 at least) continues it
    assert "Traceback" not in out.split("error[VT547]")[0]


@pytest.mark.slow
def test_a_frozen_rank_ends_the_run_after_the_plans_timeout(tmp_path):
    """SIGSTOP stands for a hung GPU or a lost machine: rank 0's next collective reaches hardware.distributed
    .timeout_s (8 s here), and the run ends with VT547, not a hang."""
    setup_plan(tmp_path, micro=2, steps=40, timeout_s=8)
    proc = torchrun(tmp_path, "plan.json", "--allow-changed")
    pids = when_logged(proc, tmp_path / "runs" / "run-001.partial", 3)["distributed"]["processes"]
    frozen = pids[1]["pid"]
    os.kill(frozen, signal.SIGSTOP)
    try:
        failed = tmp_path / "runs" / "run-001.failed"
        deadline = time.time() + 90  # a guard against a hang, far above the 8 s
        while time.time() < deadline and not (failed / "manifest.json").is_file():
            time.sleep(0.2)
        assert manifest(failed)["state"] == "failed"
    finally:
        os.kill(frozen, signal.SIGKILL)  # torchrun would wait 30 s for it to take its SIGTERM
    out = finish(proc, timeout=120)
    assert "error[VT547]" in out and f"rank 1 (host {pids[1]['host']}, local rank 1, pid {frozen}): stopped" in out
    assert "does not answer within 8 s (hardware.distributed.timeout_s)" in out, out[-3000:]


@pytest.mark.slow
def test_two_machines_make_one_run_folder(tmp_path):
    """Two torchrun agents, node ranks 0 and 1, one process each, meeting at 127.0.0.1:PORT (static rendezvous)."""
    setup_plan(tmp_path, micro=2, steps=2)
    port = str(free_port())
    nodes = [torchrun(tmp_path, "plan.json", "--allow-changed", nproc=1,
                      launch=("--nnodes", "2", "--node-rank", str(n), "--master-addr", "127.0.0.1",
                              "--master-port", port)) for n in (0, 1)]
    outs = [finish(p) for p in nodes]
    assert [p.returncode for p in nodes] == [0, 0], outs[0][-2000:] + outs[1][-2000:]
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["run-001"]
    m = manifest(tmp_path / "runs" / "run-001")
    assert [(p["rank"], p["node"], p["local_rank"]) for p in m["distributed"]["processes"]] == [(0, 0, 0), (1, 1, 0)]
    assert "finished: runs/run-001" in outs[0] and "finished:" not in outs[1]


# ---- the pieces, in-process ------------------------------------------------------------------------------------

@pytest.fixture
def plan(tmp_path):
    return make_plan(make_shapes(tmp_path / "shapes", n=4), batch=8, micro=None)


def test_the_batch_is_split_over_the_world_size(plan):
    split = B.pick(plan, "transformers", B.Free(80.0, "a test card", True), processes=2)
    assert (split.batch, split.micro_batch * split.accumulate * split.processes) == (8, 8) and split.processes == 2
    assert split.micro_batch <= 4  # a divisor of the batch per process
    assert "on each of 2 processes" in split.line()
    again = B.resplit(B.Split(8, 4, 1, 2, "fits", ""), 1)  # a resume with one process instead of two
    assert (again.micro_batch, again.accumulate, again.processes) == (4, 2, 1)
    again = B.resplit(B.Split(8, 4, 1, 2, "fits", ""), 4)
    assert (again.micro_batch, again.accumulate, again.processes) == (2, 1, 4)
    B.check_world(plan, 4)  # divides: nothing to say
    with pytest.raises(VtcError) as info:
        B.check_world(plan, 3)
    d = info.value.diagnostics[0]
    assert d.code == "VT548" and "8 samples per update" in d.message and "3 processes" in d.message
    assert "`batch 6` or `batch 9`" in d.help and "run 2, 4 or 8 processes" in d.help and info.value.everyone
    pinned = dict(plan, training={**plan["training"], "micro_batch": 8})  # the whole batch at once, pinned
    B.check_world(pinned, 1)
    with pytest.raises(VtcError) as info:  # over 2 processes each takes 4: 8 at a time cannot be
        B.check_world(pinned, 2)
    d = info.value.diagnostics[0]
    assert d.code == "VT548" and "`micro batch 8`" in d.message and "share of each of the 2 processes" in d.message
    assert "`micro batch 1`, `micro batch 2`, `micro batch 4`" in d.help


def test_a_process_other_than_rank_0_prints_nothing(monkeypatch, capsys, tmp_path):
    from vtc.runtime.progress import Reporter

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    rep = Reporter()
    rep.log_to(tmp_path / "run.log")
    with rep.stage("scan data") as st:
        st.detail = "no problems"
    rep.line("run folder: x")
    rep.own("cannot reach the Hub")
    out, err = capsys.readouterr()
    assert out == "" and not (tmp_path / "run.log").exists() and "scan data" in rep.timings
    assert err.strip() == f"rank 1 ({D.world().host}): cannot reach the Hub"
    monkeypatch.setenv("RANK", "0")
    rep = Reporter()
    rep.line("run folder: x")
    assert capsys.readouterr().out == "run folder: x\n"


class FakeStore:
    def __init__(self, values=None):
        self.values = {k: v.encode() for k, v in (values or {}).items()}  # the store keeps bytes

    def set(self, key, value):
        self.values[key] = value.encode() if isinstance(value, str) else value

    def check(self, keys):
        return all(k in self.values for k in keys)

    def get(self, key):
        return self.values[key]

    def wait(self, keys, timeout):
        if not self.check(keys):
            raise RuntimeError(f"Socket Timeout: wait timeout after {int(timeout.total_seconds() * 1000)}ms")


def several(rank=0, size=4, store=None, processes=None) -> D.Several:
    """A Several without a process group: what the roll call and the startup read."""
    g = object.__new__(D.Several)
    g.world = D.World(rank, rank, size, size, 0, D.platform.node())
    g.size, g.rank, g.leader = size, rank, rank == 0
    g.timeout_s, g.startup_timeout_s, g.backend = 15, 2, "gloo"
    g.store = store or FakeStore()
    g.processes = processes or [D.process_record(D.World(r, r, size, size, 0, D.platform.node()), "cpu")
                                for r in range(size)]
    g._failure = None
    return g


def gone_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_the_failed_processes_are_named_without_guessing():
    """After a collective failed on rank 0: rank 1's process is gone (killed), rank 2 recorded its own error, rank 3
    answered the roll call (alive), rank 4 is on another machine and never answered."""
    store = FakeStore({"error/2": "OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", "alive/3": "1"})
    g = several(size=5, store=store)
    g.processes[1]["pid"] = gone_pid()
    g.processes[4]["host"] = "gpu-99"
    g.step = 40
    exc = RuntimeError("[../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed by peer [127.0.0.1]")
    assert D.is_collective_error(exc) and not D.is_collective_error(RuntimeError("CUDA out of memory"))
    failure = D.roll_call(g, exc, True, wait_s=0.3)
    assert [r for r, _what in failure.culprits] == [1, 2, 4]
    what = dict(failure.culprits)
    assert what[1].startswith("killed") and what[2].startswith("error: OutOfMemoryError")
    assert what[4] == "no answer (its machine or process is gone)"
    assert failure.leader_alive and not failure.own and not failure.timed_out
    from vtc.runtime.failures import rank_failed_error

    d = rank_failed_error(g, failure, {}, "training", "; then continue with `vtc run --resume runs/x/run-001.failed`")
    assert d.code == "VT547" and "after step 40, which every process finished" in d.message
    assert f"rank 1 (host {D.platform.node()}, local rank 1" in d.message and "gpu-99" in d.message
    assert "smaller `micro batch`" in d.help and "out-of-memory killer" in d.help and d.help.endswith("failed`")
    # A timeout names those that did not answer within it.
    timed = D.roll_call(several(size=2, store=FakeStore(), processes=[g.processes[0], g.processes[4]]),
                        RuntimeError("[gloo] Timed out waiting 15000ms for recv operation to complete"), True, 0.2)
    assert timed.timed_out and timed.culprits == [(1, "no answer within 15 s")]
    # A process whose own error it was records it for the others.
    mine = several(rank=1, size=2, store=FakeStore({"alive/0": "1"}))
    assert mine.failure(ValueError("a bug")).own and mine.store.values["error/1"] == b"ValueError: a bug"


def test_rank_0_first_then_the_others(monkeypatch):
    leader = several(rank=0, size=2)
    assert leader.leader_first("folder", lambda: ("runs/run-001.partial", 7), share=lambda r: {"dir": r[0]}) == \
        ("runs/run-001.partial", 7)
    other = several(rank=1, size=2, store=leader.store)
    assert other.leader_first("folder", lambda: pytest.fail("only rank 0 runs it")) == {"dir": "runs/run-001.partial"}

    def bad_data():
        raise VtcError([])

    with pytest.raises(VtcError):
        leader.leader_first("data", bad_data)
    with pytest.raises(D.LeaderStopped) as info:  # rank 0 printed why; the others stop quietly, with its status
        other.leader_first("data", lambda: None)
    assert info.value.code == 1 and "rank 0 stopped before training" in info.value.line
    with pytest.raises(VtcError) as info:  # rank 0 never answers: VT549 after startup_timeout_s
        several(rank=1, size=2).leader_first("data", lambda: None)
    d = info.value.diagnostics[0]
    assert d.code == "VT549" and "waited 2 s for rank 0" in d.message and "to check the data" in d.message


def test_every_process_must_see_the_same_rows(monkeypatch):
    class Listed(list):
        def key(self, i):
            return (f"data/metadata.jsonl:{self[i]}", ())

    g = several(rank=0, size=2)
    mine = D.rows_digest(Listed([1, 2, 3]), Listed([4]))
    other = D.rows_digest(Listed([1, 2]), Listed([4]))
    assert mine["train"] == 3 and mine != other and mine == D.rows_digest(Listed([1, 2, 3]), Listed([4]))
    monkeypatch.setattr(D.Several, "all_gather", lambda self, obj: [mine, other])
    with pytest.raises(VtcError) as info:
        D.same_rows(g, Listed([1, 2, 3]), Listed([4]))
    d = info.value.diagnostics[0]
    assert d.code == "VT546" and "rank 1 (host" in d.message and "read 2 training and 1 evaluation rows" in d.message
    monkeypatch.setattr(D.Several, "all_gather", lambda self, obj: [mine, mine])
    D.same_rows(g, Listed([1, 2, 3]), Listed([4]))  # the same rows: nothing


def test_the_evaluation_rows_are_shared_in_contiguous_slices():
    slices = [several(rank=r, size=3).shard(8) for r in range(3)]
    assert slices == [(0, 3), (3, 6), (6, 8)]
    assert D.Single().shard(8) == (0, 8) and D.Single().gather_in_order(["a"]) == ["a"]


def test_the_resume_command_of_several_processes_starts_as_many(monkeypatch, tmp_path):
    """A run of 2 machines x 2 processes prints a resume command that starts the same world (vtc's launch options)."""
    from vtc.runtime.checkpoints import resume_command

    assert resume_command(tmp_path, "runs/x/run-001.interrupted") == "vtc run --resume runs/x/run-001.interrupted"
    for name, value in {"WORLD_SIZE": "4", "RANK": "0", "LOCAL_WORLD_SIZE": "2", "GROUP_RANK": "0",
                        "MASTER_ADDR": "gpu-01", "MASTER_PORT": "29500"}.items():
        monkeypatch.setenv(name, value)
    assert resume_command(tmp_path, "run-001.interrupted", "--allow-changed") == (
        "vtc run --resume run-001.interrupted --gpus 2 --nodes 2 --node-rank 0 --master gpu-01:29500 "
        "--allow-changed")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert resume_command(tmp_path, "r") == "vtc run --resume r --gpus 2"
