"""Adaptation: gold spaCy docs -> conversations -> the same trainer from the student's weights ->
an adapted pipeline, scored before and after on held-out gold."""
import json
import shutil
from pathlib import Path

import pytest
import spacy
import torch
from spacy.tokens import DocBin

from spacy_uniner.adapt import DISTILLED_SHARE, NEGATIVES, distilled_of, read_gold, run_adapt, split_benchmark
from spacy_uniner.gold import gold_conversations
from spacy_uniner.prompts import build_prompt, prompt_text
from spacy_uniner.train import load_train_config

ROOT = Path(__file__).parent.parent
ADAPT_CFG = ROOT / "configs" / "adapt.cfg"
MIRROR = ROOT.parent / "shared" / "data"
TINY_TRAINING = {"training.batch_size": 2, "training.gradient_accumulation": 1, "training.epochs": 1, "training.learning_rate": 1e-3}


def gold_docbin(path, examples, key=None):
    nlp = spacy.blank("en")
    docs = []
    for text, mentions in examples:
        doc = nlp(text)
        spans = [doc.char_span(text.index(mention), text.index(mention) + len(mention), label=label) for mention, label in mentions]
        if key:
            doc.spans[key] = spans
        else:
            doc.ents = spans
        docs.append(doc)
    DocBin(docs=docs).to_disk(path)
    return path


TRAIN = [("Aspirin eased her migraine.", [("migraine", "DISEASE"), ("Aspirin", "CHEM")]), ("He has asthma.", [("asthma", "DISEASE")]), ("Nothing here.", [])]
EVAL = [("Ibuprofen treats arthritis.", [("arthritis", "DISEASE"), ("Ibuprofen", "CHEM")])]


@pytest.fixture(scope="module")
def student(tiny_llama_path, tmp_path_factory):
    path = tmp_path_factory.mktemp("student") / "pipeline"
    nlp = spacy.blank("en")
    nlp.add_pipe("uniner", config={"model": {"name": str(tiny_llama_path), "device": "cpu", "max_new_tokens": 8}, "labels": ["person"], "threshold": 0.1})
    nlp.to_disk(path)
    return path


def test_gold_docs_become_conversations_asking_every_label(tmp_path):
    gold = read_gold(gold_docbin(tmp_path / "train.spacy", TRAIN), "meds", label_names={"CHEM": "chemical"})
    assert gold.types == ["DISEASE", "chemical"]
    conversations = gold_conversations(gold, "meds")
    turns = [[turn["value"] for turn in record["conversations"]] for record in conversations]
    assert turns[0] == ["Dataset: meds\nText: Aspirin eased her migraine.", "I've read this text.", "What describes DISEASE in the text?", '["migraine"]', "What describes chemical in the text?", '["Aspirin"]']
    assert turns[2][3::2] == ["[]", "[]"]  # a doc without gold is asked every label, answered []
    # The adapted pipeline asks with the same Dataset line, and constrained decoding finds the text in it.
    prompt = build_prompt("He has asthma.", "DISEASE", "meds")
    assert prompt.startswith("A virtual assistant answers questions from a user based on the provided text. USER: Dataset: meds\nText: He has asthma. ASSISTANT:")
    assert prompt_text(prompt) == "He has asthma."


def test_negatives_caps_the_questions_answered_empty_per_question_with_mentions(tmp_path):
    # TRAIN asks 2 labels of 3 docs: 3 questions with mentions, 3 answered []: CHEM of "He has
    # asthma." (beside a mention) and both of "Nothing here." (a doc with no mention).
    gold = read_gold(gold_docbin(tmp_path / "train.spacy", TRAIN), "meds")

    def asked(conversations):
        return {record["id"]: [turn["value"] for turn in record["conversations"][2:]] for record in conversations}

    every = asked(gold_conversations(gold, None))
    assert sum(answer == "[]" for turns in every.values() for answer in turns[1::2]) == 3
    assert asked(gold_conversations(gold, None, negatives=5.0)) == every
    only_mentions = asked(gold_conversations(gold, None, negatives=0.0))
    assert len(only_mentions) == 2 and all(answer != "[]" for turns in only_mentions.values() for answer in turns[1::2])  # "Nothing here." not trained on
    for seed in range(4):  # the empty answer beside a mention comes first, whatever the seed
        assert asked(gold_conversations(gold, None, negatives=1 / 3, seed=seed)) == {**only_mentions, "gold-1": ["What describes CHEM in the text?", "[]", "What describes DISEASE in the text?", '["asthma"]']}
    two = [asked(gold_conversations(gold, None, negatives=2 / 3, seed=seed)) for seed in (0, 0, 1, 2, 3)]
    assert two[0] == two[1]  # drawn by the seed
    for draw in two:
        assert draw["gold-1"][1] == "[]" and len(draw["gold-2"]) == 2 and draw["gold-2"][1] == "[]"
    assert len({json.dumps(draw, sort_keys=True) for draw in two}) > 1


