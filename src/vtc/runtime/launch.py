"""`vtc run --gpus N`: one process per GPU (or per machine's share), started through PyTorch's own launcher.

vtc has no launcher of its own: `vtc run recipe.vt --gpus 2` does what `torchrun --nproc-per-node 2 -m vtc run
recipe.vt` does, through torch.distributed.elastic's agent (torch.distributed.launcher.api.launch_agent, the
engine of torchrun) run in this process, so that a process that fails is reported as a diagnostic naming its rank
and host rather than as torchrun's Python traceback and summary. Each process runs `python -m vtc run` with the
same arguments, less the launch options (torchrun's environment tells it its rank: vtc.runtime.distributed).

    decide(gpus, plan, nodes, node_rank, master) -> Launch | None     None: run in this process, as always
    start(launch, command, plan, echo) -> exit status                  0, 1 (a rank printed its diagnostic),
                                                                       130 / 143 (interrupted); VT557 / VT559 raised

What the parent does and does not do:

- It reads the plan only for ``hardware`` (the processes per machine, and the timeouts below); a recipe is compiled
  once here and its warnings are printed by the processes, not twice.
- One process on one machine (the default) starts nothing: the run happens in this process exactly as before.
- Ctrl-C, SIGTERM, SIGHUP or SIGQUIT to the parent reach every process through the agent (each runs in a session of
  its own, so a terminal's Ctrl-C reaches only the parent), which waits up to ``hardware.distributed.timeout_s``
  for them to save their checkpoint before it kills them; the parent then exits 130 (SIGINT) or 128 + the signal.
- A process that dies by a signal, or fails without a diagnostic of its own, ends the run with VT557 naming its
  rank, local rank and host; the agent's logs and the processes' error files stay in a temporary folder that the
  diagnostic names (removed after a run that succeeds or is interrupted).
- Several machines (``--nodes``): a static rendezvous at ``--master ADDR:PORT`` (the machine of node rank 0 serves
  it), torchrun's `--master-addr/--master-port/--node-rank`; the machines wait for each other up to
  ``hardware.distributed.startup_timeout_s`` (VT559 after that, or when the address cannot be reached or served).

This module imports torch only inside the functions that start processes or count GPUs.
"""

from __future__ import annotations

import os
import platform
import signal
import sys

from vtc.diagnostics import Diagnostic, Span, VtcError, error, warning
from vtc.records import record

# The signals the agent forwards to every process (torchrun's own list).
FORWARDED = ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT")
# The exit statuses of a process that stopped after a Ctrl-C (130) or SIGTERM (143) with its checkpoint saved.
STOPPED = {130, 143}
# What each signal that ends a process most likely means, for VT557.
CAUSES = {
    "SIGKILL": "most often the machine ran out of memory (the kernel's out-of-memory killer: `dmesg` or "
               "`journalctl -k` says so), or the job scheduler or an administrator killed it (a time or memory "
               "limit)",
    "SIGSEGV": "it crashed: most often too little shared memory (/dev/shm; a container's --shm-size) for the "
               "data-loading workers, or a GPU driver problem",
    "SIGBUS": "it crashed reading memory: most often too little shared memory (/dev/shm; a container's "
              "--shm-size) for the data-loading workers, or a file it had mapped was changed or removed",
    "SIGABRT": "a library stopped it (often CUDA or NCCL reporting an error: see that rank's lines above)",
    "SIGTERM": "something stopped it (the job scheduler, an administrator) and it ended before it could save a "
               "checkpoint",
    "SIGINT": "it was interrupted and ended before it could save a checkpoint",
}


@record
class Launch:
    """What `vtc run` starts: ``per_node`` processes on each of ``nodes`` machines (this one is ``node_rank``),
    meeting at ``master`` ("ADDR:PORT"; None: on this machine, a free port), on ``device`` "cuda" or "cpu"
    (CPU processes over gloo: for testing), with ``visible`` CUDA GPUs here."""

    per_node: int
    nodes: int
    node_rank: int
    master: str | None
    device: str
    visible: int

    @property
    def processes(self) -> int:
        return self.per_node * self.nodes

    def describe(self) -> str:
        """The one line the parent prints."""
        what = (f"one per GPU ({self.per_node} of the {self.visible} visible)" if self.device == "cuda" else
                f"{self.per_node} CPU process{'es' * (self.per_node != 1)} over gloo: no CUDA GPU here, for "
                "testing only")
        where = (f"{self.per_node} on this machine ({what})" if self.nodes == 1 else
                 f"{self.per_node} on each of {self.nodes} machines, this one node rank {self.node_rank} ({what}), "
                 f"meeting at {self.master}")
        return f"starting {self.processes} processes with torchrun: {where}"


