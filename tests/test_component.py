"""The component's behaviour, driven by a scripted model through the real pipe code."""
import json

import pytest
import spacy
from spacy import displacy
from spacy.tokens import Span
from spacy.training import Example

from spacy_uniner.component import UniNER
from spacy_uniner.display import label_color
from spacy_uniner.prompts import build_prompt

TEXT = "Barack Obama met Angela Merkel in Berlin. Obama likes Berlin."


def test_answers_become_ents_and_spans(scripted_nlp):
    nlp = scripted_nlp(
        {(TEXT, "person"): '["Barack Obama", "Angela Merkel", "Obama"]', (TEXT, "city"): '["Berlin"]'},
        labels=["person", "city"],
    )
    doc = nlp(TEXT)
    assert [(e.text, e.label_, e.start_char) for e in doc.ents] == [
        ("Barack Obama", "person", 0),
        ("Angela Merkel", "person", 17),
        ("Berlin", "city", 34),
        ("Obama", "person", 42),
        ("Berlin", "city", 54),
    ]
    # every candidate, overlaps included: "Obama" inside "Barack Obama" too
    assert [(s.text, s.label_) for s in doc.spans["uniner"]] == [
        ("Barack Obama", "person"),
        ("Obama", "person"),
        ("Angela Merkel", "person"),
        ("Berlin", "city"),
        ("Obama", "person"),
        ("Berlin", "city"),
    ]
    assert nlp.get_pipe("uniner").generator.calls == [[build_prompt(TEXT, "person"), build_prompt(TEXT, "city")]]


def test_open_labels_with_quotes_unicode_and_spaces(scripted_nlp):
    labels = ["programming language", 'the "odd" one', "Stadt \u00fcber alles"]
    text = "Ana wrote Rust in Z\u00fcrich."
    nlp = scripted_nlp(
        {(text, labels[0]): '["Rust"]', (text, labels[1]): '["Ana"]', (text, labels[2]): "['Z\u00fcrich']"},
        labels=labels,
    )
    doc = nlp(text)
    assert sorted((e.text, e.label_) for e in doc.ents) == [
        ("Ana", 'the "odd" one'), ("Rust", "programming language"), ("Z\u00fcrich", "Stadt \u00fcber alles"),
    ]


def test_pipe_asks_all_questions_of_a_batch_in_one_call(scripted_nlp):
    texts = [f"Text number {i} about Paris." for i in range(5)]
    nlp = scripted_nlp({(t, "city"): '["Paris"]' for t in texts}, labels=["city", "person"])
    docs = list(nlp.pipe(texts, batch_size=64))
    assert all([e.text for e in doc.ents] == ["Paris"] for doc in docs)
    calls = nlp.get_pipe("uniner").generator.calls
    assert len(calls) == 1 and len(calls[0]) == 10
    nlp.get_pipe("uniner").generator.calls.clear()
    list(nlp.pipe(texts, batch_size=2))
    assert [len(call) for call in calls] == [4, 4, 2]


def test_garbage_and_hallucinated_answers_are_counted_not_raised(scripted_nlp):
    text = "Paris is nice."
    nlp = scripted_nlp({(text, "city"): '["Paris", "Rome", 7]', (text, "person"): "no idea"}, labels=["city", "person"])
    doc = nlp(text)
    assert [e.text for e in doc.ents] == ["Paris"]
    stats = nlp.get_pipe("uniner").stats
    assert stats["queries"] == 2
    assert stats["malformed_answers"] == 1
    assert stats["dropped_items"] == 1
    assert stats["mentions"] == 2 and stats["mentions_not_in_text"] == 1


def test_case_insensitive_fallback_for_uncased_models(scripted_nlp):
    text = "Barack Obama visited BERLIN."
    nlp = scripted_nlp({(text, "person"): '["barack obama"]', (text, "city"): '["berlin"]'}, labels=["person", "city"])
    assert [(e.text, e.label_) for e in nlp(text).ents] == [("Barack Obama", "person"), ("BERLIN", "city")]


def test_empty_docs_ask_nothing(scripted_nlp):
    nlp = scripted_nlp({}, labels=["person"])
    for text in ["", "   ", "\n\n\t"]:
        doc = nlp(text)
        assert doc.ents == () and len(doc.spans["uniner"]) == 0
    assert all(call == [] for call in nlp.get_pipe("uniner").generator.calls)


def test_existing_ents_are_kept_unless_overwrite(scripted_nlp):
    text = "New York City is big."
    for overwrite, expected in [(False, [("New York", "GPE")]), (True, [("New York City", "city")])]:
        nlp = scripted_nlp({(text, "city"): '["New York City"]'}, labels=["city"], overwrite_ents=overwrite)
        doc = nlp.make_doc(text)
        doc.ents = [doc.char_span(0, 8, label="GPE")]
        doc = nlp.get_pipe("uniner")(doc)
        assert [(e.text, e.label_) for e in doc.ents] == expected
        assert [s.text for s in doc.spans["uniner"]] == ["New York City"]


