import subprocess
import sys
from pathlib import Path

import pytest
import spacy
import srsly
from spacy.tokens import DocBin

from spacy_uniner.distill import (
    ANSWER_KEY,
    RecordedTeacher,
    load_distiller,
    make_open_ner_task,
    make_passages,
    read_documents,
    read_passages,
    read_pile_ner,
    read_records,
    run_distillation,
    split_passages,
    teacher_response,
)
from spacy_uniner.prompts import teacher_prompt

ROOT = Path(__file__).parent.parent
SAMPLE = ROOT.parent / "shared" / "data" / "pile_ner" / "slimer_subset" / "5pos_5neg_perNE_top391NEs_FalseDef_validation.jsonl"

PASSAGES = {
    "p1": "Aspirin is sold by Bayer in Leverkusen. Bayer also makes Aspirin Complex.",
    "p2": "The files live in C:\\Users\\AppData\\Local\\Temp on Windows.",
    "p3": "Nothing to see here.",
    "p4": "Ada Lovelace worked with Charles Babbage in London.",
    "p5": "Marie Curie won the Nobel Prize in Physics in 1903.",
    "p6": "Kobe is a city in Japan; KOBE beef is famous.",
}
RESPONSES = {
    "p1": '[("Aspirin", "drug"), ("Bayer", "company"), ("Leverkusen", "city"), ("Pfizer", "company")]',
    "p2": 'Entities:\n```\n[("AppData", "folder"), ("Local", "folder"), ("Windows", "operating system")]\n```',
    "p3": "[]",
    "p4": '[("Ada Lovelace", "person"), ("Charles Babbage", "person"), ("London", "city")]',
    "p5": '[("Marie Curie", "person"), ("Nobel Prize in Physics", "award"), ("1903", "date")',
    "p6": '[("kobe", "City"), ("Japan", "country")]',
}


def write_records(path: Path, ids=PASSAGES) -> Path:
    srsly.write_jsonl(path, [{"id": i, "text": PASSAGES[i], "response": RESPONSES[i], "meta": {"negative_types": ["disease"]}} for i in ids])
    return path


@pytest.fixture
def project(tmp_path):
    """A distillation setup as project.yml lays it out: records, passages, configs, cache."""
    records = write_records(tmp_path / "recorded.jsonl")
    srsly.write_jsonl(tmp_path / "passages.jsonl", make_passages(read_documents(records)))
    teacher = tmp_path / "recorded.cfg"
    teacher.write_text(f'[model]\n@llm_models = "spacy_uniner.RecordedTeacher.v1"\npath = "{records}"\n')
    return tmp_path, teacher


def overrides(tmp_path):
    return {"components.llm.cache.path": str(tmp_path / "cache")}


def test_task_prompt_and_spans():
    nlp = spacy.blank("en")
    task = make_open_ner_task(spans_key="teacher")
    doc = nlp(PASSAGES["p2"])
    assert list(task.generate_prompts([doc])) == [teacher_prompt(doc.text)]
    assert teacher_prompt(doc.text).endswith("\n\nPassage: " + doc.text)
    (doc,) = task.parse_responses([doc], [[RESPONSES["p2"]]])
    record = doc.user_data[ANSWER_KEY]
    # "AppData" and "Local" sit inside one path token: the mentions keep their exact offsets.
    assert [doc.text[s:e] for s, e, _ in record["mentions"]] == ["AppData", "Local", "Windows"]
    assert record["answer"] == RESPONSES["p2"] and record["well_formed"] and record["mentions_not_in_text"] == 0
    assert [(span.text, span.label_) for span in doc.spans["teacher"]][-1] == ("Windows", "operating system")


