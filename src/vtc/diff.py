"""`vtc diff OLD NEW`: what changes for the run between two recipes, plans or run folders (docs/diff.md).

    load_side(arg, other) -> Side                 a recipe, a REV:path, a plan JSON or a run folder, compiled
    sides(old, new) -> (Side, Side)               the two arguments (`vtc diff HEAD~1 recipe.vt` included)
    compare(old, new) -> dict                     the comparison, in the JSON shape (DIFF_VERSION)
    render_text / render_markdown / render_json   its three forms
    textconv(path) -> str                         the resolved view of one recipe, for git's diff driver

Plans are compared, never text: every value of the two plans (by JSON pointer, as the plan's provenance map names
them) that differs, with where each came from. A recipe read from a git revision is compiled with its includes read
from the same revision (GitLoader), under the rule pipeline.FileLoader applies to files: inside the repository, .vt
files only, size bounded. Only the compiler is imported: never torch, transformers or av.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field, replace
from pathlib import Path

from vtc.diagnostics import Diagnostic, Span, VtcError, error, printable, warning

DIFF_VERSION = 1
# Plan keys that say how the plan was made or where values came from, not what runs: left out of the comparison.
# base_dir is the folder relative paths start from: it differs between a git revision and the working tree of the
# same recipe, and between copies of a project, without changing what `from ./data` means to the recipe's author.
# (provenance is shown beside each change; recipe lists the files read; inputs are a saved plan's fingerprints.)
IGNORED = ("base_dir", "inputs", "provenance", "recipe", "vtc_version")
# Estimates are reported once, in the impact section, not as changes of their own.
IMPACT_ONLY = "/estimates"
# Provenance kinds of values that follow from others (the model's registry entry, values vtc computes).
FOLLOWING = ("derived", "registry")
MISSING = object()  # a key one plan has and the other has not
# git: how long a `git` command may take (a revision of a large repository is read in well under a second).
GIT_TIMEOUT_S = 30


@dataclass
class Side:
    """One side of a diff: what was given (``label``), its kind, its plan (None when it did not compile), the
    diagnostics of compiling it, the text of the files read, and for a run folder the folder."""

    label: str
    kind: str  # recipe | revision | plan | run
    plan: dict | None = None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)
    folder: Path | None = None


# ---- git ---------------------------------------------------------------------------------------------------------

def _git(args: list[str], cwd: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0"}
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, timeout=GIT_TIMEOUT_S, env=env)


def _repository(cwd: str, shown: str) -> tuple[str, str]:
    """(the repository's top folder, the current folder relative to it with a trailing slash), or VT574."""
    try:
        top = _git(["rev-parse", "--show-toplevel"], cwd)
        prefix = _git(["rev-parse", "--show-prefix"], cwd)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise VtcError(error("VT574", f"cannot read {shown}: git cannot be run ({type(exc).__name__})", Span(shown),
                             help="install git, or compare two files: `git show REV:recipe.vt > old.vt`")) from None
    if top.returncode or prefix.returncode:
        raise VtcError(error("VT574", f"cannot read {shown}: {printable(os.path.abspath(cwd))} is not inside a git "
                                      "repository",
                             Span(shown), help="run `vtc diff` inside the recipe's repository, or compare two files"))
    return top.stdout.decode("utf-8", "replace").strip(), prefix.stdout.decode("utf-8", "replace").strip()


def _commit(rev: str, cwd: str, shown: str) -> str:
    """The commit a revision names (its full hash), or VT575."""
    if not rev or rev.startswith("-"):  # never an option of git's
        raise VtcError(error("VT575", f"`{rev}` is not a git revision", Span(shown),
                             help="name a commit, a branch or a tag: `HEAD~1`, `main`, `v1.2`"))
    found = _git(["rev-parse", "--verify", "--quiet", "--end-of-options", rev + "^{commit}"], cwd)
    if found.returncode:
        raise VtcError(error("VT575", f"unknown git revision `{rev}`", Span(shown),
                             help="name a commit, a branch or a tag that this repository has (`git log --oneline` "
                                  "lists the commits)"))
    return found.stdout.decode().strip()


def is_revision(word: str, cwd: str = ".") -> bool:
    """True when ``word`` names a commit of the repository around ``cwd`` (and git can be run)."""
    if not word or word.startswith("-"):
        return False
    try:
        return _git(["rev-parse", "--verify", "--quiet", "--end-of-options", word + "^{commit}"], cwd).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


class GitLoader:
    """Reads recipe files from one commit (`git ls-tree` + `git cat-file`), for the main recipe and its includes,
    under the rule of pipeline.FileLoader: a .vt file, inside the repository (a name that climbs out of it is
    refused before git is asked), a regular file of the commit (never a link or a submodule), at most
    RECIPE_LIMIT bytes, MOST_FILES files and MOST_BYTES bytes in all. ``local`` maps a repository path to the name
    the compile knows it by (a path relative to the current folder, as in the working tree), and back."""

    def __init__(self, commit: str, top: str, rev: str):
        self.commit, self.top, self.rev = commit, top, rev
        self.read, self.bytes = 0, 0

    def in_repo(self, name: str) -> str | None:
        """The repository path of a local file name, or None when it is outside the repository."""
        rel = os.path.relpath(os.path.abspath(name), self.top)
        if rel == os.pardir or rel.startswith(os.pardir + os.sep) or os.path.isabs(rel):
            return None
        return rel.replace(os.sep, "/")

    def blob(self, rel: str, shown: str, code_missing=FileNotFoundError) -> str:
        from vtc.compiler.lower import IncludeRefused
        from vtc.compiler.parser import decode_source
        from vtc.compiler.pipeline import MOST_BYTES, MOST_FILES, RECIPE_LIMIT

        listed = _git(["ls-tree", "-l", "--full-tree", self.commit, "--", rel], self.top)
        line = listed.stdout.decode("utf-8", "replace").strip()
        if listed.returncode or not line or "\n" in line:
            raise code_missing(rel)
        meta, _, _path = line.partition("\t")
        mode, kind, sha, size = (meta.split() + ["", "", "", ""])[:4]
        if kind != "blob" or mode not in ("100644", "100755"):
            raise IncludeRefused("VT303", f"cannot read `{shown}` in {self.rev}: it is not a regular file there "
                                          f"(git mode {mode})", "include a .vt recipe file (a regular file)")
        if not size.isdigit() or int(size) > RECIPE_LIMIT:
            raise IncludeRefused("VT307", f"`{shown}` in {self.rev} is larger than {RECIPE_LIMIT // 1024} KB: too "
                                          "large for a recipe", "a recipe is a short text file of clauses")
        if self.read >= MOST_FILES or self.bytes + int(size) > MOST_BYTES:
            raise IncludeRefused("VT307", f"`{shown}`: this recipe would read more than {MOST_FILES} files or "
                                          f"{MOST_BYTES // 1024} KB of text", "include fewer or shorter files")
        data = _git(["cat-file", "blob", sha], self.top).stdout
        self.read += 1
        self.bytes += len(data)
        text, diagnostics = decode_source(data, shown)
        if text is None:
            raise VtcError(diagnostics)
        return text

    def __call__(self, written: str, including_file: str) -> tuple[str, str]:
        from vtc.compiler.lower import IncludeRefused

        name = os.path.normpath(os.path.join(os.path.dirname(including_file), os.path.expanduser(written)))
        rule = (f"an include must be a .vt recipe file inside the repository {self.top}; copy what you need into "
                "a .vt file there")
        if not written.lower().endswith(".vt"):
            raise IncludeRefused("VT306", f"`include {written}`: vtc includes only .vt recipe files", rule)
        rel = self.in_repo(name)
        if rel is None:
            raise IncludeRefused("VT306", f"`include {written}` leads outside the recipe's repository; vtc opens "
                                          "nothing there", rule)
        return name, self.blob(rel, name)


def _at_revision(rev: str, path: str, shown: str) -> Side:
    """The recipe ``path`` as commit ``rev`` has it, compiled with includes from the same commit. ``path`` as git
    reads `REV:path`: relative to the repository's top, or to the current folder when it starts with ./ or ../."""
    from vtc.compiler.lower import IncludeRefused
    from vtc.compiler.pipeline import compile_source
    from vtc.diagnostics import cap_per_file

    top, prefix = _repository(".", shown)
    commit = _commit(rev, ".", shown)
    relative_here = path.startswith(("./", "../")) or path in (".", "..")
    rel = os.path.normpath(os.path.join(prefix if relative_here else "", path)).replace(os.sep, "/")
    local = os.path.relpath(os.path.join(top, rel))  # the name the working tree's copy has from here
    loader = GitLoader(commit, top, rev)
    if rel.startswith("../") or rel == "..":
        raise VtcError(error("VT576", f"{shown}: {path} is outside the repository", Span(shown),
                             help="give a path inside the repository: `REV:recipes/x.vt`"))
    try:
        text = loader.blob(rel, local, code_missing=FileNotFoundError)
    except FileNotFoundError:
        raise VtcError(error("VT576", f"{shown}: there is no file {rel} in {rev}", Span(shown),
                             help=f"`git ls-tree -r --name-only {rev}` lists its files; a path in `REV:path` is "
                                  "relative to the repository's top (or to this folder when it starts with ./)")) \
            from None
    except IncludeRefused as exc:  # a link, a folder, too large
        raise VtcError(error("VT576", exc.message, Span(shown), help="give a .vt recipe file of that revision")) \
            from None
    except VtcError as exc:  # not UTF-8 text: the decoder's diagnostics, naming the revision's file
        raise VtcError([_renamed(d, {local: shown}) for d in exc.diagnostics]) from None
    result = compile_source(text, local, load=loader, base_dir=os.path.dirname(os.path.abspath(local)))
    # The diagnostics and the sources name the revision's files as `REV:path`, never as the working tree's.
    names = {name: f"{rev}:{loader.in_repo(name) or name}" for name in result.sources}
    diagnostics = cap_per_file([_renamed(d, names) for d in result.diagnostics])
    sources = {names.get(k, k): v for k, v in result.sources.items()}
    return Side(shown, "revision", result.plan, diagnostics, sources)


def _renamed(d: Diagnostic, names: dict[str, str]) -> Diagnostic:
    def span(s: Span | None) -> Span | None:
        return replace(s, file=names[s.file]) if s is not None and s.file in names else s

    return replace(d, span=span(d.span), related=tuple((span(s), text) for s, text in d.related))


# ---- the sides ---------------------------------------------------------------------------------------------------

def _read_json(path: Path, limit: int) -> object:
    """A JSON file of a plan or a run folder under the confinement rule (regular file, bounded), or raises
    ValueError / OSError."""
    from vtc.confine import Refused, read_confined

    try:
        return json.loads(read_confined(path, None, limit).decode("utf-8"))
    except Refused as exc:
        raise OSError(exc.reason) from None


def _plan_file(path: Path, shown: str) -> dict:
    """A plan JSON, read leniently (a plan of another plan_version is still compared), or VT510."""
    from vtc.plans import PLAN_LIMIT

    try:
        plan = _read_json(path, PLAN_LIMIT)
    except (OSError, ValueError, RecursionError) as exc:
        raise VtcError(error("VT510", f"cannot read {shown} as a plan: {exc}", Span(shown),
                             help="give a plan saved with `vtc plan recipe.vt -o plan.json`")) from None
    if not isinstance(plan, dict) or "plan_version" not in plan:
        raise VtcError(error("VT510", f"{shown} is not a vtc plan (it has no plan_version)", Span(shown),
                             help="give a recipe (.vt), a plan saved with `vtc plan -o`, or a run folder"))
    return plan


def load_side(arg: str) -> Side:
    """One argument that names something by itself: a run folder, a plan JSON, a recipe, or `REV:path`."""
    from vtc.compiler.pipeline import compile_file

    shown = printable(arg)
    if os.path.isdir(arg):
        from vtc.runtime.report import check_run_folder  # imports the report module only: no torch

        folder = check_run_folder(arg)
        return Side(shown, "run", _plan_file(folder / "plan.json", f"{shown}/plan.json"), folder=folder)
    if os.path.exists(arg):
        if arg.lower().endswith(".json"):
            return Side(shown, "plan", _plan_file(Path(arg), shown))
        result = compile_file(arg)
        return Side(shown, "recipe", result.plan, list(result.diagnostics), dict(result.sources))
    rev, colon, path = arg.partition(":")
    if colon and rev and path and not (len(rev) == 1 and rev.isalpha() and os.name == "nt"):
        return _at_revision(rev, path, shown)
    raise VtcError(error("VT301", f"no such file: {shown}", Span(shown),
                         help="give a recipe (.vt), a plan (.json), a run folder, `REV:path` (`HEAD~1:recipe.vt`), "
                              "or a revision then a file (`vtc diff HEAD~1 recipe.vt`)"))


def sides(old: str, new: str) -> tuple[Side, Side]:
    """The two sides. `vtc diff REV FILE` (a revision alone, then a file) compares the file as REV has it with the
    file now, as `git diff REV FILE` does; raises VtcError with the diagnostics of arguments that cannot be read."""
    looks_like_file = old.lower().endswith((".vt", ".json"))
    if not os.path.exists(old) and ":" not in old and os.path.isfile(new) and not looks_like_file \
            and not is_revision(old):
        _repository(".", printable(old))  # VT574 outside a repository
        _commit(old, ".", printable(old))  # VT575: a file name is taken as a revision when the other is a file
    if not os.path.exists(old) and ":" not in old and is_revision(old):
        if not os.path.exists(new) and (":" in new or is_revision(new)):
            raise VtcError(error("VT577", f"`{printable(old)}` is a git revision, and `{printable(new)}` is not a "
                                          "file to compare", Span(printable(old)),
                                 help=f"name the file: `vtc diff {printable(old)} recipe.vt`, or "
                                      f"`vtc diff {printable(old)}:recipe.vt {printable(new)}:recipe.vt`"))
        # `git diff REV path`: the path is relative to the current folder.
        path = new if new.startswith(("./", "../")) or os.path.isabs(new) else "./" + new
        if os.path.isabs(new):
            top, _ = _repository(".", old)
            path = os.path.relpath(new, top)
        return _at_revision(old, path, f"{printable(old)}:{printable(new)}"), load_side(new)
    return load_side(old), load_side(new)


# ---- comparing -----------------------------------------------------------------------------------------------------

def _source(plan: dict, pointer: str) -> str:
    """Where a value came from: its provenance ("file.vt:LINE", "default", "derived", "registry"), or for a part of
    the plan that holds several values, the first of theirs; "" when the plan does not say."""
    prov = plan.get("provenance") or {}
    if pointer in prov:
        return str(prov[pointer])
    return next((str(v) for k, v in sorted(prov.items()) if k.startswith(pointer + "/")), "")


def _file_of(source: str) -> str:
    """"base.vt:3" -> "base.vt"; other kinds as they are. Lines are left out where a comparison must not see them:
    a comment added above a clause moves it without changing anything."""
    name, colon, line = source.rpartition(":")
    return name if colon and line.isdigit() else source


def _role(plan: dict, source: str) -> str:
    """What a source is, for telling whether a value moved: the main recipe (whatever its name on each side: a.vt
    against b.vt is one recipe changed), an included file by its name, or a kind (default, derived, registry)."""
    name = _file_of(source)
    main = (plan.get("recipe") or {}).get("file")
    return "(the recipe)" if name != source and name == main else name


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _walk(old, new, pointer: str, out: list) -> None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            _walk(old.get(key, MISSING), new.get(key, MISSING), f"{pointer}/{_escape(key)}", out)
    elif old is MISSING or new is MISSING or type(old) is not type(new) or old != new:
        out.append((pointer, old, new))


def _leaves(value, pointer: str, out: list) -> None:
    if isinstance(value, dict) and value:
        for key in sorted(value):
            _leaves(value[key], f"{pointer}/{_escape(key)}", out)
    else:
        out.append((pointer, value))


def compare_plans(old: dict, new: dict) -> tuple[list[dict], list[dict]]:
    """(changes, moved): every value that differs, and every value that is the same but now comes from another
    file or kind of source (a value moved into an include, a default now written out). Values that only moved to
    another line are neither."""
    found: list = []
    for key in sorted((set(old) | set(new)) - set(IGNORED)):
        _walk(old.get(key, MISSING), new.get(key, MISSING), "/" + _escape(key), found)
    changes = [{"pointer": p, "old": None if a is MISSING else a, "new": None if b is MISSING else b,
                "old_source": _source(old, p) if a is not MISSING else "absent",
                "new_source": _source(new, p) if b is not MISSING else "absent"}
               for p, a, b in found if not p.startswith(IMPACT_ONLY + "/") and p != IMPACT_ONLY]
    moved = []
    for pointer, value in _same_leaves(old, new):
        before, after = _source(old, pointer), _source(new, pointer)
        if _role(old, before) != _role(new, after):
            moved.append({"pointer": pointer, "value": value, "old_source": before, "new_source": after})
    return changes, moved


def _same_leaves(old: dict, new: dict):
    """(pointer, value) of each provenance entry whose value is the same in both plans."""
    for pointer in sorted(set(old.get("provenance") or {}) & set(new.get("provenance") or {})):
        if pointer.startswith(IMPACT_ONLY):
            continue
        a, b = _at(old, pointer), _at(new, pointer)
        if a is not MISSING and a == b and type(a) is type(b):
            yield pointer, a


def _at(plan, pointer: str):
    node = plan
    for part in pointer.split("/")[1:]:
        key = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or key not in node:
            return MISSING
        node = node[key]
    return node


# ---- what it means -------------------------------------------------------------------------------------------------

def _length(plan: dict) -> str | None:
    t = plan.get("training") or {}
    if t.get("steps") is not None:
        return f"{t['steps']} steps of {t.get('batch')} examples"
    if t.get("epochs") is not None:
        return f"{t['epochs']:g} epoch{'s' * (t['epochs'] != 1)} in updates of {t.get('batch')} examples"
    return None


def _data(plan: dict, key: str) -> str | None:
    d = (plan.get("data") or {}).get(key)
    if not isinstance(d, dict):
        return None
    split = f" split {d['split']}" if d.get("split") else ""
    return f"{d.get('source')}{split}"


def _holdout(plan: dict):
    return (plan.get("data") or {}).get("holdout")


# (label, how to read it from a plan); each is reported when the two plans' values differ.
IMPACT = (
    ("trainable parameters", lambda p: _at(p, "/estimates/trainable_parameters/total")),
    ("image tokens per image", lambda p: _at(p, "/estimates/image_tokens_per_image")),
    ("image size", lambda p: _at(p, "/estimates/image_size")),
    ("GPU memory (GiB)", lambda p: _at(p, "/estimates/gpu_memory_gib")),
    ("training length", _length),
    ("training data", lambda p: _data(p, "train")),
    ("evaluation data", lambda p: _data(p, "eval")),
    ("holdout", _holdout),
    ("max length (tokens)", lambda p: _at(p, "/training/max_length")),
)


def impact(old: dict, new: dict, old_run: dict | None = None, new_run: dict | None = None) -> list[dict]:
    """What the changes mean for the run, each {"what", "old", "new"} (and "ratio" for numbers): only the items
    that differ. With two run folders (read_run), the rows each run trained and evaluated on too."""
    pairs = [(label, read(old), read(new)) for label, read in IMPACT]
    if old_run is not None and new_run is not None:
        def rows(run: dict, key: str):
            return ((run.get("manifest") or {}).get("data") or {}).get(key)

        pairs += [(label, rows(old_run, key), rows(new_run, key))
                  for label, key in (("training rows", "train_rows"), ("evaluation rows", "eval_rows"))]
    out = []
    for label, a, b in pairs:
        a, b = (None if v is MISSING else v for v in (a, b))
        if a == b:
            continue
        item = {"what": label, "old": a, "new": b}
        if _number(a) and _number(b) is not None:
            item["ratio"] = round(b / a, 3)
        out.append(item)
    return out


# ---- run folders ---------------------------------------------------------------------------------------------------

# A run folder's JSON files are small (a manifest is a few KB, eval.json under one); 16 MiB bounds a hostile one.
RUN_FILE_LIMIT = 16 * 2**20


def read_run(folder: Path, shown: str) -> tuple[dict, list[Diagnostic]]:
    """What a run folder says beyond its plan: {"manifest", "eval"} (each None when missing) and a VT578 warning
    for each file that is there but cannot be read."""
    out, problems = {}, []
    for key, name in (("manifest", "manifest.json"), ("eval", "eval.json")):
        path = folder / name
        out[key] = None
        if not path.exists():
            continue
        try:
            value = _read_json(path, RUN_FILE_LIMIT)
            if not isinstance(value, dict):
                raise ValueError("not a JSON object")
            out[key] = value
        except (OSError, ValueError, RecursionError) as exc:
            problems.append(warning("VT578", f"cannot read {shown}/{name}: {printable(str(exc))}",
                                    Span(f"{shown}/{name}"),
                                    help=f"the diff leaves out what {name} holds; `vtc report {shown}` reads the "
                                         "folder too"))
    return out, problems


def lock_changes(old_run: dict, new_run: dict) -> list[dict]:
    """What differs in the two runs' recorded inputs: library versions, the model (its revision or hash) and each
    data source's fingerprint, each {"what", "old", "new"}."""
    a, b = old_run.get("manifest") or {}, new_run.get("manifest") or {}
    out = []
    libs_a, libs_b = a.get("libraries") or {}, b.get("libraries") or {}
    for name in sorted(set(libs_a) | set(libs_b)):
        if libs_a.get(name) != libs_b.get(name):
            out.append({"what": f"library {name}", "old": libs_a.get(name), "new": libs_b.get(name)})
    model_a, model_b = a.get("model") or {}, b.get("model") or {}
    fp_a, fp_b = model_a.get("fingerprint") or {}, model_b.get("fingerprint") or {}
    for key in ("id", "revision", "version", "sha256"):
        if (fp_a.get(key) or model_a.get(key)) != (fp_b.get(key) or model_b.get(key)):
            out.append({"what": f"model {key}", "old": fp_a.get(key) or model_a.get(key),
                        "new": fp_b.get(key) or model_b.get(key)})
    data_a = (((a.get("data") or {}).get("fingerprint") or {}).get("sources")) or {}
    data_b = (((b.get("data") or {}).get("fingerprint") or {}).get("sources")) or {}
    for key in sorted(set(data_a) | set(data_b)):
        ha, hb = (data_a.get(key) or {}).get("sha256"), (data_b.get(key) or {}).get("sha256")
        if ha != hb:
            out.append({"what": f"{key} data", "old": ha, "new": hb})
    for key in ("backend",):
        if (a.get(key) or {}).get("name") != (b.get(key) or {}).get("name"):
            out.append({"what": key, "old": (a.get(key) or {}).get("name"), "new": (b.get(key) or {}).get("name")})
    return out


def metric_rows(old_run: dict, new_run: dict) -> list[dict]:
    """Each metric of either run's eval.json: {"metric", "old": {"before", "after"}, "new": {...}, "change"}
    (change: the new run's after minus the old run's after, when both have it)."""
    ea, eb = old_run.get("eval") or {}, new_run.get("eval") or {}

    def pair(e: dict, m: str) -> dict:
        return {"before": _number((e.get("before") or {}).get(m)), "after": _number((e.get("after") or {}).get(m))}

    names = sorted(set(ea.get("after") or {}) | set(eb.get("after") or {}))
    out = []
    for m in names:
        a, b = pair(ea, m), pair(eb, m)
        change = b["after"] - a["after"] if a["after"] is not None and b["after"] is not None else None
        out.append({"metric": m, "old": a, "new": b, "change": change})
    return out


def _number(value):
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


# ---- the whole comparison --------------------------------------------------------------------------------------------

def compare(old: Side, new: Side) -> dict:
    """The comparison of two compiled sides (both plans there), in the JSON shape docs/diff.md documents."""
    assert old.plan is not None and new.plan is not None
    changes, moved = compare_plans(old.plan, new.plan)
    both_runs = old.folder is not None and new.folder is not None
    runs = problems = None
    if both_runs:
        run_a, pa = read_run(old.folder, old.label)
        run_b, pb = read_run(new.folder, new.label)
        runs, problems = (run_a, run_b), pa + pb
    result = {
        "diff_version": DIFF_VERSION,
        "old": {"label": old.label, "kind": old.kind},
        "new": {"label": new.label, "kind": new.kind},
        "changes": changes,
        "moved": moved,
        "impact": impact(old.plan, new.plan, *(runs or (None, None))),
    }
    if both_runs:
        result["lock"] = lock_changes(*runs)
        result["metrics"] = metric_rows(*runs)
    result["_problems"] = problems or []
    return result


def differs(result: dict) -> bool:
    """True when something differs for the run (exit 1): a value, or a run's recorded inputs. Moved values and
    different metrics alone do not count (metrics are results, not settings)."""
    return bool(result["changes"] or result.get("lock"))


# ---- the three forms -------------------------------------------------------------------------------------------------

def _shown(value) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str):
        return printable(value, newlines=False)
    return printable(json.dumps(value, sort_keys=True, separators=(", ", ": ")), newlines=False)