def _launch_error(message: str, help: str, span: Span | None = None) -> Diagnostic:
    return error("VT558", message, span, help=help)


def parse_master(text: str) -> tuple[str, int] | None:
    """("ADDR", PORT) of ``ADDR:PORT`` (an IPv6 address in brackets: ``[::1]:29500``), or None when it is not."""
    host, sep, port = text.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host, int(port)


def check_options(gpus: str | None, nodes: int | None, node_rank: int | None,
                  master: str | None) -> tuple[int | str | None, list[Diagnostic]]:
    """The launch options' own problems (VT558), before anything is counted: (--gpus as a number, "all" or None,
    the diagnostics)."""
    out: list[Diagnostic] = []
    count: int | str | None = None
    if gpus is not None:
        text = gpus.strip().lower()
        if text == "all":
            count = "all"
        elif text.isdigit() and int(text) >= 1:
            count = int(text)
        elif text.isdigit():
            out.append(_launch_error("`--gpus 0`: a run needs at least one process",
                                     "`--gpus 1` runs in this process; `--gpus 2` starts two processes, one per GPU; "
                                     "`--gpus all` one for every GPU this machine has"))
        else:
            out.append(_launch_error(f"`--gpus {gpus}` is not a number of GPUs",
                                     "write a number (`--gpus 2`) or `--gpus all` (one process for every GPU here)"))
    if nodes is not None and nodes < 1:
        out.append(_launch_error(f"`--nodes {nodes}`: a run needs at least one machine",
                                 "leave `--nodes` out on one machine; on several, `--nodes 2 --node-rank 0 --master "
                                 "ADDR:PORT` on the first and `--node-rank 1` on the second"))
    several = nodes is not None and nodes > 1
    if node_rank is not None and nodes is None:
        out.append(_launch_error(f"`--node-rank {node_rank}` without `--nodes`: how many machines take part?",
                                 "give both on every machine: `--nodes 2 --node-rank 0` on the first, `--nodes 2 "
                                 "--node-rank 1` on the second (and `--master ADDR:PORT`, the first one's address)"))
    elif node_rank is not None and node_rank < 0:
        out.append(_launch_error(f"`--node-rank {node_rank}`: machines are numbered from 0",
                                 "give 0 on the machine that serves `--master`, then 1, 2, ... on the others"))
    elif node_rank is not None and nodes is not None and nodes >= 1 and node_rank >= nodes:
        out.append(_launch_error(f"`--node-rank {node_rank}` with `--nodes {nodes}`: the machines are numbered 0 to "
                                 f"{nodes - 1}",
                                 f"give each machine its own number below {nodes}; 0 on the one whose address "
                                 "`--master` names"))
    elif several and node_rank is None:
        out.append(_launch_error(f"`--nodes {nodes}` without `--node-rank`: which machine is this one?",
                                 f"give every machine its number: `--node-rank 0` on the one whose address `--master` "
                                 f"names, then 1 to {nodes - 1} on the others"))
    if master is not None and parse_master(master) is None:
        out.append(_launch_error(f"`--master {master}` is not an address and port",
                                 "write the first machine's address and a free port, like `--master 10.0.0.1:29500` "
                                 "(`--master [fe80::1]:29500` for IPv6)"))
    elif master is None and several:
        out.append(_launch_error(f"`--nodes {nodes}` without `--master`: where do the machines meet?",
                                 "give every machine the address of the machine with `--node-rank 0` and a free port "
                                 "on it: `--master 10.0.0.1:29500`"))
    return count, out


