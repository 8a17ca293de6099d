"""Hostile recipes in the compiler (issue 11, items 1, 4, 5, 6 and 9): a recipe from a shared repository is input from
a stranger, run by `vtc check` in pre-commit hooks and CI where tokens sit.

- `include` reads only .vt recipe files inside the main recipe's repository, after following links, regular files of
  a bounded size; a refused file is never read, so its content never reaches a message (text or JSON);
- bounded work: includes are a graph (each file parsed once), limits on files and bytes, the diagnostics of a file
  capped, the source split into lines once;
- numbers of thousands of digits, lone surrogates, FIFOs and devices are diagnostics, never a traceback or a hang;
- control characters from a recipe never reach text output raw (JSON keeps them exact);
- the plan lists every recipe file read, so that an edit to an included file whose values are all overridden is
  still noticed.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from vtc.cli import cli
from vtc.compiler.pipeline import MOST_BYTES, MOST_FILES, RECIPE_LIMIT, compile_file, compile_source
from vtc.diagnostics import MAX_PER_FILE, render_all, to_json

TOKEN = "hf_plantedSecretToken9876543210ABCDEFghij"
PASSWD = "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
HEAD = "finetune all on tiny-qwen2.5-vl\nfrom ./d\n"
# What a terminal acts on (vtc.diagnostics.printable escapes these in text output).
RAW = ("\x1b", "\x07", "\x9b", "\u202e", "\x00")


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def codes(result) -> list[str]:
    return [d.code for d in result.diagnostics]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository (a `.git` folder is what marks it) holding a recipe folder with its data folder; a home
    folder beside it with a token file and a password-like file."""
    root = tmp_path / "repo"
    (root / ".git").mkdir(parents=True)
    (root / "study" / "d").mkdir(parents=True)
    home = tmp_path / "home"
    (home / ".cache" / "huggingface").mkdir(parents=True)
    (home / ".cache" / "huggingface" / "token").write_text(TOKEN + "\n")
    (home / "secret.vt").write_text(f"{TOKEN}\nbatch 2\n")
    (tmp_path / "passwd").write_text(PASSWD)
    return root


def outputs(recipe: Path) -> str:
    """Everything `vtc check` and `vtc plan` print for a recipe, in text and in JSON."""
    texts = [run("check", str(recipe)).output, run("check", str(recipe), "--format", "json").output,
             run("plan", str(recipe)).output, run("explain", str(recipe)).output]
    result = compile_file(str(recipe))
    texts += [render_all(result.diagnostics, result.sources), to_json(result.diagnostics)]
    return "\n".join(texts)


def assert_secret_never_shown(text: str) -> None:
    assert TOKEN not in text and "hf_planted" not in text
    assert "root:x:0:0" not in text and "daemon:x" not in text


# --- finding 1: `include` reads and prints any readable file ------------------------------------------------------


def test_an_include_of_the_token_file_through_dotdot_is_refused_unread(repo):
    recipe = repo / "study" / "r.vt"
    recipe.write_text(HEAD + 'include "../../home/.cache/huggingface/token"\n')
    result = compile_file(str(recipe))
    [d] = [d for d in result.diagnostics if d.is_error]
    assert d.code == "VT306" and (d.span.line, d.span.column) == (3, 9)
    assert "only .vt recipe files" in d.message and str(repo) in d.help
    assert not any(name.endswith("token") for name in result.sources)  # never read
    assert_secret_never_shown(outputs(recipe))


def test_an_include_of_a_vt_file_outside_the_repository_is_refused(repo):
    """`../..` to a .vt file outside the repository: refused before it is read (no VT010 quoting its first line)."""
    recipe = repo / "study" / "r.vt"
    recipe.write_text(HEAD + 'include "../../home/secret.vt"\n')
    result = compile_file(str(recipe))
    assert codes(result).count("VT306") == 1 and "VT010" not in codes(result)
    d = next(d for d in result.diagnostics if d.code == "VT306")
    assert "leads outside the recipe's repository" in d.message
    assert_secret_never_shown(outputs(recipe))


