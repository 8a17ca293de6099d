"""Several training processes (one per GPU, started by torchrun): who this process is, and how the processes agree.

vtc runs on PyTorch's own distributed engine: torchrun (torch.distributed.elastic) starts the processes and sets
their environment (RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, GROUP_RANK, MASTER_ADDR, MASTER_PORT); the
Trainer of TRL and transformers wraps the model in DistributedDataParallel. This module reads that environment;
it imports torch only inside the functions that need it.

    world() -> World          this process's place in the run (World.single() without torchrun)
    start(plan) -> group      the run's processes: Several under torchrun with several (the process group, vtc's
                              control group, the c10d store), else Single (nothing started, nothing imported)
    group() / close()         the run's group until the run ends

Every process loads the whole model on its own device (distributed data parallel): the Trainer (accelerate) wraps
it in DistributedDataParallel over the process group start() made. vtc's own coordination, all in Several:

* the startup (leader_first): rank 0 checks the data (filling the image cache), then loads the model and makes the
  run folder, while the others wait on a key of the c10d store for up to startup_timeout_s (VT549 after); when rank 0
  stops, they stop too, quietly, with its exit status (LeaderStopped);
* one all-reduce of one number a step (agree_stop): any process that received SIGINT/SIGTERM makes every process
  stop after the same step, with one checkpoint;
* a barrier when a checkpoint is saved (rank 0 marks it complete once every process wrote its part);
* the evaluation rows in contiguous shards by rank, the answers gathered in row order on rank 0 (shard,
  gather_in_order);
* after a failure, a roll call through the store (failure, roll_call): who is gone, paused or failed, and why.
  Every collective has the plan's timeout_s, so a process that does not answer ends the run within it (VT547).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path

from vtc.records import record
from vtc.runtime.failures import _chain, _first_line  # an error's causes; its first line, tokens redacted


@record
class World:
    """This process's place in the run. ``rank``: 0..size-1 over every machine (rank 0 writes the run folder);
    ``local_rank``: its GPU on this machine; ``size``: the processes in all; ``local_size``: those on this machine;
    ``node``: this machine's number (torchrun's GROUP_RANK); ``host``: this machine's name."""

    rank: int
    local_rank: int
    size: int
    local_size: int
    node: int
    host: str

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def leader(self) -> bool:
        """Rank 0: the process that writes the run folder and prints the run's lines."""
        return self.rank == 0

    def name(self) -> str:
        """How messages name this process: `rank 1 (host gpu-02, GPU 1)`."""
        return f"rank {self.rank} (host {self.host}, local rank {self.local_rank})"

    @classmethod
    def single(cls) -> "World":
        return cls(0, 0, 1, 1, 0, platform.node())


def _int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, "") or default)
    except ValueError:
        return default


def under_launcher() -> bool:
    """Whether torchrun (or another launcher speaking its environment) started this process."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def world() -> World:
    """This process's place in the run, from torchrun's environment; World.single() without it."""
    if not under_launcher():
        return World.single()
    size = max(_int("WORLD_SIZE", 1), 1)
    return World(rank=_int("RANK", 0), local_rank=_int("LOCAL_RANK", 0), size=size,
                 local_size=max(_int("LOCAL_WORLD_SIZE", size), 1), node=_int("GROUP_RANK", 0), host=platform.node())


# ---- the run's processes, as vtc's own code sees them ----------------------------------------------------------

# How long rank 0 (or a process that lost rank 0) waits, after a collective failed, for every other process either to
# say it is still there or to have recorded why it stopped (the roll call): long enough for every healthy process to
# reach its own failure (the same collective fails for all of them at about the same moment), short enough to fit
# in the 30 s torchrun gives its workers between SIGTERM and SIGKILL, with the run folder still to mark.
ROLL_CALL_S = 5.0

# Words of the errors that torch's collective libraries raise when another process is gone or does not answer
# (gloo: "Connection closed by peer", "Timed out waiting ... for recv"; NCCL: "NCCL communicator was aborted",
# "Watchdog caught collective operation timeout"; the store: "Socket Timeout"). torch.distributed.DistError and its
# subclasses are recognised by type first.
_COLLECTIVE_WORDS = ("connection closed by peer", "connection reset by peer", "broken pipe", "timed out",
                     "timeout", "nccl", "gloo", "socket", "processgroup", "process group", "communicator")


class Single:
    """One process (no torchrun, or torchrun with one process): every method is local, nothing imports torch, no
    collective is made. The runtime calls the same methods whatever the number of processes."""

    size = 1
    rank = 0
    leader = True
    distributed = False
    backend = None
    step = None  # the last training step every process finished (set by the checkpoint callback)

    def __init__(self, w: "World | None" = None) -> None:
        self.world = w or World.single()
        self.processes = [process_record(self.world, None)]

    def record(self) -> dict:
        """The manifest's "distributed": the world size and every process (rank, local rank, host, pid, device)."""
        return {"world_size": self.size, "processes": self.processes}

    def prefix(self) -> str:
        return ""

    def leader_first(self, key: str, fn, share=None):
        return fn()

    def barrier(self, what: str = "") -> None:
        pass

    def barrier_quietly(self) -> None:
        """A barrier whose failure (a process gone) is ignored: the last wait before exiting."""
        try:
            self.barrier()
        except Exception:
            pass

    def broadcast(self, obj):
        return obj

    def all_gather(self, obj) -> list:
        return [obj]

    def least(self, value):
        return value

    def agree_stop(self, signum: int) -> int:
        return signum

    def shard(self, n: int) -> tuple[int, int]:
        return 0, n

    def gather_in_order(self, items: list) -> list | None:
        return list(items)

    def failure(self, exc: BaseException):
        return None

    def close(self) -> None:
        pass