def decide(gpus: str | None, plan: dict | None, nodes: int | None = None, node_rank: int | None = None,
           master: str | None = None, *, visible: int | None = None, launched: bool | None = None,
           span: Span | None = None) -> tuple[Launch | None, list[Diagnostic]]:
    """Whether `vtc run` starts processes: (Launch, warnings), or (None, warnings) to run in this process (one
    process on one machine; already started by torchrun; or the plan cannot be read, which the run reports).
    ``gpus``: the --gpus text; else the plan's hardware.gpus (``span``: where the recipe set it). ``visible``: the
    CUDA GPUs here (counted when None and needed); ``launched``: already under torchrun (asked when None).
    Raises VtcError (VT558) for options that do not go together or ask for GPUs this machine does not have."""
    from vtc.runtime.distributed import under_launcher

    count, problems = check_options(gpus, nodes, node_rank, master)
    if problems:
        raise VtcError(problems)
    launched = under_launcher() if launched is None else launched
    if launched:
        given = [f"--{name}" for name, value in (("gpus", gpus), ("nodes", nodes), ("node-rank", node_rank),
                                                ("master", master)) if value is not None]
        if not given:
            return None, []
        return None, [warning("VT560", f"{', '.join(given)} ignored: torchrun (or another launcher) started this "
                                       f"process, and its own options decide how many processes run",
                              help="give the counts to torchrun (`--nproc-per-node`, `--nnodes`, `--node-rank`), or "
                                   "run `vtc run --gpus N` without torchrun")]
    if count is None:
        if plan is None:
            return None, []  # the run in this process says what is wrong with the recipe or plan
        count = plan["hardware"]["gpus"]
        from_plan = True
    else:
        from_plan = False
    nodes = nodes or 1
    if count == 1 and nodes == 1:
        return None, []  # the default: this process, nothing started, no GPU counted here
    if plan is None:
        return None, []
    visible = visible_gpus() if visible is None else visible
    said = "the recipe's `gpus all`" if from_plan else "`--gpus all`"
    if count == "all":
        if visible == 0:
            raise VtcError(_launch_error(
                f"{said}: this machine has no CUDA GPU that torch can see", span=span if from_plan else None,
                help="on a machine with GPUs, check `nvidia-smi` and CUDA_VISIBLE_DEVICES; to try several processes "
                     "on CPUs (for testing), give a number: `--gpus 2`"))
        count = visible
    elif visible and count > visible:
        said = f"the recipe's `gpus {count}`" if from_plan else f"`--gpus {count}`"
        raise VtcError(_launch_error(
            f"{said}, but this machine has {visible} GPU{'s' * (visible != 1)} that torch can see",
            span=span if from_plan else None,
            help=f"`--gpus {visible}` or `--gpus all` here (one process per GPU); CUDA_VISIBLE_DEVICES, when set, "
                 "limits which GPUs are visible"))
    if count * nodes == 1:
        return None, []
    return Launch(per_node=int(count), nodes=nodes, node_rank=node_rank or 0, master=master,
                  device="cuda" if visible else "cpu", visible=visible), []


def visible_gpus() -> int:
    """The CUDA GPUs torch can see here (CUDA_VISIBLE_DEVICES applies); 0 without CUDA or torch."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return 0
    import torch

    try:
        return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0
    except Exception:  # a broken driver: as if there were no GPU (the run in each process says more)
        return 0


def run_command(target: str | None, resume_dir: str | None, *, backend: str, runs_dir: str | None,
                allow_changed: bool, trust_remote_code: bool, fmt: str) -> list[str]:
    """The command every process runs: `python -m vtc run` with this run's arguments, less the launch options."""
    args = [sys.executable, "-m", "vtc", "run"]
    args += ["--resume", resume_dir] if resume_dir is not None else [target]
    args += ["--backend", backend, "--format", fmt]
    if runs_dir:
        args += ["--runs-dir", runs_dir]
    if allow_changed:
        args.append("--allow-changed")
    if trust_remote_code:
        args.append("--trust-remote-code")
    return args