def test_long_doc_windows_map_back_and_merge(scripted_nlp):
    words = [f"w{i}" for i in range(60)]
    words[5], words[25], words[26] = "Paris", "Lyon", "Nice"
    nlp = spacy.blank("en")
    doc = nlp(" ".join(words))
    windows = [doc[0:20], doc[15:35], doc[30:50], doc[45:60]]
    answers = {(w.text, "city"): '["Paris", "Lyon", "Nice"]' for w in windows}
    nlp = scripted_nlp(answers, labels=["city"], window_size=20, window_overlap=5)
    doc = nlp(" ".join(words))
    assert [(e.text, e.start) for e in doc.ents] == [("Paris", 5), ("Lyon", 25), ("Nice", 26)]
    assert len(doc.spans["uniner"]) == 3  # found in two windows each, kept once
    assert [p for p in nlp.get_pipe("uniner").generator.calls[0]] == [build_prompt(w.text, "city") for w in windows]


def test_huge_doc_runs_through_windows(scripted_nlp):
    sentence = "Marie Curie worked in Paris on radium. "
    text = sentence * (200_000 // len(sentence) + 1)
    nlp = scripted_nlp({}, labels=["person"])
    nlp.get_pipe("uniner").generator.generate = lambda prompts: ['["Marie Curie"]'] * len(prompts)
    doc = nlp(text)
    assert len(doc.text) >= 200_000
    assert len(doc.ents) == text.count("Marie Curie")


def test_score_gives_spacy_entity_scores(scripted_nlp):
    text = "Obama visited Paris and Rome."
    nlp = scripted_nlp({(text, "person"): '["Obama"]', (text, "city"): '["Paris", "visited"]'}, labels=["person", "city"])
    reference = nlp.make_doc(text)
    reference.ents = [
        reference.char_span(0, 5, label="person"),
        reference.char_span(14, 19, label="city"),
        reference.char_span(24, 28, label="city"),
    ]
    scores = nlp.evaluate([Example(nlp.make_doc(text), reference)])
    assert scores["ents_p"] == pytest.approx(2 / 3)
    assert scores["ents_r"] == pytest.approx(2 / 3)
    assert scores["ents_per_type"]["person"]["f"] == pytest.approx(1.0)
    assert scores["ents_per_type"]["city"]["p"] == pytest.approx(0.5)


@pytest.mark.parametrize(
    "labels,message",
    [
        ([], "'labels' must be a non-empty list"),
        ("person", "uniner -> labels"),  # spaCy's own config validation
        (["ok", 3], "'labels' must hold non-empty strings"),
        (["  "], "'labels' must hold non-empty strings"),
        (["person", "dis\nease"], r"'labels' holds 'dis\\nease', a control character '\\n': a label is one line of text"),
        (["drug\tname"], r"a control character '\\t'"),
    ],
)
def test_bad_labels_name_the_config_key(labels, message):
    nlp = spacy.blank("en")
    with pytest.raises(ValueError, match=message):
        nlp.add_pipe("uniner", config={"model": "unused", "labels": labels})


def test_labels_are_kept_stripped_and_once_each():
    nlp = spacy.blank("en")
    uniner = nlp.add_pipe("uniner", config={"model": "unused", "labels": [" person\n", "drug", "person", "\tdrug "]})
    assert uniner.labels == ["person", "drug"]


def test_bad_numbers_name_the_config_key():
    nlp = spacy.blank("en")
    with pytest.raises(ValueError, match="batch_size"):
        nlp.add_pipe("uniner", config={"model": {"name": "unused", "batch_size": 0}, "labels": ["x"]})
    with pytest.raises(ValueError, match="dtype"):
        nlp.add_pipe("uniner", config={"model": {"name": "unused", "dtype": "int3"}, "labels": ["x"]})
    with pytest.raises(ValueError, match="window_overlap"):
        nlp.add_pipe("uniner", config={"model": "unused", "labels": ["x"], "window_overlap": 999})


def test_displacy_colours_every_open_label(scripted_nlp):
    text = "Ada wrote Python code."
    labels = ["programming language", "computer scientist"]
    nlp = scripted_nlp({(text, labels[0]): '["Python"]', (text, labels[1]): '["Ada"]'}, labels=labels)
    html = displacy.render(nlp(text), style="ent")
    for label in labels:
        assert label_color(label) in html
        assert label in html
    assert label_color("computer scientist") == label_color("computer scientist")


def scored_nlp(scripted_nlp, **config):
    answers = {(TEXT, "person"): [("Barack Obama", 0.9), ("Angela Merkel", 0.4)], (TEXT, "city"): [("Berlin", 0.6), ("Obama", 0.2)]}
    return scripted_nlp(answers, labels=["person", "city"], **config)


def test_spans_and_ents_carry_their_scores(scripted_nlp):
    doc = scored_nlp(scripted_nlp)(TEXT)
    group = doc.spans["uniner"]
    assert [(s.text, s.label_) for s in group] == [("Barack Obama", "person"), ("Obama", "city"), ("Angela Merkel", "person"), ("Berlin", "city"), ("Obama", "city"), ("Berlin", "city")]
    assert group.attrs["scores"] == pytest.approx([0.9, 0.2, 0.4, 0.6, 0.2, 0.6])
    assert [(e.text, e.label_) for e in doc.ents] == [("Barack Obama", "person"), ("Angela Merkel", "person"), ("Berlin", "city"), ("Obama", "city"), ("Berlin", "city")]
    assert [e._.uniner_score for e in doc.ents] == pytest.approx([0.9, 0.4, 0.6, 0.2, 0.6])


def test_threshold_drops_low_spans_before_ents_and_changes_without_reload(scripted_nlp):
    nlp = scored_nlp(scripted_nlp, threshold=0.5)
    uniner = nlp.get_pipe("uniner")
    doc = nlp(TEXT)
    assert [(s.text, s.label_) for s in doc.spans["uniner"]] == [("Barack Obama", "person"), ("Berlin", "city"), ("Berlin", "city")]
    assert doc.spans["uniner"].attrs["scores"] == pytest.approx([0.9, 0.6, 0.6])
    assert [e.text for e in doc.ents] == ["Barack Obama", "Berlin", "Berlin"]
    uniner.threshold = 0.95
    assert nlp(TEXT).ents == ()
    uniner.threshold = 0.0
    assert len(nlp(TEXT).ents) == 5


def test_a_generator_without_scores_gives_every_span_one(scripted_nlp):
    nlp = scripted_nlp({(TEXT, "person"): '["Barack Obama"]'}, labels=["person"], threshold=0.99)
    doc = nlp(TEXT)
    assert doc.spans["uniner"].attrs["scores"] == [1.0] and doc.ents[0]._.uniner_score == 1.0


def test_a_span_found_under_two_labels_keeps_those_within_the_label_margin(scripted_nlp):
    answers = {(TEXT, "person"): [("Obama", 0.3), ("Angela Merkel", 0.9)], (TEXT, "city"): [("Berlin", 0.6), ("Obama", 0.7)]}
    nlp = scripted_nlp(answers, labels=["person", "city"], label_margin=0.2)
    doc = nlp(TEXT)
    assert {(s.text, s.label_) for s in doc.spans["uniner"]} == {("Angela Merkel", "person"), ("Berlin", "city"), ("Obama", "city")}
    assert [(e.text, e.label_, e._.uniner_score) for e in doc.ents if e.text == "Obama"] == [("Obama", "city", pytest.approx(0.7))] * 2
    nlp.get_pipe("uniner").label_margin = 1.0  # every label, as the paper counts
    doc = nlp(TEXT)
    assert {(s.text, s.label_) for s in doc.spans["uniner"] if s.text == "Obama"} == {("Obama", "person"), ("Obama", "city")}
    with pytest.raises(ValueError, match="label_margin"):
        nlp.get_pipe("uniner").label_margin = 2
    with pytest.raises(ValueError, match="label_margin"):
        spacy.blank("en").add_pipe("uniner", config={"model": "unused", "labels": ["x"], "label_margin": -0.5})


@pytest.mark.parametrize("threshold", [-0.1, 1.5, True, "high", None])
def test_bad_threshold_names_it(scripted_nlp, threshold):
    nlp = scored_nlp(scripted_nlp)
    with pytest.raises(ValueError, match="threshold"):
        nlp.get_pipe("uniner").threshold = threshold
    with pytest.raises(ValueError, match="threshold"):
        spacy.blank("en").add_pipe("uniner", config={"model": "unused", "labels": ["x"], "threshold": threshold})


def test_labels_and_texts_that_are_not_unicode_text_are_refused_and_leave_nothing_behind(scripted_nlp):
    from spacy_uniner import display

    nlp = scripted_nlp({}, ["person"])
    uniner = nlp.get_pipe("uniner")
    with pytest.raises(ValueError, match=r"'labels' holds 'per\\udc00son', not valid Unicode text: '\\udc00' at character 3 is a lone surrogate"):
        uniner.labels = ["per\udc00son"]
    assert uniner.labels == ["person"] and "per\udc00son" not in display.displacy_colors()
    with pytest.raises(ValueError, match="'labels' holds"):
        UniNER(nlp.vocab, uniner.generator, labels=["ok", "b\ud800d"])
    with pytest.raises(ValueError):  # spaCy's tokenizer refuses such a text before any component
        nlp("Marie \udc00Curie")
    doc = nlp.make_doc("Marie Curie")
    doc.ents = [Span(doc, 0, 2, label="person")]
    assert "Marie Curie" in spacy.displacy.render(doc, style="ent")


def test_the_labels_coloured_for_displacy_are_the_last_ones_set_and_bounded(scripted_nlp):
    from spacy_uniner import display

    uniner = scripted_nlp({}, ["person"]).get_pipe("uniner")
    for i in range(display.MAX_LABELS_IN_USE + 50):
        uniner.labels = [f"type {i}"]
    colors = display.displacy_colors()
    assert len(colors) == display.MAX_LABELS_IN_USE
    assert f"type {display.MAX_LABELS_IN_USE + 49}" in colors and "type 0" not in colors
    uniner.labels = ["type 60"]  # set again: the most recent once more
    for i in range(display.MAX_LABELS_IN_USE - 1):
        uniner.labels = [f"other {i}"]
    assert "type 60" in display.displacy_colors() and "type 61" not in display.displacy_colors()


def test_nlp_pipe_sends_a_failing_batch_to_the_pipelines_error_handler(scripted_nlp):
    nlp = scripted_nlp({}, labels=["city"])
    uniner = nlp.get_pipe("uniner")

    def unreachable(prompts):
        raise ConnectionError("the server at http://127.0.0.1:9/v1 did not answer")

    uniner.generator.generate = unreachable
    with pytest.raises(ConnectionError):
        list(nlp.pipe(["Paris.", "Rome."]))
    failed = []
    nlp.set_error_handler(lambda name, component, docs, error: failed.append((name, [d.text for d in docs], type(error))))
    assert list(nlp.pipe(["Paris.", "Rome.", "Oslo."], batch_size=2)) == []
    assert failed == [("uniner", ["Paris.", "Rome."], ConnectionError), ("uniner", ["Oslo."], ConnectionError)]
    nlp("Paris.")  # as in spaCy, a single doc goes through the handler of the pipeline's own call
    assert failed[-1] == ("uniner", ["Paris."], ConnectionError)


def test_spans_land_on_the_right_characters_in_german_chinese_and_russian(scripted_nlp):
    """Real non-English texts through the component, each in its language's own tokenizer, scored
    with the component's scorer."""
    for lang, text, answers in [
        ("de", "Angela Merkel wurde in Hamburg geboren und lebte lange in Berlin-Mitte.", {"person": '["Angela Merkel"]', "location": '["Hamburg", "Berlin-Mitte"]'}),
        ("zh", "居里夫人出生于华沙，后来在巴黎工作。", {"person": '["居里夫人"]', "location": '["华沙", "巴黎"]'}),
        ("ru", "Лев Толстой родился в Ясной Поляне, а умер в Астапове.", {"person": '["Лев Толстой"]', "location": '["Ясной Поляне", "Астапове"]'}),
    ]:
        nlp = scripted_nlp({(text, label): answer for label, answer in answers.items()}, labels=list(answers), lang=lang)
        doc = nlp(text)
        expected = sorted((text.index(m), text.index(m) + len(m), label) for label, answer in answers.items() for m in json.loads(answer))
        assert sorted((e.start_char, e.end_char, e.label_) for e in doc.ents) == expected, lang
        gold = nlp.make_doc(text)
        gold.ents = [gold.char_span(start, end, label=label) for start, end, label in expected[:-1]]
        scores = nlp.get_pipe("uniner").score([Example(doc, gold)])
        assert scores["ents_p"] == pytest.approx((len(expected) - 1) / len(expected)) and scores["ents_r"] == 1.0, lang


def test_other_pipelines_renders_keep_spacys_colours_while_labels_change_on_other_threads(scripted_nlp):
    """The colours feed every displaCy render of the process: a uniner label that names one of
    spaCy's own ("person" is PERSON to displaCy) leaves spaCy's colour alone, and labels set on
    other threads while a render reads them break nothing."""
    import threading

    doc = spacy.blank("en")("Marie Curie lived in Paris.")
    doc.ents = [doc.char_span(0, 11, label="PERSON"), doc.char_span(21, 26, label="GPE")]
    before = displacy.render(doc, style="ent")
    uniner = scripted_nlp({}, ["person", "gpe", "chemical element"]).get_pipe("uniner")
    assert displacy.render(doc, style="ent") == before
    stop = threading.Event()

    def relabel():
        i = 0
        while not stop.is_set():
            uniner.labels = [f"type {i}", f"type {i + 1}"]
            i += 1

    thread = threading.Thread(target=relabel)
    thread.start()
    try:
        for _ in range(300):
            displacy.render(doc, style="ent")
    finally:
        stop.set()
        thread.join()
