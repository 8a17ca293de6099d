"""Compiled code kept between runs (the warm start): Unsloth's generated modules, torch.compile's caches and Triton's
kernels, all in vtc's cache folder, keyed by what invalidates them.

A cold run of the Unsloth backend spends about a minute compiling before its first step. What it compiles is kept by
four caches, each found through an environment variable (read in the sources of unsloth and unsloth_zoo 2026.10.9
and torch 2.14; the GPU machine's torch 2.11 reads the same variables):

    part       variable                  what it holds                                   default, when unset
    unsloth    UNSLOTH_COMPILE_LOCATION  the Python modules Unsloth generates for the    ./unsloth_compiled_cache: the
                                         model (unsloth_zoo.compiler reads the variable  WORKING folder, so a run from
                                         once, when `import unsloth` imports it)         another folder starts cold
    inductor   TORCHINDUCTOR_CACHE_DIR   torch.compile: Inductor's FX graph cache,       /tmp/torchinductor_<user>
                                         AOTAutograd's, autotuning results, Dynamo's     (often gone after a reboot or
                                         profiles of dynamic shapes (read at each use)   in a fresh container)
    triton     TRITON_CACHE_DIR          compiled Triton kernels (Inductor's and         ~/.triton/cache (Inductor's
                                         Unsloth's own), read at each use                own: <inductor>/triton/<gpu#>)
    mega       UNSLOTH_MEGA_CACHE_DIR    Unsloth's "Mega-cache": every torch.compile     ~/.cache/unsloth/mega_cache
                                         artifact of a run in one portable bundle,
                                         loaded before the first step, saved at exit

``prepare()`` runs just before `import unsloth` (vtc.runtime.backends.unsloth_backend calls it first) and points
every variable the user did not set into ``<cache root>/compile/<key>/`` (vtc.paths.cache_root: $VTC_CACHE, else
$XDG_CACHE_HOME/vtc, else ~/.cache/vtc). ``after_import()`` runs right after: `import unsloth` REMOVES
TORCHINDUCTOR_CACHE_DIR (unsloth_zoo.patching_utils.patch_torch_compile pops it, whoever set it), so it is set
again (vtc's folder, or the user's own value: a user's own setting of any of the four variables wins, and the log
says so), and the inductor and triton parts get one sub-folder per GPU model.

The key. ``<key>`` is a hash of what decides whether compiled code can be reused, read without importing anything
(importing torch's CUDA or unsloth early would break the import order: Unsloth sets the CUDA allocator's options
when imported, before CUDA starts): vtc's layout version, Python's implementation and version, the versions of
torch (its build: version.py's __version__, CUDA/HIP version and git revision), triton, transformers, trl, peft,
unsloth and unsloth_zoo (importlib.metadata). trl is there because Unsloth writes the versions of unsloth_zoo,
unsloth, transformers and trl into every generated module and regenerates it when one changes. The GPU (its name and
compute capability) is known only once CUDA has started, which Unsloth itself does while it is imported (it asks
for the device's capability), so it keys the inner folders: ``inductor/<gpu>`` and ``triton/<gpu>`` (e.g.
``nvidia-h200-sm90``). The key is housekeeping, not what keeps compiled code correct: each library checks its own
entries (Unsloth compares the generated module's bytes, versions included, and rewrites it when they differ;
Inductor's and Triton's entries are addressed by a hash of the graph or kernel, the torch/triton versions, the
CUDA version and the device; the Mega-cache's bundle key names the GPU). One folder per set of versions means an
upgrade starts a fresh folder instead of growing an old one, and `vtc cache` can show and clear them apart.

Two runs at once with the same key share the folder; none of it is written in place without care. Unsloth writes a
generated module under a per-file lock (``.locks/`` beside it, filelock), only when its bytes differ, and imports
it from bytes it has checked against a digest under that lock, falling back to a temporary folder if another
process changed the file meanwhile (two runs of the same model with different options generate different bytes
for the same file: one of them then compiles in a temporary folder, cold, for that run). Inductor, AOTAutograd and
Triton write each entry under a temporary name and rename it into place; the Mega-cache writes a content-addressed
bundle under a per-process temporary name and replaces its manifest atomically. vtc itself writes only ``key.json``
(temporary name + os.replace) and holds a shared lock on ``.in-use`` for the life of the process, so that
``clear()`` (`vtc cache clear compiled`) leaves a folder that a running run uses alone.

Compiled code is code that runs in the training process, so vtc uses a folder of its own only: the compile folder
and the key folder must belong to the user and be writable by nobody else (VT545), and they are created so (0700).
When they cannot be made or used (a read-only home, a full disk: VT544), the run compiles into a temporary folder
removed at exit, never into the working folder.

The transformers backend does not call torch.compile, so it leaves these variables alone (``manifest_record``
says so in the manifest).
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import platform
import re
import shutil
import stat
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

from vtc.diagnostics import Diagnostic, Span, warning
from vtc.paths import cache_root

# The layout of a key folder; a change of what vtc puts where raises it (the key changes with it).
LAYOUT = 1

# The packages whose versions make the key, by distribution name.
KEY_PACKAGES = ("torch", "triton", "transformers", "trl", "peft", "unsloth", "unsloth_zoo")

# part -> (variable, folder in the key folder, what it holds). The unsloth part's folder keeps Unsloth's own name:
# when Unsloth cannot write there it falls back to <temp>/<that name>, its usual temporary folder.
PARTS = {
    "unsloth": ("UNSLOTH_COMPILE_LOCATION", "unsloth_compiled_cache", "Unsloth's generated modules"),
    "inductor": ("TORCHINDUCTOR_CACHE_DIR", "inductor", "torch.compile's caches (Inductor, AOTAutograd, autotuning)"),
    "triton": ("TRITON_CACHE_DIR", "triton", "compiled Triton kernels"),
    "mega": ("UNSLOTH_MEGA_CACHE_DIR", "unsloth_mega_cache", "Unsloth's Mega-cache bundles"),
}
# The parts with one sub-folder per GPU model (known after `import unsloth`).
PER_GPU = ("inductor", "triton")
# A user's own TRITON_HOME is their choice of where Triton keeps things, the cache included.
ALSO_YOURS = {"triton": ("TRITON_HOME",)}

KEY_FILE = "key.json"
IN_USE = ".in-use"
# What a part's folder may hold without the part being warm: Unsloth's lock folder and the helper module it copies
# in when imported (before compiling anything), Python's bytecode folder.
NOT_CONTENT = {".locks", "__pycache__", "moe_utils.py"}

_CURRENT: "CompileCache | None" = None
_IN_USE_FDS: list[int] = []  # kept open (and locked) for the life of the process


class CompileCache:
    """Where this process keeps compiled code, and what it found there.

    ``folder``: the key folder (None when vtc manages nothing: unsloth imported before vtc, or every variable the
    user's); ``key`` and ``made_of`` (the versions it hashes); ``parts``: part -> {"variable", "path", "set_by"
    ("vtc" | "you" | "temporary"), "warm" (held compiled code before this run; None for a part that is the user's)};
    ``gpu``: the inner folders' GPU tag; ``problems``: VT544/VT545 diagnostics; ``notes``: sentences for the run's
    log and manifest.
    """

    def __init__(self) -> None:
        self.folder: Path | None = None
        self.key: str | None = None
        self.made_of: dict = {}
        self.parts: dict[str, dict] = {}
        self.gpu: str | None = None
        self.problems: list[Diagnostic] = []
        self.notes: list[str] = []
        self.temporary: Path | None = None
        self.managed = False  # vtc set at least one variable
        self.reason = ""  # why vtc manages nothing, when it does not
        self._environ = os.environ
        self._values: dict[str, str] = {}  # variable -> the value it must have after `import unsloth`

    @property
    def state(self) -> str:
        """"warm" (every part vtc set held compiled code), "partly warm", "cold", "temporary" (a temporary folder
        this run, VT544/VT545), or "not managed"."""
        if not self.managed:
            return "not managed"
        if self.temporary is not None:
            return "temporary"
        warm = [p["warm"] for p in self.parts.values() if p["set_by"] == "vtc"]
        if warm and all(warm):
            return "warm"
        return "partly warm" if any(warm) else "cold"

    def record(self) -> dict:
        """What the run's manifest keeps (``compile_cache``)."""
        return {
            "state": self.state, "folder": str(self.folder) if self.folder else None, "key": self.key,
            "gpu": self.gpu, "made_of": self.made_of, "reason": self.reason or None,
            "parts": {name: dict(part) for name, part in self.parts.items()},
            "problems": [d.to_json() for d in self.problems],
        }


# ---- the key -----------------------------------------------------------------------------------------------------

TORCH_BUILD = ("__version__", "cuda", "hip", "git_version")


def torch_build() -> dict:
    """torch's version, CUDA/HIP version and git revision, read from torch/version.py without importing torch
    (torch.version's values when torch is imported already; {} when torch is not installed)."""
    module = sys.modules.get("torch.version")
    if module is not None:
        return {k: str(getattr(module, k, None)) for k in TORCH_BUILD}
    try:
        import importlib.util

        spec = importlib.util.find_spec("torch")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return {}
    try:
        text = (Path(list(spec.submodule_search_locations)[0]) / "version.py").read_text(encoding="utf-8")[:20000]
    except (OSError, UnicodeError):
        return {}
    return parse_torch_version(text)


def parse_torch_version(text: str) -> dict:
    """TORCH_BUILD's values from the text of torch/version.py (``cuda: Optional[str] = '13.0'``), as strings
    ("None" for None, "?" when absent)."""
    out = {}
    for name in TORCH_BUILD:
        m = re.search(rf"^{name}\s*(?::[^=\n]*)?=\s*(?:'([^'\n]*)'|\"([^\"\n]*)\"|(None))", text, re.M)
        if m is None:
            out[name] = "?"
        else:
            out[name] = m.group(1) if m.group(1) is not None else m.group(2) if m.group(2) is not None else "None"
    return out


def key_material() -> dict:
    """What the key hashes: vtc's layout, Python, torch's build and the versions of KEY_PACKAGES."""
    versions = {}
    for name in KEY_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
        except Exception:  # a broken distribution's metadata  # pragma: no cover
            versions[name] = "?"
    return {"layout": LAYOUT, "python": f"{platform.python_implementation()} {platform.python_version()}",
            "torch_build": torch_build(), "packages": versions}


def key_of(material: dict) -> str:
    """16 hex digits of sha256 over the material as canonical JSON."""
    text = json.dumps(material, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def compile_root() -> Path:
    """<cache root>/compile, absolute (Unsloth puts its folder on sys.path, and a run may change folder)."""
    return Path(os.path.abspath(cache_root() / "compile"))


def gpu_tag() -> str:
    """The GPU model of this process's device as a folder name (``nvidia-h200-sm90``), from torch when it is imported
    and CUDA is available (after `import unsloth`, which starts CUDA itself); "no-gpu" or "unknown-gpu" otherwise.
    The device is LOCAL_RANK's under torchrun, else device 0."""
    torch = sys.modules.get("torch")
    if torch is None:
        return "unknown-gpu"
    try:
        if not torch.cuda.is_available():
            return "no-gpu"
        try:
            index = int(os.environ.get("LOCAL_RANK", "0"))
        except ValueError:
            index = 0
        if not 0 <= index < torch.cuda.device_count():
            index = 0
        name = str(torch.cuda.get_device_name(index))
        major, minor = torch.cuda.get_device_capability(index)
    except Exception:
        return "unknown-gpu"
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:60] or "gpu"
    return f"{slug}-sm{int(major)}{int(minor)}"


# ---- folders -----------------------------------------------------------------------------------------------------

def _make_private(path: Path) -> None:
    """Create ``path`` and its missing parents, each missing one 0700 (os.makedirs' mode reaches the last only)."""
    missing = []
    p = path
    while not os.path.lexists(p):
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, 0o700)
        except FileExistsError:
            pass


def not_private(path: Path) -> str | None:
    """Why ``path`` (an existing folder, links followed) may not hold code this process runs, or None: another
    user's, or writable by its group or by everyone."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode):
        return "it is not a folder"
    if hasattr(os, "geteuid") and st.st_uid != os.geteuid():
        return "it belongs to another user"
    if st.st_mode & 0o022:
        return "others can write into it"
    return None


def _has_content(folder: Path) -> bool:
    """Whether ``folder`` holds a file (at any depth) other than NOT_CONTENT's and vtc's own."""
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name in NOT_CONTENT or entry.name in (KEY_FILE, IN_USE):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    if _has_content(Path(entry.path)):
                        return True
                else:
                    return True
    except OSError:
        return False
    return False


def _shown(path: Path | str) -> str:
    """A path with the home folder as ~."""
    text, home = str(path), os.path.expanduser("~")
    return "~" + text[len(home):] if home not in ("", "/", "~") and text.startswith(home + os.sep) else text


def _hold_in_use(folder: Path) -> None:
    """A shared lock on <folder>/.in-use, held until the process ends (clear() skips a folder so held)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: nothing to hold  # pragma: no cover
        return
    path = folder / IN_USE
    for _ in range(3):
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            # A clear() that removed the folder between open and lock leaves this file unlinked: open it again.
            if os.path.samestat(os.fstat(fd), os.stat(path, follow_symlinks=False)):
                _IN_USE_FDS.append(fd)
                return
        except OSError:
            pass
        os.close(fd)
        _make_private(folder)


def _write_key_file(folder: Path, material: dict, key: str) -> None:
    """key.json: what the folder's key was made of and when a run last used it (temporary name, then renamed)."""
    record = {"key": key, "made_of": material, "last_used": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    tmp = folder / f".{KEY_FILE}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(record, f, indent=2, sort_keys=True)
        os.replace(tmp, folder / KEY_FILE)
    finally:
        if tmp.exists():
            tmp.unlink()


# ---- before and after `import unsloth` -------------------------------------------------------------------------

def _yours(name: str, environ) -> str | None:
    """The user's own setting for a part (its variable, or one that implies it), or None."""
    variable = PARTS[name][0]
    for var in (variable, *ALSO_YOURS.get(name, ())):
        value = environ.get(var)
        if value:
            if var == "TORCHINDUCTOR_CACHE_DIR" and _is_torch_default(value):
                continue  # written by torch itself (`import torch._dynamo` sets its default), not by the user
            return f"{var}={value}"
    return None


def _is_torch_default(value: str) -> bool:
    """Whether ``value`` is torch's default Inductor cache folder (<temp>/torchinductor_<user>), which torch writes
    into the environment when it first uses it (a folder a user names themself is hardly called that)."""
    try:
        import getpass

        user = getpass.getuser()
    except Exception:
        user = f"uid_{os.getuid()}" if hasattr(os, "getuid") else "unknown_user"
    user = re.sub(r'[\\/:*?"<>|]', "_", user)
    # By name, in any temporary folder: a parent process that imported torch with another TMPDIR (a test harness,
    # a notebook starting `vtc run`) hands its own default down to vtc through the environment.
    return os.path.basename(os.path.normpath(value)) == "torchinductor_" + user


def prepare(environ=None, root: Path | None = None) -> CompileCache:
    """Point the compile caches into vtc's cache folder: call before `import unsloth`. Returns the record (also
    ``current()``); never raises. ``environ`` (default os.environ) and ``root`` (default compile_root()) are for
    tests. Once a process: a second call returns the first record."""
    global _CURRENT
    if _CURRENT is not None and environ is None and root is None:
        return _CURRENT
    cc = CompileCache()
    cc._environ = os.environ if environ is None else environ
    if environ is None and root is None:
        _CURRENT = cc
    if "unsloth" in sys.modules or "unsloth_zoo" in sys.modules:
        # Too late: Unsloth read UNSLOTH_COMPILE_LOCATION when it was imported.
        cc.reason = "unsloth was imported before vtc chose the backend: its own cache settings are kept"
        cc.notes.append(f"compiled code: {cc.reason}")
        return cc
    try:
        _prepare(cc, Path(root) if root is not None else compile_root())
    except Exception as exc:  # never stop a run over a cache; say so  # pragma: no cover
        cc.reason = f"the compile cache could not be set up ({type(exc).__name__}: {exc})"
        cc.notes.append(f"compiled code: {cc.reason}; Unsloth's own defaults are used")
    return cc


def _prepare(cc: CompileCache, root: Path) -> None:
    environ = cc._environ
    for name, (variable, _, _) in PARTS.items():
        mine = _yours(name, environ)
        cc.parts[name] = {"variable": variable, "path": None, "set_by": "you" if mine else "vtc", "warm": None}
        if mine:
            cc.parts[name]["path"] = environ.get(variable)  # None when implied (TRITON_HOME)
            if environ.get(variable):
                cc._values[variable] = environ[variable]  # set again after `import unsloth` (it removes some)
            cc.notes.append(f"compiled code: your {mine} is kept ({PARTS[name][2]} go there, not into vtc's cache)")
    ours = [name for name, part in cc.parts.items() if part["set_by"] == "vtc"]
    if not ours:
        cc.reason = "every compile cache variable is set by you"
        return
    cc.managed = True
    cc.made_of = key_material()
    cc.key = key_of(cc.made_of)
    folder = root / cc.key
    try:
        paths = {name: folder / PARTS[name][1] for name in ours}
        for path in paths.values():
            _make_private(path)
        problem = next(((p, why) for p in (root, folder, *paths.values()) if (why := not_private(p))), None)
        if problem is not None:
            where, why = problem
            cc.problems.append(warning(
                "VT545", f"the compile cache folder {_shown(where)} is not private ({why}): compiled code found "
                "there would run in the training process, so vtc does not use it and compiles into a temporary "
                "folder this run", Span(str(where)),
                help=(f"delete {_shown(where)}" if where == root else "remove it with `vtc cache clear compiled`")
                + " so that vtc makes it again as yours alone, or set VTC_CACHE to a folder of your own"))
            _temporary(cc, ours)
            return
        for name, path in paths.items():
            cc.parts[name]["path"] = str(path)
            if name not in PER_GPU:
                cc.parts[name]["warm"] = _has_content(path)
        _write_key_file(folder, cc.made_of, cc.key)
        _hold_in_use(folder)
    except OSError as exc:
        cc.problems.append(warning(
            "VT544", f"cannot use the compile cache folder {_shown(folder)} ({exc.strerror or exc}): compiled code "
            "goes to a temporary folder this run, so the next run compiles again", Span(str(folder)),
            help="make the folder writable (or free space on its disk), or set VTC_CACHE to a writable folder"))
        _temporary(cc, ours)
        return
    cc.folder = folder
    for name in ours:
        cc._values[PARTS[name][0]] = cc.parts[name]["path"]
    _apply(cc)


def _temporary(cc: CompileCache, ours: list[str]) -> None:
    """Compile into a fresh temporary folder, removed at exit (never into the working folder)."""
    folder = Path(tempfile.mkdtemp(prefix="vtc-compile-"))
    cc.temporary = folder
    atexit.register(shutil.rmtree, folder, True)  # registered before Unsloth's own exit hook: runs after it
    for name in ours:
        cc.parts[name].update(path=str(folder / PARTS[name][1]), set_by="temporary", warm=False)
        cc._values[PARTS[name][0]] = cc.parts[name]["path"]
    if cc.parts["mega"]["set_by"] == "temporary" and "UNSLOTH_MEGA_CACHE" not in cc._environ:
        cc._environ["UNSLOTH_MEGA_CACHE"] = "0"  # a bundle saved at exit into a folder removed at exit: skip it
    for d in cc.problems:
        _print_problem(d)
    cc.notes.append(f"compiled code: in a temporary folder this run ({cc.problems[-1].code}), so the next run "
                    "compiles again")
    _apply(cc)


def _print_problem(d: Diagnostic) -> None:
    try:
        print(d.render(), file=sys.stderr, flush=True)
    except (OSError, ValueError):  # pragma: no cover
        pass


def _apply(cc: CompileCache) -> None:
    for variable, value in cc._values.items():
        cc._environ[variable] = value


def after_import(cc: CompileCache) -> None:
    """Right after `import unsloth`: set the variables again (Unsloth removes TORCHINDUCTOR_CACHE_DIR when imported,
    a user's own value too), give the inductor and triton parts their GPU's sub-folder, and say what was found.
    Never raises."""
    if not cc.managed and not cc._values:
        return
    try:
        if cc.managed:
            cc.gpu = gpu_tag()
            for name in PER_GPU:
                part = cc.parts[name]
                if part["set_by"] == "you":
                    continue
                path = Path(part["path"]) / cc.gpu
                try:
                    _make_private(path)
                except OSError:
                    pass  # the libraries make it themselves, or say why they cannot
                part["path"] = str(path)
                cc._values[part["variable"]] = str(path)
                if part["set_by"] == "vtc":
                    part["warm"] = _has_content(path)
        _apply(cc)
        if cc.managed and cc.temporary is None:
            cc.notes.append(_summary(cc))
    except Exception as exc:  # pragma: no cover
        cc.notes.append(f"compiled code: the compile cache could not be finished ({type(exc).__name__}: {exc})")


def _summary(cc: CompileCache) -> str:
    where = _shown(cc.folder)
    state = cc.state
    if state == "warm":
        return f"compiled code: reused from earlier runs ({where}), so the first step starts sooner"
    if state == "cold":
        return (f"compiled code: none yet for these library versions on this GPU; kept in {where} for the next "
                "runs")
    warm = [n for n, p in cc.parts.items() if p["set_by"] == "vtc" and p["warm"]]
    cold = [n for n, p in cc.parts.items() if p["set_by"] == "vtc" and not p["warm"]]
    return f"compiled code: partly there from earlier runs ({', '.join(warm)}; not {', '.join(cold)}) in {where}"


def current() -> CompileCache | None:
    """This process's record (prepare()'s), or None when the Unsloth backend was never imported."""
    return _CURRENT


def manifest_record(backend: str) -> dict:
    """The manifest's ``compile_cache``: this process's record (the unsloth backend), or why there is none."""
    if _CURRENT is not None and backend == "unsloth":
        return _CURRENT.record()
    if backend == "transformers":
        return {"state": "not used", "reason": "the transformers backend does not compile the model (no "
                                               "torch.compile), so it keeps no compiled code"}
    return {"state": "not used", "reason": f"the {backend} backend did not set up a compile cache"}


# ---- `vtc cache`: list and clear -----------------------------------------------------------------------------

def folder_size(folder: Path) -> tuple[int, int]:
    """(files, bytes) under ``folder``, links not followed."""
    files = size = 0
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in filenames:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            files += 1
            size += st.st_size
    return files, size


def in_use(folder: Path) -> bool:
    """Whether a running process holds the folder's .in-use lock."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover
        return False
    try:
        fd = os.open(folder / IN_USE, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # closing releases the lock
    return False


def read_key_file(folder: Path) -> dict:
    """A key folder's key.json, or {} when it is missing or not what vtc writes."""
    from vtc.confine import Refused, read_regular

    try:
        data = json.loads(read_regular(folder / KEY_FILE, 256 * 1024).decode("utf-8"))
    except (Refused, OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def describe(made_of: dict) -> str:
    """The versions a key was made of, in one line."""
    packages = made_of.get("packages") if isinstance(made_of.get("packages"), dict) else {}
    build = made_of.get("torch_build") if isinstance(made_of.get("torch_build"), dict) else {}
    words = []
    if build.get("__version__"):
        words.append(f"torch {build['__version__']}" + (f" (CUDA {build['cuda']})" if build.get("cuda") not in
                                                         (None, "None") else ""))
    words += [f"{name} {packages[name]}" for name in KEY_PACKAGES[1:] if packages.get(name)]
    if made_of.get("python"):
        words.append(str(made_of["python"]))
    return ", ".join(words) or "unknown versions"


def list_caches(root: Path | None = None) -> list[dict]:
    """The key folders under ``root`` (default compile_root()): key, folder, versions, size by part, GPUs, when last
    used, whether a run uses it now, whether it is this installation's key. Newest first."""
    root = Path(root) if root is not None else compile_root()
    try:
        folders = [Path(e.path) for e in os.scandir(root) if e.is_dir(follow_symlinks=False)
                   and not e.name.startswith(".")]
    except OSError:
        return []
    here = key_of(key_material())
    out = []
    for folder in folders:
        info = read_key_file(folder)
        parts = {}
        for name, (_, sub, _) in PARTS.items():
            files, size = folder_size(folder / sub) if (folder / sub).is_dir() else (0, 0)
            parts[name] = {"files": files, "bytes": size}
        gpus = sorted({e.name for name in PER_GPU if (folder / PARTS[name][1]).is_dir()
                       for e in os.scandir(folder / PARTS[name][1]) if e.is_dir(follow_symlinks=False)})
        try:
            used = os.stat(folder / KEY_FILE).st_mtime
        except OSError:
            used = 0.0
        out.append({"key": folder.name, "folder": str(folder), "made_of": info.get("made_of") or {},
                    "parts": parts, "bytes": sum(p["bytes"] for p in parts.values()),
                    "files": sum(p["files"] for p in parts.values()), "gpus": gpus, "last_used": used,
                    "in_use": in_use(folder), "current": folder.name == here})
    return sorted(out, key=lambda c: -c["last_used"])


def clear(root: Path | None = None) -> tuple[int, int, list[str]]:
    """Remove every key folder under ``root`` that no running process uses: (folders removed, bytes freed, the
    folders kept because a run uses them)."""
    root = Path(root) if root is not None else compile_root()
    removed = freed = 0
    kept: list[str] = []
    try:
        folders = [Path(e.path) for e in os.scandir(root) if e.is_dir(follow_symlinks=False)]
    except OSError:
        return 0, 0, []
    try:
        import fcntl
    except ImportError:  # pragma: no cover
        fcntl = None
    for folder in folders:
        fd = None
        if fcntl is not None and not folder.name.startswith("."):
            try:
                fd = os.open(folder / IN_USE, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                if fd is not None:
                    os.close(fd)
                kept.append(str(folder))
                continue
        try:
            _, size = folder_size(folder)
            # Renamed first, so that a run starting now makes a fresh folder instead of using a half-removed one.
            trash = root / f".removing-{folder.name}-{os.getpid()}"
            os.replace(folder, trash)
            shutil.rmtree(trash, ignore_errors=True)
            removed += 1
            freed += size
        except OSError:
            kept.append(str(folder))
        finally:
            if fd is not None:
                os.close(fd)
    return removed, freed, kept
