"""The evaluation runner: through the real component, both metrics, records, resume, the table."""
import json
from pathlib import Path

import pytest
import spacy
import srsly
from spacy.tokens import Span
from spacy.training import Example
from typer.testing import CliRunner

from spacy_uniner.evaluate.datasets import load_benchmark
from spacy_uniner.prompts import build_prompt
from spacy_uniner.data import conversation, read_conversations
from spacy_uniner.cli import app
from spacy_uniner.pipelines import baseline_pipeline
from spacy_uniner.evaluate.report import bar_chart
from spacy_uniner.evaluate.run import gazetteer, paper_golds, run_evaluation, sample, sentence_doc, zero_shot_check

MIRROR = Path(__file__).parent.parent.parent / "shared" / "data"
pytestmark = pytest.mark.skipif(not MIRROR.exists(), reason="the mirror ../shared/data is not beside the project")
SETS = ["mit-movie", "mit-restaurant", "CrossNER_AI"]


def oracle_answers(limit, seed=0, names=SETS, mirror=MIRROR):
    """Per (text, type): the gold answer the paper metric scores against."""
    answers = {}
    for name in names:
        benchmark = load_benchmark(name, mirror)
        golds = paper_golds(name, mirror)
        for sentence in sample(benchmark.sentences, limit, seed):
            for entity_type in benchmark.types:
                answers[(sentence.text, entity_type)] = golds[(sentence.text, entity_type)] if golds else json.dumps(sentence.mentions(entity_type))
    return answers


def test_gold_answers_score_100_and_every_query_is_recorded(scripted_nlp, tmp_path):
    nlp = scripted_nlp(oracle_answers(40), labels=["anything"])
    summary = run_evaluation({"student": nlp}, SETS, MIRROR, tmp_path / "run", limit=40)
    for name in SETS:
        scores = summary["systems"]["student"][name]
        assert scores["paper"]["f"] == pytest.approx(1.0) and scores["paper"]["gold"] > 20
        assert scores["sentences"] == 40 and scores["queries_per_s"] > 0
        records = list(srsly.read_jsonl(tmp_path / "run" / "student" / f"{name}.jsonl"))
        assert len(records) == scores["queries"] == 40 * len(load_benchmark(name, MIRROR).types)
        assert set(records[0]) == {"dataset", "sentence", "type", "answer", "parsed", "scores", "gold"}
        # Span scores: the answers align to the gold spans, except where a mention's text occurs
        # twice in a sentence, or a CrossNER sentence ends with a mention the paper's file lacks.
        assert scores["spans"]["f"] > 0.95
    table = (tmp_path / "run.md").read_text()
    assert "| mit-movie | 100.0 | 100.0 | 100.0 |" in table and "| **average** | 100.0" in table and "| average | 100.0 / 100.0 |" in table
    assert srsly.read_json(tmp_path / "run.json")["settings"] == {"limit": 40, "seed": 0, "mention_scores": True, "thresholds": [0.0]}


def test_a_wrong_answer_counts_as_the_paper_counts_it(scripted_nlp, tmp_path):
    benchmark = load_benchmark("mit-movie", MIRROR)
    (sentence,) = sample(benchmark.sentences, 1, 3)
    answers = {(sentence.text, t): json.dumps(sentence.mentions(t)) for t in benchmark.types}
    entity_type = next(t for t in benchmark.types if sentence.mentions(t))
    answers[(sentence.text, entity_type)] = '["not in the text"]'
    scores = run_evaluation({"student": scripted_nlp(answers, labels=["x"])}, ["mit-movie"], MIRROR, tmp_path / "run", limit=1, seed=3)["systems"]["student"]["mit-movie"]
    wrong = len(set(sentence.mentions(entity_type)))
    total = sum(len(set(sentence.mentions(t))) for t in benchmark.types)
    assert (scores["paper"]["correct"], scores["paper"]["predicted"], scores["paper"]["gold"]) == (total - wrong, total - wrong + 1, total)


