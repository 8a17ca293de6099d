"""A Lark syntax error on one line -> a diagnostic in plain words (VT004, VT010-VT013) and where to resume.

Terminal names (``WORD``, ``COMMA``, ``$END``) never reach users: the tables below translate them into words, and
the clause table (vtc.compiler.clauses) gives each clause's example and the meaning of a plain word in it. A
missing value is reported at the end of the previous token, not at the next line.
"""

from __future__ import annotations

import re
import unicodedata

from vtc.compiler import lalr
from vtc.compiler.build import tokens
from vtc.compiler.clauses import BY_KEYWORD, BY_TERMINAL, CLAUSE_KEYWORDS, ONE_LINE_EXAMPLE
from vtc.compiler.lines import STRING_RE
from vtc.diagnostics import Diagnostic, Span, error, suggest
from vtc.records import record

__all__ = ["Problem", "explain", "SUB_KEYWORDS", "next_clause_start"]

# Keywords inside clauses: grammar terminal -> spelling.
SUB_KEYWORDS = {"ON": "on", "SPLIT": "split", "CAPTIONS": "captions", "FOLDERS": "folders", "COLUMN": "column",
                "NONE": "none", "RANK": "rank", "ALPHA": "alpha", "DROPOUT": "dropout", "EPOCHS": "epochs",
                "STEPS": "steps", "ALL": "all", "BETWEEN": "between", "AND": "and", "PIXELS": "pixels",
                "UP_TO": "up to", "FORMAT": "format", "FOLDER": "folder", "FPS": "fps", "AT_MOST": "at most",
                "FRAMES": "frames", "SECONDS": "seconds", "AFTER": "after", "FRAME_SIZE": "frame size"}
# Value terminals in user words. Keywords inside clauses are shown as written.
_TERMINAL_WORDS = {
    "INT": "a whole number",
    "NUMBER": "a number",
    "PERCENT": "a percentage like `10%`",
    "SIZE": "a size like `640x480`",
    "PIXEL_AMOUNT": "a number of pixels like `200k`, `1m` or `256x28x28`",
    "STRING": "text in double quotes",
    "COMMA": "`,`",
    **{name: f"`{spelling}`" for name, spelling in SUB_KEYWORDS.items()},
}
# The order in which expected terminals are listed.
_ORDER = ["WORD", "STRING", "INT", "NUMBER", "SIZE", "PIXEL_AMOUNT", "PERCENT", "COMMA", *SUB_KEYWORDS]

# Characters of a bare word (kept in step with WORD in vt.lark) and of anything number-like.
_CHUNK_RE = re.compile(r"[\w.\/~:+@%-]+")
# A character of a path written with backslashes (a Windows path).
_PATH_CHAR_RE = re.compile(r"[\w.\/~:+@%\\-]")
# The most words a clause keyword has.
_MOST_WORDS = max(kw.count(" ") + 1 for kw in CLAUSE_KEYWORDS)
# The start of a clause keyword on a line (used to resume after an error). Several-word keywords allow any blanks.
_KEYWORD_RE = re.compile(
    r"(?<![\w.\/~:+@%\-])("
    + "|".join(kw.replace(" ", r"[^\S\n]+") for kw in sorted(CLAUSE_KEYWORDS, key=len, reverse=True))
    + r")(?![\w.\/~:+@%\-])"
)


@record
class Problem:
    diagnostics: tuple[Diagnostic, ...]
    clause_start: int  # index in the line where the broken clause starts (statements before it are fine)
    resume: int | None  # index in the line where parsing goes on, or None to give up on this line


def _in_frame_budget(clause_tokens: list) -> bool:
    """Inside `video ... frame size between|up to ...` (not the window's `between`): the last BETWEEN or UP_TO of
    the clause follows FRAME_SIZE, and only the budget's own tokens come after it."""
    types = [t.type for t in clause_tokens]
    at = max((i for i, kind in enumerate(types) if kind in ("BETWEEN", "UP_TO")), default=-1)
    return at > 0 and types[at - 1] == "FRAME_SIZE" and set(types[at + 1:]) <= {"PIXEL_AMOUNT", "AND"}


