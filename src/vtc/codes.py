"""The registry of diagnostic codes: one entry for every code vtc reports (rustc's error index is the model).

Each entry has the code, the severities it is reported with, a short title (the data check's summary table names
problems with it), an explanation (what is wrong and what to do) and an example (what the user wrote or has, and
what vtc says). docs/diagnostics.md is generated from this table:

    .venv/bin/python tools/gen_diagnostics_doc.py

Codes stay string literals where they are reported (``error("VT412", ...)``), so that they are easy to find;
tests/test_diagnostic_codes.py checks them against this table (every code used is registered and every entry is
used, the severities at the call sites agree, the recipe examples report their code, the document is current), and
tests/test_zz_every_code_raised.py checks that the tests make vtc report every one. A code, once shipped, keeps its
meaning.

Plain data: this module imports nothing from vtc but the record decorator, and no third-party library.
"""

from __future__ import annotations

from vtc.records import record

SEVERITIES = ("error", "warning", "note")

# The ranges, in order: (first digit, heading). The generator adds each range's introduction.
RANGES = (
    ("0", "Syntax"),
    ("1", "Values"),
    ("2", "Semantic checks"),
    ("3", "Includes and files"),
    ("4", "Data"),
    ("5", "Model and runtime"),
)


@record
class Code:
    """One diagnostic code. ``example`` is a recipe when ``example_is_recipe`` (the tests compile it and expect
    ``reported``'s first line among the diagnostics), otherwise a situation in words."""

    code: str
    severity: tuple  # of "error" | "warning" | "note", most usual first
    title: str
    explanation: str
    example: str
    reported: str
    example_is_recipe: bool = False


def _entries(*entries: Code) -> dict[str, Code]:
    table = {}
    for entry in entries:
        if entry.code in table:
            raise ValueError(f"{entry.code} is registered twice")
        table[entry.code] = entry
    return table


def _recipe(code: str, severity, title: str, explanation: str, recipe: str, reported: str) -> Code:
    return Code(code, _severities(severity), title, explanation, recipe, reported, True)


def _situation(code: str, severity, title: str, explanation: str, situation: str, reported: str) -> Code:
    return Code(code, _severities(severity), title, explanation, situation, reported, False)


def _severities(severity) -> tuple:
    return (severity,) if isinstance(severity, str) else tuple(severity)


_XRAYS = "finetune vision,mlp on qwen2.5-vl with responses_only\nfrom ./xrays\n"