def test_an_include_through_a_symlink_out_of_the_repository_is_refused(repo):
    (repo / "study" / "base.vt").symlink_to(repo.parent / "home" / "secret.vt")
    recipe = repo / "study" / "r.vt"
    recipe.write_text(HEAD + 'include "base.vt"\n')
    result = compile_file(str(recipe))
    assert "VT306" in codes(result) and "VT010" not in codes(result)
    assert_secret_never_shown(outputs(recipe))


@pytest.mark.parametrize("written", ["{passwd}", "{passwd_vt}", "~/../../../../../../../../{passwd_rel}"])
def test_an_include_of_password_like_content_is_refused_in_text_and_json(repo, written):
    passwd = repo.parent / "passwd"
    (repo.parent / "passwd.vt").write_text(PASSWD)
    spelled = written.format(passwd=passwd, passwd_vt=str(passwd) + ".vt", passwd_rel=str(passwd).lstrip("/"))
    recipe = repo / "study" / "r.vt"
    recipe.write_text(HEAD + f'include "{spelled}"\n')
    result = compile_file(str(recipe))
    assert "VT306" in codes(result)
    assert_secret_never_shown(outputs(recipe))


def test_a_non_vt_file_inside_the_repository_is_refused_before_it_is_read(repo, monkeypatch):
    """Inside the repository too: an include names a recipe, and only .vt files are read (a .env, a notes file)."""
    (repo / "study" / ".env").write_text(f"HF_TOKEN={TOKEN}\n")
    (repo / "study" / "link.vt").symlink_to(repo / "study" / ".env")
    recipe = repo / "study" / "r.vt"
    recipe.write_text(HEAD + 'include ".env"\ninclude "link.vt"\n')
    import vtc.confine as confine

    opened = []
    real = confine.read_confined
    monkeypatch.setattr(confine, "read_confined", lambda path, *a: opened.append(str(path)) or real(path, *a))
    result = compile_file(str(recipe))
    found = [d for d in result.diagnostics if d.code == "VT306"]
    assert len(found) == 2 and "is a link to a file that is not a .vt recipe file" in found[1].message
    assert opened == [str(recipe)]  # the main recipe only
    assert_secret_never_shown(outputs(recipe))


def test_an_include_inside_the_repository_still_works_and_outside_a_repository_the_folder_is_the_root(repo, tmp_path):
    (repo / "shared").mkdir()
    (repo / "shared" / "base.vt").write_text("batch 4\n")
    recipe = repo / "study" / "r.vt"
    recipe.write_text(HEAD + 'include "../shared/base.vt"\n')
    result = compile_file(str(recipe))
    assert result.plan is not None and result.plan["training"]["batch"] == 4
    # Outside a git repository the root is the recipe's own folder: the folder above is outside it.
    lone = tmp_path / "lone" / "sub"
    lone.mkdir(parents=True)
    (tmp_path / "lone" / "base.vt").write_text("batch 4\n")
    (lone / "d").mkdir()
    (lone / "r.vt").write_text(HEAD + 'include "../base.vt"\n')
    assert "VT306" in codes(compile_file(str(lone / "r.vt")))


def test_a_missing_include_outside_the_repository_does_not_say_whether_it_exists(repo):
    recipe = repo / "study" / "r.vt"
    recipe.write_text(HEAD + 'include "../../home/nothing-here.vt"\ninclude "../../home/secret.vt"\n')
    found = [(d.code, d.message.replace("nothing-here", "X").replace("secret", "X"))
             for d in compile_file(str(recipe)).diagnostics if d.is_error]
    assert found[0] == found[1] and found[0][0] == "VT306"


# --- finding 5: hangs and memory exhaustion on `vtc check` --------------------------------------------------------


def _finishes(function, *args):
    """Run ``function`` in a thread: its result, or a failure if it is still blocked after a minute (a FIFO opened
    for reading waits for a writer for ever; the guard opens it for writing to let the thread go)."""
    box = {}
    thread = threading.Thread(target=lambda: box.setdefault("result", function(*args)), daemon=True)
    thread.start()
    thread.join(60)
    return thread.is_alive(), box.get("result")