def _cut(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[:width - 3] + "..."


def _split(changes: list[dict]) -> tuple[list[dict], list[dict]]:
    """(values set by a recipe or a default, values that follow from them: registry and derived on both sides)."""
    own = [c for c in changes if not (c["old_source"] in FOLLOWING + ("absent",)
                                      and c["new_source"] in FOLLOWING + ("absent",))]
    return own, [c for c in changes if c not in own]


def _metric(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def render_text(result: dict) -> str:
    lines = [f"vtc diff {result['old']['label']} -> {result['new']['label']}"]
    if not differs(result):
        lines.append("no change for the run")
    own, following = _split(result["changes"])
    if own:
        lines.append(f"changes ({len(own)})")
        for c in own:
            lines.append(f"  {c['pointer'][1:]:<32} {_cut(_shown(c['old']), 40)} -> {_cut(_shown(c['new']), 40)}"
                         f"   ({c['old_source']} -> {c['new_source']})")
    if following:
        lines.append(f"values that follow from these ({len(following)}, from the model registry or computed)")
        for c in following:
            lines.append(f"  {c['pointer'][1:]:<32} {_cut(_shown(c['old']), 40)} -> {_cut(_shown(c['new']), 40)}")
    if result["moved"]:
        lines.append(f"same values, set elsewhere now ({len(result['moved'])})")
        for m in result["moved"]:
            lines.append(f"  {m['pointer'][1:]:<32} {_cut(_shown(m['value']), 40)}   now from {m['new_source']} "
                         f"(was {m['old_source']})")
    if result["impact"]:
        lines.append("impact")
        for i in result["impact"]:
            ratio = f" (x{i['ratio']:g})" if "ratio" in i else ""
            lines.append(f"  {i['what']:<32} {_shown(i['old'])} -> {_shown(i['new'])}{ratio}")
    if result.get("lock"):
        lines.append("recorded inputs")
        for i in result["lock"]:
            lines.append(f"  {i['what']:<32} {_shown(i['old'])} -> {_shown(i['new'])}")
    if result.get("metrics"):
        lines.append("metrics")
        lines.append(f"  {'metric':<20} {'old before -> after':>22} {'new before -> after':>22} {'after: new-old':>15}")
        for m in result["metrics"]:
            change = "-" if m["change"] is None else f"{m['change']:+.3f}"
            lines.append(f"  {m['metric']:<20} {_metric(m['old']['before']) + ' -> ' + _metric(m['old']['after']):>22}"
                         f" {_metric(m['new']['before']) + ' -> ' + _metric(m['new']['after']):>22} {change:>15}")
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(result: dict) -> str:
    """A pull-request comment: a header naming the sides, a table of changes, the impact, the metrics."""
    old, new = result["old"]["label"], result["new"]["label"]
    lines = [f"### vtc diff: `{_cell(old)}` → `{_cell(new)}`", ""]
    if not differs(result):
        lines += ["No change for the run.", ""]
    own, following = _split(result["changes"])
    if own or following:
        lines += ["| value | old | new | source (old → new) |", "|---|---|---|---|"]
        for c in own + following:
            lines.append(f"| `{_cell(c['pointer'][1:])}` | {_cell(_cut(_shown(c['old'])))} | "
                         f"{_cell(_cut(_shown(c['new'])))} | {_cell(c['old_source'])} → {_cell(c['new_source'])} |")
        lines.append("")
    if result["moved"]:
        lines.append("Same values, set elsewhere now: " + ", ".join(
            f"`{_cell(m['pointer'][1:])}` (now from {_cell(m['new_source'])})" for m in result["moved"]) + ".")
        lines.append("")
    if result["impact"]:
        lines.append("**Impact**")
        lines.append("")
        for i in result["impact"]:
            ratio = f" (×{i['ratio']:g})" if "ratio" in i else ""
            lines.append(f"- {i['what']}: {_cell(_shown(i['old']))} → {_cell(_shown(i['new']))}{ratio}")
        lines.append("")
    if result.get("lock"):
        lines += ["**Recorded inputs**", ""]
        lines += [f"- {i['what']}: {_cell(_shown(i['old']))} → {_cell(_shown(i['new']))}" for i in result["lock"]]
        lines.append("")
    if result.get("metrics"):
        lines += ["**Metrics**", "", "| metric | old: before → after | new: before → after | after: new − old |",
                  "|---|---|---|---|"]
        for m in result["metrics"]:
            change = "-" if m["change"] is None else f"{m['change']:+.3f}"
            lines.append(f"| {_cell(m['metric'])} | {_metric(m['old']['before'])} → {_metric(m['old']['after'])} | "
                         f"{_metric(m['new']['before'])} → {_metric(m['new']['after'])} | {change} |")
        lines.append("")
    return "\n".join(lines)


def render_json(result: dict) -> str:
    shown = {k: v for k, v in result.items() if not k.startswith("_")}
    return json.dumps(shown, indent=2, sort_keys=True) + "\n"


# ---- git's diff driver -----------------------------------------------------------------------------------------------

def textconv(path: str) -> str:
    """The resolved view of one recipe for `git diff` (diff.vtc.textconv): every value in effect, one a line in the
    plan's order of pointers, with the file or kind it came from (no line numbers, so that a comment or a blank line
    changes nothing). A recipe that does not compile gives its diagnostics and its text instead. Never raises on
    user input."""
    from vtc.compiler.pipeline import compile_file
    from vtc.diagnostics import render_all

    try:
        stand_in = _working_name(path)
        if stand_in is None:
            result = compile_file(path)
        else:  # git's copy of an old version: compiled as if it were at its place in the working tree
            from vtc.compiler.pipeline import _read_recipe, compile_source

            text, _problems = _read_recipe(path)
            result = (compile_source(text, stand_in, base_dir=os.path.dirname(os.path.abspath(stand_in)))
                      if text is not None else compile_file(path))
    except Exception as exc:  # pragma: no cover - compile_file never raises on user input; git must get text
        return f"# vtc could not compile this recipe: {type(exc).__name__}\n"
    if result.plan is None:
        text = next(iter(result.sources.values()), "")
        return ("# vtc: this recipe does not compile; its problems, then its text\n"
                + "".join(f"# {line}\n" for line in render_all(result.diagnostics).splitlines())
                + printable(text) + ("" if text.endswith("\n") else "\n"))
    plan = result.plan
    lines = [f"# vtc resolved view of {printable(plan['recipe']['file'])} (vtc diff --textconv)"]
    for key in sorted(set(plan) - set(IGNORED)):
        leaves: list = []
        _leaves(plan[key], "/" + _escape(key), leaves)
        for pointer, value in leaves:
            lines.append(f"{pointer[1:]} = {_shown(value)}    # {_file_of(_source(plan, pointer)) or 'derived'}")
    return "\n".join(lines) + "\n"


def _working_name(path: str) -> str | None:
    """For a file git gave the driver: git runs a textconv in the repository's top folder, with the working tree's
    file by its name there and every other version as a temporary copy elsewhere (``git-blob-XXXXXX/<name>``, or
    ``XXXXXX_<name>`` before git 2.33), without
    saying where the file lives. Its includes are relative to that place: the one file of the repository with that
    name (`git ls-files`), whose includes are then read from the working tree. None when ``path`` is the working
    file itself, or the name is not one file's."""
    try:
        if not os.path.isfile(".git") and not os.path.isdir(".git"):
            return None  # not at the top of a repository: not run by git
        if not os.path.relpath(os.path.realpath(path), os.path.realpath(".")).startswith(os.pardir):
            return None
        name = os.path.basename(path)
        if os.path.basename(os.path.dirname(os.path.abspath(path))).startswith("git-blob-"):
            name = "1234567" + name  # git 2.33 and later: a temporary folder git-blob-XXXXXX holding <name>
        elif len(name) < 8 or name[6] != "_":
            return None
        listed = _git(["ls-files", "-z"], ".")
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None
    found = [f for f in listed.stdout.decode("utf-8", "replace").split("\0") if f and os.path.basename(f) == name[7:]]
    return found[0] if len(found) == 1 and os.path.isfile(found[0]) else None