class Several(Single):
    """Several processes under torchrun, in one process group. vtc's own messages (the startup handshake, the stop
    agreement, the checkpoint barrier, the gathered evaluation answers) go through a second group over gloo (cheap
    on the CPU even where training uses NCCL) and the c10d store torchrun serves; every collective has the plan's
    hardware.distributed.timeout_s, every startup wait its startup_timeout_s."""

    distributed = True

    def __init__(self, w: World, plan: dict) -> None:
        import datetime

        import torch
        import torch.distributed as dist

        self.world = w
        self.size, self.rank, self.leader = w.size, w.rank, w.leader
        d = plan["hardware"]["distributed"]
        self.timeout_s = d["timeout_s"]
        self.startup_timeout_s = d["startup_timeout_s"]
        cuda = torch.cuda.is_available()
        if cuda:  # the device first, so that NCCL's communicator and every later tensor are on this process's card
            torch.cuda.set_device(w.local_rank)
        self.backend = d["backend"]["gpu" if cuda else "cpu"]
        self.device = f"cuda:{w.local_rank}" if cuda else "cpu"
        timeout = datetime.timedelta(seconds=self.timeout_s)
        global _MADE_GROUPS
        _MADE_GROUPS = True
        if not dist.is_initialized():  # the Trainer (accelerate) reuses this group
            dist.init_process_group(self.backend, timeout=timeout,
                                    **({"device_id": torch.device(self.device)} if cuda else {}))
        # vtc's own messages: over gloo (CPU tensors, no GPU sync) even where training uses NCCL; under gloo the
        # default group serves (None).
        self.control = dist.new_group(backend="gloo", timeout=timeout) if self.backend != "gloo" else None
        from torch.distributed.distributed_c10d import _get_default_store

        self.store = dist.PrefixStore("vtc/", _get_default_store())
        self.processes = self.all_gather(process_record(w, self.device))
        self._failure = None

    # -- who --
    def prefix(self) -> str:
        return f"rank {self.rank} ({self.world.host}): "

    def name(self, rank: int) -> str:
        p = self.processes[rank]
        return f"rank {rank} (host {p['host']}, local rank {p['local_rank']}, pid {p['pid']})"

    # -- the startup: rank 0 first, the others wait --
    def leader_first(self, key: str, fn, share=None):
        """Rank 0 runs ``fn()`` (checking the data, making the run folder) and gets its result, while the others
        wait up to startup_timeout_s and get ``share(result)`` (JSON; None without ``share``). When rank 0 stops
        (a diagnostic, an error, a signal), the others stop too, quietly, with its exit status (LeaderStopped):
        rank 0 printed why."""
        import datetime

        if self.leader:
            try:
                result = fn()
            except BaseException as exc:
                status = exc.exit_code if isinstance(getattr(exc, "exit_code", None), int) else \
                    130 if isinstance(exc, KeyboardInterrupt) else 1
                self._set(f"startup/{key}", json.dumps({"stop": status}))
                raise
            self._set(f"startup/{key}", json.dumps({"ok": share(result) if share is not None else None}))
            return result
        try:
            self.store.wait([f"startup/{key}"], datetime.timedelta(seconds=self.startup_timeout_s))
            got = json.loads(self.store.get(f"startup/{key}").decode("utf-8"))
        except Exception as exc:
            from vtc.diagnostics import VtcError, error

            raise VtcError(error(
                "VT549", f"{self.prefix()}waited {self.startup_timeout_s} s for rank 0 "
                f"({self.processes[0]['host']}) to {_STARTUP_DOING.get(key, 'start')}, without an answer "
                f"({_first_line(exc)})", None,
                help="rank 0 is stuck or its machine is gone: look at its output (the first machine's); a data "
                     "check that needs longer (a first scan of very many images) needs a larger "
                     "hardware.distributed.startup_timeout_s in a saved plan (`vtc plan recipe.vt -o plan.json`)")) \
                from None
        if "stop" in got:
            raise LeaderStopped(got["stop"], f"{self.prefix()}stopping: rank 0 stopped before training "
                                             "(its messages say why)")
        return got["ok"]

    def _set(self, key: str, value: str) -> None:
        try:
            self.store.set(key, value)
        except Exception:  # the store is gone (torchrun's agent stopped): nobody is left to tell
            pass

    # -- collectives over the control group --
    def _group(self):
        return self.control

    def barrier(self, what: str = "") -> None:
        import torch
        import torch.distributed as dist

        dist.all_reduce(torch.zeros(1), group=self._group())

    def broadcast(self, obj):
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0, group=self._group())
        return box[0]

    def all_gather(self, obj) -> list:
        import torch.distributed as dist

        out: list = [None] * self.size
        dist.all_gather_object(out, obj, group=self._group())
        return out

    def least(self, value):
        """The smallest of every process's ``value`` (None when any is None): the free memory the split is chosen
        from, so that every process chooses the same micro-batch."""
        values = self.all_gather(value)
        return None if any(v is None for v in values) else min(values)

    def agree_stop(self, signum: int) -> int:
        """The stop signal any process received (its number; SIGTERM over SIGINT), 0 for none: one all-reduce of
        one number, every step, so that every process stops after the same step."""
        import torch
        import torch.distributed as dist

        flag = torch.tensor([signum], dtype=torch.int32)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self._group())
        return int(flag.item())

    def shard(self, n: int) -> tuple[int, int]:
        """This process's rows of ``n`` (a fixed, contiguous slice by rank; the first ranks take one more when the
        processes do not divide n)."""
        base, extra = divmod(n, self.size)
        lo = self.rank * base + min(self.rank, extra)
        return lo, lo + base + (self.rank < extra)

    def gather_in_order(self, items: list) -> list | None:
        """Every process's ``items`` (its shard), joined in rank order = row order, on rank 0; None elsewhere."""
        parts = self.all_gather(items)
        return [x for part in parts for x in part] if self.leader else None

    # -- failure --
    def failure(self, exc: BaseException) -> "Failure":
        """After ``exc`` ended this process's training: record it where the others can read it, find out which
        processes are gone or did not answer (the roll call), and say what is known. Never raises."""
        if self._failure is not None:
            return self._failure
        collective = is_collective_error(exc)
        if collective:
            self._set(f"alive/{self.rank}", "1")
        else:
            self._set(f"error/{self.rank}", _first_line(exc))
        self._failure = roll_call(self, exc, collective)
        return self._failure

    def close(self) -> None:
        import torch.distributed as dist

        try:
            if dist.is_initialized():
                dist.destroy_process_group()
        except Exception:
            pass


