"""Task metrics, pure Python: exact match, character and word error rate, field accuracy, BLEU-4.

Every metric takes the model's answers and the expected answers (two equal-length lists of strings) and returns
one number for the whole evaluation set. ``row_scores`` gives the per-row value that predictions.jsonl records.

Normalisation: exact match and field accuracy compare answers after stripping, case-folding and collapsing runs of
white space ("  Red " equals "red"). CER and WER compare stripped text and are case-sensitive, the usual convention
for OCR and transcription; BLEU compares case-folded word tokens.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from typing import Callable, Sequence

# Higher is better for these; lower is better for the error rates. The before/after table uses this.
HIGHER_IS_BETTER = {"exact_match": True, "field_accuracy": True, "bleu": True, "cer": False, "wer": False}


def normalise(text: str) -> str:
    """Strip, case-fold and collapse white space."""
    return " ".join(str(text).split()).casefold()


def levenshtein(a: Sequence, b: Sequence) -> int:
    """Edit distance (insertions, deletions, substitutions all cost 1) between two sequences."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def exact_match(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Share of answers equal to the expected one after normalisation."""
    _check(predictions, references)
    if not references:
        return 0.0
    return sum(normalise(p) == normalise(r) for p, r in zip(predictions, references)) / len(references)


def cer(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Character error rate over the corpus: total edits / total expected characters (can exceed 1)."""
    _check(predictions, references)
    edits = sum(levenshtein(p.strip(), r.strip()) for p, r in zip(predictions, references))
    total = sum(len(r.strip()) for r in references)
    return _rate(edits, total, predictions)


def wer(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Word error rate over the corpus: total word edits / total expected words (can exceed 1)."""
    _check(predictions, references)
    edits = sum(levenshtein(p.split(), r.split()) for p, r in zip(predictions, references))
    total = sum(len(r.split()) for r in references)
    return _rate(edits, total, predictions)


def _rate(edits: int, total: int, predictions: Sequence[str]) -> float:
    if total == 0:
        # Every expected answer is empty: perfect when every answer is empty too.
        return 0.0 if all(not p.strip() for p in predictions) else 1.0
    return edits / total


_KEY_VALUE = re.compile(r"^\s*([^:]+?)\s*:\s*(.*?)\s*$")


def parse_fields(text: str) -> dict[str, str] | None:
    """Fields of an answer: a JSON object, or ``key: value`` lines. None when the text has neither shape.

    Keys and values are normalised; nested JSON values are compared by their canonical JSON text.
    """
    text = text.strip()
    if text.startswith("{"):
        try:
            obj = json.loads(text)
        except ValueError:
            obj = None
        if isinstance(obj, dict):
            return {
                normalise(k): normalise(v if isinstance(v, str) else json.dumps(v, sort_keys=True))
                for k, v in obj.items()
            }
    fields = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        m = _KEY_VALUE.match(line)
        if not m:
            return None
        fields[normalise(m.group(1))] = normalise(m.group(2))
    return fields or None


def field_accuracy_row(prediction: str, reference: str) -> float:
    """Share of the expected fields that the answer gives with the same value.

    An expected answer without fields counts as one field: the whole (normalised) answer.
    """
    expected = parse_fields(reference)
    if expected is None:
        return float(normalise(prediction) == normalise(reference))
    got = parse_fields(prediction) or {}
    return sum(got.get(k) == v for k, v in expected.items()) / len(expected)


def field_accuracy(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Mean over rows of the share of fields answered correctly (JSON objects or ``key: value`` lines)."""
    _check(predictions, references)
    if not references:
        return 0.0
    return sum(field_accuracy_row(p, r) for p, r in zip(predictions, references)) / len(references)


def _ngrams(tokens: Sequence[str], n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def bleu(predictions: Sequence[str], references: Sequence[str], max_n: int = 4) -> float:
    """Corpus BLEU-4 (one reference per answer) with add-one smoothing of the 2- to 4-gram precisions.

    Clipped n-gram matches and candidate n-gram counts are summed over the corpus (Papineni et al. 2002); the
    brevity penalty uses the total lengths. Add-one smoothing (Lin and Och 2004) keeps short answers from scoring 0
    only because they have no 4-gram; the unigram precision is not smoothed, so unrelated answers score 0.
    """
    _check(predictions, references)
    matches = [0] * max_n
    totals = [0] * max_n
    hyp_len = ref_len = 0
    for p, r in zip(predictions, references):
        hyp, ref = normalise(p).split(), normalise(r).split()
        hyp_len += len(hyp)
        ref_len += len(ref)
        for n in range(1, max_n + 1):
            h, g = _ngrams(hyp, n), _ngrams(ref, n)
            matches[n - 1] += sum(min(c, g[k]) for k, c in h.items())
            totals[n - 1] += max(len(hyp) - n + 1, 0)
    if hyp_len == 0 or matches[0] == 0:
        return 0.0
    log_precision = math.log(matches[0] / totals[0])
    for n in range(1, max_n):
        log_precision += math.log((matches[n] + 1) / (totals[n] + 1))
    brevity = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
    return brevity * math.exp(log_precision / max_n)


METRICS: dict[str, Callable[[Sequence[str], Sequence[str]], float]] = {
    "exact_match": exact_match,
    "cer": cer,
    "wer": wer,
    "field_accuracy": field_accuracy,
    "bleu": bleu,
}


def compute(names: Sequence[str], predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Every named metric over the whole set, in the order given."""
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric {unknown[0]!r}; known: {', '.join(METRICS)}")
    return {name: METRICS[name](predictions, references) for name in names}


def row_scores(names: Sequence[str], prediction: str, reference: str) -> dict[str, float]:
    """Each named metric for one answer alone (for predictions.jsonl)."""
    return {name: METRICS[name]([prediction], [reference]) for name in names}


def _check(predictions: Sequence[str], references: Sequence[str]) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} answers for {len(references)} expected answers")