def _release(fifo: Path) -> None:
    try:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:
        pass


def test_a_fifo_as_an_include_is_refused_without_blocking(repo):
    fifo = repo / "study" / "pipe.vt"
    os.mkfifo(fifo)
    recipe = repo / "study" / "r.vt"
    recipe.write_text(HEAD + 'include "pipe.vt"\n')
    try:
        blocked, result = _finishes(compile_file, str(recipe))
    finally:
        _release(fifo)
    assert not blocked, "compile_file blocked on a FIFO"
    [d] = [d for d in result.diagnostics if d.is_error]
    assert d.code == "VT303" and "named pipe (FIFO), not a regular file" in d.message


def test_a_fifo_as_the_recipe_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "r.vt"
    os.mkfifo(fifo)
    try:
        blocked, result = _finishes(compile_file, str(fifo))
        blocked_fmt, formatted = _finishes(__import__("vtc.compiler.fmt", fromlist=["x"]).format_file, str(fifo))
    finally:
        _release(fifo)
    assert not blocked and not blocked_fmt
    assert codes(result) == ["VT303"] and "named pipe" in result.diagnostics[0].message
    assert formatted[0] is None and [d.code for d in formatted[1]] == ["VT303"]


def test_a_fifo_as_a_local_models_config_is_not_read(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "d").mkdir()
    fifo = tmp_path / "m" / "config.json"
    os.mkfifo(fifo)
    (tmp_path / "r.vt").write_text("finetune all on ./m\nfrom ./d\n")
    try:
        blocked, result = _finishes(compile_file, str(tmp_path / "r.vt"))
    finally:
        _release(fifo)
    assert not blocked
    assert "VT203" in codes(result)  # "no readable config.json": the family is unknown, nothing blocked


def test_a_local_models_config_that_links_out_of_the_model_folder_is_not_read(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "d").mkdir()
    (tmp_path / "elsewhere.json").write_text('{"model_type": "qwen2_5_vl"}')
    (tmp_path / "m" / "config.json").symlink_to(tmp_path / "elsewhere.json")
    (tmp_path / "r.vt").write_text("finetune all on ./m\nfrom ./d\n")
    result = compile_file(str(tmp_path / "r.vt"))
    assert "VT203" in codes(result) and result.plan["model"]["family"] is None
    # The same config inside the folder is read.
    (tmp_path / "m" / "config.json").unlink()
    (tmp_path / "m" / "config.json").write_text('{"model_type": "qwen2_5_vl"}')
    assert compile_file(str(tmp_path / "r.vt")).plan["model"]["family"] is not None


def _limited(limit_bytes: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))
    return apply


@pytest.mark.parametrize("target", ["/dev/zero", "/proc/self/environ"])
def test_check_of_a_device_or_proc_file_is_refused(target, tmp_path):
    if not os.path.exists(target):
        pytest.skip(f"{target} does not exist here")
    result = compile_file(target)  # in-process: before the fix /dev/zero read until memory ran out
    assert codes(result) == ["VT303"] and "virtual file systems" in result.diagnostics[0].message
    vtc = str(Path(sys.executable).with_name("vtc"))
    done = subprocess.run([vtc, "check", target], capture_output=True, text=True, timeout=120,
                          preexec_fn=_limited(2 << 30), env={**os.environ, "HF_TOKEN": TOKEN})
    assert done.returncode == 1 and "error[VT303]" in done.stderr and "Traceback" not in done.stderr
    assert TOKEN not in done.stdout + done.stderr


