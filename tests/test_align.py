import spacy

from spacy_uniner.align import find_mention, mention_spans, resolve_ents


def test_all_occurrences_exact_case_first():
    text = "Apple sells apples. APPLE and Apple."
    assert find_mention(text, "Apple") == [(0, 5), (30, 35)]
    assert find_mention(text, "apple") == [(0, 5), (20, 25), (30, 35)]


def test_no_matches_inside_words_and_flexible_whitespace():
    assert find_mention("He said AI is here.", "AI") == [(8, 10)]
    assert find_mention("He said it.", "ai") == []
    assert find_mention("New\n  York is big", "New York") == [(0, 10)]
    assert find_mention("x", "   ") == []
    assert find_mention("C++ and C# (v2)", "C++") == [(0, 3)]
    assert find_mention("Use (v2) now", "(v2)") == [(4, 8)]


def test_spans_snap_to_tokens_and_keep_window_offsets():
    nlp = spacy.blank("en")
    doc = nlp("First part. Then Obama's speech in Paris.")
    window = doc[3:]
    spans = mention_spans(window, "Obam", "person")
    assert spans == []  # "Obam" ends inside a word
    spans = mention_spans(window, "Obama", "person")
    assert [(s.text, s.label_) for s in spans] == [("Obama", "person")]
    assert mention_spans(window, "First", "x") == []  # outside the window


def test_resolve_ents_longest_wins_and_existing_are_kept_unless_overwrite():
    nlp = spacy.blank("en")
    doc = nlp("New York City is in New York State")
    doc.ents = [doc.char_span(0, 8, label="GPE")]
    new = [doc[0:3], doc[0:2], doc[5:8], doc[5:7]]
    new = [doc.char_span(s.start_char, s.end_char, label="city") for s in new]
    kept = resolve_ents(doc, new, overwrite=False)
    assert [(e.text, e.label_) for e in kept] == [("New York", "GPE"), ("New York State", "city")]
    replaced = resolve_ents(doc, new, overwrite=True)
    assert [(e.text, e.label_) for e in replaced] == [("New York City", "city"), ("New York State", "city")]


def test_mentions_in_scripts_without_spaces_align_on_the_docs_tokens():
    nlp = spacy.blank("zh")  # one token a character
    for text, mention in [("我住在東京。", "東京"), ("在北京大学的学生", "北京大学"), ("私は東京に住んでいます。", "東京")]:
        doc = nlp(text)
        assert [s.text for s in mention_spans(doc[1:], mention, "location")] == [mention]
    # Without the doc's tokens, the old rule stands: no match starts between two word characters.
    assert find_mention("我住在東京。", "東京") == []
    assert find_mention("我住在東京。", "東京", frozenset({3, 5})) == [(3, 5)]
    # Spaces or not, a mention ending inside a token is not there.
    doc = spacy.blank("en")("He said it.")
    assert mention_spans(doc[:], "ai", "x") == []


def test_a_rejected_occurrence_does_not_hide_a_later_overlapping_one():
    assert find_mention("aaa aa", "aa") == [(4, 6)]
    assert find_mention("xab ab", "ab") == [(4, 6)]
