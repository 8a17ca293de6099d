"""A recipe can never execute code, trust_remote_code needs the explicit clause and is warned about, and Hub tokens
never reach plans, manifests, lock files, logs or run folders."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from runtime_helpers import make_shapes
from vtc.cli import cli

SRC = Path(__file__).resolve().parents[1] / "src" / "vtc"
TOKEN = "hf_plantedSecretToken9876543210ABCDEFghij"

# Calls that can run code or unpickle data, and what makes them safe when there is something that does.
FORBIDDEN = {
    r"(?<![\w.])eval\(": "eval()",
    r"(?<![\w.])exec\(": "exec()",
    r"(?<![\w.])compile\(": "the compile() builtin",
    r"__import__\(": "__import__()",
    r"\bpickle\.loads?\(": "pickle.load",
    r"\bcPickle\b|\bdill\b|\bcloudpickle\b|\bjoblib\.load\(": "pickle-like loaders",
    r"\bmarshal\.loads?\(": "marshal.load",
    r"\bshelve\.open\(": "shelve (pickle)",
    r"\bread_pickle\(": "pandas.read_pickle",
    r"\bos\.system\(|\bos\.popen\(": "shell commands",
    r"shell\s*=\s*True": "subprocess with a shell",
    r"\bjinja2\b|\bstring\.Template\b|\bTemplate\(": "templating of recipe text",
    r"\byaml\.(load|unsafe_load)\(": "yaml.load (use yaml.safe_load)",
    r"\bimportlib\.import_module\([^)]*(plan|recipe|document)": "importing a module the recipe names",
}


def python_files():
    return sorted(p for p in SRC.rglob("*.py") if p.name != "_vt_parser.py")


@pytest.mark.parametrize("pattern,what", FORBIDDEN.items(), ids=list(FORBIDDEN.values()))
def test_no_code_execution_or_unpickling_in_vtc(pattern, what):
    hits = []
    for path in python_files():
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            if re.search(pattern, code):
                hits.append(f"{path.relative_to(SRC)}:{n}: {line.strip()}")
    assert not hits, f"{what} found:\n" + "\n".join(hits)


def test_torch_and_numpy_loads_refuse_pickles():
    hits = []
    for path in python_files():
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            if re.search(r"\btorch\.load\(", code) and "weights_only=True" not in code:
                hits.append(f"{path.relative_to(SRC)}:{n}")
            if re.search(r"\bnp\.load\(|\bnumpy\.load\(", code) and "allow_pickle=False" not in code:
                hits.append(f"{path.relative_to(SRC)}:{n}")
    assert not hits, "torch.load without weights_only=True / np.load without allow_pickle=False:\n" + "\n".join(hits)


def test_the_grep_finds_what_it_looks_for():
    """The patterns above would catch the calls (so the audit cannot pass by matching nothing)."""
    bad = ["x = eval(text)", "exec(code)", "pickle.load(f)", "subprocess.run(c, shell=True)", "yaml.load(s)",
           "Template(text).render()", "compile(src, 'f', 'exec')"]
    for line in bad:
        assert any(re.search(p, line) for p in FORBIDDEN), line
    assert not any(re.search(p, "model.eval()") for p in FORBIDDEN)
    assert not any(re.search(p, "re.compile(r'x')") for p in FORBIDDEN)


def test_trust_remote_code_only_from_the_plan():
    """No code path turns trust_remote_code on by itself: it is always read from the plan (the recipe's clause)."""
    hits = []
    for path in python_files():
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"trust_remote_code\s*=\s*True", line):
                hits.append(f"{path.relative_to(SRC)}:{n}: {line.strip()}")
    assert not hits, hits