def test_task_counts_mentions_not_in_text_and_matches_case_insensitively():
    nlp = spacy.blank("en")
    task = make_open_ner_task()
    doc = nlp(PASSAGES["p1"])
    _, record = task.read_answer(doc, RESPONSES["p1"])
    assert record["mentions_not_in_text"] == 1  # Pfizer
    assert [doc.text[s:e] for s, e, _ in record["mentions"]] == ["Aspirin", "Bayer", "Leverkusen", "Bayer", "Aspirin"]
    doc = nlp(PASSAGES["p6"])
    _, record = task.read_answer(doc, RESPONSES["p6"])
    assert [doc.text[s:e] for s, e, _ in record["mentions"]] == ["Kobe", "Japan", "KOBE"]


def test_recorded_teacher(tmp_path):
    teacher = RecordedTeacher(write_records(tmp_path / "r.jsonl", ["p1"]))
    assert teacher([[teacher_prompt(PASSAGES["p1"])]]) == [[RESPONSES["p1"]]]
    with pytest.raises(ValueError, match="no recorded response for the passage 'Ada Lovelace"):
        teacher([[teacher_prompt(PASSAGES["p4"])]])
    with pytest.raises(ValueError, match="Not a teacher prompt"):
        teacher([["What describes person in the text?"]])
    with pytest.raises(ValueError, match="no file of recorded responses"):
        RecordedTeacher(tmp_path / "missing.jsonl")
    (tmp_path / "bad.jsonl").write_text('{"text": "x"}\n')
    with pytest.raises(ValueError, match='line 1: expected {"text": str, "response": str}'):
        RecordedTeacher(tmp_path / "bad.jsonl")


def test_distill_offline_and_resume_from_cache(project):
    tmp_path, teacher = project
    report = run_distillation(tmp_path / "passages.jsonl", tmp_path / "ann.spacy", ROOT / "configs/distill.cfg", teacher, tmp_path / "report.json", 2, overrides(tmp_path))
    assert report == srsly.read_json(tmp_path / "report.json")
    assert report["passages"] == 6 and report["parse_failures"] == 0
    assert report["answers_malformed"] == 1  # p5 is cut off: its tuples are salvaged
    assert report["pairs"] == 4 + 3 + 0 + 3 + 3 + 2
    assert report["mentions_not_in_text"] == 1
    assert report["mentions"] == 5 + 3 + 3 + 3 + 3
    docs = list(DocBin().from_disk(tmp_path / "ann.spacy").get_docs(spacy.blank("en").vocab))
    assert [doc.user_data["passage_id"] for doc in docs] == list(PASSAGES)
    assert list(docs[0].user_data["passage_meta"]["negative_types"]) == ["disease"]
    # A second run asks nothing: with its records gone, the teacher would raise for any passage asked.
    (tmp_path / "recorded.jsonl").write_text("")
    again = run_distillation(tmp_path / "passages.jsonl", tmp_path / "again.spacy", ROOT / "configs/distill.cfg", teacher, None, 2, overrides(tmp_path))
    assert {**again, "run": None} == {**report, "run": None}


def test_another_teacher_is_not_handed_the_cached_answers_of_the_first(project):
    tmp_path, teacher = project
    run_distillation(tmp_path / "passages.jsonl", tmp_path / "ann.spacy", ROOT / "configs/distill.cfg", teacher, None, 2, overrides(tmp_path))
    other = tmp_path / "other.jsonl"
    other.write_text((tmp_path / "recorded.jsonl").read_text())
    (tmp_path / "other.cfg").write_text(f'[model]\n@llm_models = "spacy_uniner.RecordedTeacher.v1"\npath = "{other}"\n')
    before = (tmp_path / "ann.spacy").read_bytes()
    with pytest.raises(ValueError, match=rf"the cache {tmp_path / 'cache'} holds the answers of spacy_uniner.RecordedTeacher.v1 at {tmp_path / 'recorded.jsonl'}.*this run's teacher is spacy_uniner.RecordedTeacher.v1 at {other}"):
        run_distillation(tmp_path / "passages.jsonl", tmp_path / "ann.spacy", ROOT / "configs/distill.cfg", tmp_path / "other.cfg", None, 2, overrides(tmp_path))
    assert (tmp_path / "ann.spacy").read_bytes() == before and not list(tmp_path.glob(".*.lock")) and not list((tmp_path / "cache").glob(".*.lock"))