def _is_budget_amount(text: str) -> bool:
    """`1m`, `200k`, `256x28x28`: an amount only a pixel budget takes (not `512` or `640x480`, which `resize` takes
    as they are)."""
    from vtc.compiler.lower import pixel_amount

    return pixel_amount(text) is not None and not re.fullmatch(r"\d+(x\d+)?", text)


def explain(exc, code: str, number: int, file: str) -> Problem:
    """Turn a Lark error on the line ``code`` into a diagnostic in user words and a place to resume."""
    state = getattr(exc, "state", None)
    token = getattr(exc, "token", None)
    if token is not None and getattr(token, "type", None) == "$END":
        pos = len(code)
    elif token is not None and getattr(token, "start_pos", None) is not None:
        pos = token.start_pos
    else:
        pos = getattr(exc, "pos_in_stream", 0)

    # The clause being read: the last clause keyword on the parser's stack.
    stack_tokens = _tokens_of_stack(state.value_stack) if state is not None else []
    clause, clause_start, last_end = None, pos, None
    for tok in reversed(stack_tokens):
        if tok.type in BY_TERMINAL:
            clause, clause_start = BY_TERMINAL[tok.type].keyword, tok.start_pos
            break
    if stack_tokens:
        last_end = stack_tokens[-1].end_pos
    accepts = lalr.accepts(state) if state is not None else set()
    complete = "$END" in accepts
    after_on = any(t.type in ("ON", "SPLIT", "COLUMN", "FORMAT", "FOLDER") for t in stack_tokens if t.start_pos >= clause_start)

    kind, text, end = _thing_at(code, pos)
    if kind != "end":
        pos = len(code) - len(code[pos:].lstrip())
    so_far = " ".join(code[clause_start:last_end].split()) if clause and last_end else ""
    example = BY_KEYWORD[clause].example if clause else ""
    if clause == "resize" and any(t.type in ("BETWEEN", "UP_TO") for t in stack_tokens if t.start_pos >= clause_start):
        example = "resize between 200k and 1m pixels" if "between" in so_far else "resize up to 1m pixels"
    elif clause == "resize" and text and _is_budget_amount(text):
        example = f"resize up to {text} pixels"  # `resize 1m`: a pixel budget's amount
    elif clause == "video" and stack_tokens and stack_tokens[-1].type == "FRAME_SIZE" and text and \
            _is_budget_amount(text):
        example = f"video frame size up to {text} pixels"  # `frame size 200k`: a pixel budget's amount
    elif clause == "video" and _in_frame_budget([t for t in stack_tokens if t.start_pos >= clause_start]):
        example = ("video frame size between 50k and 150k pixels" if so_far.endswith(("between", "and")) or
                   "frame size between" in so_far.rsplit(",", 1)[-1] else "video frame size up to 200k pixels")

    def span_at(a: int, b: int) -> Span:
        return Span(file, number, a + 1, number, max(b, a + 1) + 1)

    def caret_after(at: int) -> Span:  # an empty span: where something is missing
        return Span(file, number, at + 1, number, at + 1)

    def next_clause(after: int) -> int | None:
        return next_clause_start(code, after)

    def problem(vt: str, message: str, span: Span, help: str, start: int, resume: int | None,
                suggestion: str | None = None) -> Problem:
        return Problem((error(vt, message, span, help=help, suggestion=suggestion),), start, resume)

    if kind == "char" and text == "\\":
        # A Windows path: `from C:\Users\me\xrays`. Say so, with the path in forward slashes.
        start = pos
        while start > 0 and _PATH_CHAR_RE.match(code[start - 1]):
            start -= 1
        stop = pos
        while stop < len(code) and _PATH_CHAR_RE.match(code[stop]):
            stop += 1
        path = code[start:stop]
        return Problem((error(
            "VT004", "unexpected character `\\` (backslash)", span_at(pos, pos + 1),
            help=f"in a path, use forward slashes: `{_clip(path.replace(chr(92), '/'), 60)}` (or put the path in double "
                 f'quotes as it is: `"{_clip(path, 60)}"`)'),), clause_start, next_clause(stop))
    if kind == "char":
        return Problem((_bad_character(text, span_at(pos, pos + 1), example),), clause_start, next_clause(pos + 1))

    if clause == "finetune" and [t.type for t in stack_tokens[-2:]] == ["FINETUNE", "WORD"] \
            and str(stack_tokens[-1]) == "on":
        # `finetune on qwen2.5-vl`: the lexer read `on` as the first part.
        return problem("VT011", "missing the parts to train after `finetune`", caret_after(stack_tokens[-2].end_pos),
                       f"name what trains (vision, language, attention, mlp, projector or all), like `{example}`", clause_start,
                       next_clause(end))

    if clause is not None and not complete:
        wanted = _describe(accepts, clause, after_on)
        if kind in ("end", "keyword"):
            if "COMMA" in accepts and len(accepts) > 1:
                wanted = _describe(accepts - {"COMMA"}, clause, after_on)  # a list may simply end here
            return problem("VT011", f"missing {wanted} after `{_clip(so_far)}`",
                           caret_after(last_end if last_end is not None else pos),
                           f"write {wanted}, for example `{example}`", clause_start, pos if kind == "keyword" else None)
        keywords = [SUB_KEYWORDS[n] for n in accepts if n in SUB_KEYWORDS]
        close = suggest(text, keywords) if keywords and kind == "word" else None
        without = (_without_word(code, clause_start, pos, end)
                   if kind == "word" and not close and "COMMA" not in accepts else None)
        if without:
            help_text = f"write `{_clip(without, 60)}`, without `{_clip(text)}`"
        elif close:
            help_text = f"did you mean `{close}`? (like `{example}`)"
        elif kind == "string" and "WORD" in accepts and "STRING" not in accepts:
            help_text = f"write this name without double quotes, like `{example}`"
        elif clause == "finetune" and "COMMA" in accepts:
            help_text = f"separate the parts with commas, then write `on` and the model: `{example}`"
        else:
            help_text = f"write it like `{example}`"
        return problem("VT012", f"expected {wanted} after `{_clip(so_far)}`, found `{_clip(text)}`", span_at(pos, end),
                       help_text, clause_start, next_clause(end), suggestion=None if without else close)

    # The clause so far is complete (or no clause has started): the thing at pos cannot start a clause.
    unexpected = f"unexpected `{_clip(text)}` after `{_clip(so_far)}`"
    if kind == "word":
        near = _near_miss(text, code[end:], anywhere=clause is None)
        if near:
            return problem("VT010", f"unknown clause `{_clip(text)}`", span_at(pos, end), near, pos, next_clause(end))
        guess = _guess_clause(text, code[end:])
        if guess and "COMMA" in accepts and guess != text.rstrip(":=").lower():
            # `with responses_only rslora`: more likely a missing comma than a misspelled `lora` clause.
            return problem("VT013", unexpected, span_at(pos, end),
                           f"separate several values with commas, like `{example}`; or, if `{_clip(text)}` starts a "
                           f"new clause, did you mean `{guess}`?", pos, next_clause(end))
        if guess or (clause is None and (text[0].isalpha() or text[0] == "_")):
            help_text = _clause_help(text, guess, code[pos:])
            # A one-word clause keyword for one misspelled word is a quick fix (vtc lsp); `learnin rate` is not.
            fix = guess if guess and " " not in guess and help_text.startswith("did you mean") else None
            return problem("VT010", f"unknown clause `{_clip(text)}`", span_at(pos, end), help_text, pos,
                           next_clause(end), suggestion=fix)
    if clause is None:  # a number, a string or a stray keyword at the start of a clause
        return problem("VT010", f"a clause cannot start with `{_clip(text)}`", span_at(pos, end),
                       f"each clause starts with a keyword, like `{ONE_LINE_EXAMPLE}`", pos, next_clause(end))
    last = str(stack_tokens[-1]) if stack_tokens else ""
    subs = [SUB_KEYWORDS[n] for n in sorted(accepts, key=_order) if n in SUB_KEYWORDS]
    close = suggest(text, subs) if subs and kind == "word" else None
    if close:
        help_text = f"did you mean `{close}`? (like `{example}`)"
    elif "COMMA" in accepts:
        help_text = f"separate several values with commas, like `{example}`"
    elif kind == "word" and stack_tokens and stack_tokens[-1].type == "WORD":
        help_text = (f"if `{_clip(last + ' ' + text)}` is one name with spaces, put it in double quotes: "
                     f"`\"{_clip(last + ' ' + text)}\"`; otherwise start a new clause with its keyword")
    elif subs:
        options = _describe({n for n in accepts if n in SUB_KEYWORDS}, clause, after_on)
        help_text = f"after `{_clip(so_far)}` comes {options} or a new clause, like `{example}`"
    else:
        help_text = f"`{clause}` takes one value, like `{example}`"
    return problem("VT013", unexpected, span_at(pos, end), help_text, pos, next_clause(end), suggestion=close)


