"""Mention scores from an answer's token log-probabilities."""
import math

import pytest

from spacy_uniner.scores import ScoredAnswer, within_label_margin

# '["Marie Curie", "Paris"]' as tokens: [" | "Marie | Curie | ", " | Paris | "] |
TOKENS = ['["', "Marie", " Curie", '", "', "Paris", '"]']
LOGPROBS = [math.log(0.9), math.log(0.5), math.log(0.8), math.log(0.6), math.log(0.7), math.log(0.95)]


def scored(tokens=TOKENS, logprobs=LOGPROBS) -> ScoredAnswer:
    ends, end = [], 0
    for token in tokens:
        end += len(token)
        ends.append(end)
    return ScoredAnswer("".join(tokens), ends, logprobs)


def test_a_mention_scores_the_tokens_of_its_quoted_string():
    marie, paris = scored().mention_scores(["Marie Curie", "Paris"])
    assert marie == pytest.approx(0.9 * 0.5 * 0.8 * 0.6)  # opening '["' to the closing quote in '", "'
    assert paris == pytest.approx(0.6 * 0.7 * 0.95)


def test_repeated_and_reordered_mentions_are_found():
    answer = scored(['["', "Rome", '", "', "Rome", '", "', "Oslo", '"]'], [math.log(p) for p in (0.9, 0.8, 0.5, 0.4, 0.5, 0.3, 0.9)])
    assert answer.mention_scores(["Oslo", "Rome"]) == pytest.approx([0.5 * 0.3 * 0.9, 0.9 * 0.8 * 0.5])


def test_escapes_and_unknown_spellings():
    answer = scored(['["', 'say \\"hi\\"', '"]'], [math.log(0.5), math.log(0.5), math.log(0.5)])
    assert answer.mention_scores(['say "hi"']) == pytest.approx([0.125])
    assert answer.mention_scores(["not there"]) == pytest.approx([0.125])  # the whole answer


def test_without_token_scores_every_mention_is_certain():
    assert ScoredAnswer('["Paris"]').mention_scores(["Paris"]) == [1.0]


def test_a_mention_keeps_the_labels_within_the_margin_of_its_best():
    mentions = [("Berlin", 0.9), ("Obama", 0.3), ("Berlin", 0.75), ("Berlin", 0.5), ("Obama", 0.3)]
    assert within_label_margin(mentions, 0.2) == [True, True, True, False, True]
    assert within_label_margin(mentions, 0.0) == [True, True, False, False, True]  # ties stay
    assert within_label_margin(mentions, 1.0) == [True] * 5
    assert within_label_margin([], 0.1) == []
