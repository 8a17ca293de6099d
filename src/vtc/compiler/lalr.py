"""The grammar's LALR parser: a slice of one line -> parse tree (rule ``line``), with Lark's contextual lexer.

The parser comes from ``vtc.compiler._vt_parser``, a Lark standalone module that tools/gen_parser.py generates from
src/vtc/grammar/vt.lark, so that ``vtc check`` need not import lark. If that module is missing or older than
vt.lark (it records the grammar's SHA-256), the grammar is loaded with lark instead.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = ["GRAMMAR_PATH", "grammar_sha256", "parse", "accepts", "errors"]

GRAMMAR_PATH = Path(__file__).resolve().parent.parent / "grammar" / "vt.lark"


class _Engine:
    """The parser and the few of its classes that vtc uses, from the standalone module or from lark."""

    def __init__(self, parser, text_slice, token, unexpected_token, unexpected_input) -> None:
        self.parser = parser  # Lark_StandAlone() or lark.Lark(...): contextual lexer + LALR tables
        self.text_slice = text_slice
        self.token = token
        self.unexpected_token = unexpected_token
        self.errors = (unexpected_input,)


_ENGINE: _Engine | None = None


def grammar_sha256() -> str:
    """SHA-256 of the shipped grammar; the generated standalone parser records the one it was built from."""
    return hashlib.sha256(GRAMMAR_PATH.read_bytes()).hexdigest()


def _engine() -> _Engine:
    """The generated standalone parser if it is up to date, else lark with vt.lark."""
    global _ENGINE
    if _ENGINE is None:
        try:
            from vtc.compiler import _vt_parser as standalone

            fresh = standalone.GRAMMAR_SHA256 == grammar_sha256()
        except (ImportError, AttributeError, OSError):
            fresh = False
        if fresh:
            _ENGINE = _Engine(standalone.Lark_StandAlone(), standalone.TextSlice, standalone.Token,
                              standalone.UnexpectedToken, standalone.UnexpectedInput)
        else:
            import lark

            parser = lark.Lark(GRAMMAR_PATH.read_text(encoding="utf-8"), parser="lalr", lexer="contextual",
                               start="line")
            _ENGINE = _Engine(parser, lark.TextSlice, lark.Token, lark.UnexpectedToken, lark.UnexpectedInput)
    return _ENGINE


def errors() -> tuple[type, ...]:
    """The exceptions ``parse`` raises on a syntax error (Lark's UnexpectedToken and UnexpectedCharacters)."""
    return _engine().errors


def parse(code: str, start: int, end: int):
    """Parse code[start:end] with the ``line`` rule. Token positions (``start_pos``, ``column``) index into code.

    Raises one of ``errors()``: UnexpectedToken (``.token`` is what the parser could not take, ``$END`` at the end)
    or UnexpectedCharacters (nothing the grammar knows starts at ``.pos_in_stream``); both carry the parser state
    (``.state``) at the error."""
    engine = _engine()
    return engine.parser.parse(engine.text_slice(code, start, end))


def accepts(state) -> set[str]:
    """The terminals the parser state can really take next (LALR tables over-approximate the expected set)."""
    engine = _engine()
    found = set()
    for name in list(state.parse_conf.states[state.position]):
        if not name.isupper():
            continue
        trial = state.copy(deepcopy_values=False)
        try:
            trial.feed_token(engine.token(name, ""), is_end=name == "$END")
        except (engine.unexpected_token, AssertionError):
            continue
        found.add(name)
    return found
