"""The paper's metric: parity with the paper's own evaluation files and hand-computed values."""
import json
from pathlib import Path

import pytest

from spacy_uniner.evaluate import normalize_mention, paper_parse, paper_scores
from spacy_uniner.evaluate.metrics import kept_by_query

PAPER_FILES = sorted((Path(__file__).parent.parent.parent / "shared" / "data" / "uniner_test_data").glob("*.json"))


@pytest.mark.skipif(not PAPER_FILES, reason="the mirror ../shared/data is not beside the project")
@pytest.mark.parametrize("path", PAPER_FILES, ids=lambda path: path.stem)
def test_gold_answers_as_predictions_score_100(path):
    golds = [record["conversations"][-1]["value"] for record in json.loads(path.read_text())]
    scores = paper_scores((gold, gold) for gold in golds)
    assert scores.gold > 100 and scores.correct == scores.predicted == scores.gold
    assert round(scores.f1, 6) == 1.0


def test_normalization_is_the_papers():
    assert normalize_mention("  The  Beatles. ") == "beatles"
    assert normalize_mention("A-B (an) Test's") == "ab tests"
    assert normalize_mention("Theory of everything") == "theory of everything"  # only whole-word articles


def test_hand_written_predictions_give_the_hand_computed_score():
    queries = [
        ('["barack obama", "London"]', '["Barack Obama", "Paris"]'),  # one right, one wrong
        ('["Beatles.", "beatles"]', '["The Beatles"]'),  # normalized to one string, right
        ('["x"]', "[]"),  # a mention where there is none
        ('The answer is ["New York"]', '["New York"]'),  # not at the start: read as []
        ('["GPU", 3]', '["GPU"]'),  # a non-string item: the whole answer is []
        ('["ab"]', '["A-B"]'),  # punctuation dropped on both sides: right
        ('["unclosed', '["Z"]'),  # malformed: []
        ('["a]b", "c"]', '["c"]'),  # the reference reads up to the first "]": malformed, []
    ]
    scores = paper_scores(queries)
    # correct 1 + 1 + 1; predicted 2 + 1 + 1 + 1; gold 2 + 1 + 1 + 1 + 1 + 1 + 1
    assert (scores.correct, scores.predicted, scores.gold) == (3, 5, 8)
    precision, recall = 3 / 5, 3 / 8
    assert scores.precision == pytest.approx(precision)
    assert scores.recall == pytest.approx(recall)
    assert scores.f1 == pytest.approx(2 * precision * recall / (precision + recall))


def test_parse_reads_only_a_leading_list():
    assert paper_parse('["A", "The A", "Apple", "apple."]') == ["", "apple"]  # articles alone normalize to ""
    assert paper_parse('[["Kobe", "city"]]') == []  # the first "]" ends the list: not JSON
    assert paper_parse("") == [] and paper_parse("[]") == [] and paper_parse(' ["x"]') == []


def test_kept_by_query_applies_the_threshold_then_the_label_margin_within_a_sentence():
    def record(sentence, entity_type, scored):
        return {"dataset": "d", "sentence": sentence, "type": entity_type, "parsed": [m for m, _ in scored], "scores": [s for _, s in scored], "gold": []}

    records = [
        record(1, "city", [("berlin", 0.9), ("paris", 0.1)]),
        record(1, "person", [("berlin", 0.4), ("obama", 0.8)]),
        record(2, "person", [("berlin", 0.4)]),  # another sentence: no rival there
    ]
    assert kept_by_query(records, 0.0) == [["berlin", "paris"], ["berlin", "obama"], ["berlin"]]
    assert kept_by_query(records, 0.0, 0.3) == [["berlin", "paris"], ["obama"], ["berlin"]]
    assert kept_by_query(records, 0.2, 0.5) == [["berlin"], ["berlin", "obama"], ["berlin"]]
    # A rival under the threshold does not count against the others.
    assert kept_by_query([record(1, "a", [("x", 0.1)]), record(1, "b", [("x", 0.05)])], 0.08, 0.0) == [["x"], []]
