import pytest
import spacy

from spacy_uniner.windows import doc_windows


def test_token_windows_cover_the_doc_with_overlap():
    doc = spacy.blank("en")(" ".join(f"w{i}" for i in range(100)))
    windows = doc_windows(doc, size=30, overlap=10)
    assert [(w.start, w.end) for w in windows] == [(0, 30), (20, 50), (40, 70), (60, 90), (80, 100)]


def test_short_and_empty_docs():
    nlp = spacy.blank("en")
    assert [(w.start, w.end) for w in doc_windows(nlp("a b c"), 30, 10)] == [(0, 3)]
    assert doc_windows(nlp(""), 30, 10) == []
    assert doc_windows(nlp("  \n\t "), 30, 10) == []


def test_sentence_windows_hold_whole_sentences_and_overlap_by_sentences():
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    doc = nlp("One two three. Four five six. Seven eight nine. Ten eleven twelve.")
    windows = doc_windows(doc, size=8, overlap=4)
    assert [w.text for w in windows] == [
        "One two three. Four five six.",
        "Four five six. Seven eight nine.",
        "Seven eight nine. Ten eleven twelve.",
    ]


def test_sentence_longer_than_window_is_cut():
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    doc = nlp(" ".join(f"w{i}" for i in range(25)) + ". Short one.")
    windows = doc_windows(doc, size=10, overlap=2)
    covered = set()
    for window in windows:
        assert len(window) <= 10
        covered.update(range(window.start, window.end))
    assert covered == set(range(len(doc)))


@pytest.mark.parametrize("size,overlap", [(0, 0), (10, 10), (10, -1)])
def test_bad_window_settings(size, overlap):
    with pytest.raises(ValueError, match="window_size"):
        doc_windows(spacy.blank("en")("a"), size, overlap)


def test_whitespace_only_windows_are_skipped():
    doc = spacy.blank("en")("a" + "\n\n\n \n" * 40 + "b")
    assert len(doc) == 3  # "a", one whitespace token, "b"
    windows = doc_windows(doc, size=1, overlap=0)
    assert [w.text.strip() for w in windows] == ["a", "b"]