def test_finished_datasets_are_not_run_again(scripted_nlp, tmp_path):
    nlp = scripted_nlp(oracle_answers(5), labels=["x"])
    first = run_evaluation({"student": nlp}, SETS[:2], MIRROR, tmp_path / "run", limit=5)
    generator = nlp.get_pipe("uniner").generator
    calls = len(generator.calls)
    again = run_evaluation({"student": nlp}, SETS[:2], MIRROR, tmp_path / "run", limit=5)
    assert len(generator.calls) == calls and again == first  # the seconds each set took, as recorded
    assert set(first["seconds"]["student"]) == set(SETS[:2]) and all(seconds >= 0 for seconds in first["seconds"]["student"].values())
    run_evaluation({"student": nlp}, SETS[:1], MIRROR, tmp_path / "run", limit=6)  # other settings: run again
    assert len(generator.calls) > calls


def test_the_gazetteer_baseline_runs_beside_the_student_on_the_same_sentences(scripted_nlp, tmp_path):
    benchmark = load_benchmark("mit-movie", MIRROR)
    sentences = sample(benchmark.sentences, 30, 0)
    sentence = next(s for s in sentences if s.mentions("actor"))
    actor = sentence.mentions("actor")[0]
    training = tmp_path / "conversations.json"
    srsly.write_json(training, [conversation("t0", f"Yesterday {actor.title()} was on TV.", [("Actor", [actor.title()]), ("city", [])])])
    summary = run_evaluation({"student": scripted_nlp({}, labels=["x"]), "gazetteer": gazetteer(training)}, ["mit-movie"], MIRROR, tmp_path / "run", limit=30, training_data=training)
    gazetteer_scores = summary["systems"]["gazetteer"]["mit-movie"]
    assert gazetteer_scores["paper"]["correct"] >= 1 and gazetteer_scores["spans"]["per_type"]["actor"]["r"] > 0
    assert summary["systems"]["student"]["mit-movie"]["paper"]["predicted"] == 0  # it answered [] throughout
    records = list(srsly.read_jsonl(tmp_path / "run" / "gazetteer" / "mit-movie.jsonl"))
    assert any(record["type"] == "actor" and actor in record["parsed"] for record in records if record["sentence"] == sentence.index)
    assert "| mit-movie |" in (tmp_path / "run.md").read_text() and "gazetteer" in (tmp_path / "run.md").read_text()


def test_evaluation_sentences_copied_into_the_training_data_are_refused(scripted_nlp, tmp_path):
    benchmark = load_benchmark("CrossNER_AI", MIRROR)
    leaked = sample(benchmark.sentences, 3, 1)[1]
    assert len(leaked.tokens) > 8
    # Detokenized and in another case, inside a longer passage, as a teacher's passage would hold it.
    text = "Some words first. " + leaked.text.replace(" ,", ",").upper() + " And after."
    training = tmp_path / "conversations.json"
    srsly.write_json(training, [conversation("t0", text, [("person", [])])])
    with pytest.raises(ValueError, match=f"(?s)Zero-shot rule: 1 evaluation sentences.*CrossNER_AI sentence {leaked.index}"):
        run_evaluation({"student": scripted_nlp({}, labels=["x"])}, ["CrossNER_AI"], MIRROR, tmp_path / "run", limit=3, seed=1, training_data=training)
    srsly.write_json(training, [conversation("t0", "Nothing of the benchmark here at all, just a passage.", [("person", [])])])
    run_evaluation({"student": scripted_nlp({}, labels=["x"])}, ["CrossNER_AI"], MIRROR, tmp_path / "run", limit=3, seed=1, training_data=training)


def test_short_sentences_a_training_text_holds_are_left_out_of_the_evaluation(scripted_nlp, tmp_path):
    """A short sentence ("Here is my code", a four-word MIT query) inside a training text may be a
    common phrase: it is left out and listed, not a reason to stop; one or two words are not checked."""
    sentences = load_benchmark("mit-restaurant", MIRROR).sentences
    short = [s for s in sentences if s.text in ("pub", "burgers")]
    longer = next(s for s in sentences if len(s.text.split()) == 4)
    training = tmp_path / "conversations.json"
    srsly.write_json(training, [conversation("t0", f"We had burgers at the pub. Then: {longer.text.upper()}!", [("food", ["burgers"])])])
    assert len(short) >= 2
    assert zero_shot_check(training, read_conversations(training), short + [longer]) == [longer]
    summary = run_evaluation({"student": scripted_nlp({}, labels=["x"])}, ["mit-restaurant"], MIRROR, tmp_path / "run", training_data=training)
    assert summary["left_out"] == {"mit-restaurant": [longer.index]}
    assert summary["systems"]["student"]["mit-restaurant"]["sentences"] == len(sentences) - 1
    assert f"- mit-restaurant: sentences [{longer.index}]" in (tmp_path / "run.md").read_text()


