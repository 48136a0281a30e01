"""The learning curve: the student adapted beside spaCy's own ner trained on the same gold, both
scored on one held-out part; spaCy's ner is trained as `spacy train` trains it."""
import json
import shutil
from pathlib import Path

import pytest
import spacy

from spacy_uniner import adapt, curve
from spacy_uniner.curve import curve_parts, run_curve
from spacy_uniner.evaluate.datasets import Benchmark, Sentence, load_benchmark
from spacy_uniner.files import write_json
from spacy_uniner.spacy_ner import carve_dev, train_spacy_ner

ROOT = Path(__file__).parent.parent
MIRROR = ROOT.parent / "shared" / "data"
needs_mirror = pytest.mark.skipif(not (MIRROR / "benchmarks").is_dir(), reason="needs the data mirror ../shared/data")
TINY_TRAINING = {"training.batch_size": 4, "training.gradient_accumulation": 1, "training.epochs": 1, "training.learning_rate": 1e-3}


def drug_sentence(index: int) -> Sentence:
    drug = ["aspirin", "ibuprofen", "insulin", "heparin", "morphine", "codeine"][index % 6]
    tokens = ["Patients", "given", drug, "recovered", "within", str(index % 9 + 2), "days", "."]
    return Sentence("drugs", index, tokens, [(2, 3, "drug")])


def test_the_dev_part_is_carved_from_the_gold_train_by_seed():
    sentences = [drug_sentence(i) for i in range(25)]
    train, dev = carve_dev(sentences, seed=0)
    assert (len(train), len(dev)) == (20, 5)
    assert sorted(s.index for s in train + dev) == list(range(25))
    assert [s.index for s in carve_dev(sentences, seed=0)[1]] == [s.index for s in dev]
    assert [len(part) for part in carve_dev(sentences[:2], seed=0)] == [1, 1]
    with pytest.raises(ValueError, match="at least 2 gold-train sentences"):
        carve_dev(sentences[:1], seed=0)


@pytest.fixture(scope="module")
def drug_ner(tmp_path_factory):
    """spaCy's ner trained as `adapt --compare-spacy` trains it, once for this module: its report and
    folder. Ten sentences: `spacy train` runs at least its patience's 1,600 steps whatever the data,
    each a batch of up to 1,000 words, so fewer sentences make cheaper steps (half the time of 30)."""
    gold = Benchmark("drugs", ["drug"], [drug_sentence(i) for i in range(10)])
    output = tmp_path_factory.mktemp("drug-ner") / "ner"
    return train_spacy_ner(gold, output), output


def test_spacy_ner_learns_the_gold_it_is_given(drug_ner):
    report, _ = drug_ner
    assert (report["train_docs"], report["dev_docs"]) == (8, 2)
    assert report["dev_ents_f"] > 0.5  # stopped on its dev part, having learned the drugs
    nlp = spacy.load(report["pipeline"])
    assert nlp.pipe_names == ["tok2vec", "ner"] and "drug" in nlp.get_pipe("ner").labels
    assert [(ent.text, ent.label_) for ent in nlp("Patients given insulin recovered within 3 days .").ents] == [("insulin", "drug")]


@needs_mirror
def test_curve_parts_hold_one_eval_part_and_nested_train_parts():
    sentences = load_benchmark("NCBI-disease", MIRROR).sentences
    held_out, trains = curve_parts(sentences, [5, 20], 30, seed=0)
    assert len(held_out) == 30 and [len(trains[5]), len(trains[20])] == [5, 20]
    assert {s.index for s in trains[5]} < {s.index for s in trains[20]}
    assert not {s.index for s in trains[20]} & {s.index for s in held_out}
    with pytest.raises(ValueError, match="NCBI-disease has 940 sentences: too few for 900 held out and a gold-train of 50"):
        curve_parts(sentences, [50], 900, seed=0)


@needs_mirror
def test_the_curve_adapts_and_trains_spacy_ner_on_the_same_gold_and_resumes(tiny_llama_path, tmp_path, drug_ner, monkeypatch):
    # spaCy's ner is the module's one real training (the test above), handed to each point: `adapt`
    # still loads and scores it; what each point gave it is recorded.
    given = []

    def trained(gold_train, output, seed=0):
        given.append(([list(s.tokens) for s in gold_train.sentences], seed))
        shutil.copytree(drug_ner[1], output)
        train_part, dev_part = carve_dev(gold_train.sentences, seed)
        return {**drug_ner[0], "pipeline": str(output / "model-best"), "train_docs": len(train_part), "dev_docs": len(dev_part)}

    monkeypatch.setattr(adapt, "train_spacy_ner", trained)
    student = tmp_path / "student"
    nlp = spacy.blank("en")
    nlp.add_pipe("uniner", config={"model": {"name": str(tiny_llama_path), "device": "cpu", "max_new_tokens": 8}, "labels": ["person"]})
    nlp.to_disk(student)
    options = {"config_path": ROOT / "configs" / "adapt.cfg", "overrides": TINY_TRAINING}
    report = run_curve(student, ["NCBI-disease"], [2, 4], tmp_path / "curve", MIRROR, eval_size=4, adapt_options=options)
    points = report["curve"]["NCBI-disease"]
    assert [point["size"] for point in points] == [2, 4]
    for point in points:
        assert point["train_docs"] == point["size"] and point["eval_docs"] == 4 and point["labels"] == ["disease"]
        assert point["spacy"]["train_docs"] + point["spacy"]["dev_docs"] == point["size"]
        assert {"ents_f", "paper_f", "minutes"} <= set(point["spacy"]) and {"ents_f", "paper_f"} <= set(point["after"])
        assert "pipeline" not in point["spacy"]  # it went with the checkpoints
    assert points[1]["before"] == points[0]["before"]  # one held-out part, scored once before adapting
    folder = tmp_path / "curve"
    assert sorted(p.name for p in (folder / "NCBI-disease").iterdir()) == ["2.json", "4.json", "eval.spacy", "train-2.spacy", "train-4.spacy"]
    assert (folder / "curve.md").read_text().count("| NCBI-disease |") == 2 and (folder / "curve.png").stat().st_size > 0
    # A rerun with the same settings keeps the points (other settings redo them: the test below).
    written = (folder / "NCBI-disease" / "4.json").stat().st_mtime_ns
    assert run_curve(student, ["NCBI-disease"], [2, 4], folder, MIRROR, eval_size=4, adapt_options=options) == report
    assert (folder / "NCBI-disease" / "4.json").stat().st_mtime_ns == written