def test_distill_error_names_the_passage_and_the_cache(project, tmp_path):
    _, _ = project
    records = write_records(tmp_path / "partial.jsonl", ["p1", "p2", "p3"])
    (tmp_path / "partial.cfg").write_text(f'[model]\n@llm_models = "spacy_uniner.RecordedTeacher.v1"\npath = "{records}"\n')
    with pytest.raises(RuntimeError, match=r"stopped after 2 of 6 passages \(the answered ones are cached in .*cache; run again to resume\).*Ada Lovelace"):
        run_distillation(tmp_path / "passages.jsonl", tmp_path / "ann.spacy", ROOT / "configs/distill.cfg", tmp_path / "partial.cfg", None, 2, overrides(tmp_path))


def test_teacher_file_needs_a_model_block(tmp_path):
    (tmp_path / "t.cfg").write_text("[nlp]\nlang = \"en\"\n")
    with pytest.raises(ValueError, match=r"expected a \[model\] block"):
        load_distiller(ROOT / "configs/distill.cfg", tmp_path / "t.cfg")


def test_passages_cut_at_sentences_as_exact_substrings_and_deduplicate(tmp_path):
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    text = "One two three. Four five six seven.\n\nEight nine ten eleven twelve thirteen fourteen fifteen sixteen."
    passages = split_passages(text, nlp, max_words=7)
    assert passages == ["One two three. Four five six seven.", "Eight nine ten eleven twelve thirteen fourteen", "fifteen sixteen."]
    assert all(passage in text for passage in passages)
    assert split_passages("Short  text.\n", nlp, max_words=7) == ["Short  text."]
    assert split_passages(" \n ", nlp) == []
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text(text)
    srsly.write_jsonl(tmp_path / "docs" / "b.jsonl", [{"text": "Eight nine ten eleven  twelve thirteen fourteen"}, {"text": "New one.", "meta": {"source": "b"}}])
    passages = list(make_passages(read_documents(tmp_path / "docs"), max_words=7))
    assert [p["id"] for p in passages] == ["a#0", "a#1", "a#2", "b:2"]
    assert passages[-1] == {"id": "b:2", "text": "New one.", "meta": {"source": "b"}}
    srsly.write_jsonl(tmp_path / "bad.jsonl", [{"body": "x"}])
    with pytest.raises(ValueError, match='bad.jsonl line 1: expected a record with a "text" string'):
        list(read_documents(tmp_path / "bad.jsonl"))
    with pytest.raises(ValueError, match="expected a .txt or .jsonl file"):
        list(read_documents(tmp_path / "docs.csv"))


def test_read_passages_rejects_empty_text(tmp_path):
    srsly.write_jsonl(tmp_path / "p.jsonl", [{"id": "a", "text": "Fine."}, {"id": "b", "text": "  "}])
    with pytest.raises(ValueError, match='line 2: expected a record with a non-empty "text"'):
        read_passages(spacy.blank("en"), tmp_path / "p.jsonl")