def test_plan_and_explain_warn_about_trust_remote_code(tmp_path):
    recipe = tmp_path / "r.vt"
    recipe.write_text("finetune all on tiny-qwen2.5-vl\nusing lora\nfrom ./d\nwith trust_remote_code\n")
    for command in ("plan", "explain"):
        result = CliRunner().invoke(cli, [command, str(recipe)])
        text = result.output + (getattr(result, "stderr", "") or "")
        assert result.exit_code == 0, text
        assert "warning[VT263]" in text and "r.vt:4" in text, text
    result = CliRunner().invoke(cli, ["plan", str(recipe)])
    assert "WARNING: runs Python code that comes with the model" in result.stdout
    result = CliRunner().invoke(cli, ["explain", str(recipe)])
    assert "Warning: it runs Python code that comes with the model" in result.stdout
    recipe.write_text("finetune all on tiny-qwen2.5-vl\nusing lora\nfrom ./d\n")
    result = CliRunner().invoke(cli, ["plan", str(recipe), "--json"])
    assert '"trust_remote_code": false' in result.stdout


def test_recipe_text_is_data_not_code(tmp_path):
    """Strings that would run code in a template engine or eval stay plain text in the plan."""
    payload = "{{ ''.__class__.__mro__ }} ${7*7} __import__('os').system('touch PWNED') {0.__class__}"
    recipe = tmp_path / "r.vt"
    recipe.write_text(f'finetune all on tiny-qwen2.5-vl\nusing lora\nfrom ./d\nask "{payload}"\n')
    result = CliRunner().invoke(cli, ["plan", str(recipe), "--json"])
    assert result.exit_code == 0
    import json

    assert json.loads(result.stdout)["data"]["instruction"] == payload
    assert not (tmp_path / "PWNED").exists() and not Path("PWNED").exists()


@pytest.mark.slow
def test_a_planted_token_appears_in_no_output(tmp_path):
    make_shapes(tmp_path / "shapes", n=4)
    recipe = tmp_path / "r.vt"
    recipe.write_text("finetune all on tiny-qwen2.5-vl\nusing lora\nfrom ./shapes\nholdout 25%\ntrain for 2 steps\n"
                      "resize 112\ncheckpoint every 1 steps\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_TOKEN": TOKEN, "HUGGING_FACE_HUB_TOKEN": TOKEN}
    vtc = str(Path(sys.executable).with_name("vtc"))
    printed = []
    for args in (["plan", "r.vt", "-o", "plan.json"], ["plan", "r.vt", "--json"], ["explain", "r.vt"],
                 ["lock", "r.vt"], ["run", "plan.json"]):
        res = subprocess.run([vtc, *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
        assert res.returncode == 0, args
        printed.append(res.stdout + res.stderr)
    assert all(TOKEN not in text for text in printed)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"plan.json", "r.vt.lock", "manifest.json", "metrics.jsonl", "adapter_config.json"} <= names
    leaked = [str(p) for p in files if TOKEN.encode() in p.read_bytes() or b"hf_planted" in p.read_bytes()]
    assert not leaked, leaked


def test_error_messages_in_manifests_are_redacted(monkeypatch):
    from vtc.runtime.failures import redact as _redact

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    text = _redact(f"401 for https://huggingface.co/x?token={TOKEN} and hf_abcdefghijklmnopqrstuvwxyz123456")
    assert TOKEN not in text and "hf_abcdefghijklmnop" not in text and "<redacted>" in text


def test_data_readers_open_files_only_through_the_confinement_rule():
    """One rule for every data source (vtc.runtime.sources.files, on vtc.confine): no reader of sources/ opens a file
    itself, so none can follow a link out of the data folder or block on a FIFO (tests/test_hostile_data.py tries
    each kind of source)."""
    pattern = (r"\.read_text\(|\.read_bytes\(|(?<![\w.])open\(|\bos\.open\(|pq\.read_table\((?!pa\.BufferReader)|"
               r"Image\.open\((?!io\.BytesIO)")
    # files.py is the rule's reader: first_json_row opens with O_NONBLOCK, then fstat refuses anything but a file.
    # hf.py hands files to `datasets` only after _confined_files checked every one of them.
    allowed = {"files.py": {"os.open(", "open("}}
    hits = []
    for path in sorted((SRC / "runtime" / "sources").glob("*.py")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            for match in re.finditer(pattern, code):
                if match.group() not in allowed.get(path.name, set()):
                    hits.append(f"sources/{path.name}:{n}: {line.strip()}")
    assert not hits, "files opened outside vtc.runtime.sources.files:\n" + "\n".join(hits)
