"""The plan as a contract: its version, its schema (plan.schema.json), and reading and writing plan files.

    PLAN_VERSION                      the one place the plan format's version is defined
    plan_to_json(plan) -> str         deterministic JSON: sorted keys, two-space indent, trailing newline
    plan_problems(plan) -> [(pointer, sentence)]   what makes a plan invalid: its schema, then the rules that tie
                                      fields together (full fine-tuning has no LoRA, one training length, ...)
    read_plan(path) -> dict           a plan file, checked; VtcError (VT510, VT514) for anything else
    plan_schema_text() -> str         what `vtc schema --plan` prints
    runs_folder_problem(folder) -> str | None      why run folders may not go into ``folder`` (the file system's
                                      root, a system folder, the home folder itself, a folder of other files), or
                                      None; the compiler's `save to` check (VT265) and the runtime (VT537) share it

The compiler writes plans (vtc.compiler.plan) and checks each one before it leaves (vtc.compiler.pipeline); the
runtime reads them and never the recipe. Both import this module, which imports neither of them, nor torch.
"""

from __future__ import annotations

import json
import ntpath
import os
import re
from functools import lru_cache
from pathlib import Path

from vtc import schema_engine
from vtc.diagnostics import Diagnostic, Span, VtcError, error

PLAN_VERSION = 6
# What changed in each version, for a plan file of an older one (VT510): its values would mean something else now.
_VERSION_CHANGES = {
    2: "version 3 changed what training.batch means (samples per update, no longer rows per forward pass) and "
       "moves the split into micro-batches to the runtime",
    3: "version 4 trains on several processes: hardware.distributed is new and the batch is split over the run's "
       "processes",
    4: "version 5 reads other tools' data formats (data sources' format, data.images_folder), budgets pixels "
       "(images.resize mode pixels), trains the projector (parts.projector, lora.modules_to_save) and gives parts "
       "learning rates of their own (training.part_learning_rates)",
    5: "version 6 reads video (the plan's video section: sampling, window, frame size; multi-frame DICOM and TIFF "
       "files read as clips) and estimates its tokens and memory (estimates.video_*)",
}
SCHEMA_FILE = Path(__file__).with_name("plan.schema.json")

_REMAKE = "make the plan again from its recipe: `vtc plan recipe.vt -o plan.json` (or run the recipe itself)"


def plan_schema_text() -> str:
    """The JSON Schema of a plan (what `vtc schema --plan` prints)."""
    return SCHEMA_FILE.read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def plan_schema() -> dict:
    return json.loads(plan_schema_text())