def test_an_include_graph_of_31_files_each_including_the_next_twice_is_read_once_each(repo, monkeypatch):
    study = repo / "study"
    for i in range(31):
        (study / f"f{i:02d}.vt").write_text((f'include "f{i + 1:02d}.vt"\n' * 2 if i < 30 else "") + f"seed {i}\n")
    recipe = study / "r.vt"
    recipe.write_text(HEAD + 'include "f00.vt"\n')
    import vtc.compiler.parser as parser

    parsed = []
    real = parser.parse_source

    def counting(text, file, **kw):
        parsed.append(file)
        if len(parsed) > 1000:  # as a tree of copies this would go on 2**31 times
            raise AssertionError("each included file is parsed again for every path to it")
        return real(text, file, **kw)

    monkeypatch.setattr(parser, "parse_source", counting)
    result = compile_file(str(recipe))
    assert result.plan is not None and result.plan["training"]["seed"] == 0
    assert sorted(parsed) == sorted([str(recipe)] + [str(study / f"f{i:02d}.vt") for i in range(31)])
    assert len(result.plan["recipe"]["files"]) == 32


def test_includes_are_applied_as_a_tree_would_apply_them(tmp_path):
    """The graph gives what applying every include in place gives: later clauses override earlier ones, an
    include applied twice applies twice (the second time over what came between)."""
    files = {"base.vt": "batch 2\nholdout 10%\n", "mid.vt": 'include "base.vt"\nbatch 3\nevaluate on ./v\n'}

    def load(written, including):
        return str(tmp_path / written), files[written]

    text = HEAD + 'include "base.vt"\ninclude "mid.vt"\nseed 5\ninclude "base.vt"\n'
    plan = compile_source(text, str(tmp_path / "r.vt"), load=load, base_dir=str(tmp_path)).plan
    assert plan["training"]["batch"] == 2 and plan["data"]["holdout"] == 0.1 and plan["data"]["eval"] is None
    assert plan["training"]["seed"] == 5 and plan["provenance"]["/training/batch"] == "base.vt:1"
    text = HEAD + 'include "mid.vt"\n'
    plan = compile_source(text, str(tmp_path / "r.vt"), load=load, base_dir=str(tmp_path)).plan
    assert plan["training"]["batch"] == 3 and plan["data"]["holdout"] is None
    assert plan["data"]["eval"]["source"] == "./v" and plan["provenance"]["/data/eval/source"] == "mid.vt:3"


