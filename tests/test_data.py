import json

import pytest
import spacy
import srsly
from spacy.tokens import DocBin

from spacy_uniner.data import build_conversations, normalize_type, read_annotations, run_build_data
from spacy_uniner.distill import make_open_ner_task
from spacy_uniner.prompts import build_prompt, render_conversation

NLP = spacy.blank("en")
TEXT = "Bayer sells Aspirin. bayer is in Leverkusen, and Aspirin treats pain."


def annotated(text, answer, negative_types=(), passage_id="p"):
    doc = NLP(text)
    task = make_open_ner_task()
    (doc,) = task.parse_responses([doc], [[answer]])
    doc.user_data["passage_id"] = passage_id
    doc.user_data["passage_meta"] = {"negative_types": list(negative_types)}
    return doc


def questions(conversation):
    turns = [turn["value"] for turn in conversation["conversations"]]
    return {q[len("What describes "):-len(" in the text?")]: json.loads(a) for q, a in zip(turns[2::2], turns[3::2])}


def test_conversation_format_mentions_in_text_order_and_recorded_negatives():
    doc = annotated(TEXT, '[("Aspirin", "Drug"), ("Bayer", "company"), ("Leverkusen", "city"), ("aspirin", "drug")]', ["Disease", "city"])
    (conversation,), report = build_conversations([doc], negative_rate=0.0)
    assert conversation["id"] == "p"
    roles = [turn["from"] for turn in conversation["conversations"]]
    assert roles == ["human", "gpt"] * 5
    assert conversation["conversations"][0]["value"] == "Text: " + TEXT
    assert conversation["conversations"][1]["value"] == "I've read this text."
    # Types normalized; mentions deduplicated, in text order, as the passage spells them (exact case
    # first, so "bayer" is not a company: the teacher wrote "Bayer"); the teacher's
    # empty type kept as a negative (its "city" is not: Leverkusen is a city here).
    assert questions(conversation) == {"drug": ["Aspirin"], "company": ["Bayer"], "city": ["Leverkusen"], "disease": []}
    assert report == {"conversations": 1, "positive_questions": 3, "negative_questions": 1, "mentions": 3, "types": 3, "types_kept": 3, "passages": 1, "draws": 1, "sources": {"p": 1}}


def test_training_conversation_renders_exactly_the_serving_prompt():
    doc = annotated(TEXT, '[("Leverkusen", "city")]')
    (conversation,), _ = build_conversations([doc], negative_rate=0.0)
    messages = [turn["value"] for turn in conversation["conversations"]]
    assert render_conversation(messages[:-1] + [None]) == build_prompt(TEXT, "city")


def test_negatives_are_sampled_by_type_frequency_at_the_given_rate():
    docs = [annotated(f"Ann met Bob in Rome, day {i}.", '[("Ann", "person"), ("Rome", "city")]', passage_id=str(i)) for i in range(200)]
    docs += [annotated(f"Tea number {i}.", '[("Tea", "drink")]', passage_id=f"t{i}") for i in range(20)]
    docs += [annotated("Zinc.", '[("Zinc", "element")]', passage_id="z")]
    conversations, report = build_conversations(docs, negative_rate=1.0, seed=1)
    assert report["negative_questions"] == pytest.approx(report["positive_questions"], rel=0.15)
    negatives = [label for c in conversations for label, mentions in questions(c).items() if mentions == []]
    # A "Tea" passage can only get person, city or element as negatives: person and city are in
    # 200 passages, element in one.
    tea = [label for c in conversations if c["id"].startswith("t") for label, m in questions(c).items() if m == []]
    assert tea and tea.count("element") < len(tea) / 10
    assert "drink" in negatives
    for c in conversations:
        assert all(mentions == [] or label in ("person", "city", "drink", "element") for label, mentions in questions(c).items())
    assert build_conversations(docs, negative_rate=1.0, seed=1)[0] == conversations
    assert build_conversations(docs, negative_rate=1.0, seed=2)[0] != conversations


def test_draws_write_each_passage_again_with_fresh_negatives_and_the_first_draw_unchanged():
    docs = [annotated(f"Ann met Bob in Rome, day {i}.", '[("Ann", "person"), ("Rome", "city")]', ["country"], passage_id=str(i)) for i in range(30)]
    docs += [annotated(f"Tea number {i}.", f'[("Tea", "drink{i}")]', passage_id=f"t{i}") for i in range(30)]
    once, _ = build_conversations(docs, negative_rate=2.0, seed=3)
    thrice, report = build_conversations(docs, negative_rate=2.0, seed=3, draws=3)
    assert thrice[: len(once)] == once and report["draws"] == 3 and report["passages"] == 60
    assert [c["id"] for c in thrice] == [c["id"] for c in once] * 3
    for draw in (1, 2):
        for first, again in zip(once, thrice[draw * len(once) : (draw + 1) * len(once)]):
            positives = {label: m for label, m in questions(first).items() if m}
            assert {label: m for label, m in questions(again).items() if m} == positives  # the same teacher answers
            if not first["id"].startswith("t"):
                assert questions(again)["country"] == []  # the recorded negative, in every draw
    negatives = lambda conversations: [sorted(l for l, m in questions(c).items() if not m) for c in conversations]
    assert negatives(thrice[len(once) : 2 * len(once)]) != negatives(once)  # drawn again
    with pytest.raises(ValueError, match="draws >= 1"):
        build_conversations(docs, draws=0)