def plan_to_json(plan: dict) -> str:
    """The plan as deterministic JSON: sorted keys, two-space indent, trailing newline."""
    return json.dumps(plan, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


# --- what makes a plan invalid ---------------------------------------------------------------------------------------

_KIND = {"integer": "a whole number", "number": "a number", "string": "text", "boolean": "true or false",
         "array": "a list", "object": "an object", "null": "null"}


def plan_problems(plan, engine: str = "fast") -> list[tuple[str, str]]:
    """(JSON pointer, sentence) for every problem of a plan: schema errors first, then, on a plan that passes its
    schema, the rules between fields. [] for a valid plan."""
    schema = plan_schema()
    problems = []
    for keyword, path, instance, node in schema_engine.worst_only(schema_engine.raw_errors(plan, schema, engine)):
        problems.extend(_sentences(keyword, path, instance, node, schema))
    if problems:
        return problems
    return _rules(plan)


def _sentences(keyword: str, path: tuple, instance, node: dict, root: dict) -> list[tuple[str, str]]:
    here = schema_engine.pointer(path) or "/"
    if keyword == "oneOf":
        # Say what is wrong with the closest form (fewest errors; the null form only when the value is null).
        forms = [alt for alt in node["oneOf"] if instance is None or alt != {"type": "null"}]
        tried = [schema_engine.raw_errors_at(instance, alt, path, root) for alt in forms]
        if all(tried):
            closest = schema_engine.worst_only(min(tried, key=len))
            return [s for err in closest for s in _sentences(*err, root)]
        return [(here, "matches more than one of its accepted forms")]
    if keyword == "type":
        kinds = node["type"] if isinstance(node["type"], list) else [node["type"]]
        return [(here, f"must be {' or '.join(_KIND.get(k, k) for k in kinds)}, not {_shown(instance)}")]
    if keyword == "enum":
        return [(here, f"must be one of {', '.join(json.dumps(c) for c in node['enum'])}, not {_shown(instance)}")]
    if keyword == "const":
        return [(here, f"must be {json.dumps(node['const'])}, not {_shown(instance)}")]
    if keyword == "required":
        return [(schema_engine.pointer(path + (name,)), "is missing")
                for name in node["required"] if name not in instance]
    if keyword == "additionalProperties":
        return [(schema_engine.pointer(path + (extra,)), "is not a field of a plan (misspelt, or from another "
                 "version of vtc)") for extra in sorted(set(instance) - set(node.get("properties", {})))]
    bounds = {"minimum": "at least", "maximum": "at most", "exclusiveMinimum": "more than",
              "exclusiveMaximum": "less than"}
    if keyword in bounds:
        return [(here, f"must be {bounds[keyword]} {node[keyword]}, not {_shown(instance)}")]
    if keyword == "minLength":
        return [(here, "must not be empty")]
    if keyword in ("minItems", "maxItems"):
        low, high = node.get("minItems"), node.get("maxItems")
        count = f"exactly {low}" if low == high else f"at least {low}" if keyword == "minItems" else f"at most {high}"
        return [(here, f"must list {count} item{'s' * (count != 'exactly 1')}, not {len(instance)}")]
    if keyword == "uniqueItems":
        return [(here, "lists an item twice")]
    return [(here, f"fails the plan schema ({keyword})")]  # pragma: no cover - every keyword the schema uses is above


def _shown(value) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


def _rules(plan: dict) -> list[tuple[str, str]]:
    """The rules between fields that a schema cannot say simply."""
    out = []
    full = plan["method"] == "full"
    if full and plan["lora"] is not None:
        out.append(("/lora", "must be null with method \"full\" (full fine-tuning trains no adapter)"))
    if not full and plan["lora"] is None:
        out.append(("/lora", f"must describe the adapter with method \"{plan['method']}\""))
    if full and plan["trainable_regex"] is None:
        out.append(("/trainable_regex", "must say which parameters train with method \"full\""))
    if not full and plan["trainable_regex"] is not None:
        out.append(("/trainable_regex", f"must be null with method \"{plan['method']}\" (LoRA trains its adapter)"))
    t = plan["training"]
    if (t["steps"] is None) == (t["epochs"] is None):
        out.append(("/training/steps", "exactly one of /training/steps and /training/epochs must be set"))
    if (t["warmup_steps"] is None) == (t["warmup_ratio"] is None):
        out.append(("/training/warmup_steps",
                    "exactly one of /training/warmup_steps and /training/warmup_ratio must be set"))
    if plan["data"]["eval"] is not None and plan["data"]["holdout"] is not None:
        out.append(("/data/holdout", "must be null when /data/eval names evaluation data (one or the other)"))
    out.extend(_batch_rules(t))
    gpus = plan["hardware"]["gpus"]
    if gpus != "all" and t["batch"] % gpus:
        out.append(("/hardware/gpus", f"must divide /training/batch ({t['batch']}): each GPU trains an equal share"))
    if plan["hardware"]["distributed"]["strategy"] == "fsdp2" and plan["method"] == "qlora":
        out.append(("/hardware/distributed/strategy", "must be \"ddp\" with method \"qlora\" (4-bit weights are "
                    "not sharded)"))
    if t["responses_only"] and plan["model"]["markers"] is None:
        out.append(("/training/responses_only", "needs /model/markers (the chat markers of the model's family)"))
    out.extend(_video_rules(plan))
    return out


def _video_rules(plan: dict) -> list[tuple[str, str]]:
    """The plan's video section against itself and the images section (docs/plan.md, video)."""
    video = plan["video"]
    if video is None:
        return []
    out = []
    window = video["window"]
    if window is not None and window["end"] is not None and window["end"] <= window["start"]:
        out.append(("/video/window/end", f"must be after /video/window/start ({window['start']:g} s)"))
    if video["min_frames"] > video["max_frames"]:
        out.append(("/video/min_frames", f"must be at most /video/max_frames ({video['max_frames']})"))
    resize = video["resize"]
    if resize["mode"] == "pixels" and resize["min_pixels"] > resize["max_pixels"]:
        out.append(("/video/resize/min_pixels", f"must be at most /video/resize/max_pixels ({resize['max_pixels']})"))
    if video["multi_frame_files"] == "clips" and plan["images"]["tiff_pages"] == "all":
        out.append(("/images/tiff_pages", "must be \"first\" when /video/multi_frame_files is \"clips\" (every TIFF "
                    "file is read as a clip)"))
    return out


def _batch_rules(t: dict) -> list[tuple[str, str]]:
    """micro_batch x accumulate x processes = batch: every micro-batch the plan names divides the batch (the
    processes are the run's world size, known at run time: the runtime checks the batch per process, VT548)."""
    out = []
    batch, micro, rule = t["batch"], t["micro_batch"], t["batching"]
    if micro != "auto" and batch % micro:
        out.append(("/training/micro_batch", f"must divide /training/batch ({batch})"))
    if (micro == "auto") == (rule["fallback"] is None):
        out.append(("/training/batching/fallback", "must be a micro-batch when /training/micro_batch is \"auto\", "
                    "and null when it is pinned"))
    elif rule["fallback"] is not None and batch % rule["fallback"]:
        out.append(("/training/batching/fallback", f"must divide /training/batch ({batch})"))
    listed = [row["micro_batch"] for row in rule["memory_gib"]]
    if any(batch % m for m in listed) or listed != sorted(set(listed)):
        out.append(("/training/batching/memory_gib", f"must list divisors of /training/batch ({batch}), each once, "
                    "smallest first"))
    return out


# --- reading a plan file ---------------------------------------------------------------------------------------------


# A plan is a few kilobytes; a file many times that is not one (and is never read whole into memory).
PLAN_LIMIT = 16 * 2**20
# Whole numbers in a plan file: counts and sizes, far below this. A longer run of digits is refused before Python
# converts it (beyond 4,300 digits int() itself refuses, with a traceback).
_MAX_DIGITS = 18


def _plan_int(text: str) -> int:
    if len(text.lstrip("-")) > _MAX_DIGITS:
        raise ValueError(f"the number {text[:12]}... has {len(text.lstrip('-')):,} digits; a plan's whole numbers "
                         f"have at most {_MAX_DIGITS}")
    return int(text)


def _plan_float(text: str) -> float:
    value = float(text)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"the number {text[:20]} is too large to be a number of a plan")
    return value