def test_a_50_mb_include_is_refused_by_the_size_limit(repo):
    big = repo / "study" / "big.vt"
    with open(big, "w") as f:
        f.write("batch 2\n" * (50 * 1024 * 1024 // 8))
    recipe = repo / "study" / "r.vt"
    recipe.write_text(HEAD + 'include "big.vt"\n')
    result = compile_file(str(recipe))
    [d] = [d for d in result.diagnostics if d.is_error]
    assert d.code == "VT307" and "larger than 128 KB" in d.message and str(big) not in result.sources


def test_a_50_mb_main_recipe_of_bad_lines_is_refused_by_the_size_limit(tmp_path):
    """A main recipe has the include's limit too: a recipe is a few KB, and `vtc check` in a pre-commit hook must
    not take 23 s on a data file named .vt. Just under the limit, the file is read and its errors capped."""
    big = tmp_path / "big.vt"
    with open(big, "w") as f:
        f.write("zzz qq\n" * (50 * 1024 * 1024 // 7))
    result = compile_file(str(big))
    assert codes(result) == ["VT307"] and result.sources == {}
    assert run("check", str(big)).exit_code == 1
    big.write_text("zzz qq\n" * ((RECIPE_LIMIT - 100) // 7))
    result = compile_file(str(big))
    assert "VT009" in codes(result) and len(result.diagnostics) <= MAX_PER_FILE + 1


def test_limits_on_the_number_of_files_and_bytes_of_an_include_graph(repo):
    study = repo / "study"
    for i in range(MOST_FILES + 5):
        (study / f"c{i:02d}.vt").write_text(f'include "c{i + 1:02d}.vt"\n' if i % 30 else "seed 1\n")
    recipe = study / "r.vt"
    recipe.write_text(HEAD + "".join(f'include "c{i:02d}.vt"\n' for i in range(MOST_FILES + 5)))
    result = compile_file(str(recipe))
    too_many = [d for d in result.diagnostics if d.code == "VT307"]
    assert too_many and f"more than {MOST_FILES} recipe files" in too_many[0].message
    chunk = "# " + "x" * 1000 + "\n"
    for i in range(4):
        (study / f"b{i}.vt").write_text(chunk * ((RECIPE_LIMIT - 2000) // len(chunk)))
    recipe.write_text(HEAD + "".join(f'include "b{i}.vt"\n' for i in range(4)))
    result = compile_file(str(recipe))
    d = next(d for d in result.diagnostics if d.code == "VT307")  # b0 and b1 fit, b2 does not (nor b3)
    assert f"more than {MOST_BYTES // 1024} KB of text" in d.message and d.span.line == 5


def test_one_line_of_repeated_clauses_gives_a_capped_list(tmp_path):
    (tmp_path / "d").mkdir()
    line = tmp_path / "line.vt"
    line.write_text("finetune all on tiny-qwen2.5-vl from ./d " + "seed 1 " * 2500 + "\n")  # under 20,000 chars
    result = compile_file(str(line))
    assert len(result.diagnostics) == MAX_PER_FILE + 1
    last = result.diagnostics[-1]
    assert last.code == "VT308" and "2,449 more problems in this file are not shown (2,449 errors)" in last.message
    text = run("check", str(line))
    assert text.exit_code == 1 and text.output.count("error[VT210]") == MAX_PER_FILE
    assert "shown; the notes above count the rest" in text.output
    assert len(json.loads(run("check", str(line), "--format", "json").output)) == MAX_PER_FILE + 1
    # The same clause on 10,000 lines, with a warning among them: errors are kept first, so the exit code stays.
    many = tmp_path / "many.vt"
    many.write_text("finetune all on tiny-qwen2.5-vl\nfrom ./d\nusing lora\nshard model\n" + "seed 1\n" * 10_000)
    result = compile_file(str(many))
    assert len(result.diagnostics) == MAX_PER_FILE + 1 and all(d.is_error for d in result.diagnostics[:-1])
    assert "9,950 more problems in this file are not shown (9,949 errors, 1 warning)" in result.diagnostics[-1].message


def test_the_source_is_split_into_lines_once_however_many_diagnostics(tmp_path):
    from vtc import diagnostics

    text = HEAD + "seed 1\n" * 200
    result = compile_source(text, "r.vt", base_dir=str(tmp_path))
    diagnostics._lines.cache_clear()
    render_all(result.diagnostics, result.sources)
    info = diagnostics._lines.cache_info()
    assert info.misses == 1 and info.hits >= MAX_PER_FILE


# --- finding 4 (the compiler's part): numbers, surrogates ---------------------------------------------------------

NUMERIC = {  # clause as written -> the clause named in the message, the range in the help
    "batch {n}": ("batch", "from 1 to 4096"), "accumulate {n}": ("accumulate", "from 1 to 4096"),
    "seed {n}": ("seed", "from 0 to 4294967295"), "gpus {n}": ("gpus", "from 1 to 64"),
    "max length {n}": ("max length", "from 16 to 1048576"), "learning rate {n}": ("learning rate", "from 0 to 1"),
    "weight decay {n}": ("weight decay", "from 0 to 1"), "holdout {n}%": ("holdout", "from 0 to 100"),
    "lora rank {n}": ("lora rank", "from 1 to 1024"), "lora alpha {n}": ("lora alpha", "from 1 to 4096"),
    "lora dropout {n}": ("lora dropout", "from 0 to 1"), "train for {n} steps": ("train for", "from 0 to 1000000"),
    "warmup {n} steps": ("warmup", "from 0 to 1000000"), "warmup {n}%": ("warmup", "from 0 to 1000000"),
    "window {n} 400": ("window", "from -100000 to 100000"), "window 40 {n}": ("window", "from 0 to 200000"),
    "checkpoint every {n} steps": ("checkpoint every", "from 0 to 10000000"),
    "resize {n}": ("resize", "from 0 to 8192"), "resize {n}x480": ("resize", "from 1 to 8192"),
}


@pytest.mark.parametrize("clause", NUMERIC)
def test_a_number_of_5000_digits_in_every_numeric_clause_is_a_diagnostic(clause, tmp_path):
    (tmp_path / "d").mkdir()
    recipe = tmp_path / "r.vt"
    recipe.write_text(HEAD + clause.format(n="9" * 5000) + "\n")
    result = compile_file(str(recipe))
    [d] = [d for d in result.diagnostics if d.is_error]
    name, within = NUMERIC[clause]
    assert d.code == "VT115" and f"after `{name}` has 5,00" in d.message and within in d.help  # 5,003 for 9...9x480
    assert (d.span.line, d.span.column) == (3, clause.index("{n}") + 1)
    for command in (["check"], ["plan"], ["explain"], ["fmt", "--check"], ["check", "--format", "json"]):
        printed = run(*command, str(recipe))
        assert printed.exception is None or isinstance(printed.exception, SystemExit), (command, printed.exception)
        assert printed.exit_code == (0 if command[0] == "fmt" else 1), command  # fmt only lays the text out


def test_numbers_just_under_the_digit_limit_and_huge_exponents_convert_without_error(tmp_path):
    text = HEAD + "seed " + "0" * 38 + "42\nlearning rate 1e-99999\nweight decay 1e400\n"
    result = compile_source(text, "r.vt", base_dir=str(tmp_path))
    found = {(d.code, d.span.line) for d in result.diagnostics if d.is_error}
    assert found == {("VT104", 4), ("VT103", 5)}  # the seed (40 digits) is fine; 1e-99999 is 0: out of range


def test_the_number_check_also_runs_through_the_cli_in_a_fresh_process(tmp_path):
    """The original report: `vtc check` on such a number printed a ValueError traceback."""
    (tmp_path / "d").mkdir()
    recipe = tmp_path / "r.vt"
    recipe.write_text(HEAD + "batch " + "9" * 4301 + "\n")
    vtc = str(Path(sys.executable).with_name("vtc"))
    done = subprocess.run([vtc, "check", str(recipe)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "error[VT115]" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("text", [
    "finetune all on \"./\ud800x\"\nfrom ./d\n", "finetune all on tiny-qwen2.5-vl\nfrom \"\udcff\"\n",
    'include "\ud800.vt"\n' + HEAD, "batch 2\n\ud800",
])
def test_a_lone_surrogate_through_the_api_is_a_diagnostic(text, tmp_path):
    result = compile_source(text, str(tmp_path / "r.vt"), base_dir=str(tmp_path))
    [d] = result.diagnostics
    assert d.code == "VT002" and "lone surrogate" in d.message and result.plan is None
    assert "\\ud" in d.render(result.sources) and "\ud800" not in d.render(result.sources)


def test_a_file_name_no_file_can_have_is_a_diagnostic(tmp_path):
    for name in ("/tmp/\ud800/r.vt", "r\x00.vt"):
        result = compile_file(name)
        assert codes(result) == ["VT303"] and "not a name a file can have" in result.diagnostics[0].message
        assert "\\" in result.diagnostics[0].render()


def test_a_recipe_whose_name_is_not_utf8_prints_through_the_cli(tmp_path):
    """A file name that is not UTF-8 reaches Python as lone surrogates (surrogateescape): text output shows them
    escaped instead of failing to write them."""
    folder = os.fsencode(tmp_path)
    name = folder + b"/r\xff.vt"
    with open(name, "wb") as f:
        f.write(b"finetune all on tiny-qwen2.5-vl\nfrom ./d\nbatch 0\n")
    os.mkdir(folder + b"/d")
    vtc = str(Path(sys.executable).with_name("vtc"))
    for command in (["check"], ["plan"], ["explain"]):
        done = subprocess.run([os.fsencode(vtc), *[c.encode() for c in command], name], capture_output=True,
                              timeout=120)
        assert b"Traceback" not in done.stderr and done.returncode == 1, done.stderr[-2000:]
        assert b"r\\udcff.vt" in done.stderr
    os.remove(name)
    with open(name, "wb") as f:
        f.write(b"finetune all on tiny-qwen2.5-vl\nfrom ./d\n")
    done = subprocess.run([os.fsencode(vtc), b"plan", name], capture_output=True, timeout=120)
    assert done.returncode == 0 and b"plan for" in done.stdout and b"\\udcff" in done.stdout, done.stderr[-2000:]


# --- finding 6 (the compiler's part): escape sequences -----------------------------------------------------------


def test_escape_sequences_in_a_recipe_never_reach_text_output_raw(tmp_path):
    (tmp_path / "d").mkdir()
    recipe = tmp_path / "r.vt"
    fake = "\x1b[2K\x1b[1Aok: 1 recipe checked"
    recipe.write_text(f"finetune all on tiny-qwen2.5-vl # {fake}\nfrom ./d # \x1b]0;owned\x07\n"
                      f'ask "Describe\u202e this"\nbatch 0 # {fake} \x9b31m\n', encoding="utf-8")
    printed = run("check", str(recipe))
    assert printed.exit_code == 1 and "\\x1b[2K\\x1b[1Aok" in printed.output
    assert not any(c in printed.output for c in RAW)
    recipe.write_text(recipe.read_text(encoding="utf-8").replace("batch 0", "batch 2x"), encoding="utf-8")
    printed = run("check", str(recipe))  # a syntax error on the line: its excerpt shows the comment, escaped
    assert printed.exit_code == 1 and "\\x1b[2K" in printed.output and not any(c in printed.output for c in RAW)
    recipe.write_text(recipe.read_text(encoding="utf-8").replace("batch 2x", "batch 2"), encoding="utf-8")
    for command in (["plan"], ["explain"], ["fmt", "--check"], ["check"]):
        printed = run(*command, str(recipe))
        assert not any(c in printed.output for c in RAW), command
    assert "Describe\\u202e this" in run("plan", str(recipe)).output
    assert "Describe\\u202e this" in run("explain", str(recipe)).output
    plan = json.loads(run("plan", str(recipe), "--json").output)
    assert plan["data"]["instruction"] == "Describe\u202e this"  # JSON keeps the value exact


def test_json_diagnostics_keep_the_recipe_text_exact(tmp_path):
    recipe = tmp_path / "r.vt"
    recipe.write_text('include "a\u202eb.vt"\n' + HEAD, encoding="utf-8")
    [d] = [d for d in json.loads(run("check", str(recipe), "--format", "json").output) if d["code"] == "VT301"]
    assert "a\u202eb.vt" in d["message"]
    assert "a\\u202eb.vt" in run("check", str(recipe)).output


def test_a_file_name_with_escape_sequences_is_shown_escaped_by_fmt(tmp_path):
    recipe = tmp_path / "r\x1b[2K.vt"
    recipe.write_text("seed   1\n")
    printed = run("fmt", "--check", str(recipe))
    assert printed.exit_code == 1 and "would reformat" in printed.output and "\x1b" not in printed.output
    assert "r\\x1b[2K.vt" in printed.output


# --- finding 9: the drift check misses included files whose values are all overridden -----------------------------


def test_an_included_file_whose_values_are_all_overridden_is_listed_and_fingerprinted(tmp_path):
    from vtc.lockfile import plan_inputs

    (tmp_path / "d").mkdir()
    (tmp_path / "base.vt").write_text("batch 4\nseed 1\n")
    recipe = tmp_path / "r.vt"
    recipe.write_text('include "base.vt"\n' + HEAD + "batch 2\nseed 2\n")
    plan = compile_file(str(recipe)).plan
    assert plan["recipe"]["files"] == ["r.vt", "base.vt"]
    assert "base.vt" not in json.dumps(plan["provenance"])  # no value of it survived ...
    before = plan_inputs(plan)["recipe"]["sha256"]
    (tmp_path / "base.vt").write_text("batch 4\nseed 1\nlearning rate 1e-3\n")  # ... but an edit to it is noticed
    assert plan_inputs(plan)["recipe"]["sha256"] != before
    # A saved plan is refused after the edit (the drift check).
    out = tmp_path / "plan.json"
    (tmp_path / "base.vt").write_text("batch 4\nseed 1\n")
    assert run("plan", str(recipe), "-o", str(out)).exit_code == 0
    saved = json.loads(out.read_text())
    assert "base.vt" in saved["inputs"]["recipe"]["files"]