def test_pile_ner_both_formats_give_the_same_records(tmp_path):
    text = "Kobe is in Japan. Kobe beef."
    questions = [
        {"doc_question_pairID": "7:0", "tagName": "city", "input": text, "instruction": "...", "output": '["Kobe"]'},
        {"doc_question_pairID": "7:1", "tagName": "disease", "input": text, "instruction": "...", "output": "[]"},
        {"doc_question_pairID": "7:2", "tagName": "country", "input": text, "instruction": "...", "output": '["Japan", "Japan"]'},
    ]
    srsly.write_jsonl(tmp_path / "sample.jsonl", questions)
    conversation = {"id": "pile-7", "conversations": [
        {"from": "human", "value": "Text: " + text}, {"from": "gpt", "value": "I've read this text."},
        {"from": "human", "value": "What describes city in the text?"}, {"from": "gpt", "value": '["Kobe"]'},
        {"from": "human", "value": "What describes disease in the text?"}, {"from": "gpt", "value": "[]"},
        {"from": "human", "value": "What describes country in the text?"}, {"from": "gpt", "value": '["Japan"]'},
    ]}
    srsly.write_json(tmp_path / "train.json", [conversation])
    expected = [{"id": "pile-7", "text": text, "response": '[("Kobe", "city"), ("Japan", "country")]', "meta": {"negative_types": ["disease"]}}]
    assert list(read_pile_ner(tmp_path / "sample.jsonl")) == expected
    assert list(read_pile_ner(tmp_path / "train.json")) == expected
    conversation["conversations"][2]["value"] = "Who is in the text?"
    srsly.write_json(tmp_path / "bad.json", [conversation])
    with pytest.raises(ValueError, match=r"record 0 \(pile-7\): not a type question"):
        list(read_pile_ner(tmp_path / "bad.json"))
    srsly.write_jsonl(tmp_path / "bad.jsonl", [{"input": text}])
    with pytest.raises(ValueError, match="line 1: expected doc_question_pairID, tagName, input and output"):
        list(read_pile_ner(tmp_path / "bad.jsonl"))


def test_definitions_and_token_span_sources_join_into_one_record_per_text(tmp_path):
    shared = "Ada Lovelace met Charles Babbage in London."
    definitions = {
        "person": {"named_entity": "person", "sentences_as_example": [
            {"sentence": shared, "entities": ["Ada Lovelace", "Charles Babbage"]},
            {"sentence": "Kobe is in Japan.", "entities": []},
        ]},
        "city": {"named_entity": "city", "sentences_as_example": [{"sentence": shared, "entities": ["London"]}]},
    }
    srsly.write_json(tmp_path / "definitions.json", definitions)
    spans = [
        {"tokenized_text": ["Ada", "Lovelace", "wrote", "notes", "."], "ner": [[0, 1, "Person"], [3, 3, "Document"], [0, 1, "Person"]]},
        {"tokenized_text": shared[:-1].split() + ["."], "ner": [[6, 6, "city"], [0, 1, "scientist"]]},
    ]
    srsly.write_json(tmp_path / "gliner.json", spans)
    records = read_records([tmp_path / "definitions.json", tmp_path / "gliner.json"])
    assert records == [
        # The shared sentence: asked about person and city in the definitions; GLiNER's copy of it
        # (tokenized: "London ." -- another text) stays a record of its own.
        {"id": "def-person-0", "text": shared, "response": '[("Ada Lovelace", "person"), ("Charles Babbage", "person"), ("London", "city")]', "meta": {"negative_types": []}},
        {"id": "def-person-1", "text": "Kobe is in Japan.", "response": "[]", "meta": {"negative_types": ["person"]}},
        {"id": "gliner-0", "text": "Ada Lovelace wrote notes .", "response": '[("Ada Lovelace", "Person"), ("notes", "Document")]', "meta": {"negative_types": []}},
        {"id": "gliner-1", "text": "Ada Lovelace met Charles Babbage in London .", "response": '[("London", "city"), ("Ada Lovelace", "scientist")]', "meta": {"negative_types": []}},
    ]
    srsly.write_json(tmp_path / "bad.json", {"person": {"sentences_as_example": [{"text": shared}]}})
    with pytest.raises(ValueError, match="bad.json: type 'person': expected sentences_as_example"):
        read_records([tmp_path / "bad.json"])
    srsly.write_json(tmp_path / "bad_spans.json", [{"tokenized_text": ["a"], "ner": [[0, "x"]]}])
    with pytest.raises(ValueError, match=r"bad_spans.json record 0: expected tokenized_text and ner"):
        read_records([tmp_path / "bad_spans.json"])