def _plan_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows (a plan holds finite numbers only)")


def read_plan(path: str | Path) -> dict:
    """A plan file, checked against the schema and the rules; raises VtcError with every problem otherwise:
    VT510 (no such file, not a regular file, larger than PLAN_LIMIT, not JSON, a number out of range, not a plan,
    another plan_version), VT514 (a value, each with its JSON pointer). The file is read under the confinement rule
    (vtc.confine): a regular file only (never a FIFO, a device or a file of /proc), at most PLAN_LIMIT bytes."""
    from vtc.confine import Refused, read_confined

    path = Path(path)
    where = Span(str(path))
    try:
        text = read_confined(path, None, PLAN_LIMIT).decode("utf-8")
    except Refused as exc:
        if exc.kind == "missing":
            raise VtcError(error("VT510", f"plan file not found: {path}", where, help="give a recipe (.vt) or a "
                                 "plan saved with `vtc plan recipe.vt -o plan.json`")) from None
        raise VtcError(error("VT510", f"cannot read {path}: {exc.reason}", where, help=_REMAKE)) from None
    except UnicodeDecodeError as exc:
        raise VtcError(error("VT510", f"cannot read {path}: it is not UTF-8 text ({exc.reason})", where,
                             help=_REMAKE)) from None
    try:
        plan = json.loads(text, parse_int=_plan_int, parse_float=_plan_float, parse_constant=_plan_constant)
    except (ValueError, RecursionError) as exc:
        line, column = getattr(exc, "lineno", 0), getattr(exc, "colno", 0)
        why = "it nests too deeply" if isinstance(exc, RecursionError) else getattr(exc, "msg", exc)
        raise VtcError(error("VT510", f"cannot read {path.name} as JSON: {why}",
                             Span(str(path), line, column), help=_REMAKE)) from None
    if not isinstance(plan, dict) or "plan_version" not in plan:
        raise VtcError(error("VT510", f"{path} is not a vtc plan (it has no plan_version)", where,
                             help="create one with `vtc plan recipe.vt -o plan.json`, or run the recipe itself"))
    if plan["plan_version"] != PLAN_VERSION:
        version = plan["plan_version"]
        older = isinstance(version, int) and not isinstance(version, bool) and version < PLAN_VERSION
        why = (f" ({_VERSION_CHANGES[version]})" if older and version in _VERSION_CHANGES else
               ", made by an older vtc" if older else "")
        raise VtcError(error("VT510", f"{path} has plan_version {_shown(version)}{why}; this vtc runs version "
                             f"{PLAN_VERSION}", where,
                             help="compile the recipe again with this vtc: `vtc plan recipe.vt -o plan.json`, or run "
                                  "the recipe itself (a run folder of an older vtc cannot be resumed by this one: "
                                  "start the run again)"))
    problems = plan_problems(plan)
    if problems:
        raise VtcError(plan_diagnostics(problems, str(path), text))
    return plan


