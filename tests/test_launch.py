"""`vtc run --gpus N [--nodes N --node-rank R --master ADDR:PORT]`: the option checks (VT558, VT560), the processes
started through torch.distributed.elastic's agent, what the parent reports when one fails (VT557) or when the
machines do not meet (VT559), signals passed on to the processes, and the real runs on the CPU (gloo)."""

from __future__ import annotations

import json
import os
import platform
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from runtime_helpers import make_plan, make_shapes, write_plan

from vtc.cli import cli
from vtc.diagnostics import VtcError
from vtc.runtime import launch as LA

TIMEOUTS = {"hardware": {"gpus": 2, "distributed": {"strategy": "ddp", "backend": {"gpu": "nccl", "cpu": "gloo"},
                                                    "timeout_s": 20, "startup_timeout_s": 20}}}


def run_cli(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result, result.output + (getattr(result, "stderr", "") or "")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(autouse=True)
def temp_folder(tmp_path, monkeypatch):
    """The launcher's temporary folders (kept after a failure) go under the test's folder, not /tmp."""
    import tempfile

    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    monkeypatch.setenv("TMPDIR", str(temp))  # the subprocesses' too
    return temp


@pytest.fixture
def plan_path(tmp_path):
    plan = make_plan(make_shapes(tmp_path / "shapes", n=8), outputs_dir=tmp_path / "runs", steps=2, batch=4, micro=2)
    return write_plan(plan, tmp_path / "plan.json")


@pytest.fixture
def started(monkeypatch):
    """LA.start replaced: what would have been started, and no process started; no GPU here unless a test says."""
    calls = []

    def fake_start(launch, command, plan, echo=None, log_dir=None):
        calls.append((launch, command, plan))
        return 0

    monkeypatch.setattr(LA, "start", fake_start)
    monkeypatch.setattr(LA, "visible_gpus", lambda: 0)
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    return calls


@pytest.fixture
def in_process(monkeypatch):
    """The run in this process replaced by a record of its call."""
    calls = []
    import vtc.commands

    monkeypatch.setattr(vtc.commands, "run_target", lambda target, **kw: calls.append((target, kw)))
    return calls


# --- the options, checked in this process ------------------------------------------------------------------------


@pytest.mark.parametrize("args, words", [
    (["--gpus", "0"], ["`--gpus 0`: a run needs at least one process", "`--gpus 1` runs in this process"]),
    (["--gpus", "two"], ["`--gpus two` is not a number of GPUs", "`--gpus all`"]),
    (["--gpus", "2", "--node-rank", "1"], ["`--node-rank 1` without `--nodes`"]),
    (["--nodes", "2", "--node-rank", "2", "--master", "h:1"], ["the machines are numbered 0 to 1"]),
    (["--nodes", "2", "--node-rank", "-1", "--master", "h:1"], ["machines are numbered from 0"]),
    (["--nodes", "2", "--master", "h:29500"], ["`--nodes 2` without `--node-rank`", "`--node-rank 0`"]),
    (["--nodes", "2", "--node-rank", "0"], ["`--nodes 2` without `--master`", "--master 10.0.0.1:29500"]),
    (["--nodes", "2", "--node-rank", "0", "--master", "10.0.0.1"], ["`--master 10.0.0.1` is not an address and port"]),
    (["--nodes", "2", "--node-rank", "0", "--master", "h:99999"], ["is not an address and port"]),
    (["--nodes", "0"], ["`--nodes 0`: a run needs at least one machine"]),
])
def test_launch_options_that_do_not_go_together(plan_path, started, args, words):
    result, text = run_cli("run", plan_path, "--allow-changed", *args)
    assert result.exit_code == 1, text
    assert "error[VT558]" in text and "Traceback" not in text, text
    for w in words:
        assert w in text, text
    assert not started


def test_gpus_all_without_a_gpu_and_more_gpus_than_visible(plan_path, started, monkeypatch):
    result, text = run_cli("run", plan_path, "--allow-changed", "--gpus", "all")
    assert result.exit_code == 1 and "error[VT558]" in text and "no CUDA GPU that torch can see" in text, text
    assert "`--gpus 2`" in text  # what to write instead: CPU processes, for testing
    monkeypatch.setattr(LA, "visible_gpus", lambda: 2)
    result, text = run_cli("run", plan_path, "--allow-changed", "--gpus", "4")
    assert result.exit_code == 1 and "`--gpus 4`, but this machine has 2 GPUs that torch can see" in text, text
    assert "`--gpus 2` or `--gpus all`" in text and "CUDA_VISIBLE_DEVICES" in text
    # The recipe's (the plan's) `gpus` is checked the same way when --gpus is not given.
    plan = json.loads(plan_path.read_text())
    plan["hardware"]["gpus"] = 4
    write_plan(plan, plan_path)
    result, text = run_cli("run", plan_path, "--allow-changed")
    assert result.exit_code == 1 and "the recipe's `gpus 4`, but this machine has 2 GPUs" in text, text
    assert not started


def test_gpus_n_starts_n_processes_each_running_the_same_command(plan_path, started, in_process, tmp_path):
    result, text = run_cli("run", plan_path, "--allow-changed", "--gpus", "2", "--runs-dir", tmp_path / "r",
                           "--backend", "transformers")
    assert result.exit_code == 0, text
    ((launch, command, plan),) = started
    assert (launch.per_node, launch.nodes, launch.device, launch.master) == (2, 1, "cpu", None)
    assert command == [sys.executable, "-m", "vtc", "run", str(plan_path), "--backend", "transformers", "--format",
                       "text", "--runs-dir", str(tmp_path / "r"), "--allow-changed"]
    assert plan["hardware"]["distributed"]["timeout_s"] == 600 and not in_process
    assert "starting 2 processes with torchrun: 2 on this machine (2 CPU processes over gloo: no CUDA GPU here, " \
           "for testing only)" == launch.describe()


def test_the_plans_gpus_all_and_several_machines(plan_path, started, in_process, monkeypatch, tmp_path):
    monkeypatch.setattr(LA, "visible_gpus", lambda: 4)
    result, text = run_cli("run", plan_path, "--allow-changed", "--gpus", "all")
    assert result.exit_code == 0, text
    assert (started[-1][0].per_node, started[-1][0].device) == (4, "cuda")
    result, text = run_cli("run", plan_path, "--allow-changed", "--gpus", "1", "--nodes", "2", "--node-rank", "1",
                           "--master", "10.0.0.1:29500")
    assert result.exit_code == 0, text
    launch = started[-1][0]
    assert (launch.per_node, launch.nodes, launch.node_rank, launch.master) == (1, 2, 1, "10.0.0.1:29500")
    assert "on each of 2 machines, this one node rank 1" in launch.describe()
    # The plan's own `gpus 2` (a recipe's `gpus 2`), with no --gpus.
    plan = json.loads(plan_path.read_text())
    plan["hardware"]["gpus"] = 2
    write_plan(plan, plan_path)
    result, text = run_cli("run", plan_path, "--allow-changed")
    assert result.exit_code == 0 and started[-1][0].per_node == 2 and not in_process
    # --resume passes the run folder on (its plan.json says how many processes).
    run_dir = tmp_path / "runs" / "run-001.interrupted"
    run_dir.mkdir(parents=True)
    write_plan(plan, run_dir / "plan.json")
    result, text = run_cli("run", "--resume", run_dir, "--gpus", "2")
    assert result.exit_code == 0, text
    assert started[-1][1][3:6] == ["run", "--resume", str(run_dir)]


def test_one_process_runs_here_and_a_recipe_compiles_once(tmp_path, started, in_process, monkeypatch):
    make_shapes(tmp_path / "shapes", n=4)
    recipe = tmp_path / "r.vt"
    recipe.write_text("finetune vision on tiny-qwen2.5-vl\nfrom shapes\nask \"What colour?\"\ntrain for 2 steps\n")
    import vtc.compiler.pipeline as P

    compiled = []
    real = P.compile_file
    monkeypatch.setattr(P, "compile_file", lambda *a, **k: compiled.append(a) or real(*a, **k))
    result, text = run_cli("run", recipe)
    assert result.exit_code == 0, text
    assert not started and len(in_process) == 1 and len(compiled) == 1
    assert in_process[0][1]["compiled"].plan is not None  # the run uses the parent's compile
    result, text = run_cli("run", recipe, "--gpus", "1")
    assert result.exit_code == 0 and not started and len(in_process) == 2


def test_launch_options_under_torchrun_are_ignored_with_a_warning(plan_path, started, in_process, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    result, text = run_cli("run", plan_path, "--allow-changed", "--gpus", "4")
    assert result.exit_code == 0, text
    assert "warning[VT560]: --gpus ignored: torchrun (or another launcher) started this process" in text
    assert not started and len(in_process) == 1
    result, text = run_cli("run", plan_path, "--allow-changed")  # what the processes vtc starts run: no warning
    assert result.exit_code == 0 and "VT560" not in text and len(in_process) == 2


def test_python_dash_m_vtc_is_the_command_line():
    res = subprocess.run([sys.executable, "-m", "vtc", "run", "--help"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "--gpus N|all" in res.stdout and "--master ADDR:PORT" in res.stdout


# --- the launcher itself, with a stand-in for `python -m vtc run` --------------------------------------------------

STAND_IN = textwrap.dedent("""
    import os, signal, sys, time
    from pathlib import Path
    rank, out, mode = int(os.environ["RANK"]), Path(sys.argv[1]), sys.argv[2]
    (out / f"rank-{rank}.json").write_text(__import__("json").dumps({k: os.environ.get(k) for k in (
        "RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "MASTER_ADDR", "MASTER_PORT")}))
    def stop(signum, frame):
        (out / f"signal-{rank}").write_text(signal.Signals(signum).name)
        sys.exit(128 + signum)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if mode == "ok":
        sys.exit(0)
    if rank == 1 and mode == "kill":
        time.sleep(0.3)
        os.kill(os.getpid(), signal.SIGKILL)
    if rank == 1 and mode == "diagnostic":
        print("error[VT547]: a diagnostic of its own", file=sys.stderr)
        sys.exit(1)
    if rank == 1 and mode == "crash":
        from vtc.runtime.launch import record_error
        try:
            raise RuntimeError("boom in the stand-in")
        except RuntimeError as exc:
            record_error(exc)
            raise
    if mode == "interrupted":
        sys.exit(143)
    (out / f"waiting-{rank}").write_text("")
    time.sleep(60)
""")


@pytest.fixture
def stand_in(tmp_path):
    script = tmp_path / "stand_in.py"
    script.write_text(STAND_IN)
    out = tmp_path / "out"
    out.mkdir()
    return lambda mode: ([sys.executable, str(script), str(out), mode], out)


def two(per_node=2, **kw) -> LA.Launch:
    return LA.Launch(**{"per_node": per_node, "nodes": 1, "node_rank": 0, "master": None, "device": "cpu",
                        "visible": 0, **kw})


def test_processes_start_with_torchruns_environment_and_the_launcher_folder_goes(stand_in, temp_folder):
    command, out = stand_in("ok")
    lines = []
    handler = signal.getsignal(signal.SIGTERM)
    assert LA.start(two(), command, TIMEOUTS, echo=lines.append) == 0
    assert lines == ["starting 2 processes with torchrun: 2 on this machine (2 CPU processes over gloo: no CUDA GPU "
                     "here, for testing only)"]
    envs = [json.loads((out / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert [(e["RANK"], e["LOCAL_RANK"], e["WORLD_SIZE"]) for e in envs] == [("0", "0", "2"), ("1", "1", "2")]
    assert signal.getsignal(signal.SIGTERM) == handler  # the agent's handlers do not outlive the launch
    assert not list(temp_folder.iterdir())  # the launcher's folder goes after a run that succeeds


def test_a_rank_killed_by_sigkill_ends_the_run_with_vt557_naming_it(stand_in, temp_folder):
    command, out = stand_in("kill")
    with pytest.raises(VtcError) as caught:
        LA.start(two(), command, TIMEOUTS, echo=lambda line: None)
    (d,) = caught.value.diagnostics
    assert d.code == "VT557" and d.is_error
    assert d.message.startswith(f"rank 1 (local rank 1, host {platform.node()}) was ended by SIGKILL: most often "
                                "the machine ran out of memory")
    assert "vtc run --resume" in d.help and "give the run more memory" in d.help
    log_dir = Path(d.span.file)
    assert log_dir.parent == temp_folder and log_dir.is_dir() and (log_dir / "launcher.log").is_file()
    assert str(log_dir) in d.help  # kept, and said
    assert (out / "signal-0").read_text() == "SIGTERM"  # the other process was stopped, not left running


def test_a_rank_that_printed_its_diagnostic_ends_the_run_with_exit_1_and_nothing_more(stand_in, capfd):
    command, out = stand_in("diagnostic")
    assert LA.start(two(), command, TIMEOUTS, echo=lambda line: None) == 1
    err = capfd.readouterr().err
    assert "error[VT547]: a diagnostic of its own" in err
    assert "Traceback" not in err and "ChildFailedError" not in err and "torch/distributed" not in err


def test_a_rank_that_crashed_without_a_diagnostic_is_named_with_its_error(stand_in):
    command, out = stand_in("crash")
    with pytest.raises(VtcError) as caught:
        LA.start(two(), command, TIMEOUTS, echo=lambda line: None)
    (d,) = caught.value.diagnostics
    assert d.code == "VT557" and "rank 1 (local rank 1, host" in d.message
    assert "failed with exit status 1 without a diagnostic of its own: RuntimeError: boom in the stand-in" in d.message
    assert "error.json" in d.message


def test_processes_that_stopped_with_their_checkpoint_give_its_exit_status(stand_in):
    command, out = stand_in("interrupted")
    assert LA.start(two(), command, TIMEOUTS, echo=lambda line: None) == 143


def test_a_process_the_agent_ended_while_the_others_stopped_is_still_an_interruption():
    """Rank 0 exited 143 (stopped, checkpoint saved) and the agent's SIGTERM reached rank 1 before its own exit: the
    run was interrupted (143), not a failure; a rank killed by SIGKILL beside it is one (VT557)."""
    from types import SimpleNamespace

    def failure(code, local_rank):
        return SimpleNamespace(exitcode=code, local_rank=local_rank, timestamp=1.0, error_file="", pid=1)

    assert LA._failed({0: failure(143, 0), 1: failure(-15, 1)}, two(), "/tmp") == 143
    assert LA._failed({0: failure(130, 0), 1: failure(-2, 1)}, two(), "/tmp") == 130
    with pytest.raises(VtcError) as info:
        LA._failed({0: failure(143, 0), 1: failure(-9, 1)}, two(), "/tmp")
    assert info.value.diagnostics[0].code == "VT557" and "rank 1" in info.value.diagnostics[0].message


PARENT = textwrap.dedent("""
    import json, sys
    from vtc.diagnostics import VtcError, render_all
    from vtc.runtime import launch as LA
    launch = LA.Launch(**json.loads(sys.argv[1]))
    try:
        status = LA.start(launch, json.loads(sys.argv[2]), json.loads(sys.argv[3]))
    except VtcError as exc:
        print(render_all(exc.diagnostics), file=sys.stderr)
        status = 1
    sys.exit(status)
""")


def parent(tmp_path, launch: LA.Launch, command, timeouts=TIMEOUTS):
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    fields = {k: getattr(launch, k) for k in ("per_node", "nodes", "node_rank", "master", "device", "visible")}
    return subprocess.Popen([sys.executable, str(script), json.dumps(fields), json.dumps(command),
                             json.dumps(timeouts)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_ctrl_c_to_the_parent_reaches_every_process_and_exits_130(stand_in, tmp_path):
    command, out = stand_in("wait")
    proc = parent(tmp_path, two(), command)
    deadline = time.time() + 60
    while time.time() < deadline and not all((out / f"waiting-{r}").exists() for r in (0, 1)):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert [(out / f"signal-{r}").read_text() for r in (0, 1)] == ["SIGINT", "SIGINT"]
    assert "Traceback" not in stderr and "SignalException" not in stderr, stderr


def test_two_machines_meet_at_the_master_and_number_their_ranks_by_node_rank(stand_in, tmp_path):
    command, out = stand_in("ok")
    master = f"127.0.0.1:{free_port()}"
    procs = [parent(tmp_path, two(per_node=1, nodes=2, node_rank=r, master=master), command) for r in (1, 0)]
    results = [p.communicate(timeout=120) + (p.returncode,) for p in procs]
    assert [r[2] for r in results] == [0, 0], results
    envs = {r: json.loads((out / f"rank-{r}.json").read_text()) for r in (0, 1)}
    assert [(e["GROUP_RANK"], e["WORLD_SIZE"], e["LOCAL_RANK"]) for e in envs.values()] == [("0", "2", "0"),
                                                                                          ("1", "2", "0")]
    assert "this one node rank 1" in results[0][1] and "meeting at " + master in results[0][1]


def test_machines_that_do_not_meet_end_with_vt559(stand_in, tmp_path):
    command, out = stand_in("ok")
    timeouts = {"hardware": {**TIMEOUTS["hardware"], "distributed": {**TIMEOUTS["hardware"]["distributed"],
                                                                     "startup_timeout_s": 2}}}
    # Node rank 0 serves the meeting point: a port already taken here cannot be served.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(VtcError) as caught:
            LA.start(two(per_node=1, nodes=2, node_rank=0, master=f"127.0.0.1:{port}"), command, timeouts,
                     echo=lambda line: None)
    (d,) = caught.value.diagnostics
    assert d.code == "VT559" and f"did not meet at 127.0.0.1:{port} (this one is node rank 0)" in d.message
    assert "the port must be free here" in d.help
    assert not list(out.iterdir())  # nothing started


# --- real runs on the CPU (gloo): the runtime under DDP (helper 1's part) through `vtc run --gpus` ----------------


def vtc_run(*args, cwd, timeout=300):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        env.pop(name, None)
    return subprocess.Popen([sys.executable, "-m", "vtc", "run", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=cwd)


@pytest.mark.slow
def test_vtc_run_gpus_2_on_the_cpu_trains_once_into_one_run_folder(plan_path, tmp_path):
    proc = vtc_run(plan_path, "--allow-changed", "--gpus", "2", cwd=tmp_path)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:] + err[-3000:]
    assert "starting 2 processes with torchrun" in err and "Traceback" not in out + err
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir()]
    assert run_dir.name == "run-001"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["state"] == "finished" and manifest["distributed"]["world_size"] == 2
    assert manifest["batch"]["processes"] == 2 and manifest["batch"]["micro_batch"] == 2
    assert (run_dir / "run.log").read_text().count("finished: ") == 1  # written once, by rank 0


@pytest.mark.slow
def test_two_machines_on_localhost_make_one_run_folder(plan_path, tmp_path):
    master = f"127.0.0.1:{free_port()}"
    procs = [vtc_run(plan_path, "--allow-changed", "--gpus", "1", "--nodes", "2", "--node-rank", r, "--master",
                     master, cwd=tmp_path) for r in (0, 1)]
    results = [p.communicate(timeout=300) + (p.returncode,) for p in procs]
    assert [r[2] for r in results] == [0, 0], [(r[0][-2000:], r[1][-2000:]) for r in results]
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir()]
    assert run_dir.name == "run-001"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["state"] == "finished"
    assert [(p["rank"], p["node"]) for p in manifest["distributed"]["processes"]] == [(0, 0), (1, 1)]
    assert "this one node rank 0" in results[0][1] and "this one node rank 1" in results[1][1]