@needs_mirror
def test_a_point_is_redone_when_its_settings_change_and_only_then(monkeypatch, tmp_path):
    seeds_adapted = []

    def adapted(student, train_path, eval_path, output, compare_spacy, **options):
        seeds_adapted.append(options["seed"])
        for made in (output, output.with_name(output.name + "-checkpoints")):
            made.mkdir()
        score = {"ents_f": 0.5, "paper_f": 0.5}
        return {"before": score, "after": score, "labels": ["disease"], "spacy": {**score, "minutes": 1.0, "pipeline": "removed"}, "minutes": 1.0, "training": {"steps": 3}}

    monkeypatch.setattr(curve, "run_adapt", adapted)
    (tmp_path / "student").mkdir()
    folder = tmp_path / "curve"
    first = run_curve(tmp_path / "student", ["NCBI-disease"], [2], folder, MIRROR, eval_size=4)
    assert run_curve(tmp_path / "student", ["NCBI-disease"], [2], folder, MIRROR, eval_size=4) == first and seeds_adapted == [0]
    rerun = run_curve(tmp_path / "student", ["NCBI-disease"], [2], folder, MIRROR, eval_size=4, seed=1)
    assert seeds_adapted == [0, 1] and rerun["seed"] == 1
    assert json.loads((folder / "NCBI-disease" / "2.json").read_text())["settings"]["seed"] == 1
    assert not (folder / "NCBI-disease" / "adapted-2").exists()


@needs_mirror
def test_the_zero_shot_score_is_reused_only_where_the_gold_train_teaches_the_same_labels(monkeypatch, tmp_path):
    # HarveyNER's first 25 gold-train sentences (seed 0) hold only `point`, its first 50 three of its
    # four labels, 100 and 300 all four: adapt asks and scores only the labels its gold-train teaches.
    given = {}

    def scored_point(student, folder, size, eval_path, train, settings, adapt_options):
        given[size] = adapt_options.get("before")
        labels = sorted({label for sentence in train for _, _, label in sentence.spans})
        score = {"ents_f": len(labels) / 10, "paper_f": len(labels) / 10}
        return {"size": size, "labels": labels, "before": adapt_options.get("before", score), "after": score, "spacy": {**score, "minutes": 1.0}, "minutes": 1.0}

    monkeypatch.setattr(curve, "run_point", scored_point)
    (tmp_path / "student").mkdir()
    report = run_curve(tmp_path / "student", ["HarveyNER"], [25, 50, 100, 300], tmp_path / "curve", MIRROR, eval_size=300)
    assert given == {25: None, 50: None, 100: None, 300: {"ents_f": 0.4, "paper_f": 0.4}}
    assert [point["before"]["ents_f"] for point in report["curve"]["HarveyNER"]] == [0.1, 0.3, 0.4, 0.4]
    assert "| HarveyNER | 25 | 1 | 10.0 |" in (tmp_path / "curve" / "curve.md").read_text()


@needs_mirror
def test_a_curve_without_a_cap_on_empty_answers_records_settings_json_can_hold(monkeypatch, tmp_path):
    # `--negatives inf` reaches each point as "no cap" (None): a point's settings are written as JSON.
    settings_given = []

    def scored_point(student, folder, size, eval_path, train, settings, adapt_options):
        settings_given.append((settings["negatives"], adapt_options["negatives"]))
        write_json(folder / f"{size}.json", {"settings": settings})
        score = {"ents_f": 0.5, "paper_f": 0.5}
        return {"size": size, "labels": ["disease"], "before": score, "after": score, "spacy": {**score, "minutes": 1.0}, "minutes": 1.0}

    monkeypatch.setattr(curve, "run_point", scored_point)
    (tmp_path / "student").mkdir()
    run_curve(tmp_path / "student", ["NCBI-disease"], [25], tmp_path / "curve", MIRROR, eval_size=300, adapt_options={"negatives": float("inf")})
    assert settings_given == [(None, None)]
    with pytest.raises(ValueError, match="--negatives must be a number >= 0"):
        run_curve(tmp_path / "student", ["NCBI-disease"], [25], tmp_path / "other", MIRROR, eval_size=300, adapt_options={"negatives": -1})
    assert not (tmp_path / "other").exists()