def plan_diagnostics(problems: list[tuple[str, str]], file: str, text: str | None = None) -> list[Diagnostic]:
    """VT514 diagnostics for plan_problems' findings, at the line of each pointer in the file's text."""
    return [error("VT514", f"{pointer} {sentence}", Span(file, _line_of(text, pointer) if text else 0),
                  help="this plan was edited by hand or made by another tool; " + _REMAKE)
            for pointer, sentence in problems]


def _line_of(text: str, pointer: str) -> int:
    """The line where the member a pointer names starts in a JSON text (0 when not found): each key is searched
    after the previous one, which finds it in the layout plan_to_json writes and in most hand edits."""
    position, found = 0, 0
    for token in pointer.strip("/").split("/"):
        if not token or token.isdigit():
            continue
        key = json.dumps(token.replace("~1", "/").replace("~0", "~")) + ":"
        at = text.find(key, position)
        if at < 0:
            break
        position, found = at + len(key), text.count("\n", 0, at) + 1
    return found


# --- where run folders may go ----------------------------------------------------------------------------------------

# A run folder's name in any state: run-NNN, run-NNN.partial, .failed, .interrupted (vtc.runtime.outputs).
RUN_NAME = re.compile(r"^run-(\d+)(\.partial|\.failed|\.interrupted)?$")

# Folders of the operating system: no run folder goes into them or anywhere below them.
SYSTEM_TREES = ("/etc", "/boot", "/dev", "/proc", "/sys", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
                "/usr/bin", "/usr/sbin", "/usr/lib", "/usr/lib32", "/usr/lib64", "/usr/libexec", "/usr/include",
                "/usr/share", "/usr/local/bin", "/usr/local/sbin", "/usr/local/lib", "/usr/local/etc",
                "/usr/local/share", "/var/log", "/var/spool", "/var/mail", "/var/cache", "/var/run", "/var/lock",
                "/var/db", "/var/empty", "/run", "/private/etc", "/System")
# ... except these, below a system tree, which hold users' files.
USER_TREES = ("/run/user", "/run/media")
# System folders and folders that hold other people's folders: refused themselves (a new folder below them is fine:
# /var/lib/jenkins/workspace/x/runs, /usr/src/app/runs, /home/me/runs).
SYSTEM_FOLDERS = ("/usr", "/usr/local", "/var", "/var/lib", "/private/var", "/home", "/Users", "/opt", "/srv",
                  "/mnt", "/media", "/tmp", "/private/tmp", "/var/tmp", "/root", "/Volumes", "/Library",
                  "/Applications")