CODES: dict[str, Code] = _entries(
    # --- VT0xx: syntax ------------------------------------------------------------------------------------------
    _situation(
        "VT001", "error", "empty recipe",
        "The recipe has no clause: the file is empty, or holds only comments and blank lines. A recipe needs at "
        "least `finetune <parts> on <model>` and `from <data>`.",
        "an empty file, or one with only comments",
        "error[VT001]: this recipe has only comments\n"
        " --> xray.vt:1:1\n"
        "  |\n"
        "1 | # only a comment\n"
        "  | ^\n"
        "  = help: a recipe needs at least a `finetune ... on ...` clause and a `from` clause, e.g. `finetune "
        "vision,mlp on qwen2.5-vl with responses_only from ./xrays resize 512`"),
    _situation(
        "VT002", "error", "not UTF-8 text",
        "The file is not valid UTF-8 text; vtc reports the line and column of the first bad byte. Save the recipe "
        "as UTF-8 (most editors offer it in their 'Save as' dialog). A UTF-8 byte-order mark is accepted. Text "
        "given to the compiler through its Python API that holds a lone surrogate (U+D800-U+DFFF: not valid "
        "Unicode, so no file could hold it) is reported the same way.",
        "a recipe saved as Latin-1 with `é` on line 3",
        "error[VT002]: this file is not valid UTF-8 text (byte e9 at line 3, column 7)\n"
        " --> xray.vt:3:7\n"
        "  = help: save the recipe as UTF-8 text (most editors offer 'UTF-8' in their 'Save as' dialog)"),
    _situation(
        "VT003", "error", "binary file or control character",
        "The file holds a null byte (it is a binary file, not a recipe), or a line holds an invisible control "
        "character (a bell, an escape) that an editor does not show. Give a recipe file; retype a line whose "
        "control character you cannot see.",
        "a PNG renamed to `photo.vt`; or `batch 2` followed by a bell character (U+0007)",
        "error[VT003]: this file contains null bytes: it looks like a binary file, not a recipe\n"
        " --> photo.vt:3:1\n"
        "  = help: a recipe is a text file with clauses such as `finetune vision,mlp on qwen2.5-vl with "
        "responses_only from ./xrays resize 512`"),
    _recipe(
        "VT004", "error", "unexpected character",
        "A character that has no place in a recipe outside double quotes: `=`, `:`, `;`, single or curly quotes, "
        "a backslash. The help says what to write instead; text with such characters goes in double quotes. A "
        "Windows path (`C:\\Users\\me\\xrays`) is written with forward slashes (`C:/Users/me/xrays`), or in "
        "double quotes as it is.",
        _XRAYS + "batch = 2\n",
        "error[VT004]: unexpected character `=` (equals sign)\n"
        " --> xray.vt:3:7\n"
        "  |\n"
        "3 | batch = 2\n"
        "  |       ^\n"
        "  = help: write the value after the keyword without `=`, like `batch 8`"),
    _recipe(
        "VT005", "error", "unclosed quotes",
        "Text in double quotes is not closed on its line (a clause never spans lines); the caret points at the "
        "opening quote. End the text with `\"` on the same line; write `\\\"` for a quote inside it.",
        _XRAYS + 'ask "Describe this X-ray.\n',
        "error[VT005]: this text in double quotes is never closed\n"
        " --> xray.vt:3:5\n"
        "  |\n"
        '3 | ask "Describe this X-ray.\n'
        "  |     ^\n"
        '  = help: end it with `"` on the same line (a clause never spans lines); to put a quote inside the text '
        'write `\\"`'),
    _recipe(
        "VT006", "error", "unknown escape",
        "In the text of `ask` and `system`, only `\\\"` (a quote) and `\\\\` (a backslash) are escapes; `\\n` "
        "is not a line break (a recipe's text stays on one line). In a name or a path (`from`, `save to`, ...) "
        "any other backslash stands for itself, so a Windows path may be written in double quotes as it is: "
        "`from \"C:\\Users\\me\\xrays\"`.",
        _XRAYS + 'ask "Line one.\\nLine two."\n',
        "error[VT006]: `\\n` is not allowed inside double quotes\n"
        " --> xray.vt:3:15\n"
        "  |\n"
        '3 | ask "Line one.\\nLine two."\n'
        "  |               ^^\n"
        '  = help: in text, write `\\"` for a quote and `\\\\` for a backslash; a line break cannot be written in '
        "a recipe (write the text on one line)"),
    _situation(
        "VT007", "error", "line too long",
        "A line is longer than 20,000 characters; vtc does not read it. A clause takes one line, so such a line is "
        "almost always a data file given to `vtc check` by mistake.",
        "`vtc check data.vt` on a file whose first line is 30,000 characters long",
        "error[VT007]: line 1 is 30,000 characters long; vtc reads lines of up to 20,000\n"
        " --> data.vt:1:20001\n"
        "  = help: one clause takes one line; is this a data file rather than a recipe?"),
    _situation(
        "VT009", "note", "too many syntax errors",
        "After 50 syntax errors in one file vtc stops reporting more: the file is probably not a recipe. Fix the "
        "errors shown, then check again.",
        "a file that is not a recipe, with an error on every line",
        "note[VT009]: stopped after 50 syntax errors\n"
        " --> junk.vt:51:1\n"
        "  = help: fix these first, then run `vtc check` again"),
    _recipe(
        "VT010", "error", "unknown clause",
        "A clause starts with a word that is not a clause keyword (keywords are lower case); the help names the "
        "keyword that was probably meant. Also reported for a clause that starts with a number or a string.",
        _XRAYS + "lerning rate 2e-4\n",
        "error[VT010]: unknown clause `lerning`\n"
        " --> xray.vt:3:1\n"
        "  |\n"
        "3 | lerning rate 2e-4\n"
        "  | ^^^^^^^\n"
        "  = help: did you mean `learning rate`? (like `learning rate 2e-4`)"),
    _recipe(
        "VT011", "error", "missing value",
        "A clause ends before its value; the caret points just after its last word and the help shows the clause "
        "complete.",
        _XRAYS + "batch\n",
        "error[VT011]: missing a whole number after `batch`\n"
        " --> xray.vt:3:6\n"
        "  |\n"
        "3 | batch\n"
        "  |      ^\n"
        "  = help: write a whole number, for example `batch 8`"),
    _recipe(
        "VT012", "error", "wrong kind of value",
        "A clause has a value of the wrong kind: a word where a number goes, a number with a fraction where a whole "
        "number goes, a misspelled unit, text without its double quotes.",
        _XRAYS + "train for 3 epocs\n",
        "error[VT012]: expected `epochs` or `steps` after `train for 3`, found `epocs`\n"
        " --> xray.vt:3:13\n"
        "  |\n"
        "3 | train for 3 epocs\n"
        "  |             ^^^^^\n"
        "  = help: did you mean `epochs`? (like `train for 60 steps`)"),
    _recipe(
        "VT013", "error", "extra words after a clause",
        "Something follows a complete clause: a second value, two values without the comma between them, or a "
        "path with a space that needs double quotes.",
        "finetune vision,mlp on qwen2.5-vl with responses_only\nfrom ./my xrays\n",
        "error[VT013]: unexpected `xrays` after `from ./my`\n"
        " --> xray.vt:2:11\n"
        "  |\n"
        "2 | from ./my xrays\n"
        "  |           ^^^^^\n"
        '  = help: if `./my xrays` is one name with spaces, put it in double quotes: `"./my xrays"`; otherwise '
        "start a new clause with its keyword"),
    _recipe(
        "VT014", "error", "clause broken over lines",
        "A clause goes on at the start of the next line (`finetune vision, mlp` and, below it, `on qwen2.5-vl`; "
        "`from ./xrays` and `split train`). A clause stays on one line: the help shows it joined. Several clauses "
        "may share a line, but one clause never takes two.",
        _XRAYS + "lora rank 16\n  alpha 32\n",
        "error[VT014]: the `lora` clause is broken over lines 3 and 4: a clause stays on one line\n"
        " --> xray.vt:3:1\n"
        "  |\n"
        "3 | lora rank 16\n"
        "  | ^^^^^^^^^^^^\n"
        " --> xray.vt:4:3: continued here\n"
        "  |\n"
        "4 |   alpha 32\n"
        "  |   ^^^^^^^^\n"
        "  = help: write it on one line: `lora rank 16 alpha 32`"),
    _situation(
        "VT098", "error", "invalid plan made",
        "The plan that vtc made from a valid recipe fails the plan's own schema or rules. This is a bug in vtc, "
        "reported instead of running a plan the runtime would refuse: please report it with the recipe.",
        "none known",
        "error[VT098]: internal error: the plan vtc made has /method is missing\n"
        " --> xray.vt\n"
        "  = help: this is a bug in vtc; please report it with the recipe"),
    _situation(
        "VT099", "error", "nesting limit reached",
        "An internal limit of the parser or the compiler was reached (Python's recursion limit). No input is known "
        "to cause it: it is a last resort that turns a crash into a report. Please report the recipe.",
        "none known",
        "error[VT099]: this recipe is too deeply nested to read\n"
        " --> xray.vt:1:1"),
    # --- VT1xx: values ------------------------------------------------------------------------------------------
    _recipe(
        "VT101", "error", "unknown option",
        "An option (`with ...`) or setting that vtc does not know, with the closest known name.",
        "finetune vision,mlp on qwen2.5-vl with respones_only\nfrom ./xrays\n",
        "error[VT101]: unknown option `respones_only`\n"
        " --> xray.vt:1:40\n"
        "  |\n"
        "1 | finetune vision,mlp on qwen2.5-vl with respones_only\n"
        "  |                                        ^^^^^^^^^^^^^\n"
        "  = help: did you mean `responses_only`?"),
    _recipe(
        "VT102", "error", "not one of the choices",
        "A value that is not one of its choices: a part, a method, a precision, a metric, an export, a schedule, an "
        "optimizer, a `bad rows` policy. The help names the closest choice, or lists them all.",
        "finetune visoin on qwen2.5-vl\nfrom ./xrays\n",
        "error[VT102]: unknown part `visoin`\n"
        " --> xray.vt:1:10\n"
        "  |\n"
        "1 | finetune visoin on qwen2.5-vl\n"
        "  |          ^^^^^^\n"
        "  = help: did you mean `vision`?"),
    _recipe(
        "VT103", "error", "not a number",
        "A number too large to be one: the grammar reads `1e400` as a number, but it is infinite as a float. "
        "The help gives the clause's range. A word where a number goes is already a syntax error (VT012); a "
        "number of more than 40 digits is VT115.",
        _XRAYS + "learning rate 1e400\n",
        "error[VT103]: `learning rate` needs a number, not `1e400`\n"
        " --> xray.vt:3:15\n"
        "  |\n"
        "3 | learning rate 1e400\n"
        "  |               ^^^^^\n"
        "  = help: for example `learning rate 2e-4` (it takes values from 0 to 1)"),
    _recipe(
        "VT104", "error", "out of range",
        "A number outside its range: `batch 0`, `learning rate 3`, `lora dropout 1.5`, `holdout 120%`. The help "
        "gives the accepted range.",
        _XRAYS + "batch 0\n",
        "error[VT104]: `batch` must be at least 1 (found 0)\n"
        " --> xray.vt:3:7\n"
        "  |\n"
        "3 | batch 0\n"
        "  |       ^\n"
        "  = help: `batch` takes values from 1 to 4096"),
    _recipe(
        "VT105", "error", "missing clause",
        "A required clause is missing: `finetune <parts> on <model>` or `from <data>`. Not reported for a clause "
        "on a line that failed to parse, nor by `vtc check` for a base recipe (VT109).",
        "finetune vision,mlp on qwen2.5-vl\n",
        "error[VT105]: the recipe never says where the training data is\n"
        " --> xray.vt\n"
        "  = help: add a line like `from ./images` (a folder) or `from unsloth/Radiology_mini` (a Hub dataset)"),
    _recipe(
        "VT106", "error", "listed twice",
        "An item appears twice in a list (metrics, parts, exports). List each once.",
        _XRAYS + "metric cer, cer\n",
        "error[VT106]: `metric` lists `cer` twice\n"
        " --> xray.vt:3:13\n"
        "  |\n"
        "3 | metric cer, cer\n"
        "  |             ^^^\n"
        "  = help: list each one once"),
    _recipe(
        "VT107", "error", "empty value",
        "A value that is empty: `\"\"` where a path, a name or a question goes.",
        'finetune vision,mlp on qwen2.5-vl\nfrom ""\n',
        "error[VT107]: `from` is empty\n"
        " --> xray.vt:2:6\n"
        "  |\n"
        '2 | from ""\n'
        "  |      ^^\n"
        "  = help: write a value, for example: `from ...`"),
    _recipe(
        "VT108", "error", "not an accepted form",
        "A value in none of its accepted forms; `resize` takes a longest side (`resize 512`), an exact size "
        "(`resize 640x480`) or `resize none`.",
        _XRAYS + "resize 0x480\n",
        "error[VT108]: `resize` cannot be `0x480`\n"
        " --> xray.vt:3:8\n"
        "  |\n"
        "3 | resize 0x480\n"
        "  |        ^^^^^\n"
        "  = help: write `resize 512` (longest side in pixels), `resize 640x480` (exact size), `resize none` or a "
        "pixel budget such as `resize between 200k and 1m pixels`"),
    _situation(
        "VT109", "note", "base recipe",
        "`vtc check` only: a file with neither a `finetune` line nor a `from` line is a base recipe, made to be "
        "included by others. Its own clauses are checked and it is not an error; a recipe that includes it is "
        "checked in full. `vtc plan` and `vtc run` need a whole recipe (VT105).",
        "`vtc check site-base.vt` on a file holding `batch 2` and `learning rate 1e-4`",
        "note[VT109]: a base recipe (no `finetune` line, no `from` line): its own clauses were checked\n"
        " --> site-base.vt\n"
        "  = help: a recipe that includes it is checked in full; to run it, add `finetune <parts> on <model>` and "
        "`from <data>`"),
    _recipe(
        "VT115", "error", "number with too many digits",
        "A number with more than 40 digits (`seed 1111...` pasted 5,000 times). No clause takes a value that long "
        "(the largest, `seed`, has 10 digits), so vtc reports it before converting it, with the range the clause "
        "takes; the clause is left out and the rest of the recipe is still checked.",
        _XRAYS + "seed " + "1" * 45 + "\n",
        "error[VT115]: the number `11111111...11111111` after `seed` has 45 digits; vtc reads numbers of at most 40 "
        "digits\n"
        " --> xray.vt:3:6\n"
        "  |\n"
        "3 | seed " + "1" * 45 + "\n"
        "  |      " + "^" * 45 + "\n"
        "  = help: `seed` takes values from 0 to 4294967295"),
    _recipe(
        "VT120", "error", "video setting given twice",
        'A setting of `video` (the frames per second, the cap on frames, the window, the frame size) given '
        'twice in one `video` clause. Keep one; the first is used for the rest of the check.',
        _XRAYS + "video 2 fps, at most 16 frames, 4 fps\n",
        "error[VT120]: `video` gives the frames per second (`2 fps`) twice\n"
        " --> xray.vt:3:33\n"
        "  |\n"
        "3 | video 2 fps, at most 16 frames, 4 fps\n"
        "  |                                 ^^^^^\n"
        " --> xray.vt:3:7: first given here\n"
        "  |\n"
        "3 | video 2 fps, at most 16 frames, 4 fps\n"
        "  |       ^^^^^\n"
        "  = help: keep one of them: `2 fps` or `4 fps`"),
    _recipe(
        "VT121", "error", "video window ends before it starts",
        '`video between A and B seconds` reads the part of each clip from A to B seconds after its start: A '
        'must be before B. For the rest of a clip from A on, write `after A seconds`.',
        _XRAYS + "video between 8 and 1.5 seconds\n",
        "error[VT121]: the window `between 8 and 1.5 seconds` ends before it starts\n"
        " --> xray.vt:3:7\n"
        "  |\n"
        "3 | video between 8 and 1.5 seconds\n"
        "  |       ^^^^^^^^^^^^^^^^^^^^^^^^^\n"
        "  = help: write the start first: `between 1.5 and 8 seconds`"),
    _recipe(
        "VT122", "error", "video frame size out of range",
        "`video ... frame size N` sets the longest side of every frame, in pixels: from one token (28 px for "
        "Qwen-VL) to 8192 px. For a budget of pixels instead, write `frame size up to 200k pixels`.",
        _XRAYS + "video frame size 20\n",
        "error[VT122]: `frame size 20`: a frame's longest side is 28 to 8192 px\n"
        ' --> xray.vt:3:18\n'
        '  |\n'
        '3 | video frame size 20\n'
        '  |                  ^^\n'
        '  = help: Qwen2.5-VL reads frames in 28 px tokens, and its own default keeps a square frame about 317-776 px a side: write `frame size 336`, or leave the frame size out for that default'),
    # --- VT2xx: semantic checks ---------------------------------------------------------------------------------
    _recipe(
        "VT201", "error", "unknown model",
        "The model after `on` is not a registry name (nor an alias), not a Hugging Face id `org/name` and not a "
        "local folder (`./my-model`). The help names the closest registry name.",
        "finetune all on qwen2.5-v\nfrom ./xrays\n",
        "error[VT201]: unknown model `qwen2.5-v`\n"
        " --> xray.vt:1:17\n"
        "  |\n"
        "1 | finetune all on qwen2.5-v\n"
        "  |                 ^^^^^^^^^\n"
        "  = help: did you mean `qwen2.5-vl`? write a registry name (e.g. `qwen2.5-vl`), a Hugging Face id "
        "(`org/name`) or a local folder (`./my-model`)"),
    _recipe(
        "VT202", ("warning", "note"), "model not in the registry",
        "A Hugging Face id that is not in vtc's registry. When its name says the family (`Qwen2.5-VL` in the "
        "name), a note: vtc uses that family's chat markers and image geometry, but has no architecture sizes for "
        "parameter and memory estimates. When the family is unknown, a warning: markers, image tokens and "
        "parameter counts are all unknown.",
        "finetune all on someorg/model\nfrom ./xrays\n",
        "warning[VT202]: vtc does not know the family of `someorg/model`: chat markers, image tokens and "
        "parameter counts are unknown\n"
        " --> xray.vt:1:17\n"
        "  |\n"
        "1 | finetune all on someorg/model\n"
        "  |                 ^^^^^^^^^^^^^\n"
        "  = help: use a registry name (see docs/language.md, Models) or a model whose name says its family, e.g. "
        "`unsloth/Qwen2.5-VL-7B-Instruct`"),
    _recipe(
        "VT203", "warning", "local model of unknown family",
        "A local model folder without a readable config.json, or whose config.json names a `model_type` that is "
        "not a vision family vtc knows. vtc still tries, but cannot check markers, image tokens or parameter "
        "counts. Point at the folder that save_pretrained wrote.",
        "finetune all on ./my-model\nfrom ./xrays\n",
        "warning[VT203]: the model folder `./my-model` has no readable config.json, so its family is unknown\n"
        " --> xray.vt:1:17\n"
        "  |\n"
        "1 | finetune all on ./my-model\n"
        "  |                 ^^^^^^^^^^\n"
        "  = help: vtc cannot check markers, image tokens or parameter counts; point at a folder saved with "
        "save_pretrained (it holds config.json)"),
    _recipe(
        "VT204", "error", "unknown data format",
        "`format` after `from` or `evaluate on` names the format of a data file made for another tool: sharegpt "
        "(LLaMA-Factory's ShareGPT, ms-swift's and Axolotl's messages with an images list), llava (LLaVA's "
        "instruction files), prompt_completion (TRL) or messages (typed image and text parts). Leave it out to let "
        "vtc detect the format from the rows.",
        "finetune vision,mlp on qwen2.5-vl\nfrom ./chats.json format sharegp\n",
        "error[VT204]: unknown data format `sharegp`\n"
        " --> xray.vt:2:26\n"
        "  |\n"
        "2 | from ./chats.json format sharegp\n"
        "  |                          ^^^^^^^\n"
        "  = help: did you mean `format sharegpt`? the formats are sharegpt (LLaMA-Factory, ms-swift, Axolotl), "
        "llava, prompt_completion (TRL), messages (typed parts); leave `format` out to detect it from the rows"),
    _recipe(
        "VT209", "warning", "`format` on a Hub dataset",
        "`format` pins the format of a data file (.json or .jsonl). A Hugging Face Hub dataset is read with "
        "`datasets`, and its columns say what its rows are (messages, conversations, images), so `format` changes "
        "nothing there.",
        "finetune vision,mlp on qwen2.5-vl\nfrom hf://unsloth/Radiology_mini format sharegpt\n",
        "warning[VT209]: `format sharegpt` has no effect on the Hub dataset `hf://unsloth/Radiology_mini`: vtc "
        "reads a Hub dataset's rows by their columns\n"
        " --> xray.vt:2:41\n"
        "  |\n"
        "2 | from hf://unsloth/Radiology_mini format sharegpt\n"
        "  |                                         ^^^^^^^^\n"
        "  = help: remove `format sharegpt`; it pins the format of a .json or .jsonl file (`from ./data.json "
        "format sharegpt`)"),
    _recipe(
        "VT205", "error", "pixel budget minimum above maximum",
        "A pixel budget (`resize between A and B pixels`) whose minimum is larger than its maximum, or `resize up "
        "to B pixels` below the model's own smallest image. Write the smaller amount first.",
        _XRAYS + "resize between 1m and 200k pixels\n",
        "error[VT205]: the pixel budget's minimum (1,000,000 pixels) is above its maximum (200,000 pixels)\n"
        " --> xray.vt:3:1\n"
        "  |\n"
        "3 | resize between 1m and 200k pixels\n"
        "  | ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n"
        "  = help: write the smaller amount first: `resize between 200k and 1m pixels`"),
    _recipe(
        "VT206", "error", "pixel budget out of the model's range",
        "An amount of a pixel budget below the model's smallest image (Qwen2.5-VL: 3,136 pixels, four 28x28 px "
        "image tokens) or above what its image processor accepts (Qwen2.5-VL: 12,845,056 pixels; Llama 3.2 "
        "Vision: 4 tiles of 560x560 px). The processor would resize such images again, so vtc's budget would not "
        "hold.",
        _XRAYS + "resize up to 20m pixels\n",
        "error[VT206]: a maximum of 20,000,000 pixels is above what Qwen2.5-VL's processor accepts\n"
        " --> xray.vt:3:14\n"
        "  |\n"
        "3 | resize up to 20m pixels\n"
        "  |              ^^^\n"
        "  = help: Qwen2.5-VL takes 3,136 to 12,845,056 pixels an image; write at most 12,845,056"),
    _recipe(
        "VT207", "error", "no pixel budget for this model",
        "A pixel budget needs a model whose image tokens follow each image's area (Qwen-VL, Pixtral) or its tiles "
        "(Llama 3.2 Vision). Gemma 3 gives every image one input size, and for a model of unknown family vtc "
        "cannot say what a budget does; use `resize N` there.",
        "finetune vision,mlp on gemma-3-4b with responses_only\nfrom ./xrays\nresize up to 1m pixels\n",
        "error[VT207]: vtc cannot budget pixels for this model: `gemma-3-4b` gives every image one input size "
        "(896x896 px), so a budget would change nothing\n"
        " --> xray.vt:3:1\n"
        "  |\n"
        "3 | resize up to 1m pixels\n"
        "  | ^^^^^^^^^^^^^^^^^^^^^^\n"
        "  = help: write `resize 512` (one standard size) instead, or use a Qwen-VL or Llama 3.2 Vision model"),
    _recipe(
        "VT208", "error", "malformed pixel amount",
        "An amount of a pixel budget in none of the accepted forms: a whole number (200000), a number with k "
        "(thousand) or m (million) (200k, 1.2m), or a product of whole numbers as Qwen's min_pixels/max_pixels "
        "are written (256x28x28, 448x448).",
        _XRAYS + "resize between 200k and 1mb pixels\n",
        "error[VT208]: `1mb` is not a number of pixels\n"
        " --> xray.vt:3:25\n"
        "  |\n"
        "3 | resize between 200k and 1mb pixels\n"
        "  |                         ^^^\n"
        "  = help: did you mean `1m`? A pixel amount is a whole number (200000), with k or m (200k, 1.2m), or a "
        "product (256x28x28)"),
    _recipe(
        "VT210", "error", "clause written twice",
        "The same clause twice in one file (the first one is shown too), or `with x` and `without x` in one file. "
        "Keep one. Across files the later one wins: to change a value from an included file, write the clause "
        "once in the including file.",
        _XRAYS + "batch 2\nbatch 4\n",
        "error[VT210]: `batch` is written twice in this file\n"
        " --> xray.vt:4:1\n"
        "  |\n"
        "4 | batch 4\n"
        "  | ^^^^^^^\n"
        " --> xray.vt:3:1: first written here\n"
        "  |\n"
        "3 | batch 2\n"
        "  | ^^^^^^^\n"
        "  = help: keep one of them; to change a value from an included file, write the clause once here"),
    _recipe(
        "VT211", "error", "steps and epochs",
        "`train for N steps` and `train for N epochs` in one file. Keep one.",
        _XRAYS + "train for 3 epochs\ntrain for 60 steps\n",
        "error[VT211]: `train for` gives both a number of steps and a number of epochs\n"
        " --> xray.vt:4:1\n"
        "  |\n"
        "4 | train for 60 steps\n"
        "  | ^^^^^^^^^^^^^^^^^^\n"
        " --> xray.vt:3:1: first written here\n"
        "  |\n"
        "3 | train for 3 epochs\n"
        "  | ^^^^^^^^^^^^^^^^^^\n"
        "  = help: keep one: `train for 60 steps` or `train for 1 epoch`"),
    _recipe(
        "VT212", "error", "holdout and evaluate on",
        "`holdout` and `evaluate on` in one file: both say what to evaluate on. Keep one. Across files the later "
        "one replaces the earlier.",
        _XRAYS + "holdout 10%\nevaluate on ./test\n",
        "error[VT212]: `evaluate on` and `holdout` both say what to evaluate on\n"
        " --> xray.vt:4:1\n"
        "  |\n"
        "4 | evaluate on ./test\n"
        "  | ^^^^^^^^^^^^^^^^^^\n"
        " --> xray.vt:3:1: first written here\n"
        "  |\n"
        "3 | holdout 10%\n"
        "  | ^^^^^^^^^^^\n"
        "  = help: keep one: `holdout 10%` sets aside part of the training data, `evaluate on` names other data"),
    _recipe(
        "VT213", "error", "not a part with a learning rate",
        "`learning rate <base>, <part> <rate>, ...` gives some parts a rate of their own; the parts are vision (the "
        "image encoder), projector (the bridge from image features to the language model) and language. Another "
        "word there is a misspelling or a part without a rate of its own (attention, mlp, all).",
        _XRAYS + "learning rate 2e-4, visoin 2e-5\n",
        "error[VT213]: `visoin` is not a part that can have a learning rate of its own\n"
        " --> xray.vt:3:21\n"
        "  |\n"
        "3 | learning rate 2e-4, visoin 2e-5\n"
        "  |                     ^^^^^^\n"
        "  = help: did you mean `vision`? write `learning rate 2e-4, vision 2e-5, projector 1e-4` (parts: "
        "vision, projector, language)"),
    _recipe(
        "VT214", "error", "learning rate for a frozen part",
        "A part given a learning rate of its own must train: name it in `finetune` (vision and language through "
        "their layers, the projector by `projector`). A rate for a frozen part would change nothing.",
        _XRAYS + "learning rate 2e-4, projector 1e-4\n",
        "error[VT214]: a learning rate for `projector`, which does not train in this recipe\n"
        " --> xray.vt:3:21\n"
        "  |\n"
        "3 | learning rate 2e-4, projector 1e-4\n"
        "  |                     ^^^^^^^^^\n"
        "  = help: add `projector` to `finetune`, or remove `projector 0.0001`"),
    _recipe(
        "VT215", "error", "part given two learning rates",
        "Each part takes one learning rate in the `learning rate` clause.",
        _XRAYS + "learning rate 2e-4, vision 2e-5, vision 1e-5\n",
        "error[VT215]: `vision` has two learning rates in one `learning rate` clause\n"
        " --> xray.vt:3:34\n"
        "  |\n"
        "3 | learning rate 2e-4, vision 2e-5, vision 1e-5\n"
        "  |                                  ^^^^^^\n"
        " --> xray.vt:3:21: first given here\n"
        "  |\n"
        "3 | learning rate 2e-4, vision 2e-5, vision 1e-5\n"
        "  |                     ^^^^^^\n"
        "  = help: give `vision` one rate"),
    _recipe(
        "VT216", "error", "projector setting without the projector",
        "`projector full` or `projector lora` says how the projector trains, so `finetune` must name it "
        "(`finetune language, projector on ...`). Under LoRA `all` trains the towers' layers, not the projector; "
        "under `using full`, `all` trains every weight, the projector's too.",
        _XRAYS + "projector full\n",
        "error[VT216]: `projector full` says how the projector trains, but `finetune` does not name it\n"
        " --> xray.vt:3:11\n"
        "  |\n"
        "3 | projector full\n"
        "  |           ^^^^\n"
        "  = help: add it to the parts: `finetune vision, mlp, projector on ...`, or remove `projector full`"),
    _recipe(
        "VT217", "error", "projector lora with full fine-tuning",
        "`using full` changes the model's own weights and has no LoRA adapter, so the projector trains in full "
        "there: `projector lora` cannot apply.",
        "finetune language, projector on qwen2.5-vl\nusing full\nprojector lora\nfrom ./xrays\n",
        "error[VT217]: `projector lora` with `using full`: full fine-tuning has no LoRA adapters; the projector trains in full\n"
        " --> xray.vt:3:11\n"
        "  |\n"
        "3 | projector lora\n"
        "  |           ^^^^\n"
        "  = help: remove `projector lora`, or write `using lora` to train the rest with LoRA"),
    _recipe(
        "VT218", "error", "part unknown in this model",
        "vtc finds the projector and the parts that take a learning rate of their own from the module names it "
        "knows for each model family (Qwen-VL's merger, Llama 3.2 Vision's multi_modal_projector). For a family "
        "without them (Gemma 3's projector has no Linear layer; a model of unknown family) it cannot train the "
        "projector or give a part its own rate.",
        "finetune language, projector on gemma-3\nfrom ./xrays\n",
        "error[VT218]: vtc does not know where the projector is in gemma-3\n"
        " --> xray.vt:1:1\n"
        "  |\n"
        "1 | finetune language, projector on gemma-3\n"
        "  | ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n"
        "  = help: leave `projector` out of `finetune`, or use a model family vtc knows (Qwen-VL, Llama 3.2 Vision)"),
    _recipe(
        "VT219", "error", "projector full alone under LoRA",
        "Under lora/qlora, `projector full` trains the projector in full beside a LoRA adapter on the other "
        "parts. With only the projector in `finetune` there is no layer left for the adapter: train it alone "
        "with `using full`, or with LoRA (`projector lora`), or add parts.",
        "finetune projector on qwen2.5-vl\nprojector full\nfrom ./xrays\n",
        "error[VT219]: `projector full` with only the projector in `finetune`: under LoRA nothing is left for the adapter to train\n"
        " --> xray.vt:2:11\n"
        "  |\n"
        "2 | projector full\n"
        "  |           ^^^^\n"
        "  = help: write `using full` to train the projector alone in full, `projector lora`, or add parts: "
        "`finetune language, projector on ...`"),
    _situation(
        "VT220", "error", "parts train nothing",
        "The parts chosen in `finetune ...` select no layer of this model, so nothing would train. Choose parts "
        "the model has, e.g. `finetune all`. With today's registry every selection of parts trains something in "
        "every model: the check guards new registry entries.",
        "none known: a registry model with no layer of the parts chosen",
        "error[VT220]: `vision` trains nothing in <model>\n"
        " --> xray.vt:1:10\n"
        "  = help: choose parts this model has, e.g. `finetune all`"),
    _recipe(
        "VT221", "warning", "all with other parts",
        "`all` already trains every part, so the other parts listed with it add nothing.",
        "finetune all,vision on qwen2.5-vl\nfrom ./xrays\n",
        "warning[VT221]: `all` already trains every part; the other parts listed add nothing\n"
        " --> xray.vt:1:1\n"
        "  |\n"
        "1 | finetune all,vision on qwen2.5-vl\n"
        "  | ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n"
        "  = help: write `finetune all on ...` or list only the parts you want"),
    _recipe(
        "VT222", "error", "video on a family without video",
        'A `video` clause for a model whose family does not read video (Llama 3.2 Vision, Gemma 3, Pixtral, '
        'Qwen3-VL in this vtc). The families that do are those the registry marks `"video": true` (Qwen2-VL, '
        'Qwen2.5-VL). Use one of them, or remove the clause to train on still images.',
        "finetune vision,mlp on llama-3.2-vision with responses_only\nfrom ./xrays\nvideo 2 fps\n",
        "error[VT222]: Llama 3.2 Vision does not read video; the families that do are Qwen2-VL, Qwen2.5-VL\n"
        " --> xray.vt:3:1\n"
        "  |\n"
        "3 | video 2 fps\n"
        "  | ^^^^^^^^^^^\n"
        " --> xray.vt:1:24: the model\n"
        "  |\n"
        "1 | finetune vision,mlp on llama-3.2-vision with responses_only\n"
        "  |                        ^^^^^^^^^^^^^^^^\n"
        "  = help: to train on clips, write `finetune ... on qwen2.5-vl` (or another Qwen2-VL or Qwen2.5-VL model); to train llama-3.2-vision on still images, remove the `video` clause"),
    _recipe(
        "VT223", "error", "video with tiff pages all",
        'With a `video` clause every multi-page TIFF file is read as a clip (a stack, a time-lapse); `tiff '
        'pages all` reads its pages as separate images. The two read TIFF pages differently: keep one.',
        _XRAYS + "video 2 fps\ntiff pages all\n",
        "error[VT223]: `tiff pages all` reads each page of a TIFF file as an image, and `video` reads every TIFF file as a clip: the two cannot both apply\n"
        " --> xray.vt:4:12\n"
        "  |\n"
        "4 | tiff pages all\n"
        "  |            ^^^\n"
        " --> xray.vt:3:1: the video clause\n"
        "  |\n"
        "3 | video 2 fps\n"
        "  | ^^^^^^^^^^^\n"
        "  = help: remove `tiff pages all` to read multi-page TIFF files as clips (a stack, a time-lapse), or remove the `video` clause to read their pages as images"),
    _recipe(
        "VT224", "warning", "clip longer than max length",
        "A clip at the recipe's own bounds (its `at most N frames`, or its window with an end, at its frame "
        'size) has more tokens than `max length`, so such a row would not fit. Qwen-VL merges two frames in '
        'time: tokens = ceil(frames / 2) x (height / 28) x (width / 28). The frame is taken square (the worst '
        "case of its size). Defaults alone never warn: a clip's real length is checked with the data (`vtc "
        'check --data`).',
        _XRAYS + "video at most 16 frames, frame size 336\nmax length 1024\n",
        "warning[VT224]: a clip at this recipe's bounds (16 frames of 336x336 px) is longer than `max length`: 16 frames / 2 x 12 x 12 = 1,152 tokens > max length 1,024\n"
        " --> xray.vt:3:15\n"
        "  |\n"
        "3 | video at most 16 frames, frame size 336\n"
        "  |               ^^\n"
        " --> xray.vt:4:12: max length\n"
        "  |\n"
        "4 | max length 1024\n"
        "  |            ^^^^\n"
        "  = help: sample fewer frames (`at most 12 frames`), a smaller frame size (`frame size 168`), or a larger max length (`max length 1536`)"),
    _recipe(
        "VT230", "warning", "resize outside 300-1000 px",
        "Images standardised outside 300-1000 px on the longest side. Above, the image tokens grow with the area "
        "and training often runs out of GPU memory (unsloth#1326); below, fine detail is lost. Not reported for "
        "the tiny models, whose native scale is 56-112 px.",
        _XRAYS + "resize 1200\n",
        "warning[VT230]: images standardised to 1200 px on the longest side: above 1000 px the image tokens grow "
        "with the area and training often runs out of GPU memory\n"
        " --> xray.vt:3:8\n"
        "  |\n"
        "3 | resize 1200\n"
        "  |        ^^^^\n"
        "  = help: Unsloth advises 300-1000 px; try `resize 768`"),
    _recipe(
        "VT231", "error", "resize 0",
        "`resize 0` (or a size with a 0 side) would shrink every image to nothing.",
        _XRAYS + "resize 0\n",
        "error[VT231]: `resize 0` would shrink every image to nothing\n"
        " --> xray.vt:3:8\n"
        "  |\n"
        "3 | resize 0\n"
        "  |        ^\n"
        "  = help: write `resize 512` (longest side in pixels), `resize 640x480` or `resize none`"),
    _recipe(
        "VT232", ("error", "warning"), "max length too short for the images",
        "The max length is too short for the image tokens at the chosen resize: an error when one image does not "
        "fit, a warning when fewer than 64 tokens remain for the question and the answer; with the numbers. "
        "Qwen-VL rounds the sides to multiples of 28 and makes (W/28) x (H/28) tokens; `resize N` assumes the "
        "worst case, a square N x N. Llama 3.2 Vision's image enters through cross-attention, so the text holds "
        "one `<|image|>` token; its tiles count for memory, not for max length.",
        _XRAYS + "resize 1000\nmax length 512\n",
        "error[VT232]: `max length 512` is too short for one image: 1008x1008 px is 1296 image tokens, plus 2 "
        "markers\n"
        " --> xray.vt:4:12\n"
        "  |\n"
        "4 | max length 512\n"
        "  |            ^^^\n"
        "  = help: write `max length 1792` or a smaller `resize`"),
    _recipe(
        "VT233", "warning", "resize none",
        "`resize none` on a real model keeps every image's own size, so image tokens and memory depend on the "
        "largest image. Standardise to 300-1000 px.",
        _XRAYS + "resize none\n",
        "warning[VT233]: `resize none` keeps every image's own size, so image tokens and memory depend on the "
        "largest image (a 3000 px photo is about 11,000 Qwen-VL tokens)\n"
        " --> xray.vt:3:8\n"
        "  |\n"
        "3 | resize none\n"
        "  |        ^^^^\n"
        "  = help: standardise to 300-1000 px, e.g. `resize 512`"),
    _recipe(
        "VT240", "error", "responses only without markers",
        "`with responses_only` needs the model's chat markers (where the question ends and the answer starts), "
        "and vtc does not know this model's family. Use a registry model, or one whose name says its family, or "
        "write `without responses_only`.",
        "finetune all on org/x with responses_only\nfrom ./xrays\n",
        "error[VT240]: `responses_only` needs the chat markers of org/x, and vtc does not know its family\n"
        " --> xray.vt:1:28\n"
        "  |\n"
        "1 | finetune all on org/x with responses_only\n"
        "  |                            ^^^^^^^^^^^^^^\n"
        "  = help: use a model from the registry (or one whose name says its family), or write `without "
        "responses_only`"),
    _recipe(
        "VT241", ("error", "warning"), "4-bit checkpoint",
        "A checkpoint stored in 4 bit (`-bnb-4bit`): full fine-tuning cannot train its weights (an error); `using "
        "lora` on it still trains on 4-bit weights, which is qlora (a warning). Use the 16-bit model, or write "
        "`using qlora`.",
        "finetune all on unsloth/Qwen2.5-VL-7B-Instruct-bnb-4bit\nusing full\nfrom ./xrays\n",
        "error[VT241]: full fine-tuning cannot train 4-bit weights, and "
        "`unsloth/Qwen2.5-VL-7B-Instruct-bnb-4bit` is a 4-bit checkpoint\n"
        " --> xray.vt:2:7\n"
        "  |\n"
        "2 | using full\n"
        "  |       ^^^^\n"
        "  = help: use the 16-bit model (without -bnb-4bit), or `using qlora`"),
    _recipe(
        "VT242", "warning", "rslora with full fine-tuning",
        "`with rslora` scales LoRA adapters; full fine-tuning has none, so it has no effect.",
        "finetune all on qwen2.5-vl with rslora\nusing full\nfrom ./xrays\n",
        "warning[VT242]: `rslora` has no effect with full fine-tuning (it scales LoRA adapters)\n"
        " --> xray.vt:1:33\n"
        "  |\n"
        "1 | finetune all on qwen2.5-vl with rslora\n"
        "  |                                 ^^^^^^\n"
        "  = help: remove `with rslora`, or use `using lora`"),
    _recipe(
        "VT243", "warning", "lora settings with full fine-tuning",
        "A `lora` clause (rank, alpha, dropout) has no effect with full fine-tuning.",
        "finetune all on qwen2.5-vl\nusing full\nlora rank 16\nfrom ./xrays\n",
        "warning[VT243]: `lora` settings have no effect with full fine-tuning\n"
        " --> xray.vt:3:11\n"
        "  |\n"
        "3 | lora rank 16\n"
        "  |           ^^\n"
        "  = help: remove the `lora` clause, or use `using lora`"),
    _recipe(
        "VT244", "note", "merged export after qlora",
        "With qlora the adapter was trained against 4-bit weights; `export merged` adds it to the 16-bit weights, "
        "so the merged model can answer slightly differently. Compare it on your evaluation data, or train `using "
        "lora`.",
        "finetune all on qwen2.5-vl\nusing qlora\nexport merged\nfrom ./xrays\n",
        "note[VT244]: with qlora the adapter was trained against 4-bit weights; `export merged` adds it to the "
        "16-bit weights, so the merged model can answer slightly differently\n"
        " --> xray.vt:3:1\n"
        "  |\n"
        "3 | export merged\n"
        "  | ^^^^^^^^^^^^^\n"
        "  = help: compare the merged model on your evaluation data, or train `using lora`"),
    _recipe(
        "VT245", "warning", "adapter export with full fine-tuning",
        "`export adapter` with full fine-tuning: there is no adapter, the whole model is saved.",
        "finetune all on qwen2.5-vl\nusing full\nexport adapter\nfrom ./xrays\n",
        "warning[VT245]: full fine-tuning has no adapter to export: the whole model is saved\n"
        " --> xray.vt:3:1\n"
        "  |\n"
        "3 | export adapter\n"
        "  | ^^^^^^^^^^^^^^\n"
        "  = help: write `export merged`"),
    _recipe(
        "VT246", "note", "the old way of splitting the batch",
        "`batch` is the number of examples per update (the effective batch), and vtc chooses how many go through "
        "the GPU at once from its free memory. Before, `batch` was the rows per step and `accumulate` the steps per "
        "update. A recipe with `accumulate` keeps that meaning: `batch 2` with `accumulate 4` is 8 per update, 2 at "
        "a time (`accumulate` alone: with the old default `batch 2`). The note says how to write it now: `batch 8` "
        "to let vtc choose, or `batch 8` with `micro batch 2` to keep the split.",
        _XRAYS + "batch 2\naccumulate 4\n",
        "note[VT246]: `batch 2` with `accumulate 4` is the old way of writing the batch: it still means 8 samples "
        "per update, 2 at a time\n"
        " --> xray.vt:4:12\n"
        "  |\n"
        "4 | accumulate 4\n"
        "  |            ^\n"
        "  = help: write `batch 8` to let vtc choose how many go through the GPU at once (from its free memory), or "
        "`batch 8` and `micro batch 2` to keep 2 at a time"),
    _recipe(
        "VT247", "error", "micro batch does not divide the batch",
        "`micro batch N` pins how many examples go through the GPU at once; every update is a whole number of "
        "them, so N must divide `batch` (the examples per update, default 8). The help lists the divisors.",
        _XRAYS + "batch 8\nmicro batch 3\n",
        "error[VT247]: `micro batch 3` does not divide `batch 8`: each update must be a whole number of "
        "micro-batches\n"
        " --> xray.vt:4:13\n"
        "  |\n"
        "4 | micro batch 3\n"
        "  |             ^\n"
        "  = help: choose one of 1, 2, 4, 8 (the divisors of 8), or change `batch`"),
    _recipe(
        "VT248", "error", "micro batch with accumulate",
        "`micro batch` and `accumulate` are two ways of saying how the batch is split, and `batch` means something "
        "else with each (the examples per update with `micro batch`, the rows per step with the old `accumulate`). "
        "Write `batch` (per update) and `micro batch` (at a time), without `accumulate`.",
        _XRAYS + "micro batch 2\naccumulate 4\n",
        "error[VT248]: `micro batch 2` and `accumulate 4` both say how the batch is split: `batch` means the samples "
        "per update with `micro batch`, the rows per step with `accumulate`\n"
        " --> xray.vt:4:12\n"
        "  |\n"
        "4 | accumulate 4\n"
        "  |            ^\n"
        "  = help: write `batch 8` and `micro batch 2`, without `accumulate`"),
    _recipe(
        "VT249", "error", "too many examples per update",
        "The old form (`batch` x `accumulate`) makes more examples per update than the 4,096 `batch` takes.",
        _XRAYS + "batch 64\naccumulate 128\n",
        "error[VT249]: `batch 64` with `accumulate 128` is 8,192 samples per update, more than the 4,096 vtc takes\n"
        " --> xray.vt:4:12\n"
        "  |\n"
        "4 | accumulate 128\n"
        "  |            ^^^\n"
        "  = help: write `batch N` with N at most 4096 (the samples per update); vtc splits it to fit the GPU"),
    _recipe(
        "VT250", "error", "holdout out of range",
        "The hold-out share must be more than 0% and less than 50%; 10% to 20% is usual.",
        _XRAYS + "holdout 50%\n",
        "error[VT250]: `holdout 50%` must be more than 0% and less than 50%\n"
        " --> xray.vt:3:9\n"
        "  |\n"
        "3 | holdout 50%\n"
        "  |         ^^^\n"
        "  = help: 10% to 20% is usual, e.g. `holdout 10%`"),
    _recipe(
        "VT251", "error", "answer column rules",
        "`answer from column` that names no column (an empty name), or a column name after `answer from captions` "
        "or `answer from folders`, which take none. A missing name is a syntax error first (VT011).",
        _XRAYS + 'answer from column ""\n',
        "error[VT251]: `answer from column` does not say which column\n"
        " --> xray.vt:3:1\n"
        "  |\n"
        '3 | answer from column ""\n'
        "  | ^^^^^^^^^^^^^^^^^^^^^\n"
        "  = help: write the column's name, e.g. `answer from column caption`"),
    _recipe(
        "VT260", "error", "packing or padding_free",
        "`with packing` and `with padding_free` are refused for vision-language models by TRL's SFTTrainer, but "
        "only after the model has loaded; vtc says so at once. Remove the option.",
        "finetune all on qwen2.5-vl with packing\nfrom ./xrays\n",
        "error[VT260]: `packing` is not supported for vision-language models: TRL's SFTTrainer refuses it after "
        "the model has loaded (packing several samples into one sequence would split images from their tokens)\n"
        " --> xray.vt:1:33\n"
        "  |\n"
        "1 | finetune all on qwen2.5-vl with packing\n"
        "  |                                 ^^^^^^^\n"
        "  = help: remove `with packing`"),
    _recipe(
        "VT261", "error", "batch does not divide over the GPUs",
        "With `gpus N` each of the N processes (one per GPU) trains an equal share of the batch (the "
        "samples per update), so N must divide the batch, and a pinned `micro batch` must divide each "
        "GPU's share. The help gives the nearest batches that divide and the GPU counts that divide the "
        "batch. (Before multi-GPU training, VT261 warned that `gpus N` above 1 was not supported.) With "
        "`gpus all` the number is known only at run time, where the run checks it.",
        _XRAYS + "batch 6\ngpus 4\n",
        "error[VT261]: `batch 6` does not divide over `gpus 4`: each GPU trains an equal share of the 6 "
        "samples per update\n"
        " --> xray.vt:4:6\n"
        "  |\n"
        "4 | gpus 4\n"
        "  |      ^\n"
        "  = help: write `batch 8` or `batch 4` (2 or 1 per GPU), or `gpus 2` or `gpus 3`"),
    _recipe(
        "VT262", "warning", "learning rate very high",
        "A learning rate above 1e-2 for a real (not tiny) model usually makes the loss diverge. LoRA typically "
        "uses 1e-4 to 2e-4, full fine-tuning 1e-5 to 5e-5.",
        _XRAYS + "learning rate 0.05\n",
        "warning[VT262]: `learning rate 0.05` is very high for fine-tuning a pretrained model and usually makes "
        "the loss diverge\n"
        " --> xray.vt:3:15\n"
        "  |\n"
        "3 | learning rate 0.05\n"
        "  |               ^^^^\n"
        "  = help: LoRA typically uses 1e-4 to 2e-4 (the default 2e-4); full fine-tuning 1e-5 to 5e-5"),
    _recipe(
        "VT263", "warning", "trust_remote_code",
        "`with trust_remote_code` runs Python code downloaded with the model on this machine. Use it only for a "
        "model whose code you have read or whose publisher you trust.",
        "finetune all on qwen2.5-vl with trust_remote_code\nfrom ./xrays\n",
        "warning[VT263]: `trust_remote_code` runs Python code downloaded with the model on this machine\n"
        " --> xray.vt:1:33\n"
        "  |\n"
        "1 | finetune all on qwen2.5-vl with trust_remote_code\n"
        "  |                                 ^^^^^^^^^^^^^^^^^\n"
        "  = help: only use it for a model whose code you have read or whose publisher you trust"),
    _recipe(
        "VT264", "warning", "warmup as long as training",
        "The warmup lasts the whole training, so the learning rate never reaches its peak. A few steps of warmup "
        "are usual.",
        _XRAYS + "train for 10 steps\nwarmup 10 steps\n",
        "warning[VT264]: warmup (10 steps) lasts the whole training (10 steps), so the learning rate never "
        "reaches its peak\n"
        " --> xray.vt:4:1\n"
        "  |\n"
        "4 | warmup 10 steps\n"
        "  | ^^^^^^^^^^^^^^^\n"
        "  = help: use a few steps of warmup, e.g. `warmup 5 steps`"),
    _situation(
        "VT266", "note", "batch means the samples per update",
        "`batch N` is the number of samples per optimizer update, and vtc chooses how many go through the GPU at "
        "once. Before plan version 3, `batch N` alone meant N at a time with the default `accumulate 4` (4N per "
        "update). When the recipe's last run in its runs folder was planned that way and trained another number of "
        "samples per update, the note says so, so that the next run does not silently train differently.",
        "a recipe with `batch 8` whose last run (runs/xray/run-003, plan version 2) trained 8 at a time, 4 times",
        "note[VT266]: `batch 8` is now 8 samples per update; this recipe's last run (run-003) trained 32 per update"),
    _recipe(
        "VT265", "error", "save to a place unfit for runs",
        "`save to` (or its default, `runs/<recipe name>`) names a place where run folders must not go: the file "
        "system's root, a system folder (/etc, /boot, /dev, /proc, /sys, /bin, /lib, /usr/bin, /usr/share, "
        "/var/log, /run, C:/Windows, C:/Program Files, ...) or a folder below one, /usr, /var, /var/lib or a folder "
        "that holds everyone's folders (/home, /tmp, /opt, C:/Users) itself, your home folder itself, a file, or "
        "an existing folder that holds other files and no run folder (a runs folder is empty, new, or holds "
        "run-NNN folders). Links are followed first. `vtc run` checks again, and `--runs-dir` too (VT537).",
        _XRAYS + "save to /etc\n",
        "error[VT265]: `save to /etc` cannot hold run folders: it is a system folder (/etc)\n"
        " --> xray.vt:3:9\n"
        "  |\n"
        "3 | save to /etc\n"
        "  |         ^^^^\n"
        "  = help: save runs in a folder of their own, e.g. `save to ./runs/xray` (an empty or new folder, or one "
        "that already holds run-NNN folders)"),
    _situation(
        "VT270", "note", "folder beside the recipe, not the Hub",
        "A `from`, `evaluate on` or `finetune ... on` name shaped like a Hugging Face id (`data/xrays`, "
        "`models/mine`) is a folder beside the recipe, so it is read from there, not from the Hub. A name that is "
        "not there is a Hub id. The working directory never decides. Write `./data/xrays` to say it is a folder "
        "(the note then goes), or `hf://data/xrays` to read the Hub's even with the folder there.",
        "`from data/xrays` with a `data/xrays/` folder beside the recipe",
        "note[VT270]: `data/xrays` is the folder /home/me/study/data/xrays beside the recipe: the data is read from "
        "there, not from the Hugging Face Hub `data/xrays`\n"
        " --> xray.vt:2:6\n"
        "  = help: write `./data/xrays` to say it is a folder (this note then goes), or `hf://data/xrays` to read "
        "it from the Hub instead"),
    _recipe(
        "VT267", "warning", "shard model with one GPU",
        "`shard model` splits the model's weights, gradients and optimizer state across the run's GPUs; "
        "with `gpus 1` (the default) there is no other GPU, so the one process holds the model whole and "
        "`shard model` changes nothing. Write `gpus N` (or `gpus all`) beside it, or remove it. Under "
        "torchrun the processes torchrun starts are the ones it shards across.",
        _XRAYS + "using lora\nshard model\n",
        "warning[VT267]: `shard model` with one GPU: there is no other GPU to split the model across, so "
        "the one process holds it whole\n"
        " --> xray.vt:4:7\n"
        "  |\n"
        "4 | shard model\n"
        "  |       ^^^^^\n"
        "  = help: write `gpus 2` (or more, or `gpus all`) beside `shard model`, or remove `shard model`"),
    _recipe(
        "VT268", "error", "shard model with 4-bit weights",
        "`shard model` splits 16-bit weights across the GPUs (FSDP2 through the transformers backend); "
        "vtc does not shard 4-bit (qlora) weights, whose quantisation state FSDP2 cannot split safely. "
        "qlora's 4-bit weights usually fit one GPU anyway: remove `shard model`, or write `using lora` to "
        "shard 16-bit weights.",
        _XRAYS + "gpus 2\nshard model\n",
        "error[VT268]: `shard model` cannot split 4-bit weights, and the default method, `using qlora`, "
        "loads the model in 4 bit\n"
        " --> xray.vt:4:7\n"
        "  |\n"
        "4 | shard model\n"
        "  |       ^^^^^\n"
        "  = help: write `using lora` (16-bit weights, split across the GPUs), or remove `shard model` "
        "(4-bit weights usually fit one GPU)"),
    _recipe(
        "VT269", "warning", "bigger than one GPU",
        "The memory model's estimate for one process, even one example at a time, is more than the "
        "largest GPU vtc knows (registry/cards.json, less the CUDA context and the 10% safety margin): "
        "every process would run out of memory. The help lists what would fit, each with its estimate per "
        "GPU and the smallest card it fits: 4-bit weights (`using qlora`), fewer trained parts, `shard "
        "model` with `gpus N` (the transformers backend splits the weights, gradients and optimizer state "
        "across N GPUs; estimates for 2, 4 and 8), or a larger GPU.",
        "finetune all on llama-3.2-vision-90b\nfrom ./xrays\nusing lora\n",
        "warning[VT269]: `llama-3.2-vision-90b` with `using lora` needs about 169.1 GiB per GPU even one "
        "example at a time: more than the largest GPU vtc knows (NVIDIA B200, 180 GiB, about 162 GiB of "
        "it usable)\n"
        " --> xray.vt:1:17\n"
        "  |\n"
        "1 | finetune all on llama-3.2-vision-90b\n"
        "  |                 ^^^^^^^^^^^^^^^^^^^^\n"
        "  = help: what would fit: `using qlora`: about 54.5 GiB, fits an NVIDIA A100 80GB (80 GiB); "
        "`finetune language`: about 168.9 GiB, still too big; `finetune attention`: about 167.3 GiB, "
        "still too big; `shard model` (the transformers backend splits the model across the GPUs), per "
        "GPU: `gpus 2` 90.3 GiB, `gpus 4` 48.4 GiB, `gpus 8` 27.5 GiB; a GPU with more than 180 GiB"),
    # --- VT3xx: includes and files ------------------------------------------------------------------------------
    _recipe(
        "VT301", "error", "file not found",
        "A recipe, an included file, or a file given to `vtc fmt` does not exist. Paths in `include` are relative "
        "to the folder of the including file.",
        _XRAYS + 'include "missing.vt"\n',
        "error[VT301]: the included file `missing.vt` does not exist\n"
        " --> xray.vt:3:9\n"
        "  |\n"
        '3 | include "missing.vt"\n'
        "  |         ^^^^^^^^^^^^\n"
        "  = help: paths in `include` are relative to the folder of xray.vt; check the spelling"),
    _situation(
        "VT302", "error", "include cycle",
        "A recipe includes itself, directly or through other files; the message names the chain. Remove one of "
        "the includes.",
        "`a.vt` includes `b.vt`, which includes `a.vt`",
        "error[VT302]: include cycle: a.vt -> b.vt -> a.vt\n"
        " --> b.vt:1:9\n"
        "  |\n"
        '1 | include "a.vt"\n'
        "  |         ^^^^^^\n"
        "  = help: a recipe cannot include itself, directly or through other files; remove one of these includes"),
    _situation(
        "VT303", "error", "file cannot be read",
        "A recipe or included file exists but cannot be read: it is a folder, there is no permission, or it is not "
        "a regular file (a named pipe, which would make `vtc check` wait for ever; a device such as /dev/zero, "
        "which never ends; a file of /proc or /sys). Files that are not UTF-8 or are binary are reported by the "
        "parser (VT002, VT003).",
        "`include \"shared.vt\"` where `shared.vt` is a folder",
        "error[VT303]: shared.vt is a folder, not a recipe\n"
        " --> shared.vt\n"
        "  = help: give a .vt file"),
    _situation(
        "VT304", "error", "includes nested too deep",
        "Includes nest deeper than 32 files. Flatten the chain of includes.",
        "a chain of includes `level00.vt` -> `level01.vt` -> ... 40 files long",
        "error[VT304]: includes nest deeper than 32 files\n"
        " --> level30.vt:1:9\n"
        "  |\n"
        '1 | include "level31.vt"\n'
        "  |         ^^^^^^^^^^^^\n"
        "  = help: flatten the chain of includes"),
    _situation(
        "VT305", "warning", "clause overridden by an include",
        "A clause written before an `include` sets something that the included file sets too, to another value. "
        "Clauses apply in order, so the included file's value is the one that counts and the clause above it has "
        "no effect. Put includes first and the clauses that change them after; the warning names both lines.",
        "`xray.vt` has `batch 8` on line 3 and `include \"base.vt\"` on line 4; base.vt says `batch 2`",
        "warning[VT305]: `batch 8` on line 3 is overridden by `batch 2` in base.vt (line 1), which the `include` on "
        "line 4 brings in after it\n"
        " --> xray.vt:3:1\n"
        "  |\n"
        "3 | batch 8\n"
        "  | ^^^^^^^\n"
        " --> base.vt:1:1: the value that applies\n"
        "  |\n"
        "1 | batch 2\n"
        "  | ^^^^^^^\n"
        " --> xray.vt:4:1: included here\n"
        "  |\n"
        '4 | include "base.vt"\n'
        "  | ^^^^^^^^^^^^^^^^^\n"
        "  = help: clauses apply in order, so the included file's value wins; to keep line 3's value, move the "
        "`include` above line 3 (includes first, then what this recipe changes)"),
    _situation(
        "VT306", "error", "include refused",
        "An `include` that vtc does not open: the file is not a `.vt` recipe file (by its name, or after following "
        "a link), or it lies outside the main recipe's repository (its git repository's top folder, or, outside a "
        "repository, its own folder) once every link is followed: `../../secrets.vt`, `/etc/...`, `~/...`, a "
        "link to a file elsewhere. Recipes run in pre-commit hooks and CI, so an include of a stranger's recipe "
        "must not read (and print) a token file or a password file: the file is refused before it is read, and "
        "its content never appears in a message. Copy what you need into a .vt file inside the repository.",
        "`include \"../../.cache/huggingface/token\"` in /home/me/study/xray.vt, a git repository's top folder",
        "error[VT306]: `include ../../.cache/huggingface/token`: vtc includes only .vt recipe files\n"
        " --> xray.vt:3:9\n"
        "  |\n"
        '3 | include "../../.cache/huggingface/token"\n'
        "  |         ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n"
        "  = help: an include must be a .vt recipe file inside /home/me/study (the main recipe's git repository, "
        "or its folder outside one); copy what you need into a .vt file there"),
    _situation(
        "VT307", "error", "recipe files too large",
        "A recipe or an included file is larger than 128 KB, or the recipe and its includes together would read "
        "more than 64 files or 256 KB. Recipes are a few KB; a larger file is almost always a data file given by "
        "mistake. The limits keep `vtc check` (a pre-commit hook) fast whatever it is given: the file is refused "
        "before it is parsed.",
        "`vtc check data.vt` on a 50 MB file",
        "error[VT307]: data.vt is larger than 128 KB: too large for a recipe\n"
        " --> data.vt\n"
        "  = help: a recipe is a short text file of clauses; is this a data file?"),
    _situation(
        "VT308", "note", "more problems not shown",
        "A file has more than 50 problems: vtc shows 50 (errors first) and this note counts the rest, so that one "
        "line of a clause repeated thousands of times does not print thousands of messages. JSON output is capped "
        "the same way. Fix the problems shown (often one mistake repeated) and check again.",
        "`batch 2` written 2,000 times",
        "note[VT308]: 1,950 more problems in this file are not shown (1,950 errors)\n"
        " --> xray.vt\n"
        "  = help: vtc shows 50 a file; fix these (a repeated clause is often one mistake repeated), then run "
        "`vtc check` again"),
    # --- VT4xx: data --------------------------------------------------------------------------------------------
    _situation(
        "VT400", ("warning", "error"), "more not shown",
        "The rest of a long list. `vtc check --data` shows the first 10 diagnostics of each code and then one "
        "VT400 warning per code with the number left (the summary table counts them all, `--format json` lists "
        "them all). Where data is read without the data check, the list stops after 20 bad rows with a VT400 "
        "error that counts the rest.",
        "12 rows of metadata.jsonl that list files that do not exist",
        "warning[VT400]: ... and 2 more VT409 (listed file missing) not shown\n"
        "  = help: the summary table counts them all; `--format json` lists every one"),
    _situation(
        "VT401", ("error", "warning"), "data folder or file missing",
        "The data folder or file named by `from` (or `evaluate on`) does not exist, or the plan names no training "
        "data. Relative paths start at the recipe's folder. `vtc check` and `vtc plan` warn, with the path as "
        "resolved (a recipe may be checked where its data is not; `vtc run` stops there), also when an "
        "`org/name`-shaped name is read as a Hub dataset although its first folder is beside the recipe "
        "(`from data/xray` next to `data/xrays/`); `vtc run` and `vtc check --data` stop with the error.",
        "`from ./xrays` with no `xrays/` beside the recipe",
        "error[VT401]: data folder or file not found: xrays\n"
        " --> xrays\n"
        "  = help: check the path in `from` (relative paths start at the recipe's folder)"),
    _situation(
        "VT402", "error", "empty dataset",
        "The dataset has no rows: a folder without images, an empty metadata.jsonl, an empty table; also when no "
        "training row is left after leaving out the bad ones (`bad rows skip`).",
        "an `xrays/` folder with no image in it",
        "error[VT402]: no images in xrays\n"
        " --> xrays\n"
        "  = help: put image files (.png, .jpg, .jpeg, .bmp, ...) in the folder, with metadata.jsonl, .txt "
        "captions or class sub-folders for the answers"),
    _situation(
        "VT403", "error", "no answers found",
        "A folder of images with nothing that gives the answers (no metadata.jsonl, no .txt captions, no class "
        "sub-folders); or `from` names a single image, or a file of a type vtc does not read.",
        "an `xrays/` folder holding only images",
        "error[VT403]: xrays holds 40 images but no answers\n"
        " --> xrays\n"
        "  = help: add metadata.jsonl (file_name + text columns), a .txt caption beside each image, or sort the "
        "images into one sub-folder per class"),
    _situation(
        "VT404", "error", "split not found",
        "`split NAME` names a split the source does not have (split folders such as train/ and test/, the splits "
        "of a saved or Hub dataset), or the source has no splits at all.",
        "`from ./shapes split validation` where `shapes/` has `train/` and `test/`",
        "error[VT404]: no `validation` split in shapes: it has train, test\n"
        " --> shapes\n"
        "  = help: write `split train` or put the rows in a `validation/` folder"),
    _situation(
        "VT405", "error", "answer column not found",
        "`answer from column NAME` names a column the data does not have; the help names the closest column.",
        "`answer from column captoin` on a metadata.jsonl whose columns are file_name and caption",
        "error[VT405]: no column `captoin` in xrays/metadata.jsonl; its columns are caption\n"
        " --> xrays/metadata.jsonl\n"
        "  = help: did you mean `caption`?"),
    _situation(
        "VT406", "error", "no answer column",
        "vtc cannot tell which column holds the answers: none has a usual name (text, answer, caption, label, "
        "...). Name it with `answer from column NAME`.",
        "a metadata.jsonl with the columns file_name and diagnosis",
        "error[VT406]: cannot tell which column of xrays/metadata.jsonl holds the answers: diagnosis\n"
        " --> xrays/metadata.jsonl\n"
        "  = help: write `answer from column diagnosis` (vtc looks for text, caption, answer, label, labels, ...)"),
    _situation(
        "VT407", "error", "image column not found",
        "The column with the images (or image paths) cannot be found: `images from column NAME` names a column "
        "the data does not have, or no column has a usual name (file_name, image, images, image_path, ...). Name "
        "it with `images from column NAME`.",
        "`from ./rows.jsonl` whose rows are `{\"picture\": \"xrays/001.png\", \"text\": \"normal\"}`",
        "error[VT407]: cannot tell which column of rows.jsonl holds the image paths (columns: picture, text)\n"
        " --> rows.jsonl:1\n"
        "  = help: name it file_name, or write `images from column <name>`"),
    _situation(
        "VT408", "error", "malformed row",
        "A row that is not a JSON object, a line that is not valid JSON, a row with no image file name, or a "
        "metadata.jsonl without a `file_name` column. Reported at its line.",
        "line 4 of metadata.jsonl is `{\"file_name\": \"a.png\", \"text\": `",
        "error[VT408]: line 4 of metadata.jsonl is not valid JSON: Expecting value\n"
        " --> xrays/metadata.jsonl:4:32\n"
        "  = help: write one JSON object a line"),
    _situation(
        "VT409", "error", "listed file missing",
        "A row lists an image file that does not exist (paths are relative to the data file's folder). Add the "
        "file, fix the name, or remove the row.",
        "row 2 of metadata.jsonl lists `missing.png`, which is not in the folder",
        "error[VT409]: row 2 of metadata.jsonl lists missing.png, which does not exist\n"
        " --> xrays/metadata.jsonl:2\n"
        "  = help: add the file to xrays, or remove the row"),
    _situation(
        "VT410", "error", "image missing",
        "An image file is missing when it is opened (it was deleted after the rows were read, a Hub dataset row "
        "has no image, or `vtc ask` is given an image that is not there).",
        "a row's image is deleted between `vtc check --data` and `vtc run`",
        "error[VT410]: image file not found: xrays/001.png\n"
        " --> xrays/metadata.jsonl:1\n"
        "  = help: check the file name, or remove the row that lists it"),
    _situation(
        "VT411", "error", "unreadable, truncated or empty image",
        "An image that cannot be decoded: zero bytes, truncated, corrupt, a TIFF page that the file does not "
        "have, a DICOM file that is not a readable image. DICOM header text is never quoted.",
        "row 6 of metadata.jsonl lists `zero.png`, an empty file",
        "error[VT411]: cannot read image zero.png: the file is empty (0 bytes)\n"
        " --> xrays/metadata.jsonl:6\n"
        "  = help: replace xrays/zero.png with a valid image, or remove the row"),
    _situation(
        "VT412", "error", "empty or missing answer",
        "A row whose answer is empty or missing: an empty column, no caption file or an empty one, a conversation "
        "without an assistant answer.",
        "row 3 of metadata.jsonl is `{\"file_name\": \"002.png\", \"text\": \"\"}`",
        "error[VT412]: row 3 of metadata.jsonl has no answer (column `text` is empty)\n"
        " --> xrays/metadata.jsonl:3\n"
        "  = help: fill in `text`, or remove the row"),
    _situation(
        "VT413", "error", "answers do not fit the source",
        "`answer from captions` needs a .txt file beside each image, `answer from folders` one sub-folder per "
        "class; the source is something else. Leave `answer from` out to let vtc detect it.",
        "`answer from captions` on a folder with metadata.jsonl",
        "error[VT413]: `answer from captions` needs a .txt file beside each image; xrays is imagefolder data with "
        "metadata.jsonl\n"
        " --> xrays\n"
        "  = help: write `answer from column <name>` (or leave `answer from` out to detect it)"),
    _situation(
        "VT414", "error", "malformed conversation",
        "A conversation row (a `messages` list) that vtc cannot use: a message without a role, content that is not "
        "a list of text and image parts, an image URL, an image part without an image, or a conversation that does "
        "not end with the assistant's answer.",
        "line 2 of chats.jsonl has a message without `role`",
        "error[VT414]: line 2 of chats.jsonl: every message needs a role: system, user or assistant\n"
        " --> data/chats.jsonl:2\n"
        "  = help: write rows like {\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"text\", "
        "\"text\": \"...\"}, {\"type\": \"image\", \"image\": \"img.png\"}]}, {\"role\": \"assistant\", "
        "\"content\": [{\"type\": \"text\", \"text\": \"...\"}]}]}"),
    _situation(
        "VT415", "error", "path outside the dataset folder",
        "A file or folder of the data leads outside the data folder: a row's path (`..`, an absolute path "
        "elsewhere), or a link whose real path is elsewhere -- a caption, an image, a class folder, a split folder, "
        "the metadata file, a parquet or saved-dataset file (or one its state.json names), an image path stored in a "
        "dataset, or a data file named by `from` that is a link to a file in another folder. It is refused and never opened, so its content "
        "reaches no message and no row: recipes and data come from shared repositories (a caption linked to "
        "~/.cache/huggingface/token or /proc/self/environ would otherwise become a training answer). Copy the file "
        "into the data folder instead of linking to it. A data folder that is itself a link (data on another disk) "
        "is fine: the rule compares real paths. docs/security.md says the rule and its limits.",
        "row 5 of metadata.jsonl is `{\"file_name\": \"../secret.png\", ...}`",
        "error[VT415]: row 5 of metadata.jsonl points outside the dataset folder: ../secret.png\n"
        " --> xrays/metadata.jsonl:5\n"
        "  = help: keep the images inside xrays"),
    _situation(
        "VT416", "error", "Hub dataset unreachable",
        "A Hugging Face dataset that cannot be downloaded: not in the local cache and the Hub cannot be reached (no "
        "network, no DNS, a proxy in the way, or HF_HUB_OFFLINE set), a wrong name, or a private dataset without a "
        "login. vtc asks the Hub once, with a short timeout, before `datasets` does, so that an unreachable Hub is "
        "this one error within seconds; a dataset already in the cache is then read from it, with a note.",
        "`from unsloth/Radiology_mini` on a machine without a network and with an empty cache",
        "error[VT416]: cannot download dataset unsloth/Radiology_mini: it is not in the local cache and the Hugging "
        "Face Hub cannot be reached: the name huggingface.co does not resolve (no network, or no DNS: [Errno -2] "
        "Name or service not known)\n"
        " --> unsloth/Radiology_mini\n"
        "  = help: on a machine with a network, download it (`hf download unsloth/Radiology_mini --repo-type "
        "dataset --local-dir Radiology_mini`), copy the folder here and write `from ./Radiology_mini`; or point "
        "HF_HOME at a Hugging Face cache that holds it; behind a proxy, set HTTPS_PROXY"),
    _situation(
        "VT417", "error", "dataset file unreadable",
        "A saved dataset (save_to_disk) or parquet file that the `datasets` package cannot read, or `datasets` is "
        "not installed (`pip install 'vtc[train]'`).",
        "`from ./data/train.parquet` where the file is damaged",
        "error[VT417]: cannot read parquet file train.parquet: ArrowInvalid: ...\n"
        " --> data/train.parquet\n"
        "  = help: check that the files are complete"),
    _situation(
        "VT418", "error", "hold-out too small",
        "The hold-out needs at least two rows (one to train on, one to evaluate). Add rows, or name a separate "
        "evaluation source with `evaluate on`.",
        "`holdout 10%` of a dataset with one row",
        "error[VT418]: cannot hold out 10% of 1 row for evaluation\n"
        " --> imagefolder data with metadata.jsonl, answers from `text` (1 row)\n"
        "  = help: add rows, or name a separate evaluation source with `evaluate on`"),
    _situation(
        "VT419", "error", "text not UTF-8",
        "Text that is not UTF-8, or a text file that cannot be read: a line of metadata.jsonl (reported at its "
        "line; the other lines still load), a caption file, a CSV file (or CSV that is not valid), a parquet table. "
        "Save the file as UTF-8.",
        "line 14 of metadata.jsonl was saved in Latin-1 and holds `é`",
        "error[VT419]: line 14 of metadata.jsonl is not UTF-8 text (byte e9 at column 38)\n"
        " --> xrays/metadata.jsonl:14:38\n"
        "  = help: save the file as UTF-8 (a spreadsheet's 'CSV UTF-8' or an editor's 'Save with encoding')"),
    _situation(
        "VT420", "warning", "image never listed",
        "Images in an imagefolder that its metadata never lists: they will not be used (Hugging Face skips them "
        "silently).",
        "`full.png` and `stray.png` lie in the folder but no row of metadata.jsonl lists them",
        "warning[VT420]: 2 images in xrays are not listed in metadata.jsonl and will not be used: full.png, "
        "stray.png\n"
        " --> xrays/metadata.jsonl\n"
        "  = help: add a row for each to metadata.jsonl, or move them out of the folder"),
    _situation(
        "VT421", "error", "unsupported format",
        "An image format that vtc cannot read (HEIC, SVG, PDF, camera RAW, ...). Convert it to PNG or JPEG.",
        "row 9 of metadata.jsonl lists `IMG_0001.HEIC`",
        "error[VT421]: cannot use IMG_0001.HEIC: HEIC (iPhone photos) files are not supported\n"
        " --> xrays/metadata.jsonl:9\n"
        "  = help: convert it to PNG or JPEG, or remove the row that lists it"),
    _situation(
        "VT422", "warning", "duplicate row",
        "A row with the same image content and answer as an earlier row: duplicates weigh that row double in "
        "training. `bad rows skip` leaves the copy out.",
        "row 12 of metadata.jsonl repeats row 1",
        "warning[VT422]: row 12 of metadata.jsonl repeats row 1 (same image and answer)\n"
        " --> xrays/metadata.jsonl:12\n"
        " --> xrays/metadata.jsonl:1: first here\n"
        "  = help: remove the copy: duplicates weigh that row double in training"),
    _situation(
        "VT423", "warning", "size far outside 300-1000 px",
        "An image far outside the usual 300-1000 px: its longest side is under 100 or over 10,000 px. A thumbnail "
        "or a huge scan is seldom the image meant; `resize` cannot add detail to a thumbnail.",
        "row 11 of metadata.jsonl lists a 40 x 30 thumbnail",
        "warning[VT423]: thumb.png is 40 x 30 px, far outside the usual 300-1000 px (very small)\n"
        " --> xrays/metadata.jsonl:11\n"
        "  = help: check that it is the image you meant; `resize` brings every image to one size, but it cannot "
        "add detail to a thumbnail"),
    _situation(
        "VT424", "error", "aspect ratio over 200",
        "An image more than 200 times longer than it is wide (or the reverse): Qwen-VL's image processor refuses "
        "it. Crop it into pieces or pad it towards a square.",
        "row 10 of metadata.jsonl lists a 1000 x 4 strip",
        "error[VT424]: strip.png is 1000 x 4 px, an aspect ratio of 250:1; Qwen-VL refuses images over 200:1\n"
        " --> xrays/metadata.jsonl:10\n"
        "  = help: crop it into pieces, or pad it towards a square, or remove the row"),
    _situation(
        "VT425", "error", "over the decompression-bomb limit",
        "An image over pillow's decompression-bomb limit (89,478,485 pixels): refused before any pixel is decoded, "
        "with its size. Shrink it below the limit.",
        "row 8 of metadata.jsonl lists a PNG whose header says 30,000 x 30,000",
        "error[VT425]: refused to open bomb.png: the image is too large to open safely (Image size (900000000 "
        "pixels) exceeds limit of 178956970 pixels, could be decompression bomb DOS attack.); it was not decoded\n"
        " --> xrays/metadata.jsonl:8\n"
        "  = help: shrink the image below the limit, or remove the row that lists it"),
    _situation(
        "VT426", "error", "DICOM needs pydicom",
        "A DICOM (.dcm) image, and pydicom is not installed. Install the DICOM extra.",
        "row 1 of metadata.jsonl lists `scan.dcm` on a machine without pydicom",
        "error[VT426]: scan.dcm is a DICOM file, and reading DICOM needs pydicom\n"
        " --> xrays/metadata.jsonl:1\n"
        "  = help: install the DICOM extra: pip install 'vtc[dicom]' (it adds pydicom and the python-gdcm decoder)"),
    _situation(
        "VT427", "error", "bad rows stop the run",
        "`vtc run` found rows with errors and `bad rows stop` (the default) stops the run before the model loads; "
        "the diagnostics and the summary table come before it. Fix the rows, or write `bad rows skip` to leave "
        "them out (they are then listed in the run folder, skipped_rows.jsonl).",
        "`vtc run xray.vt` on data with 11 bad rows",
        "error[VT427]: 11 bad rows stop the run (`bad rows stop`, the default)\n"
        "  = help: fix them, or write `bad rows skip` to leave them out (they are then listed in the run folder)"),
    _situation(
        "VT430", "error", "max length cuts image tokens",
        "A row whose tokens exceed the max length so that the cut would fall inside its image tokens (the model "
        "would fail or learn from half an image). Raise `max length`, or use a smaller `resize`.",
        "a row of 1,352 tokens with `max length 1024`",
        "error[VT430]: xrays/metadata.jsonl:3: 1352 tokens (56 text + 1296 image) exceed the max length 1024 and "
        "the cut would fall inside the image tokens\n"
        " --> xrays/metadata.jsonl:3\n"
        "  = help: raise `max length` to at least 1352, or use a smaller `resize`"),
    _situation(
        "VT431", "error", "max length cuts the answer",
        "With `responses_only`, a row whose whole answer lies beyond the max length: the row would teach nothing. "
        "Raise `max length`, or use a smaller `resize`.",
        "a row whose answer starts after token 1,024 with `max length 1024`",
        "error[VT431]: xrays/metadata.jsonl:3: 1100 tokens (300 text + 800 image) exceed the max length 1024, "
        "which cuts off the whole answer\n"
        " --> xrays/metadata.jsonl:3\n"
        "  = help: raise `max length` to at least 1100, or use a smaller `resize`"),
    _situation(
        "VT432", "error", "nothing to learn",
        "A whole batch has nothing to learn: the response marker was not found in the rendered chat, so every "
        "label is masked. Check the model's markers (`vtc plan` shows them), or raise `max length`.",
        "a model whose chat template writes the answer without the registry's response marker",
        "error[VT432]: 4 of 4 rows in a batch have nothing to learn: the response marker "
        "'<|im_start|>assistant\\n' was not found in the rendered chat, or the answer was cut off\n"
        "  = help: check the model's markers (vtc plan shows them), or raise `max length`"),
    _situation(
        "VT433", "error", "markers missing from the chat template",
        "Training on responses only needs the chat template's instruction and response markers; they are unknown, "
        "or do not occur in this model's chat template. Remove `with responses_only`, or use a model family whose "
        "markers vtc knows.",
        "a local model whose chat template does not contain `<|im_start|>user`",
        "error[VT433]: the instruction marker '<|im_start|>user\\n' does not occur in this model's chat template\n"
        "  = help: the template renders a chat as '...'; remove `with responses_only` or use a model family whose "
        "markers vtc knows"),
    _situation(
        "VT434", "error", "mixed batch refused",
        "A batch mixes rows with images and text-only rows, and this model's processor refuses that (Llama 3.2 "
        "Vision's does; Qwen-VL's accepts it). Write `batch 1`, give every row an image, or keep the text-only "
        "rows out.",
        "`batch 2` on Llama 3.2 Vision with a text-only conversation row",
        "error[VT434]: this model's processor (MllamaProcessor) cannot put rows with images and text-only rows in "
        "one batch: ...\n"
        "  = help: write `batch 1` (each batch is then one row), or give every row an image, or keep the "
        "text-only rows out of this dataset"),
    _situation(
        "VT435", "warning", "evaluation set too small",
        "The evaluation set (the `evaluate on` source's good rows, or the hold-out drawn from the training rows left "
        "after the bad ones) has fewer than 20 rows, or none. One answer then moves a score by more than 5 points "
        "and the 95% margin of a score is wider than +-20 points, so a before/after difference cannot be told from "
        "chance. Evaluate on 20 rows or more: a larger `holdout`, more rows, or a larger `evaluate on` set.",
        "`holdout 20%` of 15 usable rows",
        "warning[VT435]: the evaluation set has 3 rows (20% of the 15 usable training rows, held out): too few to "
        "score a model, one answer moves the score by 33 points\n"
        " --> xrays/metadata.jsonl\n"
        "  = help: evaluate on 20 rows or more: more rows, or a larger set named with `evaluate on`; below 20 a "
        "before/after difference cannot be told from chance"),
    _situation(
        "VT436", "warning", "free-text answers scored by exact_match",
        "The expected answers are free text (the typical one is over 6 words or 50 characters: captions, reports, "
        "transcriptions) and the only metric is exact_match (the default), which counts an answer right only when "
        "all of it matches: the score is near 0% whatever the model learnt. Use `metric cer` or `metric wer` "
        "(`metric exact_match, cer` keeps both).",
        "`vtc check --data` on radiology reports with no `metric` clause",
        "warning[VT436]: the expected answers are free text (a typical one has 24 words, 151 characters), and the "
        "default metric counts an answer right only when all of it matches: the score will be near 0% whatever the "
        "model learnt\n"
        " --> xrays/metadata.jsonl\n"
        "  = help: write `metric cer` (characters wrong, for transcriptions and OCR) or `metric wer` (words wrong, "
        "for reports and captions); `metric exact_match, cer` keeps both"),
    _situation(
        "VT437", "error", "not a regular file",
        "A data file that is not a regular file: a named pipe (FIFO), a device, a socket, a folder where a file "
        "belongs, or a file of the system's virtual file systems (/proc, /sys, /dev). vtc never opens one: a FIFO "
        "blocks the reader for ever (a pre-commit hook that never ends), /dev/zero reads until the memory runs out, "
        "/proc/self/environ holds the environment with its tokens. Reported for images, captions, metadata and "
        "table files, and a data source named by `from`; replace it with a regular file or remove it.",
        "a captions folder where b.txt is a named pipe (made with mkfifo)",
        "error[VT437]: cannot read b.txt: it is a named pipe (FIFO), not a regular file\n"
        " --> xrays/b.txt\n"
        "  = help: replace it with a regular file, or remove it (vtc never opens pipes, devices or system files: a "
        "pipe would block for ever, a device or /proc file could fill the memory or hold secrets)"),
    _situation(
        "VT438", "error", "data text file too large",
        "A text file that vtc reads whole is over its size limit, checked before it is read: a caption over 1 MB "
        "(a caption is one answer; the longest report is a few KB), a metadata, table or conversation file over "
        "512 MB (held in memory as rows it would need some 5 GB). Shorten the caption; split a large table, or "
        "store it as parquet, which `datasets` reads without holding it in memory.",
        "a captions folder where c.txt is 2 MB",
        "error[VT438]: cannot read c.txt: it is larger than 1 MB, the limit for this kind of file\n"
        " --> xrays/c.txt\n"
        "  = help: a caption is one answer: shorten it (or remove the image and its caption)"),
    _situation(
        "VT439", "error", "data folder cannot be read",
        "A folder of the data cannot be listed (its permissions do not let the user running vtc read it), or a "
        "folder or file of the data is gone while vtc reads it (deleted or moved by something else). Check the "
        "permissions, or that nothing changes the data folder during the check or the run.",
        "a class folder `dog/` that the user running vtc may not list",
        "error[VT439]: cannot read the data folder animals/dog: it cannot be listed (Permission denied)\n"
        " --> animals/dog\n"
        "  = help: check the folder's permissions (it must be readable by the user running vtc)"),
    _situation(
        "VT440", "error", "DICOM compression needs a decoder",
        "A DICOM file whose pixel data is compressed (JPEG Lossless, JPEG-LS, JPEG 2000, HTJ2K, 12-bit JPEG) in a "
        "way that no decoder installed here can read. The file is fine: pydicom reads such pixel data only through "
        "a decoder package. The message names the compression, its transfer syntax and the package to install: "
        "`pip install 'vtc[dicom]'` adds python-gdcm (JPEG, JPEG Lossless, JPEG-LS, JPEG 2000); HTJ2K needs "
        "pylibjpeg and pylibjpeg-openjpeg, 12-bit JPEG pylibjpeg and pylibjpeg-libjpeg. Or export the images "
        "uncompressed from the scanner or PACS.",
        "`vtc check --data` on a folder whose scan.dcm is JPEG-LS compressed, on a machine without a decoder",
        "error[VT440]: cannot read image scan.dcm: its pixel data is compressed as JPEG-LS Lossless Image "
        "Compression (transfer syntax 1.2.840.10008.1.2.4.80), and no decoder for it is installed: pip install "
        "'vtc[dicom]' (it adds python-gdcm)\n"
        " --> xrays/metadata.jsonl:3\n"
        "  = help: pip install 'vtc[dicom]' (it adds python-gdcm), then check again; or export the images "
        "uncompressed (Explicit VR Little Endian) from the scanner or PACS. The file itself is fine"),
    _situation(
        "VT441", "error", "image placeholder that is not an image",
        "A row's text holds an `<image>` (or `<video>`) placeholder that would not become an image or a clip: in "
        "the `messages` format (typed parts) a placeholder is literal text, and so it is in the conversations of a "
        "`datasets` dataset (parquet, saved, Hub) for `<video>`. vtc never trains on the literal marker. Give the "
        "image or clip as a part ({\"type\": \"image\", \"image\": \"1.png\"}, {\"type\": \"video\", \"video\": "
        "\"clip.mp4\"}), or read the file as `format sharegpt` (placeholders plus `images` / `videos` lists).",
        "row 2 of chats.jsonl has `{\"type\": \"text\", \"text\": \"<image>What is shown?\"}`",
        "error[VT441]: line 2 of chats.jsonl: the text holds `<image>`, which the `messages` format does not turn "
        "into an image (it would be trained as literal text)\n"
        " --> data/chats.jsonl:2\n"
        "  = help: give the image as a part: {\"type\": \"image\", \"image\": \"1.png\"}, or write `format "
        "sharegpt` after `from` if the row's `images` list holds the images"),
    _situation(
        "VT442", "error", "placeholders and images differ",
        "A row has a different number of `<image>` placeholders in its text than images in its `images` list, or "
        "of `<video>` placeholders than clips in its `videos` list (LLaMA-Factory and ms-swift refuse such rows "
        "too). Each placeholder becomes the next image (clip) of the list, at its place in the text; a row with no "
        "placeholder at all gets its images, then its clips, at the start of the first user turn.",
        "a ShareGPT row with two `<image>` markers and one image",
        "error[VT442]: line 4 of chats.json has 2 <image> placeholders but 1 image\n"
        " --> data/chats.json:4\n"
        "  = help: write one <image> in the text for each path in `images` (or remove the extra placeholders)"),
    _situation(
        "VT443", "error", "unknown role",
        "A turn's role (`role` or `from`) is not one vtc trains: system, user (human) or assistant (gpt). Tool "
        "and function turns (function_call, observation, tool) are not trained by vtc yet.",
        "a ShareGPT row with `{\"from\": \"function_call\", \"value\": ...}`",
        "error[VT443]: line 3 of chats.json: unknown role `function_call`\n"
        " --> data/chats.json:3\n"
        "  = help: the roles are system, user (human) and assistant (gpt); vtc does not train tool calls: leave "
        "such rows out"),
    _situation(
        "VT444", "error", "conversation ends with the user",
        "A conversation whose last turn is the user's: there is no answer after it to learn. End every row with "
        "the assistant's answer.",
        "a row whose conversations end with a `human` turn",
        "error[VT444]: line 7 of chats.json: the conversation ends with the user, so it has no answer to learn\n"
        " --> data/chats.json:7\n"
        "  = help: end the conversation with the assistant's answer, or remove the last user turn"),
    _situation(
        "VT445", "error", "image URL",
        "A row names its image by a URL (http://, https://). vtc downloads nothing while it reads data: the run "
        "must be repeatable and work offline. Download the images into the data folder and give their paths.",
        "`\"images\": [\"https://example.org/1.png\"]`",
        "error[VT445]: line 2 of chats.jsonl names an image by URL: https://example.org/1.png\n"
        " --> data/chats.jsonl:2\n"
        "  = help: download the image into the data folder and give its path (relative to the data file)"),
    _situation(
        "VT446", "error", "empty turn",
        "A turn with no text and no image. Fill it in or remove the turn (an empty answer is VT412).",
        "a ShareGPT row with `{\"from\": \"human\", \"value\": \"\"}`",
        "error[VT446]: line 5 of chats.json: turn 1 (user) is empty\n"
        " --> data/chats.json:5\n"
        "  = help: write the turn's text, or remove the turn"),
    _situation(
        "VT447", "error", "data file beside image folders",
        "A folder given to `from` holds a data file (.json or .jsonl) beside image folders, and vtc cannot read it "
        "as a conversation file (or finds several and cannot tell which one). vtc does not fall back to reading "
        "the image folders as classes, which would make a folder's name every answer.",
        "`from ./data` where data/ holds notes.json (rows of another shape) and images/",
        "error[VT447]: data holds notes.json beside image folders, and notes.json is not a conversation file vtc "
        "reads (sharegpt, llava, prompt_completion, messages)\n"
        " --> data/notes.json\n"
        "  = help: name the data file in `from` (from ./data/notes.json) with its `format`, or move it out if the "
        "sub-folders are classes"),
    _situation(
        "VT448", "error", "dataset_info.json does not name one file",
        "LLaMA-Factory's dataset_info.json in the data folder names several datasets (vtc cannot tell which one to "
        "read), names a file that is not there, or cannot be read as JSON.",
        "`from ./data` where data/dataset_info.json names `mllm_demo` and `mllm_video`",
        "error[VT448]: data/dataset_info.json names 2 datasets (mllm_demo, mllm_video)\n"
        " --> data/dataset_info.json\n"
        "  = help: name the data file in `from`: from ./data/mllm_demo.json"),
    _situation(
        "VT449", "error", "row not in the pinned format",
        "`format ...` pins a data file's format, and a row does not have that format's shape (for example a "
        "`format llava` row without `conversations`), or the folder `from` names holds no conversation file at all "
        "(class folders, an imagefolder, parquet files), so the pin would be ignored. Fix the row, name the data "
        "file in `from`, or pin the right format (or leave `format` out to detect it).",
        "`from ./chats.json format llava` on a row with `messages`",
        "error[VT449]: line 2 of chats.json is not a llava row: it has messages, images\n"
        " --> data/chats.json:2\n"
        "  = help: a llava row has `image` and `conversations` (from/value); write `format sharegpt` for this file, "
        "or leave `format` out to detect it"),
    # --- VT450-VT459: clips (video files, frame folders, cine DICOM, TIFF stacks; vtc.runtime.video) ---------------
    _situation(
        "VT450", "error", "unreadable or truncated clip",
        "A clip that cannot be decoded: a video file that is empty, truncated (cut short by a copy), corrupt, or not "
        "a video at all; a file with no video stream; a suffix that is not a video format vtc reads (mp4, webm, mov, "
        "avi, mkv, m4v; or a folder of frames, a cine DICOM, a multi-page TIFF). Export or copy the clip again, or "
        "remove the row (`bad rows skip` leaves such rows out and lists them).",
        "row 3 of metadata.jsonl lists `echo3.mp4`, whose copy was cut short",
        "error[VT450]: cannot read clip echo3.mp4: truncated or corrupt after frame 12 (not a video file, or a "
        "truncated or corrupt one (FFmpeg cannot decode it))\n"
        " --> echo/metadata.jsonl:3\n"
        "  = help: export or copy the clip again (the copy may have been cut short), or remove the row"),
    _situation(
        "VT451", "error", "video needs PyAV",
        "The data holds video files, and reading them needs PyAV (the FFmpeg decoder Unsloth's collator also "
        "uses), an optional extra that is not installed. Frame folders, cine DICOM and TIFF stacks do not need it.",
        "`vtc check --data` on a folder of .mp4 clips, on a machine without PyAV",
        "error[VT451]: echo1.mp4 is a video file, and reading video needs PyAV, which is not installed\n"
        " --> echo/metadata.jsonl:2\n"
        "  = help: install the video extra: pip install 'vtc[video]' (it adds PyAV, the FFmpeg decoder), then "
        "check again"),
    _situation(
        "VT452", "error", "clip without frames",
        "A clip with no frames: a video stream that decodes to nothing, a DICOM or TIFF with zero frames, a frame "
        "folder that holds no image files, an empty frame list.",
        "row 4 of metadata.jsonl names the folder `loop4/`, which is empty",
        "error[VT452]: clip loop4/ has no frames: the folder holds no image files\n"
        " --> scope/metadata.jsonl:4\n"
        "  = help: put the frames (PNG or JPEG, named in order: frame_000.png, frame_001.png, ...) in the folder, "
        "or remove the row"),
    _situation(
        "VT453", "error", "clip shorter than one sample",
        "A clip (within the window, if the recipe has one) so short that the chosen rate takes less than one frame "
        "of it: its seconds x `video N fps` is under 1. Sample faster, widen the window, or remove the row.",
        "`video 1 fps` and a clip of 0.4 s",
        "error[VT453]: clip blink.mp4 is shorter than one sample: 0.4 s x 1 fps = 0.4 frames\n"
        " --> eyes/metadata.jsonl:7\n"
        "  = help: sample faster (`video 3 fps` takes one frame of it), widen the window, or remove the row"),
    _situation(
        "VT454", "error", "window outside the clip",
        "The recipe's `video ... between A and B seconds` window lies outside a clip: the clip ends before the "
        "window starts. A clip without frame timing (a frame folder, a TIFF stack) lasts its frames / fps.",
        "`video between 10 and 20 seconds` and a clip of 4 s",
        "error[VT454]: clip loop2.mp4: the window starts at 10 s but the clip lasts 4 s\n"
        " --> echo/metadata.jsonl:2\n"
        "  = help: the clip lasts 4 s: change `between ... seconds` in the recipe's `video` line to fit every "
        "clip, or remove the row"),
    _situation(
        "VT455", "warning", "clip far longer than the cap",
        "A clip that, at the chosen rate, would give more than twice `at most N frames`: vtc still reads it, at a "
        "lower rate (N frames spread over the whole clip), so fast motion may fall between the frames it keeps. "
        "Cut the clip, choose a window, or raise the cap.",
        "`video 2 fps, at most 16 frames` and a clip of 60 s",
        "warning[VT455]: clip surgery1.mp4 lasts 60 s: at 2 fps that is 120 frames, over 2 x the cap of 16; it is "
        "sampled at 0.27 fps instead of 2\n"
        " --> surgery/metadata.jsonl:2\n"
        "  = help: cut the clip into shorter ones, or choose the part that matters (`between A and B seconds`), "
        "or raise `at most N frames` if memory allows"),
    _situation(
        "VT456", "error", "frames of different sizes",
        "A frame folder (or frame list) whose frames do not all have the size of the first: a clip is one size "
        "throughout. The message names the first odd frame and both sizes.",
        "a folder `loop1/` whose frame_007.png is 640 x 480 px among 512 x 512 px frames",
        "error[VT456]: clip loop1/: frame frame_007.png (frame 8) is 640 x 480 px, but the first frame, "
        "frame_000.png, is 512 x 512 px\n"
        " --> scope/metadata.jsonl:2\n"
        "  = help: give every frame of a clip the same size (export them again, or crop / pad the odd ones), or "
        "remove the frame from the folder"),
    _situation(
        "VT457", "warning", "clip over max length",
        "A clip whose video tokens alone exceed `max length`: ceil(frames / 2) x (height / 28) x (width / 28) for "
        "Qwen-VL (two frames merged in time, 28 x 28 px a token). Such a row is cut, and the answer with it.",
        "`max length 1024` and `video 2 fps, at most 16 frames, frame size 336` on a 10 s clip",
        "warning[VT457]: clip echo1.mp4: 16 frames of 336 x 252 px are 1,152 video tokens, over `max length "
        "1024`: the row will be cut\n"
        " --> echo/metadata.jsonl:2\n"
        "  = help: fewer frames (`video at most N frames`, or a lower fps), smaller frames (`frame size N`), or a "
        "larger `max length`"),
    _situation(
        "VT458", "error", "video for a family without video",
        "A row with a clip, for a model whose family reads images only (Llama 3.2 Vision, Pixtral, Gemma 3). The "
        "message names the families that read video (Qwen2-VL, Qwen2.5-VL).",
        "`finetune on llama-3.2-11b-vision` with data whose rows have videos",
        "error[VT458]: this row has a video clip, but the model's family (Llama 3.2 Vision) reads images only, not video\n"
        " --> echo/metadata.jsonl:2\n"
        "  = help: train a model of a family that reads video (Qwen2-VL, Qwen2.5-VL), or remove the clips from "
        "the data"),
    # --- VT460-VT464: clips in data sources (vtc.runtime.sources) -------------------------------------------------
    _situation(
        "VT460", "error", "datasets Video feature",
        "A `datasets` dataset (saved with save_to_disk, parquet written by `datasets`, or from the Hub) whose clips "
        "are stored as `datasets`' own Video feature, which `datasets` decodes with torchcodec. vtc reads clips "
        "from files: a column of video file (or frame folder) paths -- `video`, `videos`, `video_path` or `clip` "
        "-- is read, the Video feature is not.",
        "a saved dataset whose `video` column was cast to datasets.Video()",
        "error[VT460]: the column `video` of a dataset saved with `datasets` (echo) is a `datasets` Video feature, "
        "which vtc does not read (`datasets` decodes it with torchcodec)\n"
        " --> echo\n"
        "  = help: store the clips as files in the data folder and give their paths in a `video` column (a .jsonl, "
        ".csv or parquet file of rows), then check again"),
    # --- VT5xx: model and runtime -------------------------------------------------------------------------------
    _situation(
        "VT501", "error", "model not found",
        "The model folder after `on` does not exist, or the name is not one of vtc's tiny models.",
        "`finetune all on ./my-model` with no `my-model/` folder",
        "error[VT501]: model folder not found: ./my-model\n"
        " --> xray.vt\n"
        "  = help: check the path after `on` in `finetune ... on <model>`"),
    _situation(
        "VT502", "error", "not a vision-language model",
        "The model folder is not a Hugging Face vision-language model: it has no config.json (or one that cannot "
        "be read), or its `model_type` is a text-only model. Also: the tiny model cannot be written into the "
        "cache folder.",
        "`finetune all on ./gpt2` where the folder holds a text-only model",
        "error[VT502]: ./gpt2 is not a vision-language model (its config.json says model_type `gpt2`, a text-only "
        "model with no vision part)\n"
        " --> gpt2/config.json\n"
        "  = help: fine-tune a vision-language model (e.g. qwen2.5-vl, llama-3.2-vision) or a folder holding one"),
    _situation(
        "VT503", "error", "model cannot be downloaded",
        "A Hub model that is not in the local Hugging Face cache and cannot be downloaded: the Hub cannot be reached "
        "(no network, no DNS, a proxy in the way, or HF_HUB_OFFLINE set), or it has no such model; or the tiny "
        "model cannot be built because torchvision does not import. vtc asks the Hub once, with a short timeout, "
        "before transformers does, so that an unreachable Hub is this one error within seconds, without the "
        "libraries' retry lines; a model already in the cache is then loaded from it, with a note.",
        "`vtc run` of a recipe on `qwen2.5-vl` on a machine without a network and with an empty cache",
        "error[VT503]: model unsloth/Qwen2.5-VL-7B-Instruct is not in the local Hugging Face cache and the Hugging "
        "Face Hub cannot be reached: the name huggingface.co does not resolve (no network, or no DNS: [Errno -2] "
        "Name or service not known)\n"
        " --> xray.vt\n"
        "  = help: on a machine with a network, download it (`hf download unsloth/Qwen2.5-VL-7B-Instruct "
        "--local-dir Qwen2.5-VL-7B-Instruct`), copy the folder here and write `finetune ... on "
        "./Qwen2.5-VL-7B-Instruct`; or point HF_HOME at a Hugging Face cache that holds it; behind a proxy, set "
        "HTTPS_PROXY"),
    _situation(
        "VT504", "error", "qlora cannot run here",
        "`using qlora` loads the model in 4 bit, which needs a CUDA GPU and the bitsandbytes package. On a CPU, "
        "write `using lora`.",
        "`vtc run` of a recipe `using qlora` on a machine without a GPU",
        "error[VT504]: `using qlora` loads the model in 4 bit, which needs a CUDA GPU, and none was found\n"
        " --> xray.vt:2:7\n"
        "  = help: write `using lora` in the recipe to train in full precision on this machine"),
    _situation(
        "VT505", "error", "backend cannot run here",
        "The backend asked for cannot run here: unsloth without a CUDA GPU or not installed, the training "
        "libraries missing, an unknown backend name, or a precision in the plan that the backend does not know.",
        "`vtc run xray.vt --backend unsloth` on a machine without a GPU",
        "error[VT505]: the unsloth backend needs a CUDA GPU, and none was found\n"
        "  = help: run without `--backend unsloth` (or with `--backend transformers`) to train on this machine"),
    _situation(
        "VT506", "error", "parts match no layer",
        "The parts chosen for LoRA (or for full fine-tuning) match no layer of the model that was loaded, so "
        "nothing would train: the model's layers are named otherwise than vtc expects for its family. Choose "
        "other parts in `finetune ...`, or report the model.",
        "a local model whose layer names differ from those of the family its config.json names",
        "error[VT506]: the parts chosen for LoRA match no layer of this model (./my-model)\n"
        " --> xray.vt:1\n"
        "  = help: choose other parts in `finetune ...` (vision, language, attention, mlp)"),
    _situation(
        "VT507", "error", "model needs its own code",
        "The model needs to run its own Python code, downloaded with it (trust_remote_code), and the recipe does "
        "not allow that. Only if you trust the model's authors: add `with trust_remote_code` (then VT263 warns "
        "about it); otherwise choose a model that transformers supports natively.",
        "a local model whose config.json has an `auto_map` for a model type transformers does not know",
        "error[VT507]: model ./custom needs to run its own Python code, downloaded with it (trust_remote_code), "
        "and the recipe does not allow that\n"
        " --> xray.vt\n"
        "  = help: only if you trust the model's authors: add `with trust_remote_code` to the recipe (vtc check and "
        "vtc explain will then warn about it); otherwise choose a model that transformers supports natively"),
    _situation(
        "VT508", "error", "plan file allows remote code",
        "A plan read from a file (a saved plan, a run's plan.json for `--resume` or `vtc ask`) lets the model run "
        "its own Python code (trust_remote_code). A plan file is easy to edit, and that code runs with your rights "
        "and your tokens, so the command line must allow it too: add `--trust-remote-code`, only if you trust the "
        "model's authors and whoever wrote the plan. A recipe's `with trust_remote_code` needs no flag (VT263 warns "
        "about it). When allowed, the run's first lines name where the code comes from.",
        "`vtc run plan.json` where the plan says \"trust_remote_code\": true",
        "error[VT508]: plan.json lets the model run its own Python code (trust_remote_code), from the folder "
        "/home/me/models/custom; a plan file alone cannot allow that\n"
        " --> plan.json\n"
        "  = help: only if you trust the model's authors and whoever wrote this plan: add `--trust-remote-code` "
        "(`vtc run plan.json --trust-remote-code`); otherwise make the plan again from a recipe without "
        "`with trust_remote_code`"),
    _situation(
        "VT509", "error", "the model's own code failed",
        "With `with trust_remote_code`, the model's own Python code (shipped with the model, not with vtc) raised "
        "an error while loading, preparing batches or training. Check that the model's files are complete and "
        "written for the installed transformers, ask its authors, or choose a model that transformers supports "
        "natively. VTC_DEBUG=1 prints the traceback.",
        "a local model folder whose modeling_custom.py raises ImportError on import",
        "error[VT509]: the model's own Python code (trust_remote_code, from the folder /home/me/models/custom) "
        "failed while loading the model: ImportError: cannot import name 'FlashAttn' from 'flash_attn'\n"
        " --> xray.vt\n"
        "  = help: this code comes with the model, not with vtc: check that the model's files are complete and "
        "written for the installed transformers (5.17.0), ask the model's authors, or choose a model that "
        "transformers supports natively (then remove `with trust_remote_code`); VTC_DEBUG=1 shows the traceback"),
    _situation(
        "VT510", "error", "not a plan of this version",
        "A plan file that is missing, not a regular file (a FIFO, a device), larger than 16 MB, cannot be read as "
        "JSON (or holds a number out of range: NaN, Infinity, a whole number of more than 18 digits), is not a vtc "
        "plan, is of another plan_version, or lacks fields. Make it again with `vtc plan recipe.vt -o plan.json`.",
        "`vtc run notes.json` on a JSON file that is not a plan",
        "error[VT510]: notes.json is not a vtc plan (it has no plan_version)\n"
        " --> notes.json\n"
        "  = help: create one with `vtc plan recipe.vt -o plan.json`, or run the recipe itself"),
    _situation(
        "VT511", "error", "no finished run",
        "`vtc ask`: the run folder is missing, unfinished (`.partial`), failed (`.failed`), or has no saved model. "
        "Give a finished `run-NNN` folder (or the folder that holds them: the newest is used).",
        "`vtc ask runs/xray/run-007 scan.png` where run-007 does not exist",
        "error[VT511]: run folder not found: runs/xray/run-007\n"
        " --> runs/xray/run-007\n"
        "  = help: give a folder that `vtc run` printed at its end, e.g. runs/demo-shapes/run-001"),
    _situation(
        "VT512", "error", "image to ask about missing",
        "`vtc ask`: the image does not exist, or the folder given holds no images.",
        "`vtc ask runs/xray/run-001 scan.png` where scan.png does not exist",
        "error[VT512]: image not found: scan.png\n"
        " --> scan.png\n"
        "  = help: check the path of the image"),
    _situation(
        "VT513", "error", "answers file not .csv or .jsonl",
        "`vtc ask -o FILE`: the answers are written as CSV or JSONL, chosen by the file's extension.",
        "`vtc ask runs/xray/run-001 scans/ -o answers.txt`",
        "error[VT513]: cannot write answers to answers.txt: the file must end in .jsonl or .csv\n"
        "  = help: e.g. `-o answers.csv` or `-o answers.jsonl`"),
    _situation(
        "VT514", "error", "invalid value in a plan",
        "A plan file whose values break the plan's schema or the rules between its fields, each reported with its "
        "JSON pointer at its line: the plan was edited by hand or made by another tool. Make it again from its "
        "recipe with `vtc plan recipe.vt -o plan.json`, or run the recipe itself.",
        "`vtc run plan.json` after `\"method\": \"lora\"` was changed to `\"method\": \"sideways\"` in it",
        "error[VT514]: /method must be one of \"qlora\", \"lora\", \"full\", not \"sideways\"\n"
        " --> plan.json:80\n"
        "  = help: this plan was edited by hand or made by another tool; make the plan again from its recipe: "
        "`vtc plan recipe.vt -o plan.json` (or run the recipe itself)"),
    _situation(
        "VT520", "error", "out of GPU memory",
        "Training or evaluation ran out of GPU memory; the message says what filled it (image tokens, rows at a "
        "time, the estimate) and the help what to change: fewer rows at a time for the same batch (`micro batch`), "
        "a smaller `resize`, or `using qlora`. When vtc chose the micro-batch itself, it first tries once more with "
        "half of it (VT540); this is what a second failure, a failure later in the run, or one with a pinned "
        "`micro batch` says. The run folder is kept as `.failed`; with a checkpoint it can be resumed.",
        "`batch 8` and `micro batch 8` with `resize 1000` on a 24 GB GPU",
        "error[VT520]: out of GPU memory while training: each image is 1296 image tokens (1008x1008), 8 rows at a "
        "time (batch 8), about 31.2 GiB estimated\n"
        " --> xray.vt\n"
        "  = help: try fewer rows at a time for the same batch of 8 (`micro batch 4`), or smaller images "
        "(`resize 728`), or 4-bit training (`using qlora`)"),
    _situation(
        "VT522", "error", "disk full",
        "The disk filled up while the run was saving. Free space (or put runs on a bigger disk with "
        "`--runs-dir`), then continue with `vtc run --resume`.",
        "the disk fills up while the adapter is saved",
        "error[VT522]: the disk is full: could not write to runs/xray/run-003.failed while saving the results "
        "(0.0 GiB free there now)\n"
        " --> runs/xray/run-003.failed\n"
        "  = help: free some space (or put runs on a bigger disk with `--runs-dir`); then run the recipe again"),
    _situation(
        "VT530", "error", "saved plan out of date",
        "A plan saved with `vtc plan -o` whose recipe, data or model changed since it was made: it would no longer "
        "run what was reviewed. Also a plan with no `inputs` section (saved with `--json >`, or the section "
        "removed): nothing can be compared. Make the plan again, or run it anyway with `--allow-changed`.",
        "`vtc run plan.json` after editing the recipe it was made from",
        "error[VT530]: plan.json no longer matches its inputs: the recipe changed (xray.vt)\n"
        " --> plan.json\n"
        "  = help: make the plan again (`vtc plan xray.vt -o plan.json`) and review it, or run this one anyway "
        "with `vtc run plan.json --allow-changed`"),
    _situation(
        "VT531", "error", "run cannot be resumed",
        "`vtc run --resume` of a folder that is not a resumable run: missing, not a run folder, finished already, "
        "damaged, or still running.",
        "`vtc run --resume runs/xray/run-002` of a finished run",
        "error[VT531]: run-002 finished already; there is nothing to resume\n"
        " --> runs/xray/run-002\n"
        "  = help: use it (`vtc ask runs/xray/run-002 <image>`), or start a new run with `vtc run`"),
    _situation(
        "VT532", "error", "inputs changed since the run started",
        "`vtc run --resume` of a run whose data or model changed since it started: resuming would mix two "
        "trainings. Start a new run, or resume anyway with `--allow-changed`.",
        "`vtc run --resume runs/xray/run-003.interrupted` after adding rows to the data",
        "error[VT532]: cannot resume run-003.interrupted: the data changed since the run started (its content "
        "fingerprint differs)\n"
        " --> runs/xray/run-003.interrupted\n"
        "  = help: resuming with other inputs would mix two trainings; start a new run, or resume anyway with "
        "`vtc run --resume runs/xray/run-003.interrupted --allow-changed`"),
    _situation(
        "VT533", "warning", "lock pins nothing for a Hub input",
        "`vtc lock` records a Hub model's or dataset's revision from the local Hugging Face cache (it never goes "
        "online); one that is not cached yet is written as \"revision\": \"unresolved\", which pins nothing: a "
        "later run cannot tell whether the Hub changed it. Download it first, then lock again.",
        "`vtc lock xray.vt` before the model was ever downloaded",
        "warning[VT533]: the lock pins no revision of model unsloth/Qwen2.5-VL-7B-Instruct: it is not in the local "
        "Hugging Face cache, so the lock says \"revision\": \"unresolved\" and a later run cannot tell whether "
        "the Hub changed it\n"
        " --> xray.vt:1\n"
        "  = help: download it first (`vtc run` does, or `hf download unsloth/Qwen2.5-VL-7B-Instruct`), then run "
        "`vtc lock` again"),
    _situation(
        "VT537", "error", "runs folder refused",
        "`vtc run`: the folder that run folders go into (the plan's `save to`, or `--runs-dir`) is the file "
        "system's root, a system folder or below one, your home folder itself, a file, or a folder that holds "
        "other files and no run folder: the rule of VT265, checked again when the run starts, because a plan file "
        "or `--runs-dir` never went through `vtc check`. Give a folder of their own.",
        "`vtc run xray.vt --runs-dir /etc`",
        "error[VT537]: run folders cannot go into /etc (--runs-dir /etc): it is a system folder (/etc)\n"
        " --> /etc\n"
        "  = help: give a folder of their own: `--runs-dir ./runs/xray` (an empty or new folder, or one that "
        "already holds run-NNN folders)"),
    _situation(
        "VT538", "error", "run folder cannot be written",
        "The file system refuses a write into the runs folder or the run folder (read-only, not allowed, or a "
        "folder on the way is a file or was removed): checked before the model loads, and reported with the file "
        "and the reason if it happens later. The run folder, if there is one, is marked failed. Also `vtc lock -o` "
        "to a file that cannot be written.",
        "the runs folder's disk is remounted read-only while the model loads",
        "error[VT538]: cannot write /data/runs/xray while creating the run folder: Read-only file system\n"
        " --> /data/runs/xray\n"
        "  = help: make the folder writable again (or put runs elsewhere with `--runs-dir`); then run the recipe "
        "again"),
    _situation(
        "VT539", "error", "checkpoint cannot be read",
        "`vtc run --resume`: the checkpoint the run continues from cannot be read back (a file cut short, damaged "
        "or replaced: torch refuses anything but tensors, so a planted pickle is refused here too). Delete that "
        "checkpoint's folder and resume again: vtc keeps the checkpoint before it, and trains from the start "
        "without one. The run folder is marked failed again.",
        "`vtc run --resume runs/xray/run-003.interrupted` whose checkpoint-40/optimizer.pt was cut short",
        "error[VT539]: the checkpoint runs/xray/run-003.failed/checkpoints/checkpoint-40 cannot be read back: "
        "UnpicklingError: invalid load key, 'x'.\n"
        " --> runs/xray/run-003.failed/checkpoints/checkpoint-40\n"
        "  = help: it is damaged (a disk error, a copy cut short, an edit): delete the folder "
        "runs/xray/run-003.failed/checkpoints/checkpoint-40, then resume again with `vtc run --resume "
        "runs/xray/run-003.failed` (from the checkpoint before it, which vtc keeps for this, or from the start when "
        "there is none)"),
    _situation(
        "VT540", "warning", "micro-batch too large for the memory",
        "The rows that go through the GPU at once (the micro-batch) did not fit, or may not. When vtc chose the "
        "micro-batch and training runs out of memory in its first three steps (before any checkpoint), it trains "
        "again from the start, once, with half the micro-batch and twice the accumulation: the same examples per "
        "update, the same result. The run's manifest.json records it (\"batch\": \"retry\"). Before the model "
        "loads, the same code warns when the estimate of a pinned `micro batch` (or of the smallest micro-batch, "
        "when none fits) is more than the free memory less the safety margin; the run tries anyway.",
        "`batch 8` on a 24 GB GPU where 8 rows at a time run out of memory at the first step",
        "warning[VT540]: out of memory at the first training step with 8 rows at a time: training again from the "
        "start with 4 rows at a time, 2 passes an update (still 8 samples per update)\n"
        " --> xray.vt:15\n"
        "  = help: to start with this split next time, write `micro batch 4`"),
    _situation(
        "VT541", "error", "run records no batch split",
        "`vtc run --resume`: the run's manifest.json does not say how the batch was split into micro-batches, or "
        "says something that does not add up to the plan's batch. A checkpoint's place in the data depends on that "
        "split, so the run cannot continue with another; start a new run.",
        "`vtc run --resume runs/xray/run-003.interrupted` whose manifest.json was edited",
        "error[VT541]: cannot resume run-003.interrupted: its manifest.json does not record how the batch was split "
        "(no \"batch\" with whole numbers batch, micro_batch, accumulate and processes)\n"
        " --> runs/xray/run-003.interrupted/manifest.json\n"
        "  = help: a checkpoint's data order depends on how its batch was split, so resuming needs the split the run "
        "started with; start a new run (`vtc run` with the recipe) instead"),
    _situation(
        "VT542", "error", "data-loading worker stopped",
        "The batches are opened, decoded and collated ahead of the step in data-loading worker processes (the "
        "plan's training.data_loading: 4 on a GPU, none on a CPU). One of them ended without a Python error: killed "
        "by the system (Linux's out-of-memory killer when the machine's memory runs out), a bus error (the shared "
        "memory it hands batches over through, /dev/shm, is full: a container's default is small), or a crash in a "
        "library that decodes images. A Python error in a worker is not this code: it stops the run with the same "
        "diagnostic it gives without workers. Free memory, give the container more shared memory, or make the "
        "batches in the training process (workers 0 in a saved plan).",
        "`vtc run xray.vt` on a GPU machine whose memory runs out while the workers prepare batches",
        "error[VT542]: a data-loading worker process stopped while training: killed by signal: Killed (Linux's "
        "out-of-memory killer ends processes this way: the machine's memory ran out)\n"
        " --> xray.vt\n"
        "  = help: free memory on this machine, or make the batches in the training process: save the plan (`vtc "
        "plan recipe.vt -o plan.json`), set training.data_loading.workers to 0 in it (\"gpu\" and \"cpu\"), and run "
        "`vtc run plan.json`"),
    _situation(
        "VT543", "warning", "GPU waited for data",
        "Said at the end of a GPU run: in its steady-state steps the trainer waited longer than 5% of the time for "
        "its next batches, so the GPU sat idle while images were opened, decoded and prepared (run summary's "
        "\"data\" line; manifest.json's throughput.data_wait_share). Smaller images make each batch cheaper; on a "
        "machine with more CPU cores, more data-loading workers help.",
        "`vtc run scans.vt` with 2000 x 2000 px DICOM images on a GPU machine with 4 CPU cores",
        "warning[VT543]: the GPU waited for its data 38% of the time (steps 3-200; 4 data-loading workers, 4 CPU "
        "cores): the images could not be opened and prepared as fast as it trained\n"
        "  = help: smaller images make each batch cheaper (a smaller `resize`, or the images stored at about that "
        "size); on a machine with more CPU cores, more workers help: save the plan (`vtc plan recipe.vt -o "
        "plan.json`), raise training.data_loading.workers.gpu in it, and run `vtc run plan.json`"),
    _situation(
        "VT536", "error", "answers file cannot be written",
        "`vtc ask -o FILE`: the answers file cannot be created (its folder does not exist, or is not writable). "
        "It is opened before the model loads, so nothing is computed for nothing.",
        "`vtc ask runs/xray/run-001 scans/ -o results/answers.csv` where results/ does not exist",
        "error[VT536]: cannot write answers to results/answers.csv: No such file or directory\n"
        " --> results/answers.csv\n"
        "  = help: give a file in a folder that exists and that you can write to, e.g. `-o answers.csv`"),
    _situation(
        "VT544", "warning", "compile cache cannot be used",
        "The Unsloth backend keeps the code it compiles (Unsloth's generated modules, torch.compile's and Triton's "
        "caches) in vtc's cache folder, `<cache>/compile/<key>` (docs/gpu.md, \"Warm start\"), so that the next "
        "run starts its first step sooner. That folder cannot be made or written here (a read-only or full disk, "
        "a file where a folder should be): this run compiles into a temporary folder removed at exit (never into "
        "the working folder), and the next run compiles again. Training is not affected.",
        "`vtc run` on a GPU machine whose home folder is read-only",
        "warning[VT544]: cannot use the compile cache folder ~/.cache/vtc/compile/4ffb4f89c5891f49 (Read-only file "
        "system): compiled code goes to a temporary folder this run, so the next run compiles again\n"
        " --> /root/.cache/vtc/compile/4ffb4f89c5891f49\n"
        "  = help: make the folder writable (or free space on its disk), or set VTC_CACHE to a writable folder"),
    _situation(
        "VT545", "warning", "compile cache folder not private",
        "The compile cache folder (`<cache>/compile`, or one key folder in it) belongs to another user or can be "
        "written by other users. Compiled code found there is loaded and run by the training process, so vtc does "
        "not use a folder that someone else could have put code into: this run compiles into a temporary folder "
        "(the next run compiles again). vtc makes these folders for you alone (mode 0700); remove the folder and it "
        "is made again that way.",
        "`chmod 777 ~/.cache/vtc/compile`, then `vtc run` on a GPU machine",
        "warning[VT545]: the compile cache folder ~/.cache/vtc/compile is not private (others can write into it): "
        "compiled code found there would run in the training process, so vtc does not use it and compiles into a "
        "temporary folder this run\n"
        " --> /root/.cache/vtc/compile\n"
        "  = help: delete ~/.cache/vtc/compile so that vtc makes it again as yours alone, or set VTC_CACHE to a "
        "folder of your own"),
    _situation(
        "VT546", "error", "processes see different data",
        "Under torchrun (`torchrun --nproc-per-node N -m vtc run`, or `vtc run --gpus N`), every process trains its "
        "share of one list of rows, so every process must read the same rows: rank 0 checks the data first, then "
        "each process compares the number of its rows and a digest of their keys (data file, row, pages) with "
        "rank 0's. One of them differs: a machine of a run over several sees other files at the data's path (no "
        "shared file system, an older copy, a missing folder). Until vtc trained across processes, this code "
        "refused to run under torchrun with several processes.",
        "`vtc run xray.vt --nodes 2 ...` where the second machine has an older copy of ./xrays",
        "error[VT546]: the processes do not see the same data: rank 1 (host gpu-02, local rank 0, pid 4711) read 412 "
        "training and 46 evaluation rows (digest 3f0c5e1a9b2d7c44), rank 0 (gpu-01) 418 and 46 (digest "
        "9d1e0b7f55a2c3e8)\n"
        "  = help: every machine must see the same data files at the same path (a shared file system, or identical "
        "copies); compare the folder on each machine, then run again"),
    _situation(
        "VT547", "error", "a process of the run failed",
        "Under torchrun, the processes of a run work in step: each training step ends with every process's "
        "gradients summed, and the processes agree after each step whether to stop. One of them failed (its own "
        "error: out of memory, a bug), was killed (the machine's out-of-memory killer, the job scheduler, `kill "
        "-9`), or stopped answering (a hung GPU, a lost machine or network, a paused process): the others' next "
        "collective operation fails at once, or after the plan's hardware.distributed.timeout_s (600 s unless a "
        "saved plan says otherwise). Rank 0 then finds out which process it was (each records its error where the "
        "others can read it; a process gone or paused on the same machine is seen at once; one that does not "
        "answer within a few seconds is named as such), marks the run folder failed, and says so. The run resumes "
        "from its last checkpoint with `vtc run --resume`, with the same or another number of processes.",
        "`torchrun --nproc-per-node 2 -m vtc run xray.vt` where process 1 is killed by the out-of-memory killer",
        "error[VT547]: a process of the run stopped while training, after step 40, which every process finished: "
        "rank 1 (host gpu-01, local rank 1, pid 4711): killed: its process no longer exists\n"
        "  = help: a process killed without a message is most often the machine's out-of-memory killer (`dmesg` "
        "says so) or the job scheduler; look at that machine; then continue from its checkpoint at step 40 with "
        "`vtc run --resume runs/xray/run-003.failed`"),
    _situation(
        "VT548", "error", "batch does not divide over the processes",
        "The recipe's `batch` (samples per update) is split evenly over the run's processes (torchrun's world size), "
        "each process taking the same share in micro-batches: a batch the number of processes does not divide "
        "cannot be split. Write a batch that it divides, or run a number of processes that divides the batch. "
        "A recipe's `gpus N` is checked when the recipe is compiled; this is the check for the number torchrun "
        "started.",
        "`batch 6` run with `torchrun --nproc-per-node 4 -m vtc run xray.vt`",
        "error[VT548]: the batch of 6 samples per update cannot be split evenly over the 4 processes of this run "
        "(each process takes the same share)\n"
        " --> xray.vt:12\n"
        "  = help: write `batch 4` or `batch 8` in the recipe, or run 2, 3 or 6 processes"),
    _situation(
        "VT549", "error", "rank 0 did not start in time",
        "Under torchrun, the first process (rank 0) checks the data, fills the image cache, loads the model and "
        "creates the run folder while the other processes wait, for at most the plan's "
        "hardware.distributed.startup_timeout_s (an hour unless a saved plan says otherwise). This process waited "
        "that long without an answer: rank 0 is stuck, or its machine is gone. When rank 0 stops with a message "
        "(bad data, a missing model), the others stop at once with it, quietly; this code is only for the silence.",
        "a run over two machines whose first machine hangs while reading a network file system",
        "error[VT549]: rank 1 (gpu-02): waited 3600 s for rank 0 (gpu-01) to check the data, without an answer "
        "(DistStoreError: wait timeout after 3600000ms)\n"
        "  = help: rank 0 is stuck or its machine is gone: look at its output (the first machine's); a data check "
        "that needs longer (a first scan of very many images) needs a larger hardware.distributed.startup_timeout_s "
        "in a saved plan (`vtc plan recipe.vt -o plan.json`)"),
    # --- `vtc run --gpus`: the launcher (vtc.runtime.launch) ---
    _situation(
        "VT557", "error", "a process of the run died",
        "`vtc run --gpus N` (or `--nodes`) started the run's processes through torchrun, and one of them ended "
        "without a diagnostic of its own: killed by a signal, or failed with an unexpected error. The others were "
        "stopped (each had up to hardware.distributed.timeout_s to save its checkpoint). The message names the "
        "process (its rank over all machines, its local rank, the host) and what ended it: SIGKILL most often means "
        "the machine ran out of memory (the kernel's out-of-memory killer) or the job scheduler or an administrator "
        "killed it; SIGSEGV or SIGBUS too little shared memory (/dev/shm) or a GPU driver problem. The launcher's "
        "log and the processes' error files are kept in the folder named. Fix the cause, then `vtc run --resume` "
        "the run folder.",
        "`vtc run xray.vt --gpus 2` on a machine whose memory runs out in process 1",
        "error[VT557]: rank 1 (local rank 1, host gpu-07) was ended by SIGKILL: most often the machine ran out of "
        "memory (the kernel's out-of-memory killer: `dmesg` or `journalctl -k` says so), or the job scheduler or an "
        "administrator killed it (a time or memory limit)\n"
        " --> /tmp/vtc-launch-k2j4x9\n"
        "  = help: give the run more memory (fewer data-loading workers or processes per machine, a machine with "
        "more RAM, a larger job memory limit), then continue it with `vtc run --resume RUN_FOLDER` (the folder rank "
        "0 named; it keeps the last checkpoint) and the same launch options; the launcher's log and the processes' "
        "error files are in /tmp/vtc-launch-k2j4x9"),
    _situation(
        "VT558", "error", "launch options",
        "The options of `vtc run` that start several processes do not go together, or ask for GPUs this machine "
        "does not have: `--gpus` takes a number from 1 or `all` (one process per visible GPU; without CUDA a number "
        "starts that many CPU processes, for testing); `--gpus all` needs a CUDA GPU; a number may not exceed the "
        "GPUs torch can see (CUDA_VISIBLE_DEVICES limits them); several machines need `--nodes N`, this machine's "
        "`--node-rank` (0 to N-1) and `--master ADDR:PORT` (node rank 0's address and a free port) on every "
        "machine. The recipe's `gpus` is checked the same way when `--gpus` is not given.",
        "`vtc run xray.vt --gpus 8` on a machine with 4 GPUs",
        "error[VT558]: `--gpus 8`, but this machine has 4 GPUs that torch can see\n"
        "  = help: `--gpus 4` or `--gpus all` here (one process per GPU); CUDA_VISIBLE_DEVICES, when set, limits "
        "which GPUs are visible"),
    _situation(
        "VT559", "error", "processes could not start",
        "torchrun's rendezvous failed: the processes could not be started, or the machines of a run over several "
        "(`--nodes`) did not meet at `--master ADDR:PORT`. The machine with `--node-rank 0` serves that address "
        "(its port must be free there and reachable from the others: a firewall, a wrong address); every other "
        "machine connects to it, and all must be started within hardware.distributed.startup_timeout_s of each "
        "other. Nothing was trained and no run folder was made.",
        "`vtc run xray.vt --nodes 2 --node-rank 1 --master 10.0.0.1:29500` while the first machine was never started",
        "error[VT559]: the 2 machines did not meet at 10.0.0.1:29500 (this one is node rank 1): The client socket "
        "has timed out after 3600000ms while trying to connect to (10.0.0.1, 29500).\n"
        " --> /tmp/vtc-launch-3hd81q\n"
        "  = help: the machine with `--node-rank 0` must be started with the same `--master` and reachable from "
        "here (`nc -z ADDR PORT`); every machine must be started within 3600 s of the first "
        "(hardware.distributed.startup_timeout_s); the launcher's log is in /tmp/vtc-launch-3hd81q"),
    _situation(
        "VT560", "warning", "launch options under torchrun",
        "`vtc run` was started by torchrun (or another launcher: WORLD_SIZE and RANK are set) and was also given "
        "`--gpus`, `--nodes`, `--node-rank` or `--master`. torchrun has already started the processes: its own "
        "options (`--nproc-per-node`, `--nnodes`, `--node-rank`, `--rdzv-endpoint`) decide how many run, and vtc's "
        "are ignored.",
        "`torchrun --nproc-per-node 2 -m vtc run xray.vt --gpus 4`",
        "warning[VT560]: --gpus ignored: torchrun (or another launcher) started this process, and its own options "
        "decide how many processes run\n"
        "  = help: give the counts to torchrun (`--nproc-per-node`, `--nnodes`, `--node-rank`), or run `vtc run "
        "--gpus N` without torchrun"),
    _situation(
        "VT554", "error", "shard model with the unsloth backend",
        "The recipe says `shard model` (plan hardware.distributed.strategy \"fsdp2\"): the model is split across "
        "the GPUs by the transformers backend (FSDP2 through accelerate). Unsloth cannot split a vision model "
        "across GPUs (each process holds it whole), so `--backend unsloth` is refused; `--backend auto` takes "
        "transformers and says why in the log.",
        "`vtc run --backend unsloth xray.vt` with `gpus 4` and `shard model` in the recipe",
        "error[VT554]: the recipe says `shard model`, and the unsloth backend cannot split a model across GPUs: "
        "Unsloth holds the whole model on each GPU\n"
        " --> xray.vt:5:7\n"
        "  = help: run without `--backend unsloth` (vtc then takes the transformers backend, which shards it), or "
        "remove `shard model` from the recipe if the model fits one GPU"),
    _situation(
        "VT561", "error", "not a run folder",
        "`vtc report` reads a run folder that `vtc run` made (runs/<recipe>/run-NNN, or one ending in .failed or "
        ".interrupted): it needs the folder's plan.json and manifest.json. The folder given does not exist, is a "
        "file, or has neither of them (a recipe's folder, the runs folder itself, a copy without those files).",
        "`vtc report runs/demo-shapes` (the folder of all the recipe's runs, not one run)",
        "error[VT561]: runs/demo-shapes is not a run folder: it has no plan.json and no manifest.json\n"
        " --> runs/demo-shapes\n"
        "  = help: give a folder that `vtc run` made (runs/<recipe>/run-NNN, also .failed or .interrupted ones)"),
    _situation(
        "VT562", "error", "cannot write the report",
        "`vtc report` could not write report.html into the run folder, or the review file given with `--review`: "
        "the folder does not exist, or the file system refuses the write (permissions, a read-only copy, a full "
        "disk).",
        "`vtc report runs/demo-shapes/run-001 --review /no/such/folder/review.csv`",
        "error[VT562]: cannot write /no/such/folder/review.csv: No such file or directory\n"
        " --> /no/such/folder/review.csv\n"
        "  = help: give a file in a folder that exists and that you can write to (`--review review.csv`)"),
    _situation(
        "VT563", "error", "no evaluation rows to review",
        "`vtc report --review` writes the worst evaluation rows for an expert to correct, and this run has none: "
        "its recipe had no evaluation data (`holdout` or `evaluate on`), or the run stopped before the fine-tuned "
        "model was evaluated (no predictions.jsonl). The report itself is still written.",
        "`vtc report runs/xray/run-002.interrupted --review review.csv`",
        "error[VT563]: runs/xray/run-002.interrupted has no evaluation rows (no predictions.jsonl): nothing to "
        "review\n"
        " --> runs/xray/run-002.interrupted/predictions.jsonl\n"
        "  = help: the run needs evaluation data (`holdout 10%` or `evaluate on <folder>`) and must have finished; "
        "`vtc run --resume` finishes an interrupted one"),
    _situation(
        "VT564", "error", "max length shortens the answer",
        "A row whose tokens (its text, its image tokens and its answer) exceed the max length, so that the cut falls "
        "inside its answer: the model would learn the answer's first part and never to end it (its end-of-turn "
        "token is cut too). `vtc check --data` (when the model's processor is on this machine) and the start of "
        "`vtc run` find such rows before any training; `vtc preview` shows where the cut falls. Raise `max "
        "length`, use a smaller `resize` (fewer image tokens), or shorten the answer.",
        "a row of 60 tokens whose answer ends at token 59, with `max length 58`",
        "error[VT564]: shapes/train/metadata.jsonl:1: 60 tokens (42 text + 18 image) exceed the max length 58, "
        "which cuts the last 1 of the answer's 2 tokens: the model would learn a cut answer and never to end it\n"
        " --> shapes/train/metadata.jsonl:1\n"
        "  = help: raise `max length` to at least 60, use a smaller `resize` (fewer image tokens), or shorten the "
        "answer"),
    _situation(
        "VT565", "error", "a row would train on no token",
        "Under `with responses_only` only the answer after the model's response marker is trained; when the "
        "marker's tokens do not occur in a row as the chat template writes it (a template that writes the turns "
        "otherwise, a marker edited in a plan file), every label of the row is masked and the row teaches nothing, "
        "silently. Found per row by `vtc check --data` (when the model's processor is on this machine) and at the "
        "start of `vtc run`, before training. `vtc preview` shows the row as the model sees it.",
        "a plan file whose response marker was edited to `<|im_start|>assistant\\nA`",
        "error[VT565]: shapes/train/metadata.jsonl:1: this row would train on 0 tokens: under `with "
        "responses_only` only the answer after the response marker '<|im_start|>assistant\\nA' is trained, and "
        "the marker's tokens do not occur in the row as the chat template writes it\n"
        " --> shapes/train/metadata.jsonl:1\n"
        "  = help: `vtc preview` shows the row as the model sees it; write `without responses_only` to train on "
        "the whole text, or use a model whose chat template writes the family's markers (`vtc plan` shows them)"),
    _situation(
        "VT574", "error", "not in a git repository",
        "`vtc diff` was given a git revision (`HEAD~1 recipe.vt`, `main:recipe.vt`), and it reads revisions with "
        "git: the current folder must be inside the recipe's git repository, and git must be installed. Outside "
        "one, compare two files (`git show` the old one into a file first).",
        "`vtc diff HEAD~1:recipe.vt recipe.vt` in a folder that is not a git repository",
        "error[VT574]: cannot read HEAD~1:recipe.vt: /home/me/recipes is not inside a git repository\n"
        " --> HEAD~1:recipe.vt\n"
        "  = help: run `vtc diff` inside the recipe's repository, or compare two files"),
    _situation(
        "VT575", "error", "unknown git revision",
        "The revision given to `vtc diff` (before the `:` of `REV:path`, or alone before a file) names no commit of "
        "this repository: a branch, tag or commit that does not exist here (not fetched yet, or misspelt), or "
        "`HEAD~5` in a repository of three commits. A revision that starts with `-` is refused (git would read it "
        "as an option).",
        "`vtc diff mian:recipe.vt recipe.vt` (for `main`)",
        "error[VT575]: unknown git revision `mian`\n"
        " --> mian:recipe.vt\n"
        "  = help: name a commit, a branch or a tag that this repository has (`git log --oneline` lists the "
        "commits)"),
    _situation(
        "VT576", "error", "file not in that revision",
        "`vtc diff REV:path` (or `vtc diff REV file`) names a file that the revision does not have: it was added "
        "after that commit, renamed, or the path is written from the wrong folder (in `REV:path` the path is "
        "relative to the repository's top unless it starts with `./`; `vtc diff REV file` takes it from the "
        "current folder, as `git diff` does). Also when the path there is a folder, a link or too large a file, "
        "or lies outside the repository.",
        "`vtc diff HEAD~1:xray.vt recipes/xray.vt`, the file being recipes/xray.vt",
        "error[VT576]: HEAD~1:xray.vt: there is no file xray.vt in HEAD~1\n"
        " --> HEAD~1:xray.vt\n"
        "  = help: `git ls-tree -r --name-only HEAD~1` lists its files; a path in `REV:path` is relative to the "
        "repository's top (or to this folder when it starts with ./)"),
    _situation(
        "VT577", "error", "a revision without a file",
        "`vtc diff REV FILE` compares FILE as the revision has it with FILE now; here the second argument is not a "
        "file either (another revision, or `REV:path` after a revision alone), so there is no file to compare. "
        "Name the file, in one of the forms git uses.",
        "`vtc diff HEAD~1 main`",
        "error[VT577]: `HEAD~1` is a git revision, and `main` is not a file to compare\n"
        " --> HEAD~1\n"
        "  = help: name the file: `vtc diff HEAD~1 recipe.vt`, or `vtc diff HEAD~1:recipe.vt main:recipe.vt`"),
    _situation(
        "VT578", "warning", "a run folder file unreadable",
        "`vtc diff` of two run folders reads each one's manifest.json (library versions, the model's revision, the "
        "data's fingerprint) and eval.json (the metrics before and after), and one of them is there but cannot be "
        "read: not JSON (cut short by a full disk, edited by hand), not a regular file, or too large. The diff "
        "leaves out what the file holds and says so; the plans are still compared.",
        "a run folder whose eval.json was cut short",
        "warning[VT578]: cannot read runs/x/run-002/eval.json: Expecting value: line 1 column 1 (char 0)\n"
        " --> runs/x/run-002/eval.json\n"
        "  = help: the diff leaves out what eval.json holds; `vtc report runs/x/run-002` reads the folder too"),
    _situation(
        "VT566", "error", "the language server is not installed",
        "`vtc lsp` (the language server that editors start for .vt files) needs pygls, which comes with the `lsp` "
        "extra and is not part of the compiler's three dependencies. Install it in the environment whose `vtc` the "
        "editor starts (docs/editors.md).",
        "`vtc lsp` where only `pip install vtc` was run",
        "error[VT566]: `vtc lsp` needs pygls, which is not installed here (No module named 'pygls')\n"
        "  = help: install the language server's extra: pip install 'vtc[lsp]' (in the environment whose `vtc` "
        "your editor starts)"),
    _situation(
        "VT567", "error", "the language server failed on a file",
        "Analysing the buffer raised inside vtc (a bug): the editor shows this on the file's first line instead of "
        "the server stopping, and the server goes on answering. `vtc check` on the saved file may say more; please "
        "report the recipe.",
        "a buffer that makes the compiler raise an exception (none is known)",
        "error[VT567]: vtc lsp could not analyse this file: RuntimeError: ...\n"
        " --> recipe.vt:1:1\n"
        "  = help: this is a bug in vtc; `vtc check` on the saved file may say more; please report it with the "
        "recipe"),
)


def title(code: str) -> str:
    """The short title of a code (``"VT409"`` -> ``"listed file missing"``); the code itself when unregistered."""
    entry = CODES.get(code)
    return entry.title if entry is not None else code