def test_a_type_answered_in_one_source_is_no_negative_in_the_joined_record(tmp_path):
    text = "Kobe is in Japan."
    srsly.write_jsonl(tmp_path / "a.jsonl", [{"doc_question_pairID": "1:0", "tagName": "country", "input": text, "output": "[]"}])
    srsly.write_json(tmp_path / "b.json", {"country": {"sentences_as_example": [{"sentence": text, "entities": ["Japan"]}]}})
    (record,) = read_records([tmp_path / "a.jsonl", tmp_path / "b.json"])
    assert record == {"id": "pile-1", "text": text, "response": '[("Japan", "country")]', "meta": {"negative_types": []}}


def test_teacher_response_reads_back():
    from spacy_uniner.answers import parse_teacher_answer

    pairs = [('He said "hi"', "quote"), ("Zürich", "city"), ("O'Neil", "person")]
    assert parse_teacher_answer(teacher_response(pairs)).pairs == pairs


@pytest.mark.skipif(not SAMPLE.exists(), reason="needs ../shared/data (the offline mirror)")
def test_shipped_pile_ner_sample_replays_completely(tmp_path):
    records = list(read_pile_ner(SAMPLE))
    assert len(records) == 882
    assert sum(len(r["meta"]["negative_types"]) for r in records) == 1320 - 717
    # Every recorded passage fits in 256 words, so passage preparation keeps each one whole.
    assert [p["text"] for p in make_passages(records)] == [r["text"] for r in records]


@pytest.mark.skipif(not SAMPLE.exists(), reason="needs ../shared/data (the offline mirror)")
def test_every_recorded_source_of_the_mirror_reads(tmp_path):
    folder = SAMPLE.parent.parent
    records = read_records([SAMPLE, folder / "slimer_subset" / "top391NEs_definitions.json", folder / "gliner_sample_data.json"])
    sources = {}
    for record in records:
        sources[record["id"].split("-")[0]] = sources.get(record["id"].split("-")[0], 0) + 1
    # 1,172 definition sentences, 17 of them asked about two types.
    assert sources == {"pile": 882, "def": 1155, "gliner": 64}
    assert len({record["text"] for record in records}) == len(records)


def test_each_teacher_gets_its_own_cache_folder(project, monkeypatch):
    tmp_path, teacher = project
    monkeypatch.chdir(tmp_path)

    def cache_path(overrides={}):
        return load_distiller(ROOT / "configs/distill.cfg", teacher, overrides).config["components"]["llm"]["cache"]["path"]

    default = cache_path()
    assert default.startswith("corpus/teacher_cache/recorded-")
    assert cache_path() == default
    other = write_records(tmp_path / "other.jsonl", ["p1"])
    assert cache_path({"components.llm.model.path": str(other)}) != default
    assert cache_path({"components.llm.cache.path": "mine"}) == "mine"


def test_llm_registrations_resolve_from_entry_points_without_importing_the_package(tmp_path):
    """spacy-llm looks its tasks and models up in the `thinc_llm_*` entry-point groups: `spacy
    assemble` builds a config that names ours in an interpreter that never imported spacy_uniner."""
    records = write_records(tmp_path / "r.jsonl", ["p4"])
    config = tmp_path / "teacher.cfg"
    config.write_text(
        '[nlp]\nlang = "en"\npipeline = ["llm"]\n\n[components]\n\n[components.llm]\nfactory = "llm"\n\n'
        '[components.llm.task]\n@llm_tasks = "spacy_uniner.OpenNER.v1"\n\n'
        f'[components.llm.model]\n@llm_models = "spacy_uniner.RecordedTeacher.v1"\npath = "{records}"\n'
    )
    result = subprocess.run([sys.executable, "-m", "spacy", "assemble", str(config), str(tmp_path / "out")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-1000:] + result.stderr[-2000:]
    doc = spacy.load(tmp_path / "out")(PASSAGES["p4"])
    assert [(span.text, span.label_) for span in doc.spans["teacher"]] == [("Ada Lovelace", "person"), ("Charles Babbage", "person"), ("London", "city")]
