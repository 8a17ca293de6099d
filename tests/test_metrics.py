"""The task metrics against values worked out by hand."""

import math

import pytest

from vtc.runtime import metrics as m


def test_levenshtein_known_distances():
    assert m.levenshtein("kitten", "sitting") == 3
    assert m.levenshtein("", "abc") == 3
    assert m.levenshtein("abc", "abc") == 0
    assert m.levenshtein("flaw", "lawn") == 2
    assert m.levenshtein(["a", "b"], ["b"]) == 1


def test_exact_match_normalises_case_and_space():
    assert m.exact_match(["  Red ", "blue", "Green  light"], ["red", "green", "green light"]) == pytest.approx(2 / 3)
    assert m.exact_match([], []) == 0.0


def test_cer_is_corpus_level():
    # 3 edits over 6 expected characters + 0 edits over 3.
    assert m.cer(["sitting", "abc"], ["kitten", "abc"]) == pytest.approx(3 / 9)
    assert m.cer(["", ""], ["", ""]) == 0.0
    assert m.cer(["x"], [""]) == 1.0
    # Case-sensitive by design (OCR).
    assert m.cer(["ABC"], ["abc"]) == 1.0


def test_wer():
    # one substitution and one deletion over 4 words
    assert m.wer(["the cat sat"], ["the dog sat down"]) == pytest.approx(2 / 4)
    assert m.wer(["a b", "c"], ["a b", "c"]) == 0.0


def test_field_accuracy_json_and_key_value_lines():
    ref = '{"name": "Ada", "year": 1843, "city": "London"}'
    assert m.field_accuracy_row('{"name": "ada", "year": 1843, "city": "Paris"}', ref) == pytest.approx(2 / 3)
    # A JSON number and the same number written as text are the same value.
    assert m.field_accuracy_row("name: Ada\nyear: 1843\ncity: London", ref) == 1.0
    assert m.field_accuracy_row("name: ADA\ncity:  london", "name: Ada\ncity: London\nzip: 1") == pytest.approx(2 / 3)
    assert m.field_accuracy_row("no fields here", "name: Ada") == 0.0
    # An answer without fields is one field: the whole answer.
    assert m.field_accuracy_row("Red", "red") == 1.0
    assert m.field_accuracy(["a: 1\nb: 2", "x"], ["a: 1\nb: 3", "x"]) == pytest.approx((0.5 + 1.0) / 2)


def test_parse_fields_shapes():
    assert m.parse_fields('{"A": "B"}') == {"a": "b"}
    assert m.parse_fields("Key : Value\n\nk2: v2") == {"key": "value", "k2": "v2"}
    assert m.parse_fields("just a sentence") is None
    assert m.parse_fields("[1, 2]") is None


def test_bleu_known_values():
    assert m.bleu(["the cat sat on the mat"], ["the cat sat on the mat"]) == pytest.approx(1.0)
    # precisions 1, 1, (0+1)/(0+1), (0+1)/(0+1); brevity penalty exp(1 - 3/2)
    assert m.bleu(["the cat"], ["the cat sat"]) == pytest.approx(math.exp(-0.5))
    # p1 = 4/5; smoothed p2 = 4/5, p3 = 3/4, p4 = 2/3; equal lengths so no penalty
    expected = (0.8 * 0.8 * 0.75 * (2 / 3)) ** 0.25
    assert m.bleu(["a b c d e"], ["a b c d f"]) == pytest.approx(expected)
    assert m.bleu(["x y"], ["a b"]) == 0.0
    assert m.bleu([""], ["a"]) == 0.0


def test_bleu_sums_counts_over_the_corpus():
    # Two rows: the counts add up before the precisions are taken (not a mean of per-row scores).
    corpus = m.bleu(["a b", "c d e f"], ["a b", "c d e g"])
    # p1 = 5/6, p2 = (3+1)/(4+1), p3 = (1+1)/(2+1), p4 = (0+1)/(1+1); lengths equal
    expected = (5 / 6 * 0.8 * (2 / 3) * 0.5) ** 0.25
    assert corpus == pytest.approx(expected)


def test_compute_and_row_scores():
    out = m.compute(["exact_match", "cer"], ["red", "blu"], ["red", "blue"])
    assert list(out) == ["exact_match", "cer"]
    assert out["exact_match"] == 0.5
    assert out["cer"] == pytest.approx(1 / 7)
    assert m.row_scores(["exact_match"], "Red", "red") == {"exact_match": 1.0}
    with pytest.raises(ValueError):
        m.compute(["accuracy"], ["a"], ["a"])
    with pytest.raises(ValueError):
        m.exact_match(["a"], [])