def next_clause_start(code: str, after: int) -> int | None:
    """Where the next clause keyword stands in ``code`` at or after index ``after`` (not inside a string), or None."""
    m = _KEYWORD_RE.search(_mask_strings(code), after)
    return m.start() if m else None


def _describe(names, clause: str | None, after_on: bool) -> str:
    """A set of terminals as a phrase: 'a whole number', '`,` or `on`'."""
    words = []
    for name in sorted(names, key=_order):
        if name == "$END" or name in BY_TERMINAL:
            continue
        if name == "WORD":
            if clause == "finetune" and after_on:
                phrase = "a model name"
            elif clause in ("from", "evaluate on") and after_on:
                phrase = "a split name (like `train`)"
            else:
                phrase = BY_KEYWORD[clause].word if clause and BY_KEYWORD[clause].word else "a name"
        elif name == "STRING":
            if "WORD" in names:
                continue  # a name or a path may always be quoted
            phrase = _TERMINAL_WORDS[name]
        elif name == "INT" and clause == "resize":
            phrase = "a number of pixels"
        elif name == "ON":
            phrase = "`on` and a model name"
        else:
            phrase = _TERMINAL_WORDS.get(name, name.lower())
        if phrase not in words:
            words.append(phrase)
    if not words:
        return "nothing more"
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _order(name: str):
    return (_ORDER.index(name) if name in _ORDER else len(_ORDER), name)


