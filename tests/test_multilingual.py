"""Real German, Chinese and Russian texts through the default student (`make run`'s training/uniner)
with its own settings, each in its language's spaCy tokenizer: every span lands on the characters
of its mention, and the component's scorer works in each language. `pytest -s` prints the spans
(docs/component.md#other-languages-and-scripts)."""
from pathlib import Path

import pytest
import spacy
from spacy.training import Example

DEFAULT_STUDENT = Path(__file__).resolve().parent.parent / "training" / "uniner"
P, C, E = "person", "city", "chemical element"
TEXTS = {
    "de": ("Marie Curie wurde in Warschau geboren und entdeckte mit Pierre Curie in Paris das Polonium.", [("Marie Curie", P), ("Warschau", C), ("Pierre Curie", P), ("Paris", C), ("Polonium", E)]),
    "zh": ("居里夫人出生于华沙，后来在巴黎发现了钋和镭，并获得了诺贝尔奖。", [("居里夫人", P), ("华沙", C), ("巴黎", C), ("钋", E), ("镭", E)]),
    "ru": ("Мария Кюри родилась в Варшаве, а в Париже вместе с Пьером Кюри открыла полоний.", [("Мария Кюри", P), ("Варшаве", C), ("Париже", C), ("Пьером Кюри", P), ("полоний", E)]),
}


@pytest.mark.slow
@pytest.mark.skipif(not DEFAULT_STUDENT.exists(), reason="needs the default student: `make run` trains it into training/uniner")
@pytest.mark.parametrize("lang", list(TEXTS))
def test_the_default_student_finds_mentions_on_their_characters_in_other_languages(lang):
    student = spacy.load(DEFAULT_STUDENT)
    uniner = student.get_pipe("uniner")
    nlp = spacy.blank(lang)
    model = dict(student.config["components"]["uniner"]["model"], name=str(uniner.generator.source))
    nlp.add_pipe("uniner", config={"model": model, "labels": [P, C, E], "threshold": uniner.threshold, "label_margin": uniner.label_margin})
    text, mentions = TEXTS[lang]
    doc = nlp(text)
    found = [(span.text, span.label_, span.start_char, span.end_char, round(score, 2)) for span, score in zip(doc.spans["uniner"], doc.spans["uniner"].attrs["scores"])]
    print(lang, found)
    assert found and all(text[start:end] == mention for mention, _, start, end, _ in found)
    assert nlp.get_pipe("uniner").stats["mentions_not_in_text"] == 0
    gold = nlp.make_doc(text)
    gold.ents = [gold.char_span(text.index(mention), text.index(mention) + len(mention), label=label) for mention, label in mentions]
    scores = nlp.get_pipe("uniner").score([Example(doc, gold)])
    print(lang, {key: round(scores[key], 3) for key in ("ents_p", "ents_r", "ents_f")})
    assert scores["ents_p"] > 0