def start(launch: Launch, command: list[str], plan: dict, echo=None, log_dir: str | None = None) -> int:
    """Start ``command`` (an executable and its arguments) as ``launch`` says, wait for every process, and return
    the run's exit status: 0; 1 when a process ended with a diagnostic of its own (exit status 1, no error file);
    130 / 143 when the run was interrupted (a process's own, or this one's: 128 + the signal it got). Raises
    VtcError: VT557 for a process that died by a signal or failed without a diagnostic, VT559 when the processes
    could not be started or the machines did not meet. ``log_dir``: where the agent keeps its log and the
    processes' error files (a new temporary folder when None; removed after a run that succeeds or was
    interrupted)."""
    import logging
    import shutil
    import tempfile

    echo = echo or (lambda line: print(line, file=sys.stderr, flush=True))
    timeouts = plan["hardware"]["distributed"]
    made_dir = log_dir is None
    log_dir = log_dir or tempfile.mkdtemp(prefix="vtc-launch-")
    echo(launch.describe())
    import importlib

    importlib.import_module("torch.distributed.launcher.api")  # torch sets its loggers' handlers when imported: first

    # The agent's own messages (its launch configuration, "sending process 123 closing signal SIGTERM", its
    # failure summary) go to a file, not to the user's terminal: the processes' lines and vtc's diagnostics are the
    # run's output. Python's lastResort handler would print them otherwise.
    handler = logging.FileHandler(os.path.join(log_dir, "launcher.log"), encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    torch_log = logging.getLogger("torch.distributed")
    saved = (torch_log.propagate, list(torch_log.handlers))
    torch_log.handlers, torch_log.propagate = [handler], False
    # The agent sets its signal handlers in this process and leaves them: put the caller's back afterwards.
    handlers = {name: signal.getsignal(getattr(signal, name)) for name in FORWARDED if hasattr(signal, name)}
    environ = dict(os.environ)
    status = None
    try:
        status = _run_agent(launch, command, timeouts, log_dir)
        return status
    finally:
        torch_log.handlers, torch_log.propagate = saved[1], saved[0]
        handler.close()
        for name, h in handlers.items():
            if h is not None:
                signal.signal(getattr(signal, name), h)
        os.environ.clear()
        os.environ.update(environ)
        if made_dir and status in (0, *STOPPED):  # kept when something failed (VT557, VT559 and exit 1 name it)
            shutil.rmtree(log_dir, ignore_errors=True)


def _config(launch: Launch, timeouts: dict, log_dir: str):
    import uuid

    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs
    from torch.distributed.launcher.api import LaunchConfig

    if launch.master is None:
        # One machine: torchrun --standalone's rendezvous, a store on a free port of this machine.
        backend, endpoint, configs = "c10d", "localhost:0", {"timeout": timeouts["startup_timeout_s"]}
    else:
        # Several machines: torchrun's static rendezvous (--master-addr/--master-port/--node-rank); node rank 0
        # serves the store, so the global ranks follow the node ranks (rank 0, which writes the run folder, is on
        # the machine the user numbered 0).
        host, port = parse_master(launch.master)
        backend, endpoint, configs = "static", f"{host}:{port}", {"rank": launch.node_rank,
                                                                  "timeout": timeouts["startup_timeout_s"]}
    return LaunchConfig(
        min_nodes=launch.nodes, max_nodes=launch.nodes, nproc_per_node=launch.per_node,
        run_id=str(uuid.uuid4()) if launch.master is None else "vtc", role="vtc",
        rdzv_backend=backend, rdzv_endpoint=endpoint, rdzv_configs=configs,
        # A failed process ends the run (vtc resumes from a checkpoint instead of restarting from the start).
        max_restarts=0,
        # The processes write to this terminal themselves (rank 0 the run's lines, the others their own
        # warnings and errors); the folder keeps the error files of processes that fail.
        logs_specs=DefaultLogsSpecs(log_dir=log_dir),
        # After a signal or a failed process, how long the others have to save their checkpoint and leave before
        # they are killed: the plan's collective timeout (a large model's checkpoint fits in it).
        shutdown_timeout=int(timeouts["timeout_s"]),
        signals_to_handle=",".join(FORWARDED),
    )


def _run_agent(launch: Launch, command: list[str], timeouts: dict, log_dir: str) -> int:
    from torch.distributed.elastic.multiprocessing import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import launch_agent

    # torchrun's rule (one thread each when several processes share a machine and nothing is set), with the
    # machine's cores shared out instead of 1: the CPU processes of a test compute with them.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, cores // launch.per_node)))
    # The processes' lines appear as they print them, also when the output is a file (a SLURM job's log).
    os.environ["PYTHONUNBUFFERED"] = "1"
    config = _config(launch, timeouts, log_dir)
    try:
        launch_agent(config, command[0], list(command[1:]))
        return 0
    except ChildFailedError as exc:
        return _failed(exc.failures, launch, log_dir)
    except SignalException as exc:  # this process got it; the agent passed it on and waited for the processes
        return 128 + int(exc.sigval)
    except KeyboardInterrupt:  # pragma: no cover - a Ctrl-C before the agent set its handlers
        return 130
    except Exception as exc:  # the rendezvous: the master cannot be reached or served, the machines did not meet
        raise VtcError(_not_started(exc, launch, timeouts, log_dir)) from None


def _failed(failures: dict, launch: Launch, log_dir: str) -> int:
    """The run's exit status when some processes failed, or VT557 for the one that explains the failure."""
    codes = {f.exitcode for f in failures.values()}
    stopped = codes & STOPPED
    if stopped and codes <= STOPPED | {-signal.SIGTERM, -signal.SIGINT}:
        # Interrupted: each process printed where it stopped and the command that resumes. A process still exiting
        # when the first one's exit made the agent stop the rest dies by the agent's SIGTERM instead of exiting 143.
        return max(stopped)
    # The others were stopped by the launcher (SIGTERM: they exit 143, or die by it) because of the one that
    # explains the failure: one killed by a signal first, else one that failed without a diagnostic (an error
    # file, or an exit status other than 1), else one that printed its diagnostic; the earliest first.
    causes = {rank: f for rank, f in failures.items() if f.exitcode not in STOPPED | {-signal.SIGTERM}} or failures

    def weight(item):
        rank, f = item
        return (f.exitcode >= 0, f.exitcode == 1 and not _has_error_file(f), f.timestamp, rank)

    rank, f = min(causes.items(), key=weight)
    if f.exitcode == 1 and not _has_error_file(f):
        return 1  # the process printed its own diagnostic (and the others stopped)
    raise VtcError(_died(rank, f, launch, log_dir, others=len(failures) - 1))


def _has_error_file(f) -> bool:
    return bool(f.error_file) and os.path.isfile(f.error_file)


def _died(rank: int, f, launch: Launch, log_dir: str, others: int = 0) -> Diagnostic:
    host = platform.node()
    who = f"rank {rank} (local rank {f.local_rank}, host {host})"
    name = _signal_name(-f.exitcode) if f.exitcode < 0 else ""
    if f.exitcode < 0:
        cause = CAUSES.get(name, "see that rank's lines above")
        message = f"{who} was ended by {name}: {cause}"
    else:
        why = ""
        if _has_error_file(f):
            said = f.message.get("message", "") if isinstance(f.message, dict) else f.message  # torch's JSON
            first = str(said or "").strip().splitlines()
            why = f": {first[-1] if first else 'an unexpected error'} (details in {f.error_file})"
        message = (f"{who} failed with exit status {f.exitcode} without a diagnostic of its own{why}")
    if others:
        message += f"; {others} other process{'es' * (others != 1)} stopped with it"
    fix = {"SIGKILL": "give the run more memory (fewer data-loading workers or processes per machine, a machine "
                      "with more RAM, a larger job memory limit), ",
           "SIGSEGV": "give the processes more shared memory (`--shm-size 16g` for a container, a larger /dev/shm), ",
           "SIGBUS": "give the processes more shared memory (`--shm-size 16g` for a container, a larger /dev/shm), "}
    return error("VT557", message, Span(log_dir), help=(
        f"{fix.get(name, '')}{'then ' if name in fix else ''}continue it with `vtc run --resume RUN_FOLDER` (the "
        f"folder rank 0 named; it keeps the last checkpoint) and the same launch options; the launcher's log and the "
        f"processes' error files are in {log_dir}"))


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _not_started(exc: Exception, launch: Launch, timeouts: dict, log_dir: str) -> Diagnostic:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if len(text) > 300:
        text = text[:300] + "..."
    if launch.master is None:
        return error("VT559", f"torchrun could not start the {launch.processes} processes on this machine: {text}",
                     Span(log_dir), help=f"the launcher's log is in {log_dir}; `vtc run` without `--gpus` runs in one "
                                         "process")
    wait = timeouts["startup_timeout_s"]
    serving = launch.node_rank == 0
    return error("VT559", f"the {launch.nodes} machines did not meet at {launch.master} (this one is node rank "
                          f"{launch.node_rank}): {text}", Span(log_dir), help=(
        ("this machine serves the meeting point: the port must be free here (choose another, like "
         "`--master ADDR:29501`) and reachable from the others (a firewall)" if serving else
         "the machine with `--node-rank 0` must be started with the same `--master` and reachable from here "
         "(`nc -z ADDR PORT`)") +
        f"; every machine must be started within {wait} s of the first (hardware.distributed.startup_timeout_s); "
        f"the launcher's log is in {log_dir}"))


def record_error(exc: BaseException) -> None:
    """In a process that torchrun started: write an unexpected exception to the error file it named
    (TORCHELASTIC_ERROR_FILE), so that the parent reports it (VT557) as a failure without a diagnostic."""
    if not os.environ.get("TORCHELASTIC_ERROR_FILE"):
        return
    try:
        from torch.distributed.elastic.multiprocessing.errors import ErrorHandler

        ErrorHandler().record_exception(exc)
    except Exception:  # pragma: no cover - the parent still reports the exit status
        pass