def _thing_at(code: str, i: int) -> tuple[str, str, int]:
    """What stands at index i: (kind, text, end) with kind in end | string | keyword | word | char."""
    while i < len(code) and code[i].isspace():
        i += 1
    if i >= len(code):
        return "end", "", i
    if code[i] == '"':
        m = STRING_RE.match(code, i)
        end = m.end() if m else len(code)
        return "string", code[i:end], end
    m = _KEYWORD_RE.match(code, i)
    if m:
        return "keyword", " ".join(m.group().split()), m.end()
    m = _CHUNK_RE.match(code, i)
    if m:
        return "word", m.group(), m.end()
    return "char", code[i], i + 1


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _tokens_of_stack(stack) -> list:
    found = []
    for item in stack:
        if isinstance(item, list):
            for sub in item:
                found.extend(tokens(sub))
        else:
            found.extend(tokens(item))
    return [t for t in found if hasattr(t, "type")]


def _mask_strings(code: str) -> str:
    """The line with the insides of strings blanked, so that a keyword inside text does not count."""
    return STRING_RE.sub(lambda m: '"' + " " * (len(m.group()) - 2) + '"', code)


def _guess_clause(word: str, rest: str) -> str | None:
    """The clause keyword a misspelled word most likely means (keywords of n words: also try the next n-1 words)."""
    choices = list(CLAUSE_KEYWORDS)
    stripped = word.rstrip(":=")
    if stripped.lower() in CLAUSE_KEYWORDS:
        return stripped.lower()
    words = [word]
    for n in range(2, _MOST_WORDS + 1):
        rest = rest.lstrip()
        following = _CHUNK_RE.match(rest)
        if following is None:
            break
        words.append(following.group())
        rest = rest[following.end():]
        phrase = suggest(" ".join(words), [c for c in choices if c.count(" ") == n - 1], cutoff=0.75)
        if phrase:
            return phrase
    best = suggest(word, choices)
    if best:
        return best
    firsts = {c.split()[0]: c for c in choices if " " in c}
    first = suggest(word, list(firsts), cutoff=0.75)
    return firsts[first] if first else None