def test_extra_draws_repeat_only_the_sources_named():
    docs = [annotated(f"Ann met Bob in Rome, day {i}.", '[("Ann", "person")]', ["city"], passage_id=f"pile-{i}") for i in range(3)]
    docs += [annotated(f"Tea number {i}.", '[("Tea", "drink")]', passage_id=f"def-drink-{i}") for i in range(2)]
    once, _ = build_conversations(docs, negative_rate=1.0, seed=3)
    more, report = build_conversations(docs, negative_rate=1.0, seed=3, extra_draws={"def": 2})
    assert more[: len(once)] == once  # the first round as without them
    assert [c["id"] for c in more[len(once) :]] == ["def-drink-0", "def-drink-1"] * 2
    assert report["sources"] == {"pile": 3, "def": 6} and report["extra_draws"] == {"def": 2}
    twice, report = build_conversations(docs, negative_rate=1.0, seed=3, draws=2, extra_draws={"def": 1})
    assert [c["id"] for c in twice].count("def-drink-0") == 3 and report["sources"] == {"pile": 6, "def": 6}
    with pytest.raises(ValueError, match="extra draws >= 0"):
        build_conversations(docs, extra_draws={"def": -1})


def test_rare_types_are_dropped_by_the_threshold_and_the_dataset_prefix():
    docs = [annotated("Ann met Bob.", '[("Ann", "person"), ("Bob", "rare type")]', passage_id="a"), annotated("Bob met Ann.", '[("Ann", "person")]', passage_id="b")]
    conversations, report = build_conversations(docs, negative_rate=0.0, min_type_count=2, dataset="pile")
    assert [questions(c) for c in conversations] == [{"person": ["Ann"]}, {"person": ["Ann"]}]
    assert conversations[0]["conversations"][0]["value"] == "Dataset: pile\nText: Ann met Bob."
    assert report["types"] == 2 and report["types_kept"] == 1
    empty = annotated("Nothing here.", "[]")
    assert build_conversations([empty])[1]["passages_without_questions"] == 1
    with pytest.raises(ValueError, match="negative_rate must be >= 0"):
        build_conversations(docs, negative_rate=-1)


def test_normalize_type():
    assert normalize_type("  Medical \n Condition ") == "medical condition"


def test_build_data_files_and_bad_input(tmp_path):
    DocBin(docs=[annotated(TEXT, '[("Bayer", "company")]')], store_user_data=True).to_disk(tmp_path / "ann.spacy")
    report = run_build_data(tmp_path / "ann.spacy", tmp_path / "out" / "conv.json", tmp_path / "report.json")
    assert srsly.read_json(tmp_path / "report.json") == report
    (conversation,) = srsly.read_json(tmp_path / "out" / "conv.json")
    assert questions(conversation)["company"] == ["Bayer"]
    DocBin(docs=[spacy.blank("en")("plain")]).to_disk(tmp_path / "plain.spacy")
    with pytest.raises(ValueError, match="have no teacher answer; is this the output of distill"):
        read_annotations(tmp_path / "plain.spacy")


def test_negatives_none_recorded_or_sampled_and_sources_in_the_report():
    docs = [
        annotated(TEXT, '[("Aspirin", "drug")]', ["disease"], passage_id="pile-1"),
        annotated("Ada Lovelace met Charles Babbage.", '[("Ada Lovelace", "person")]', passage_id="def-person-0"),
        annotated("Kobe is in Japan.", '[("Japan", "country")]', passage_id="gliner-3"),
    ]
    none, report = build_conversations(docs, negative_rate=0.0, recorded_negatives=False)
    assert [questions(c) for c in none] == [{"drug": ["Aspirin"]}, {"person": ["Ada Lovelace"]}, {"country": ["Japan"]}]
    assert report["negative_questions"] == 0
    assert report["sources"] == {"pile": 1, "def": 1, "gliner": 1}
    recorded, report = build_conversations(docs, negative_rate=0.0)
    assert questions(recorded[0]) == {"drug": ["Aspirin"], "disease": []}
    assert report["negative_questions"] == 1
    sampled, report = build_conversations(docs, negative_rate=2.0)
    assert report["negative_questions"] == 6  # two per positive type: the recorded one counts first
    for conversation in sampled:
        negatives = [label for label, mentions in questions(conversation).items() if not mentions]
        assert len(negatives) == 2