_STARTUP_DOING = {"data": "check the data", "folder": "load the model and create the run folder",
                  "resume": "read the run folder"}


class LeaderStopped(SystemExit):
    """A process other than rank 0 stopping because rank 0 stopped before training (rank 0 printed why): exit
    status ``code`` (1, or 130/143 for a signal), and one line on stderr."""

    def __init__(self, code: int, line: str) -> None:
        super().__init__(code)
        self.line = line


@record
class Failure:
    """What a process knows after a collective failed: ``own`` (this process's error was its own, not a
    collective's), ``culprits``: [(rank, what)] of the processes that stopped or did not answer, ``leader_alive``:
    whether rank 0 is still there, ``timed_out``: the collective reached the timeout (``timeout_s``), ``reason``:
    this process's exception in one line."""

    own: bool
    culprits: list
    leader_alive: bool
    timed_out: bool
    timeout_s: int
    reason: str


def roll_call(g: Several, exc: BaseException, collective: bool, wait_s: float | None = None) -> Failure:
    """Who is still there: every other process answers by a store key (alive/R, or error/R with its reason) within
    ``wait_s``; a process on this machine whose pid is gone (killed) or stopped (SIGSTOP, a debugger) is known
    at once. Those that do not answer are named with what is known."""
    wait_s = ROLL_CALL_S if wait_s is None else wait_s
    deadline = time.monotonic() + wait_s
    pending = [r for r in range(g.size) if r != g.rank]
    answers: dict[int, str] = {}
    while True:
        for r in list(pending):
            what = _answer(g, r)
            if what is not None:
                answers[r] = what
                pending.remove(r)
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    timed_out = collective and _timed_out(exc)
    culprits = []
    for r in range(g.size):
        if r == g.rank:
            continue
        what = answers.get(r)
        if what == "alive":
            continue
        if what is None:
            state = _local_state(g.processes[r])
            what = state or (f"no answer within {g.timeout_s} s" if timed_out else
                             f"no answer (its machine or process is gone)")
        culprits.append((r, what))
    leader_alive = g.rank == 0 or answers.get(0) is not None and not answers[0].startswith(("killed", "stopped"))
    return Failure(not collective, culprits, leader_alive, timed_out, g.timeout_s, _first_line(exc))


