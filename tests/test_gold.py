"""Gold sets as training data: the held-out list, decontamination on the real mirror files, the
conversations, and evaluate scoring a set the student saw apart from the zero-shot ones."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import srsly

from spacy_uniner.data import run_build_data
from spacy_uniner.evaluate.datasets import DEV, benchmark_spec, benchmark_specs, load_benchmark, words_key
from spacy_uniner.evaluate.run import run_evaluation, sample
from spacy_uniner.gold import RUN, WHOLE, gold_set_conversations, held_out_sets, trainable_sets
from spacy_uniner.prompts import conversation

MIRROR = Path(__file__).parent.parent.parent / "shared" / "data"
needs_mirror = pytest.mark.skipif(not MIRROR.exists(), reason="the mirror ../shared/data is not beside the project")


def passage_questions(record):
    values = [turn["value"] for turn in record["conversations"]]
    return {question[len("What describes ") : -len(" in the text?")]: json.loads(answer) for question, answer in zip(values[2::2], values[3::2])}


def test_the_held_out_list_holds_every_zero_shot_set_and_the_ones_kept_for_adaptation():
    held_out = held_out_sets()
    specs = benchmark_specs()
    assert set(held_out) <= set(specs), "every held-out name is a set of assets/benchmarks.json"
    assert {name for name, spec in specs.items() if spec.get("zero_shot")} <= set(held_out)
    assert {"mit-movie-trivia10k13", "NCBI-disease", "WNUT17", "TweetNER7", "FabNER", "StackOverflow-NER", "HarveyNER"} <= set(held_out)
    assert not set(trainable_sets()) & set(held_out) and len(trainable_sets()) == len(specs) - len(held_out)


@needs_mirror
def test_no_gold_passage_shares_13_words_in_a_row_with_a_held_out_sentence():
    """On the real files: OntoNotes and linnaeus hold sentences of held-out sets (CrossNER's
    Wikipedia text, NCBI-disease's abstracts), and CoNLL++ is CoNLL03's text again."""
    names = ["OntoNotes", "linnaeus", "CoNLL03", "CoNLL++"]
    conversations, report = gold_set_conversations(names, MIRROR, words=10**7)
    assert report["OntoNotes"]["dropped_held_out"] > 0 and report["linnaeus"]["dropped_held_out"] > 0
    assert report["CoNLL++"]["dropped_duplicates"] >= report["CoNLL++"]["sentences"] - report["CoNLL++"]["dropped_held_out"] - 5
    held_out_runs, held_out_short = set(), set()
    for name in held_out_sets():
        for split in (name, name + DEV) if "dev_path" in benchmark_spec(name) else (name,):
            for sentence in load_benchmark(split, MIRROR).sentences:
                words = words_key(sentence.text)
                held_out_runs.update(tuple(words[i : i + RUN]) for i in range(len(words) - RUN + 1))
                if WHOLE <= len(words) < RUN:
                    held_out_short.add(" ".join(words))
    for record in conversations:
        words = words_key(record["conversations"][0]["value"].partition("\nText: ")[2])
        assert not any(tuple(words[i : i + RUN]) in held_out_runs for i in range(len(words) - RUN + 1)), record["id"]
        assert not any(" ".join(words[i : i + n]) in held_out_short for n in range(WHOLE, RUN) for i in range(len(words) - n + 1)), record["id"]
    assert len(conversations) == sum(entry["passages"] for entry in report.values()) > 2000


@needs_mirror
def test_gold_passages_ask_every_type_of_their_set_under_its_dataset_line(tmp_path):
    conversations, report = gold_set_conversations(["SEC-filings", "BroadTwitter"], MIRROR, words=2000, passage_words=64)
    assert {record["id"].rpartition("-")[0] for record in conversations} == {"gold-SEC-filings", "gold-BroadTwitter"}
    assert 800 <= report["SEC-filings"]["words"] <= 1000 + 64
    for record in conversations:
        name = record["id"].rpartition("-")[0][len("gold-") :]
        first = record["conversations"][0]["value"]
        assert first.startswith(f"Dataset: {name}\nText: ")
        answers = passage_questions(record)
        assert list(answers) == load_benchmark(name, MIRROR).types
        assert all(mention in first for mentions in answers.values() for mention in mentions)
    assert any(answers for record in conversations for answers in passage_questions(record).values())
    assert any(not answers for record in conversations for answers in passage_questions(record).values())


@needs_mirror
def test_a_held_out_set_is_refused_in_one_line_before_any_work(tmp_path):
    annotations = tmp_path / "annotations.spacy"
    annotations.write_bytes(b"not read: the gold sets are checked first")
    result = subprocess.run(
        [sys.executable, "-m", "spacy_uniner", "build-data", str(annotations), str(tmp_path / "conversations.json"), "--gold-sets", "BC5CDR,NCBI-disease", "--mirror", str(MIRROR)],
        capture_output=True, text=True,
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "['NCBI-disease']" in result.stderr and "held_out.json" in result.stderr
    assert not (tmp_path / "conversations.json").exists()
    with pytest.raises(ValueError, match="CrossNER_AI-dev"):
        gold_set_conversations(["CrossNER_AI-dev"], MIRROR, words=100)


@needs_mirror
def test_build_data_writes_the_gold_passages_after_the_teachers(tmp_path):
    from tests.test_data import TEXT, annotated
    from spacy.tokens import DocBin

    DocBin(docs=[annotated(TEXT, '[("Bayer", "company")]')], store_user_data=True).to_disk(tmp_path / "ann.spacy")
    gold = dict(names=["FiNER-ORD"], mirror=MIRROR, words=300)
    report = run_build_data(tmp_path / "ann.spacy", tmp_path / "conversations.json", None, gold)
    records = srsly.read_json(tmp_path / "conversations.json")
    assert records[0]["id"] == "p" and all(record["id"].startswith("gold-FiNER-ORD-") for record in records[1:])
    assert report["sources"] == {"p": 1, "gold": len(records) - 1} and report["gold"]["FiNER-ORD"]["passages"] == len(records) - 1


@needs_mirror
def test_evaluate_scores_a_set_the_student_saw_apart_from_the_zero_shot_average(scripted_nlp, tmp_path):
    """A set whose gold passages are in the training data is marked seen: out of the averages, and
    the zero-shot rule (which its copied sentences would break) is not applied to it; so is a set
    that the gold passages hold sentences of (CoNLL++ is CoNLL03's text)."""
    conll = sample(load_benchmark("CoNLL03", MIRROR).sentences, 5, 0)
    training = tmp_path / "conversations.json"
    srsly.write_json(training, [conversation("gold-CoNLL03-0", " ".join(s.text for s in conll), [("person", [])], "CoNLL03"), conversation("pile-1", "A passage.", [("person", [])])])
    answers = {(s.text, t): json.dumps(s.mentions(t)) for s in conll for t in load_benchmark("CoNLL03", MIRROR).types}
    summary = run_evaluation({"student": scripted_nlp(answers, labels=["x"])}, ["mit-movie", "CoNLL03", "CoNLL++"], MIRROR, tmp_path / "run", limit=5, training_data=training)
    assert summary["seen"] == ["CoNLL03", "CoNLL++"]
    scores = summary["systems"]["student"]
    assert scores["CoNLL03"]["paper"]["f"] == pytest.approx(1.0) and scores["mit-movie"]["paper"]["f"] == 0
    table = (tmp_path / "run.md").read_text()
    zero_shot, _, seen = table.partition("### Seen in training")
    assert "| **average** | 0.0" in zero_shot and "CoNLL" not in zero_shot
    assert "| CoNLL03 | 100.0 / " in seen and "| CoNLL++ | " in seen