def _clause_help(word: str, guess: str | None, rest: str) -> str:
    """The help of an unknown clause ``word`` (``rest``: the line from the word on)."""
    lowered = _lower_keywords(rest)
    if guess and lowered != rest and _KEYWORD_RE.match(lowered) and " ".join(
            _KEYWORD_RE.match(lowered).group().split()) == guess:
        # `Finetune vision on Qwen2.5-VL`: the user's own line, its keywords in lower case (names kept as written).
        return f"keywords are lower-case: write `{_clip(' '.join(lowered.split()), 80)}`"
    if guess and word.rstrip(":=").lower() == guess:
        return f"write `{BY_KEYWORD[guess].example}`, without `{word[len(guess):]}`"
    if guess:
        return f"did you mean `{guess}`? (like `{BY_KEYWORD[guess].example}`)"
    return ("each clause starts with a keyword such as `finetune`, `from`, `resize`, `batch` or `train for` "
            "(docs/language.md lists them all); to write a comment, start it with `#`")


def _without_word(code: str, clause_start: int, pos: int, end: int) -> str | None:
    """The clause with the word at code[pos:end] left out, when that makes it whole (`batch size 4` -> `batch 4`)."""
    stop = next_clause_start(code, end)
    trial = code[clause_start:pos] + code[end:stop if stop is not None else len(code)]
    if not code[end:stop].strip():
        return None  # nothing after the word: leaving it out leaves the clause without its value
    try:
        lalr.parse(trial, 0, len(trial))
    except lalr.errors():
        return None
    return " ".join(trial.split())


def _lower_keywords(text: str) -> str:
    """``text`` with every word that is a keyword or an option word of the language (a part, a method, a flag, a
    metric, ...) in lower case; names, paths and text in quotes stay as written."""
    words = _vocabulary()
    out, at = [], 0
    for m in re.finditer(r'"(?:\\.|[^"\\])*"?|[\w.\/~:+@%-]+', text):
        out.append(text[at:m.start()])
        piece = m.group()
        out.append(piece.lower() if not piece.startswith('"') and piece.lower() in words else piece)
        at = m.end()
    out.append(text[at:])
    return "".join(out)


_VOCABULARY: set[str] = set()


def _vocabulary() -> set[str]:
    """The words of the language: clause keywords and the words inside clauses, and the choices the schema lists
    (parts, methods, flags, metrics, schedules, ...)."""
    if not _VOCABULARY:
        from vtc.compiler.validate import schema  # only on this error path

        words = {w for kw in CLAUSE_KEYWORDS for w in kw.split()} | set(SUB_KEYWORDS.values()) | {"epoch", "step"}

        def walk(node) -> None:
            if isinstance(node, dict):
                for value in node.get("enum", []):
                    if isinstance(value, str):
                        words.add(value.lower())
                if node.get("title") == "with":  # the flags: `with responses_only`
                    words.update(k.lower() for k in node.get("properties", {}))
                for value in node.values():
                    walk(value)
            elif isinstance(node, list):
                for value in node:
                    walk(value)

        walk(schema())
        _VOCABULARY.update(words)
    return _VOCABULARY