def _answer(g: Several, r: int) -> str | None:
    """rank r's answer to the roll call: "alive", its recorded error, "killed"/"stopped ..." when its process on
    this machine says so; None while nothing is known."""
    try:
        if g.store.check([f"error/{r}"]):
            return "error: " + g.store.get(f"error/{r}").decode("utf-8", "replace")
        if g.store.check([f"alive/{r}"]):
            return "alive"
    except Exception:
        pass
    return _local_state(g.processes[r])


def _local_state(p: dict) -> str | None:
    """A process of this machine that is gone ("killed: its process no longer exists") or stopped (state T in
    /proc); None when it runs or is elsewhere."""
    if p.get("host") != platform.node() or not isinstance(p.get("pid"), int):
        return None
    try:
        with open(f"/proc/{p['pid']}/stat", encoding="ascii") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "killed: its process no longer exists"
    if state in ("T", "t"):
        return "stopped: its process is paused (SIGSTOP, or a debugger) and does not answer"
    if state in ("Z", "X"):
        return "killed: its process has ended"
    return None


def _timed_out(exc: BaseException) -> bool:
    return any("timed out" in str(e).lower() or "timeout" in str(e).lower() for e in _chain(exc))


def is_collective_error(exc: BaseException) -> bool:
    """The exception came from a collective (or the store) because another process is gone or did not answer."""
    for e in _chain(exc):
        if any(cls.__name__ in ("DistError", "DistBackendError", "DistNetworkError", "DistStoreError")
               for cls in type(e).__mro__):
            return True
        text = str(e).lower()
        if isinstance(e, RuntimeError) and any(word in text for word in _COLLECTIVE_WORDS) \
                and "out of memory" not in text:
            return True
    return False


def process_record(w: World, device: str | None) -> dict:
    return {"rank": w.rank, "local_rank": w.local_rank, "node": w.node, "host": w.host, "pid": os.getpid(),
            "device": device}


_GROUP: Single | None = None


# Whether this process joined a process group (Several): its end then skips the interpreter's finalisation
# (vtc.cli._leave says why).
_MADE_GROUPS = False


def made_process_groups() -> bool:
    """Whether this process joined the run's process group (several processes under torchrun)."""
    return _MADE_GROUPS


def start(plan: dict) -> Single:
    """The run's processes: under torchrun with several, the process group (the plan's backend by device, its
    timeout; on a GPU the device set to LOCAL_RANK first) and vtc's control group, and every process's record
    gathered once; else Single (nothing started). group() returns it until close()."""
    global _GROUP
    w = world()
    _GROUP = Several(w, plan) if w.distributed else Single(w)
    return _GROUP


def group() -> Single:
    """The run's processes (Single outside a distributed run)."""
    return _GROUP if _GROUP is not None else Single()


def close() -> None:
    """The end of the run: the process group destroyed (a process that failed leaves it: a collective library may
    wait on a peer that is gone)."""
    global _GROUP
    g, _GROUP = _GROUP, None
    if g is not None and getattr(g, "_failure", None) is None:
        g.close()