# The same on Windows, whatever system compiles the recipe (compared without case, with / separators).
WINDOWS_TREES = ("C:/Windows", "C:/Program Files", "C:/Program Files (x86)", "C:/ProgramData",
                 "C:/$Recycle.Bin", "C:/System Volume Information")
WINDOWS_FOLDERS = ("C:/Users",)
# Files that any folder may hold without being "other files": version control's placeholders, a desktop's notes.
_IGNORED = {".gitkeep", ".gitignore", ".keep", ".DS_Store", "Thumbs.db", "desktop.ini"}


def _inside(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


def runs_folder_problem(folder: str | os.PathLike) -> str | None:
    """Why run folders may not be created in ``folder`` (a sentence completing "... because "), or None.

    Refused: the file system's root (or a Windows drive's); a system folder (/etc, /boot, /dev, /proc, /sys, /bin,
    /lib, /usr/bin, /usr/share, /var/log, /run, C:/Windows, C:/Program Files, ...) or any folder below one; /usr,
    /var, /var/lib and the folders that hold other people's folders (/home, /tmp, /opt, C:/Users, ...) themselves;
    the user's home folder itself; a file; and an existing folder that is neither empty nor a vtc runs folder. A
    runs folder is one that holds a run folder (run-NNN in any state): the first run makes it one. Links are
    followed first, so a link to /etc is /etc. Only os.path calls: the compiler uses this too."""
    text = os.fspath(folder)
    try:
        windows = _windows_problem(text)
        if windows:
            return windows
        real = os.path.realpath(os.path.expanduser(text))
        if os.name == "nt":  # pragma: no cover - the text was checked above; here the resolved path
            windows = _windows_problem(real)
            if windows or re.fullmatch(r"[A-Za-z]:[\\/]?", real):
                return windows or "it is the root of a drive"
        posix = real.replace(os.sep, "/")
        if posix == "/":
            return "it is the file system's root"
        home = os.path.realpath(os.path.expanduser("~"))
        if real == home and home != os.path.realpath(os.sep):
            return "it is your home folder itself, which holds your own files"
        for top in SYSTEM_TREES:
            if _inside(posix, top) and not any(_inside(posix, user) for user in USER_TREES):
                return (f"it is a system folder ({top})" if posix == top else
                        f"it is inside a system folder ({top}), which belongs to the operating system")
        if posix in SYSTEM_FOLDERS:
            return f"it is {posix}, a folder of the system that holds other folders, not a runs folder"
        if os.path.lexists(real) and not os.path.isdir(real):
            return "it is a file, not a folder"
        if os.path.isdir(real):
            entries = [name for name in os.listdir(real) if name not in _IGNORED]
            if entries and not any(RUN_NAME.match(name) for name in entries):
                shown = ", ".join(sorted(entries)[:3]) + (", ..." if len(entries) > 3 else "")
                return (f"it already holds other files ({shown}) and no run folder, so it is not a vtc runs "
                        "folder")
    except (OSError, ValueError) as exc:  # a name the file system cannot hold (a NUL, a surrogate, too long)
        return f"it cannot be used as a folder name ({getattr(exc, 'strerror', None) or exc})"
    return None


def _windows_problem(text: str) -> str | None:
    """The rule for a Windows path (C:\\Windows, c:/program files/x), on any system."""
    if not re.match(r"^[A-Za-z]:([\\/]|$)", text):
        return None
    norm = ntpath.normpath(text).replace("\\", "/").rstrip("/")
    if re.fullmatch(r"[A-Za-z]:", norm):
        return "it is the root of a Windows drive"
    key = "c:" + norm[2:].lower()
    for top in WINDOWS_TREES:
        if _inside(key, top.lower()):
            return (f"it is a system folder of Windows ({top})" if key == top.lower() else
                    f"it is inside a system folder of Windows ({top})")
    if key in (f.lower() for f in WINDOWS_FOLDERS) or re.fullmatch(r"c:/users/[^/]+", key):
        return "it is the Windows folder of users, or a user's home folder itself"
    return None