# Words people write for a clause that vtc spells otherwise (many are other tools' setting names) -> the clause to
# write, `{}` standing for the value that follows the word, and what that value must be: "number" (a number, else
# the example's), "text" (text in double quotes) or "name" (anything).
_NEAR_MISSES: dict[str, tuple[str, str, str]] = {}
for _words, _clause, _kind, _default in (
    ("epoch epochs num_epochs num_train_epochs n_epochs", "train for {} epochs", "number", "3"),
    ("step steps max_steps num_steps num_train_steps iterations iters", "train for {} steps", "number", "60"),
    ("lr", "learning rate {}", "number", "2e-4"),
    ("rank r lora_r lora_rank", "lora rank {}", "number", "16"),
    ("alpha lora_alpha", "lora alpha {}", "number", "16"),
    ("dropout lora_dropout", "lora dropout {}", "number", "0.05"),
    ("bs batch_size train_batch_size total_batch_size effective_batch_size", "batch {}", "number", "8"),
    ("per_device_train_batch_size micro_batch_size micro_batch microbatch", "micro batch {}", "number", "2"),
    ("gradient_accumulation_steps gradient_accumulation grad_accum accumulation", "accumulate {}", "number", "4"),
    ("max_seq_length max_seq_len max_len seq_len context_length", "max length {}", "number", "2048"),
    ("warmup_steps", "warmup {} steps", "number", "5"),
    ("random_seed", "seed {}", "number", "3407"),
    ("image_size img_size resolution", "resize {}", "number", "512"),
    ("num_gpus n_gpus", "gpus {}", "number", "1"),
    ("model base_model model_name", "finetune all on {}", "name", "qwen2.5-vl"),
    ("data dataset train_data train_dataset", "from {}", "name", "./xrays"),
    ("output output_dir out", "save to {}", "name", "./runs/xray"),
    ("eval eval_data validation val test", "evaluate on {}", "name", "./val"),
    ("prompt instruction question", "ask {}", "text", '"Describe this image."'),
    ("method", "using {}", "name", "lora"),
    ("optim", "optimizer {}", "name", "adamw_8bit"),
    ("scheduler lr_scheduler lr_scheduler_type", "schedule {}", "name", "cosine"),
):
    for _word in _words.split():
        _NEAR_MISSES[_word] = (_clause, _kind, _default)

_NUMBER_RE = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?%?(?![\w.\/~:+@%-])")


def _near_miss(word: str, rest: str, anywhere: bool) -> str | None:
    """The help for a word that names a clause the way other tools do (`epochs 3`, `lr 2e-4`, `max_steps 60`):
    the clause to write, with the user's value. ``anywhere``: the word starts a clause (else it follows a complete
    clause on the line, and only counts with a number after it: `from ./my data` is a path with a space)."""
    found = _NEAR_MISSES.get(word.rstrip(":=").lower())
    if found is None:
        return None
    template, kind, default = found
    if not anywhere and kind != "number":
        return None
    rest = rest.lstrip().lstrip(":=").lstrip()
    if kind == "number":
        m = _NUMBER_RE.match(rest)
        value = m.group().rstrip("%") if m else None
    elif kind == "text":
        m = STRING_RE.match(rest)
        value = m.group() if m else None
    else:
        m = STRING_RE.match(rest) or _CHUNK_RE.match(rest)
        value = m.group() if m else None
    if value is None and not anywhere:
        return None
    clause = template.format(_clip(value, 60) if value else default)
    if clause.startswith("train for 1 "):
        clause = clause[:-1]  # `train for 1 epoch`
    return f"did you mean `{clause}`?"


def _bad_character(char: str, span: Span, example: str) -> Diagnostic:
    name = unicodedata.name(char, f"U+{ord(char):04X}")
    helps = {
        "'": 'use double quotes for text: `ask "Describe this image."`',
        "\u201c": "use plain double quotes `\"`, not curly quotes (a word processor may have changed them)",
        "\u201d": "use plain double quotes `\"`, not curly quotes (a word processor may have changed them)",
        "\u2018": 'use plain double quotes `"` for text, not curly quotes',
        "\u2019": 'use plain double quotes `"` for text, not curly quotes',
        "=": f"write the value after the keyword without `=`, like `{example or 'batch 2'}`",
        ";": "clauses are separated by spaces or new lines; no `;` is needed",
        ",": "a `,` only separates values in a list, like `with responses_only, rslora`",
    }
    display = char if char.isprintable() else f"U+{ord(char):04X}"
    return error(
        "VT004",
        f"unexpected character `{display}` ({name.lower()})",
        span,
        help=helps.get(char, "names and paths may use letters, digits and `_ . / ~ : + @ -`; put anything else "
                             "in double quotes"),
    )