@contextlib.contextmanager
def running(plan: dict | None):
    """The run's processes for the length of a run (start, then close). A process other than rank 0 prints only its
    own problems, prefixed with its rank and host: a diagnostic every process reaches alike (``everyone`` set on the
    VtcError: the batch does not divide, rank 0 stopped) is rank 0's to print, and theirs ends quietly."""
    g = start(plan) if plan is not None else _set_single()
    try:
        yield g
    except LeaderStopped as exc:
        _say(exc.line)
        raise
    except BaseException as exc:
        if g.leader or not g.distributed:
            raise
        from vtc.diagnostics import VtcError

        if isinstance(exc, VtcError):
            if getattr(exc, "everyone", False):
                raise LeaderStopped(1, "") from None
            exc.diagnostics = [dataclasses.replace(d, message=g.prefix() + d.message) for d in exc.diagnostics]
        raise
    finally:
        close()


def _set_single() -> Single:
    global _GROUP
    _GROUP = Single()
    return _GROUP


def _say(line: str) -> None:
    if line:
        try:
            print(line, file=sys.stderr, flush=True)
        except (OSError, ValueError):
            pass


def everyone(exc):
    """Mark a VtcError as one every process reaches alike from the same inputs: rank 0 prints it, the others stop
    quietly."""
    exc.everyone = True
    return exc


def rows_digest(train, evaluation) -> dict:
    """What a process's rows are: their number and a digest of their keys (data file, row, pages), in order."""
    h = hashlib.sha256()
    for rows in (train, evaluation):
        for i in range(len(rows)):
            key = rows.key(i) if hasattr(rows, "key") else i
            h.update(repr(_plain_key(key)).encode("utf-8", "replace"))
        h.update(b"|")
    return {"train": len(train), "eval": len(evaluation), "sha256": h.hexdigest()[:16]}


def _plain_key(key):
    span, frames = key if isinstance(key, tuple) and len(key) == 2 else (key, ())
    if hasattr(span, "file"):
        return (str(span.file), span.line, tuple(frames or ()))
    return (repr(span), tuple(frames or ()))


def same_rows(g: Single, train, evaluation) -> None:
    """VT546 when a process sees other rows than rank 0 (another machine with other files, or none at that path):
    every process trains its share of one list of rows, which must be the same list everywhere."""
    if not g.distributed:
        return
    mine = rows_digest(train, evaluation)
    every = g.all_gather(mine)
    other = [r for r, d in enumerate(every) if d != every[0]]
    if not other:
        return
    from vtc.diagnostics import VtcError, error

    r = other[0]
    d0, dr = every[0], every[r]
    names = ", ".join(g.name(x) for x in other)
    raise everyone(VtcError(error(
        "VT546", f"the processes do not see the same data: {names} read {dr['train']} training and {dr['eval']} "
        f"evaluation rows (digest {dr['sha256']}), rank 0 ({g.processes[0]['host']}) {d0['train']} and "
        f"{d0['eval']} (digest {d0['sha256']})", None,
        help="every machine must see the same data files at the same path (a shared file system, or identical "
             "copies); compare the folder on each machine, then run again")))


def describe(g: Single) -> str:
    """`2 processes on 1 machine (gloo, CPU)`."""
    hosts = sorted({p["host"] for p in g.processes})
    where = f"{len(hosts)} machine{'s' * (len(hosts) != 1)}"
    return f"{g.size} on {where}, {g.backend}, each with the whole model"


def other_rank_error(g: Single, failure: "Failure", exc: BaseException, plan: dict) -> BaseException:
    """What a process other than rank 0 raises after its training failed: its own error, prefixed (out of memory:
    VT520); after a collective failed, a quiet stop when rank 0 is there to report it, else VT547 naming rank 0."""
    from vtc.diagnostics import VtcError

    if failure is None or failure.own:
        from vtc.runtime import failures as F

        if F.is_oom(exc):
            from vtc.runtime.model_path import recipe_span

            d = F.oom_error(plan, "training", recipe_span(plan))
        elif F.checkpoint_unreadable(exc):
            d = F.checkpoint_error(Path("checkpoint"), "the checkpoint", exc, "vtc run --resume")
        else:
            return exc  # a bug: its traceback; rank 0's VT547 names this process and the error
        return VtcError(dataclasses.replace(d, message=g.prefix() + d.message))
    if failure.leader_alive:
        return LeaderStopped(1, "")
    from vtc.runtime import failures as F

    d = F.rank_failed_error(g, failure, plan, "training", "")
    return VtcError(dataclasses.replace(d, message=g.prefix() + d.message))