def test_a_student_is_adapted_and_scored_before_and_after(student, tmp_path):
    train, held_out = gold_docbin(tmp_path / "train.spacy", TRAIN, key="sc"), gold_docbin(tmp_path / "eval.spacy", EVAL, key="sc")
    distilled = tmp_path / "distilled.json"
    distilled.write_text(json.dumps([{"id": "d1", "conversations": [{"from": "human", "value": "Text: Ana lives in Paris."}, {"from": "gpt", "value": "I've read this text."}, {"from": "human", "value": "What describes city in the text?"}, {"from": "gpt", "value": '["Paris"]'}]}]))
    report = run_adapt(student, train, held_out, tmp_path / "adapted", ADAPT_CFG, tmp_path / "ck", dataset="meds", spans_key="sc", distilled=distilled, overrides=TINY_TRAINING, report_path=tmp_path / "report.json")
    assert set(report) >= {"before", "after", "labels", "train_docs", "minutes"}
    assert report["labels"] == ["CHEM", "DISEASE"] and report["train_docs"] == 3 and report["distilled_conversations"] == 1
    assert report["distilled"] == str(distilled) and spacy.load(tmp_path / "adapted").meta["uniner"] == {"distilled": "../distilled.json"}  # adapted again, it mixes them in
    # Four conversations, two a step: adapt.cfg's min_steps passes over them 50 times, not once.
    assert report["training"]["steps"] == load_train_config(ADAPT_CFG, {"model.base": str(student)})["training"]["min_steps"] == 100 and report["training"]["epochs"] == 50
    for side in ("before", "after"):
        assert all(0.0 <= report[side][key] <= 1.0 for key in ("paper_f", "ents_f"))
    assert json.loads((tmp_path / "report.json").read_text())["after"] == report["after"]
    conversations = json.loads((tmp_path / "ck" / "adapt-conversations.json").read_text())
    assert [record["id"] for record in conversations] == ["gold-0", "gold-1", "gold-2", "distilled-d1"]
    adapted = spacy.load(tmp_path / "adapted").get_pipe("uniner")
    assert adapted.labels == ["CHEM", "DISEASE"] and adapted.dataset == "meds" and adapted.threshold == 0.1
    before = dict(spacy.load(student).get_pipe("uniner").generator.model.named_parameters())
    changed = [name for name, weight in adapted.generator.model.named_parameters() if not torch.equal(weight, before[name])]
    assert changed  # the student learned from the gold: its weights moved


def test_adapt_trains_on_the_default_share_of_questions_answered_empty(student, tmp_path):
    # Sparse gold as users have it: 3 questions with mentions, 1 answered [] beside a mention and 14
    # in docs that mention nothing; adapt's default keeps NEGATIVES per question with mentions.
    sparse = TRAIN + [(f"Nothing here {i}.", []) for i in range(6)]
    train, held_out = gold_docbin(tmp_path / "train.spacy", sparse), gold_docbin(tmp_path / "eval.spacy", EVAL)

    def answers(**options):
        report = run_adapt(student, train, held_out, tmp_path / "adapted", ADAPT_CFG, tmp_path / "ck", overrides={**TINY_TRAINING, "training.min_steps": 1}, **options)
        written = {record["id"]: [turn["value"] for turn in record["conversations"][3::2]] for record in json.loads((tmp_path / "ck" / "adapt-conversations.json").read_text())}
        assert report["gold_conversations"] == len(written)
        shutil.rmtree(tmp_path / "ck")
        return written

    capped = answers()
    assert sum(turns.count("[]") for turns in capped.values()) == round(NEGATIVES * 3) < 15
    assert capped["gold-1"] == ["[]", '["asthma"]']
    every = answers(negatives=float("inf"))  # `--negatives inf`: every label of every doc
    assert sum(turns.count("[]") for turns in every.values()) == 15 and len(every) == len(sparse)


