"""The evaluation answer-length cap (vtc.runtime.evaluate.answer_token_limit)."""

from vtc.runtime.evaluate import answer_token_limit


class WordTokenizer:
    """One token a word: enough to pin the arithmetic."""

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": text.split()}


class Processor:
    tokenizer = WordTokenizer()


def test_short_answers_cap_generation_at_twice_the_longest_plus_slack():
    assert answer_token_limit(Processor(), ["red", "dark blue"], 128) == 2 * 2 + 16


def test_long_answers_keep_the_plans_limit():
    assert answer_token_limit(Processor(), ["word " * 200], 128) == 128


def test_no_expected_answers_keep_the_plans_limit():
    assert answer_token_limit(Processor(), [], 64) == 64
