"""The editor support in editors/vscode: the TextMate grammar for .vt files and the VS Code extension.

The grammar is checked against the language itself: every line of every recipe in recipes/, every clause example of
the clause table and some hard lines are tokenized by VS Code's own engine (vscode-textmate with vscode-oniguruma,
run under node by editors/vscode/test/tokenize.js), and each token vtc's parser reads (src/vtc/grammar/vt.lark) must
carry the scope its kind deserves: a clause keyword `keyword.control.clause.vt`, a string `string.quoted`, a number
`constant.numeric`, a plain word (a path, a name) no keyword scope, a comment `comment.line`.

The extension's activate() runs under node with a stand-in `vscode` module and the real vscode-languageclient
(editors/vscode/test/activate.js): the client it builds must start the configured command with its arguments.

The node tests need node and editors/vscode/node_modules: when node is there and node_modules is not, `npm ci` runs
first (the npm registry must be reachable); without node they skip, saying why. The static checks of the grammar
(every clause keyword and every keyword of vt.lark has a rule) need only Python.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from vtc.compiler import lalr
from vtc.compiler.clauses import BY_TERMINAL, CLAUSE_KEYWORDS, CLAUSES
from vtc.compiler.lines import scan_line

ROOT = Path(__file__).resolve().parent.parent
EXT = ROOT / "editors" / "vscode"
GRAMMAR = json.loads((EXT / "syntaxes" / "vt.tmLanguage.json").read_text(encoding="utf-8"))
RECIPES = sorted((ROOT / "recipes").glob("*.vt"))

CLAUSE_SCOPE = "keyword.control.clause.vt"

# Lines that are easy to get wrong: keyword words inside paths and names, values that look like keywords, the
# one-line form, every number form, escapes and `#` inside strings. Each must parse (the test says if one does not).
HARD_LINES = [
    "finetune vision,mlp on qwen2.5-vl with responses_only from ./xrays resize 512",
    "from ./train_for_x split test",
    "from ./data/with/resize/finetune-on format jsonl",
    "evaluate on ./evaluate_on split train",
    "save to ./runs/with_lora",
    "include ../sites/include.vt",
    "answer from column steps",
    "images from folder ./images",
    "answer from captions",
    "using lora",
    "projector lora",
    "finetune vision, projector on pixtral",
    "learning rate 2e-4, vision 2e-5, projector 1e-4",
    "tiff pages all",
    "gpus all",
    "resize between 200k and 1.2m pixels",
    "resize up to 256x28x28 pixels",
    "resize 512x384",
    "resize none",
    "video 2 fps, at most 16 frames, between 1.5 and 8 seconds, frame size 336",
    "video 1 fps, after 2 seconds, frame size up to 200k pixels",
    "holdout 12.5%",
    "warmup 3%",
    "train for 1 epoch",
    "weight decay 0.01 seed 7 max length 4096 micro batch 2 accumulate 4",
    'ask "Say \\"hi\\" # this is text, not a comment"  # and this is a comment',
    'system "C:\\\\data"',
    'from "./my data" split train',
    "checkpoint every 50 steps",
    "export adapter, merged",
    "metric cer, exact_match",
    "bad rows skip",
    "window 40 400",
    "lora rank 16 alpha 32 dropout 0.05",
    "schedule cosine optimizer adamw_8bit precision bf16 shard model",
    "without gradient_checkpointing",
    "from ./données split entraînement",  # \w is every script's letters, in both grammars
    "train\tfor 3 steps",  # any blank between the words of a keyword, a tab or a non-breaking space
    "learning\u00a0rate 1e-3",
    "evaluate on C:/data/val",
]


# --- the grammar's rules, read with Python's re (the patterns use only what Python's re and Oniguruma share) ----------

def _rules(node, out):
    """(compiled pattern, {group: scope}) for every `match` rule of the grammar, depth first."""
    if isinstance(node, dict):
        if "match" in node:
            scopes = {int(k): v["name"] for k, v in node.get("captures", {}).items() if "name" in v}
            if "name" in node:
                scopes[0] = node["name"]
            out.append((re.compile(node["match"]), scopes))
        for value in node.values():
            _rules(value, out)
    elif isinstance(node, list):
        for value in node:
            _rules(value, out)
    return out


RULES = _rules(GRAMMAR["repository"], [])


def _highlighted_as(word: str) -> set[str]:
    """The scopes that grammar rules give `word` when it starts a line and is matched whole by one group."""
    found = set()
    for pattern, scopes in RULES:
        m = pattern.match(word)
        if m:
            found.update(scope for group, scope in scopes.items() if m.group(group) == word)
    return found


def _lark_keywords() -> dict[str, list[str]]:
    """Keyword terminal of vt.lark (priority 3) -> the words it stands for (`PIXELS` -> pixel, pixels)."""
    words = {}
    for name, regex in re.findall(r"^([A-Z_]+)\.3:\s*/(.*)/\s*$", lalr.GRAMMAR_PATH.read_text(), re.M):
        body = re.sub(r"\(\?!.*\)$", "", regex).replace(r"[^\S\n]+", " ")
        assert re.fullmatch(r"[a-z ]+s?\??", body), f"{name}: a keyword form this test does not know: {body}"
        words[name] = [body[:-2], body[:-1]] if body.endswith("?") else [body]
    return words


def test_every_clause_keyword_has_a_keyword_rule():
    """A new clause in the clause table fails here until the grammar highlights its keyword."""
    missing = [k for k in CLAUSE_KEYWORDS if CLAUSE_SCOPE not in _highlighted_as(k)]
    assert not missing, f"clause keywords that editors/vscode/syntaxes/vt.tmLanguage.json does not highlight: {missing}"


def test_every_keyword_of_the_lark_grammar_has_a_rule():
    """Every keyword terminal of vt.lark (clause keywords and the words inside clauses, `on`, `split`, `fps`, units)
    is highlighted: as a clause keyword, another keyword, or (`all`, `none`) a constant."""
    keywords = _lark_keywords()
    assert "FRAME_SIZE" in keywords and "PIXELS" in keywords  # the reading of vt.lark found them
    missing = []
    for name, words in keywords.items():
        want = CLAUSE_SCOPE if name in BY_TERMINAL else ("keyword.", "constant.language.")
        for word in words:
            if not any(s.startswith(want) for s in _highlighted_as(word)):
                missing.append(word)
    assert not missing, f"keywords of vt.lark without a rule in the TextMate grammar: {missing}"


def test_keywords_count_only_as_whole_tokens():
    """As in vt.lark: nothing of [\\w./~:+@%-] on either side, so a keyword inside a path or a name is no keyword."""
    for word in ("./train_for", "resizer", "with_lora", "x-from", "~/video", "gpus2", "batch.vt", "lora@2"):
        for pattern, scopes in RULES:
            for m in pattern.finditer(word):
                for group, scope in scopes.items():
                    if scope.startswith("keyword.") and m.group(group):
                        pytest.fail(f"{scope} for {m.group(group)!r} inside {word!r}")


def test_grammar_declares_the_language():
    assert GRAMMAR["scopeName"] == "source.vt"
    package = json.loads((EXT / "package.json").read_text(encoding="utf-8"))
    (language,) = package["contributes"]["languages"]
    (grammar,) = package["contributes"]["grammars"]
    assert language["id"] == grammar["language"] == "vt" and language["extensions"] == [".vt"]
    assert grammar["scopeName"] == "source.vt" and (EXT / grammar["path"]).is_file()
    config = json.loads((EXT / language["configuration"]).read_text(encoding="utf-8"))
    assert config["comments"]["lineComment"] == "#"
    assert {"open": '"', "close": '"', "notIn": ["string", "comment"]} in config["autoClosingPairs"]


# --- node: VS Code's tokenizer and the extension ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def node() -> str:
    """The node executable, with editors/vscode/node_modules installed (`npm ci` when missing)."""
    exe = shutil.which("node")
    if exe is None:
        pytest.skip("node is not installed: the editor tests need Node.js and npm (the CI step skips the .vsix too)")
    needed = ("vscode-textmate", "vscode-oniguruma", "vscode-languageclient", "@vscode/vsce")
    if not all((EXT / "node_modules" / name / "package.json").is_file() for name in needed):
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("npm is not installed, and editors/vscode/node_modules is missing")
        done = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=EXT, capture_output=True, text=True,
                              timeout=600)
        if done.returncode != 0:
            pytest.skip(f"`npm ci` in editors/vscode failed (is the npm registry reachable?): {done.stderr[-500:]}")
    return exe


def _tokenize(node: str, docs: list[list[str]]) -> list[list[list[tuple[int, int, list[str]]]]]:
    """Each document's lines as VS Code tokenizes them: (start, end, scopes) for every token."""
    done = subprocess.run([node, str(EXT / "test" / "tokenize.js")], input=json.dumps(docs), capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    out = []
    for doc in json.loads(done.stdout):
        lines = []
        for tokens in doc:
            at, spans = 0, []
            for text, scopes in tokens:
                spans.append((at, at + len(text), scopes))
                at += len(text)
            lines.append(spans)
        out.append(lines)
    return out


def _lark_tokens(code: str) -> list:
    """The tokens vtc's parser reads in one line's code, in order (commas, which lark drops, are not among them)."""
    def walk(tree):
        for child in tree.children:
            if child is None:
                continue
            if hasattr(child, "children"):
                yield from walk(child)
            else:
                yield child
    return list(walk(lalr.parse(code, 0, len(code))))


def _expected(kind: str):
    """What a lark token of this kind must carry, as a test on its scopes, and a word for the failure message."""
    if kind in BY_TERMINAL:
        return (lambda s: CLAUSE_SCOPE in s), "a clause keyword"
    if kind == "STRING":
        return (lambda s: "string.quoted.double.vt" in s), "a string"
    if kind in ("INT", "NUMBER", "SIZE", "PERCENT", "PIXEL_AMOUNT"):
        return (lambda s: any(x.startswith("constant.numeric") for x in s)), "a number"
    if kind == "WORD":
        return (lambda s: not any(x.startswith("keyword.") for x in s)), "no keyword (a path or a name)"
    if kind in ("ALL", "NONE"):
        return (lambda s: "constant.language.vt" in s), "a constant"
    return (lambda s: any(x.startswith("keyword.") for x in s)), "a keyword"


def _check_line(raw: str, spans, where: str) -> set[str]:
    """Assert the scopes of one tokenized line against vtc's parser; returns the clause keywords seen."""
    line = scan_line(raw, 1, "x.vt")
    assert not line.diagnostics, f"{where}: {raw!r} is not a clean line"
    seen = set()
    for token in _lark_tokens(line.code):
        start, end = token.start_pos, token.start_pos + len(token)
        over = [s for s in spans if s[0] < end and s[1] > start]
        assert over[0][0] == start and over[-1][1] == end, (
            f"{where}: {str(token)!r} is split differently: {[raw[a:b] for a, b, _ in over]}")
        ok, what = _expected(token.type)
        for a, b, scopes in over:
            assert ok(scopes), f"{where}: {raw[a:b]!r} ({token.type}) should be {what}, got {scopes}"
        if token.type in BY_TERMINAL:
            seen.add(BY_TERMINAL[token.type].keyword)
    if line.comment is not None:
        start = raw.index("#", len(line.code.rstrip()))
        for a, b, scopes in spans:
            if b > start:
                assert "comment.line.number-sign.vt" in scopes, f"{where}: {raw[a:b]!r} should be a comment"
    return seen


def test_recipes_and_clause_examples_are_highlighted_as_vtc_reads_them(node):
    docs = [p.read_text(encoding="utf-8").splitlines() for p in RECIPES]
    docs.append([c.example for c in CLAUSES])
    docs.append(HARD_LINES)
    names = [p.name for p in RECIPES] + ["the clause examples", "the hard lines"]
    seen = set()
    lines_checked = 0
    for name, raw_lines, tokenized in zip(names, docs, _tokenize(node, docs)):
        for number, (raw, spans) in enumerate(zip(raw_lines, tokenized), start=1):
            seen |= _check_line(raw, spans, f"{name}:{number}")
            lines_checked += 1
    assert lines_checked > 100 and len(RECIPES) >= 5
    assert seen == set(CLAUSE_KEYWORDS), f"clause keywords never seen highlighted: {set(CLAUSE_KEYWORDS) - seen}"


def _scopes_of(node, line: str) -> dict[str, list[str]]:
    (([spans],),) = (_tokenize(node, [[line]]),)
    return {line[a:b]: scopes[1:] for a, b, scopes in spans}


def test_values_have_their_own_scopes(node):
    """Model names, parts, options, paths, columns and escapes: what a theme colours apart from the keywords."""
    got = _scopes_of(node, 'finetune vision, mlp on qwen2.5-vl with responses_only from ./xrays ask "a \\"b\\""')
    assert got["vision"] == got["mlp"] == ["support.constant.part.vt"]
    assert got["qwen2.5-vl"] == ["entity.name.type.model.vt"]
    assert got["responses_only"] == ["support.constant.option.vt"]
    assert got["./xrays"] == ["string.unquoted.path.vt"]
    assert got['\\"'] == ["string.quoted.double.vt", "constant.character.escape.vt"]
    got = _scopes_of(node, "answer from column steps  # a column named steps")
    assert got["steps"] == ["variable.other.column.vt"]
    assert got["#"] == ["comment.line.number-sign.vt", "punctuation.definition.comment.vt"]
    got = _scopes_of(node, "holdout 10%")
    assert got["10%"] == ["constant.numeric.percentage.vt"]


def test_an_unclosed_string_ends_with_its_line(node):
    """vtc reports it (VT005); the highlighting of the next lines must not turn into one long string."""
    (lines,) = _tokenize(node, [['ask "never closed', "resize 512"]])
    assert [s for a, b, s in lines[1] if b - a == 6][0] == ["source.vt", CLAUSE_SCOPE]


# --- the extension ---------------------------------------------------------------------------------------------------

FAKE_SERVER = r'''
import json, sys
def read():
    length = None
    while True:
        line = sys.stdin.buffer.readline()
        if not line:
            return None
        if line in (b"\r\n", b"\n"):
            break
        key, _, value = line.decode().partition(":")
        if key.lower() == "content-length":
            length = int(value)
    return json.loads(sys.stdin.buffer.read(length))
def send(message):
    body = json.dumps(message).encode()
    sys.stdout.buffer.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
    sys.stdout.buffer.flush()
while (message := read()) is not None:
    if message.get("method") == "initialize":
        # The arguments this process was started with go back as the server's version.
        send({"jsonrpc": "2.0", "id": message["id"],
              "result": {"capabilities": {}, "serverInfo": {"name": "fake", "version": json.dumps(sys.argv[1:])}}})
    elif message.get("method") == "shutdown":
        send({"jsonrpc": "2.0", "id": message["id"], "result": None})
    elif message.get("method") == "exit":
        break
'''


def _fake_vtc(folder: Path) -> Path:
    """An executable `vtc` in `folder` that answers `initialize` with the arguments it was given."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "fake_server.py"
    script.write_text(FAKE_SERVER, encoding="utf-8")
    exe = folder / "vtc"
    exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}" "$@"\n', encoding="utf-8")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return exe


def _activate(node: str, scenario: dict, path: str) -> dict:
    env = {**os.environ, "PATH": path}
    done = subprocess.run([node, str(EXT / "test" / "activate.js"), json.dumps(scenario)], capture_output=True,
                          text=True, timeout=60, env=env, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.skipif(os.name == "nt", reason="the stand-in server is a shell script")
def test_activate_starts_vtc_lsp_from_path(node, tmp_path):
    fake = _fake_vtc(tmp_path / "bin")
    report = _activate(node, {"handshake": True}, f"{fake.parent}{os.pathsep}{Path(node).parent}")
    assert report["isLanguageClient"] and report["started"] == 1 and report["shown"] == []
    assert report["serverOptions"] == {"command": str(fake), "args": ["lsp", "--stdio"]}
    assert report["documentSelector"] == [{"language": "vt"}]
    # The real client spawned it and spoke LSP over its stdin/stdout; `--stdio` was passed once, not twice.
    assert json.loads(report["initialize"]["result"]["serverInfo"]["version"]) == ["lsp", "--stdio"]


@pytest.mark.skipif(os.name == "nt", reason="the stand-in server is a shell script")
def test_activate_uses_the_settings(node, tmp_path):
    fake = _fake_vtc(tmp_path / "project" / ".venv" / "bin")
    settings = {"vtc.server.path": "${workspaceFolder}/.venv/bin/vtc", "vtc.server.args": ["lsp", "--stdio", "-v"]}
    report = _activate(node, {"settings": settings, "folder": str(tmp_path / "project"), "handshake": True},
                       str(Path(node).parent))
    assert report["serverOptions"] == {"command": str(fake), "args": ["lsp", "--stdio", "-v"]}
    assert json.loads(report["initialize"]["result"]["serverInfo"]["version"]) == ["lsp", "--stdio", "-v"]


def test_activate_says_what_to_do_when_vtc_is_missing(node, tmp_path):
    for scenario in ({}, {"settings": {"vtc.server.path": str(tmp_path / "nowhere" / "vtc")}}):
        report = _activate(node, scenario, str(tmp_path))
        assert not report["client"] and report["started"] == 0
        (message,) = report["shown"]
        assert "was not found" in message and "pip install 'vtc[lsp]'" in message and "vtc.server.path" in message


def _vtc_lsp() -> Path | None:
    """This environment's `vtc`, when it has the language server (`vtc lsp --help` works)."""
    exe = Path(sys.executable).parent / "vtc"
    if not exe.is_file():
        return None
    done = subprocess.run([str(exe), "lsp", "--help"], capture_output=True, timeout=60, check=False)
    return exe if done.returncode == 0 else None


def test_activate_with_the_real_server(node):
    """The extension's client and the real `vtc lsp --stdio`: initialize answers with the server's capabilities."""
    exe = _vtc_lsp()
    if exe is None:
        pytest.skip("this environment's vtc has no `lsp` command (pip install 'vtc[lsp]')")
    report = _activate(node, {"settings": {"vtc.server.path": str(exe)}, "handshake": True}, os.environ["PATH"])
    capabilities = report["initialize"]["result"]["capabilities"]
    assert capabilities.get("textDocumentSync") and capabilities.get("hoverProvider")


def test_vsix_holds_the_extension(node, tmp_path):
    """`vsce package` (the CI step runs the same) makes a .vsix with the grammar, configuration and extension.js."""
    vsix = tmp_path / "vtc.vsix"
    npx = shutil.which("npx") or pytest.skip("npx is not installed")
    done = subprocess.run([npx, "--no-install", "vsce", "package", "--allow-missing-repository", "-o", str(vsix)],
                          cwd=EXT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    names = set(zipfile.ZipFile(vsix).namelist())
    for wanted in ("extension/package.json", "extension/extension.js", "extension/language-configuration.json",
                   "extension/syntaxes/vt.tmLanguage.json", "extension/readme.md", "extension/LICENSE.txt",
                   "extension/node_modules/vscode-languageclient/lib/node/main.js"):
        assert wanted in names, f"{wanted} is not in the .vsix"
    assert not any(n.startswith(("extension/test/", "extension/node_modules/vscode-textmate/")) for n in names)