def test_the_chart_shows_each_systems_f1_per_dataset_and_average(scripted_nlp, tmp_path):
    answers = oracle_answers(10)
    summary = run_evaluation({"student": scripted_nlp(answers, labels=["x"]), "silent": scripted_nlp({}, labels=["x"])}, SETS, MIRROR, tmp_path / "run", limit=10)
    assert (tmp_path / "run.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    figure = bar_chart(summary["systems"], tmp_path / "again.png")
    paper_axes, span_axes = figure.axes
    heights = [bar.get_height() for bar in paper_axes.patches]
    assert [label.get_text() for label in span_axes.get_xticklabels()] == SETS + ["average"]
    assert heights == pytest.approx([100.0] * 4 + [0.0] * 4)  # student's bars first, then the silent one's
    spans = summary["systems"]["student"]
    assert [bar.get_height() for bar in span_axes.patches][:3] == pytest.approx([100 * spans[name]["spans"]["f"] for name in SETS])


def test_a_spacy_ner_pipeline_runs_as_a_baseline_from_the_cli(tiny_llama_path, tmp_path):
    """`evaluate --baselines PATH`: a trained spaCy ner's labels count where they name a benchmark type."""
    benchmark = load_benchmark("mit-movie", MIRROR)
    sentences = sample(benchmark.sentences, 8, 0)
    ner_nlp = spacy.blank("en")
    ner_nlp.add_pipe("ner")
    examples = []
    for sentence in sentences:
        reference = sentence_doc(ner_nlp, sentence, gold=True)
        # Labels as spaCy's own models write them ("ACTOR"), to be matched to the benchmark's types.
        reference.ents = [Span(reference, ent.start, ent.end, label=ent.label_.upper()) for ent in reference.ents]
        examples.append(Example(sentence_doc(ner_nlp, sentence, gold=False), reference))
    optimizer = ner_nlp.initialize(lambda: examples)
    for _ in range(40):
        ner_nlp.update(examples, sgd=optimizer, drop=0.0)
    ner_nlp.to_disk(tmp_path / "spacy_ner")
    student = spacy.blank("en")
    student.add_pipe("uniner", config={"model": {"name": str(tiny_llama_path), "max_new_tokens": 2}, "labels": ["x"]})
    student.to_disk(tmp_path / "student")
    result = CliRunner().invoke(app, ["evaluate", str(tmp_path / "student"), str(tmp_path / "run"), "--datasets", "mit-movie", "--mirror", str(MIRROR), "--limit", "8", "--baselines", str(tmp_path / "spacy_ner")])
    assert result.exit_code == 0, (result.output, result.exception)
    scores = srsly.read_json(tmp_path / "run.json")["systems"]
    assert set(scores) == {"student", "spacy_ner"}
    assert scores["spacy_ner"]["mit-movie"]["spans"]["f"] > 0.5 and "actor" in scores["spacy_ner"]["mit-movie"]["spans"]["per_type"]
    assert "| mit-movie |" in result.output and (tmp_path / "run.png").exists()


def test_a_causal_lm_baseline_is_asked_with_the_students_prompt_and_settings(tiny_llama_path, tmp_path):
    """`evaluate --baselines MODEL`: a causal LM (the student's base as it ships) in the student's
    component settings; here the student's own weights, so both answer every query alike."""
    student = spacy.blank("en")
    student.add_pipe("uniner", config={"model": {"name": str(tiny_llama_path), "max_new_tokens": 3, "batch_size": 5, "constrained": True}, "labels": ["x"], "threshold": 0.2})
    student.to_disk(tmp_path / "student")
    result = CliRunner().invoke(app, ["evaluate", str(tmp_path / "student"), str(tmp_path / "run"), "--datasets", "mit-movie", "--mirror", str(MIRROR), "--limit", "4", "--baselines", str(tiny_llama_path)])
    assert result.exit_code == 0, (result.output, result.exception)
    baseline = tiny_llama_path.name
    assert set(srsly.read_json(tmp_path / "run.json")["systems"]) == {"student", baseline}
    records = {system: list(srsly.read_jsonl(tmp_path / "run" / system / "mit-movie.jsonl")) for system in ("student", baseline)}
    assert len(records["student"]) == 4 * len(load_benchmark("mit-movie", MIRROR).types)
    assert [r["answer"] for r in records[baseline]] == [r["answer"] for r in records["student"]]
    settings = baseline_pipeline(str(tiny_llama_path), spacy.load(tmp_path / "student")).config["components"]["uniner"]
    model = settings["model"]
    assert (model["name"], model["max_new_tokens"], model["batch_size"], model["constrained"], settings["threshold"]) == (str(tiny_llama_path), 3, 5, True, 0.2)


def gold_and_one_wrong_mention(limit: int) -> dict:
    """Scored answers for the first `limit` sampled MIT movie sentences: every gold mention at 0.8,
    and one wrong mention per sentence at 0.2."""
    benchmark = load_benchmark("mit-movie", MIRROR)
    sentences = sample(benchmark.sentences, limit, 0)
    answers = {(s.text, t): [(m, 0.8) for m in dict.fromkeys(s.mentions(t))] for s in sentences for t in benchmark.types}
    for s in sentences:
        answers[(s.text, benchmark.types[0])].append(("surely wrong", 0.2))
    return answers


def test_thresholds_sweep_the_paper_metric_from_one_decoding_run(scripted_nlp, tmp_path):
    """Gold mentions scored 0.8, a wrong one per sentence 0.2: at 0.5 precision is perfect, above
    0.8 nothing is left; the headline (the component's threshold 0) keeps every mention."""
    nlp = scripted_nlp(gold_and_one_wrong_mention(6), labels=["x"])
    summary = run_evaluation({"student": nlp}, ["mit-movie"], MIRROR, tmp_path / "run", limit=6, thresholds=[0.0, 0.5, 0.9])
    scores = summary["systems"]["student"]["mit-movie"]
    at = {row["threshold"]: row for row in scores["thresholds"]}
    assert at[0.0]["p"] == pytest.approx(scores["paper"]["p"]) and at[0.0]["p"] < 0.99
    assert at[0.5]["p"] == pytest.approx(1.0) and at[0.5]["r"] == pytest.approx(1.0)
    assert at[0.9]["predicted"] == 0 and at[0.9]["r"] == 0
    records = list(srsly.read_jsonl(tmp_path / "run" / "student" / "mit-movie.jsonl"))
    assert sorted({round(score, 6) for record in records for score in record["scores"]}) == [0.2, 0.8]
    table = (tmp_path / "run.md").read_text()
    assert "by score threshold" in table and "| mit-movie | " in table and "**100.0 / 100.0 / 100.0**" in table
    assert (tmp_path / "run-pr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_headline_counts_the_mentions_that_reach_the_pipelines_threshold(scripted_nlp, tmp_path):
    """The same answers as above under a component threshold of 0.5: the headline drops the wrong
    mentions (scored 0.2) and equals the sweep's row at 0.5; records keep every mention. A saved
    result at another threshold is not reused."""
    nlp = scripted_nlp(gold_and_one_wrong_mention(6), labels=["x"])
    at_zero = run_evaluation({"student": nlp}, ["mit-movie"], MIRROR, tmp_path / "run", limit=6, thresholds=[0.0, 0.5])
    assert at_zero["systems"]["student"]["mit-movie"]["paper"]["p"] < 0.99
    nlp.get_pipe("uniner").threshold = 0.5
    summary = run_evaluation({"student": nlp}, ["mit-movie"], MIRROR, tmp_path / "run", limit=6, thresholds=[0.0, 0.5])
    scores = summary["systems"]["student"]["mit-movie"]
    assert scores["paper"]["p"] == pytest.approx(1.0) and scores["paper"]["r"] == pytest.approx(1.0)
    assert scores["threshold"] == 0.5 and summary["mention_thresholds"] == {"student": 0.5}
    assert scores["thresholds"][0]["p"] == pytest.approx(at_zero["systems"]["student"]["mit-movie"]["paper"]["p"])
    records = list(srsly.read_jsonl(tmp_path / "run" / "student" / "mit-movie.jsonl"))
    assert sum("surely wrong" in record["parsed"] for record in records) == 6
    assert "scoring at least 0.5, the pipeline's threshold" in (tmp_path / "run.md").read_text()


def test_the_headline_and_the_sweep_count_a_mention_under_the_labels_the_margin_keeps(scripted_nlp, tmp_path):
    """Every gold mention of the first type also answered under the second type at 0.3 (a rival
    label, much less sure): at the component's label_margin 0.2 those are dropped, so precision is
    that of the answers without them; the records keep them."""
    answers = gold_and_one_wrong_mention(6)
    first, second = load_benchmark("mit-movie", MIRROR).types[:2]
    plain = run_evaluation({"student": scripted_nlp(answers, labels=["x"])}, ["mit-movie"], MIRROR, tmp_path / "plain", limit=6)
    rivals = dict(answers)
    for (text, entity_type), scored in answers.items():
        if entity_type == first:
            rivals[(text, second)] = answers[(text, second)] + [(mention, 0.3) for mention, score in scored if score == 0.8]
    nlp = scripted_nlp(rivals, labels=["x"])
    every_label = run_evaluation({"student": nlp}, ["mit-movie"], MIRROR, tmp_path / "run", limit=6)
    nlp.get_pipe("uniner").label_margin = 0.2
    summary = run_evaluation({"student": nlp}, ["mit-movie"], MIRROR, tmp_path / "run", limit=6, thresholds=[0.0, 0.5])
    scores, plain_scores = summary["systems"]["student"]["mit-movie"], plain["systems"]["student"]["mit-movie"]
    assert every_label["systems"]["student"]["mit-movie"]["paper"]["predicted"] > plain_scores["paper"]["predicted"]
    assert scores["paper"] == pytest.approx(plain_scores["paper"])
    assert scores["thresholds"][0]["predicted"] == plain_scores["paper"]["predicted"]
    assert scores["label_margin"] == 0.2 and summary["label_margins"] == {"student": 0.2}
    assert "within 0.2 of the score of their best type, its label_margin" in (tmp_path / "run.md").read_text()
    records = list(srsly.read_jsonl(tmp_path / "run" / "student" / "mit-movie.jsonl"))
    assert sum(0.3 in [round(score, 6) for score in record["scores"]] for record in records) > 0


def test_bad_thresholds_on_the_command_line_are_named(tmp_path):
    result = CliRunner().invoke(app, ["evaluate", "unused", str(tmp_path / "run"), "--thresholds", "0,1.5"])
    assert result.exit_code != 0 and "--thresholds" in result.output


def test_by_domain_a_broken_set_is_skipped_with_its_error_and_the_run_resumes(scripted_nlp, tmp_path):
    """A set whose file is missing or has a tag with no type stops with an error naming file, line
    and tag; the others run, by domain; mending the file and running again runs only that set."""
    mirror = tmp_path / "mirror"
    for name in ("FiNER-ORD/test.csv", "wnut17/emerging.test.annotated", "SEC-filings/FIN3.txt"):
        (mirror / "benchmarks" / name).parent.mkdir(parents=True)
        (mirror / "benchmarks" / name).write_bytes((MIRROR / "benchmarks" / name).read_bytes())
    sec = mirror / "benchmarks" / "SEC-filings" / "FIN3.txt"
    lines = sec.read_text().splitlines()
    lines[2] = lines[2].rsplit(" ", 1)[0] + " I-BANK"
    sec.write_text("\n".join(lines) + "\n")
    names = ["FiNER-ORD", "WNUT17", "SEC-filings", "HarveyNER"]
    nlp = scripted_nlp(oracle_answers(5, names=names[:2], mirror=mirror), labels=["x"])
    summary = run_evaluation({"student": nlp}, names, mirror, tmp_path / "run", limit=5, by_domain=True)
    assert list(summary["systems"]["student"]) == ["FiNER-ORD", "WNUT17"]
    assert "FIN3.txt:3: the tag 'BANK' has no type" in summary["skipped"]["SEC-filings"]
    assert "HarveyNER" in summary["skipped"] and "missing" in summary["skipped"]["HarveyNER"]
    assert summary["domains"] == {"FiNER-ORD": "finance", "WNUT17": "social media"}
    table = (tmp_path / "run.md").read_text()
    assert "| finance | 1 | 100.0 / 100.0 |" in table and "| **all sets** | 2 | 100.0 / 100.0 |" in table
    assert "| **all domains** | 2 |" in table and "| FiNER-ORD | finance | 1075 | 5 | 3 |" in table
    assert "### Skipped sets" in table and "BANK" in table
    assert (tmp_path / "run-domains.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    sec.write_bytes((MIRROR / "benchmarks" / "SEC-filings" / "FIN3.txt").read_bytes())
    generator = nlp.get_pipe("uniner").generator
    asked = len(generator.calls)
    generator.answers.update((build_prompt(text, label), answer) for (text, label), answer in oracle_answers(5, names=["SEC-filings"], mirror=mirror).items())
    again = run_evaluation({"student": nlp}, names, mirror, tmp_path / "run", limit=5, by_domain=True)
    assert list(again["skipped"]) == ["HarveyNER"] and again["systems"]["student"]["SEC-filings"]["paper"]["f"] == pytest.approx(1.0)
    assert {prompt for call in generator.calls[asked:] for prompt in call} <= {build_prompt(s.text, t) for s in sample(load_benchmark("SEC-filings", mirror).sentences, 5, 0) for t in ("person", "organization", "location")}


def test_the_domains_option_names_an_unknown_domain(tmp_path):
    result = CliRunner().invoke(app, ["evaluate", "unused", str(tmp_path / "run"), "--domains", "general,astrology"])
    assert result.exit_code != 0 and "astrology" in result.output


def test_nested_gold_mentions_count_under_both_metrics(scripted_nlp, tmp_path):
    """GENIA's nested layers: the paper metric counts every layer's mention; spaCy's span scores
    compare doc.ents with all of them, so an oracle of the paper metric scores 100 there and loses
    span recall exactly on the mentions doc.ents cannot hold beside another."""
    benchmark = load_benchmark("GENIA", MIRROR)
    sentences = sample(benchmark.sentences, 20, 0)
    nested = [s for s in sentences if len({i for a, b, _ in s.spans for i in range(a, b)}) < sum(b - a for a, b, _ in s.spans)]
    assert nested
    summary = run_evaluation({"student": scripted_nlp(oracle_answers(20, names=["GENIA"]), labels=["x"])}, ["GENIA"], MIRROR, tmp_path / "run", limit=20)
    scores = summary["systems"]["student"]["GENIA"]
    assert scores["paper"]["f"] == pytest.approx(1.0) and scores["paper"]["gold"] > 40
    assert scores["spans"]["p"] > 0.9 and 0.5 < scores["spans"]["r"] < 1.0
    doc = sentence_doc(spacy.blank("en"), nested[0], gold=True)
    assert len(doc.spans["benchmark_gold"]) == len(nested[0].spans) and not doc.ents


def test_saved_scores_are_reused_only_for_the_same_pipeline_and_precision(tiny_llama_path, tmp_path):
    """`evaluate X OUT --dtype int8` after a float32 run into OUT decodes again, and so does another
    pipeline; the precision each system decoded in is in the report and its table."""
    for name, tokens in (("student", 2), ("other", 3)):
        nlp = spacy.blank("en")
        nlp.add_pipe("uniner", config={"model": {"name": str(tiny_llama_path), "max_new_tokens": tokens}, "labels": ["x"]})
        nlp.to_disk(tmp_path / name)

    def evaluate(pipeline, dtype):
        result = CliRunner().invoke(app, ["evaluate", str(tmp_path / pipeline), str(tmp_path / "run"), "--datasets", "mit-movie", "--mirror", str(MIRROR), "--limit", "2", "--dtype", dtype])
        assert result.exit_code == 0, (result.output, result.exception)
        return srsly.read_json(tmp_path / "run" / "student" / "mit-movie.json"), srsly.read_json(tmp_path / "run.json")

    first, summary = evaluate("student", "float32")
    assert summary["precisions"] == {"student": "float32"} and "Decoded in: student float32" in (tmp_path / "run.md").read_text()
    assert evaluate("student", "float32")[0] == first  # reused, seconds and all
    int8, summary = evaluate("student", "int8")
    assert int8["settings"]["system"]["precision"] == "int8" and summary["precisions"] == {"student": "int8"}
    other, _ = evaluate("other", "int8")
    assert other["settings"]["system"] != int8["settings"]["system"]