def test_adapt_mixes_in_the_conversations_the_student_learned_from_by_default(student, tmp_path):
    distilled = tmp_path / "project" / "corpus" / "conversations.json"
    distilled.parent.mkdir(parents=True)
    distilled.write_text(json.dumps([{"id": f"d{i}", "conversations": [{"from": "human", "value": f"Text: Ana {i} lives in Paris."}, {"from": "gpt", "value": "I've read this text."}, {"from": "human", "value": "What describes city in the text?"}, {"from": "gpt", "value": '["Paris"]'}]} for i in range(4)]))
    trained = tmp_path / "project" / "training" / "student"
    trained.parent.mkdir()
    nlp = spacy.load(student)
    nlp.meta["uniner"] = {"distilled": "../../corpus/conversations.json"}  # as `train` names its data
    nlp.to_disk(trained)
    moved = tmp_path / "moved" / "corpus" / "conversations.json"
    nlp.meta["uniner"] = {"distilled": str(moved)}  # as students trained before 2026-12-07 name them
    nlp.to_disk(tmp_path / "older")
    (tmp_path / "project").rename(tmp_path / "moved")  # a project moved whole finds them
    trained, distilled = tmp_path / "moved" / "training" / "student", moved
    assert distilled_of(trained, None, DISTILLED_SHARE) == distilled == distilled_of(tmp_path / "older", None, DISTILLED_SHARE)
    meta = (tmp_path / "older" / "meta.json").read_text()
    (tmp_path / "older" / "meta.json").write_text(json.dumps({**json.loads(meta), "uniner": {"distilled": 5}}))  # edited by hand
    with pytest.raises(ValueError, match=r"older's meta.json holds \{\"uniner\": \{'distilled': 5\}\} where `train` writes"):
        distilled_of(tmp_path / "older", None, DISTILLED_SHARE)
    (tmp_path / "older" / "meta.json").write_text(meta[:40])  # truncated
    with pytest.raises(ValueError, match=r"older/meta.json is not a pipeline's meta.json \(.*\): restore it from the pipeline it came from$"):
        distilled_of(tmp_path / "older", None, DISTILLED_SHARE)
    train, held_out = gold_docbin(tmp_path / "train.spacy", TRAIN), gold_docbin(tmp_path / "eval.spacy", EVAL)
    report = run_adapt(trained, train, held_out, tmp_path / "adapted", ADAPT_CFG, tmp_path / "ck", overrides={**TINY_TRAINING, "training.min_steps": 1})
    assert report["distilled"] == str(distilled) and report["distilled_conversations"] == round(0.5 * report["gold_conversations"]) == 2
    assert run_adapt(trained, train, held_out, tmp_path / "none", ADAPT_CFG, tmp_path / "ck-none", distilled_share=0, overrides={**TINY_TRAINING, "training.min_steps": 1})["distilled"] is None
    distilled.unlink()
    with pytest.raises(ValueError, match=r"student's meta.json names \.\./\.\./corpus/conversations.json \(.*moved/corpus/conversations.json\) as the conversations it learned from, which is not there: give them with --distilled FILE, or --distilled-share 0"):
        run_adapt(trained, train, held_out, tmp_path / "out", ADAPT_CFG, tmp_path / "ck2")
    assert not (tmp_path / "out").exists() and not (tmp_path / "ck2").exists()


def test_a_label_the_eval_part_never_mentions_is_still_asked_and_the_report_names_it(student, tmp_path):
    """A rare label (two mentions in 300 sentences) is often missing from a small eval part: adapting
    goes on, as `spacy train` does with such a dev set, and says so."""
    train, held_out = gold_docbin(tmp_path / "train.spacy", TRAIN), gold_docbin(tmp_path / "eval.spacy", [("He has asthma.", [("asthma", "DISEASE")])])
    with pytest.warns(UserWarning, match=r"eval.spacy has no gold mention of \['CHEM'\], which .*train.spacy teaches"):
        report = run_adapt(student, train, held_out, tmp_path / "out", ADAPT_CFG, tmp_path / "ck", distilled_share=0, overrides={**TINY_TRAINING, "training.min_steps": 1})
    assert report["labels"] == ["CHEM", "DISEASE"] and report["labels_without_eval_mentions"] == ["CHEM"]
    assert spacy.load(tmp_path / "out").get_pipe("uniner").labels == ["CHEM", "DISEASE"]


def test_bad_gold_data_and_students_get_a_clear_error(student, tmp_path):
    no_gold = gold_docbin(tmp_path / "none.spacy", [("Nothing here.", [])])
    train, held_out = gold_docbin(tmp_path / "train.spacy", TRAIN), gold_docbin(tmp_path / "eval.spacy", [("He has asthma.", [("asthma", "DISEASE")])])
    with pytest.raises(ValueError, match=r"none.spacy holds 1 docs and no gold mention in doc.ents"):
        run_adapt(student, no_gold, held_out, tmp_path / "out", ADAPT_CFG, tmp_path / "ck")
    spacy.blank("en").to_disk(tmp_path / "blank")
    with pytest.raises(ValueError, match="has no uniner component"):
        run_adapt(tmp_path / "blank", train, held_out, tmp_path / "out", ADAPT_CFG, tmp_path / "ck")
    assert not (tmp_path / "out").exists() and not (tmp_path / "ck").exists()


@pytest.mark.skipif(not (MIRROR / "benchmarks").is_dir(), reason="needs the data mirror ../shared/data")
def test_a_benchmark_set_splits_into_gold_docbins_by_seed(tmp_path):
    counts = split_benchmark("NCBI-disease", MIRROR, tmp_path / "train.spacy", tmp_path / "eval.spacy", 50, 20, seed=0)
    assert counts == {"sentences": 940, "train": 50, "eval": 20}
    train, held_out = read_gold(tmp_path / "train.spacy", "ncbi"), read_gold(tmp_path / "eval.spacy", "ncbi")
    assert train.types == ["disease"] and len(train.sentences) == 50 and len(held_out.sentences) == 20
    assert not {s.text for s in train.sentences} & {s.text for s in held_out.sentences}
    split_benchmark("NCBI-disease", MIRROR, tmp_path / "again.spacy", tmp_path / "again-eval.spacy", 50, 20, seed=0)
    assert [s.text for s in read_gold(tmp_path / "again.spacy", "ncbi").sentences] == [s.text for s in train.sentences]
