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
