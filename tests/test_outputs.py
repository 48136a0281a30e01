"""What a user owns is never lost: a command refuses, before any work, an output that is one of its
inputs, lies inside one or holds one, naming both; and its outputs get the modes the umask gives."""
import os
import stat

import pytest
import spacy
import srsly
from spacy.tokens import DocBin
from typer.testing import CliRunner

from spacy_uniner.cli import app
from spacy_uniner.files import path_from
from conftest import save_tiny_pipeline
from test_user_errors import one_line_error, spacy_uniner


def refused(*args, message):
    """The command run in this process (as the CLI does, less its one-line printing): a ValueError
    naming both paths."""
    result = CliRunner().invoke(app, [str(arg) for arg in args])
    assert isinstance(result.exception, ValueError) and message in str(result.exception), (result.output, result.exception)


@pytest.fixture(scope="module")
def student(tiny_llama_path, tmp_path_factory):
    return save_tiny_pipeline(tiny_llama_path, tmp_path_factory.mktemp("student") / "pipeline")


@pytest.fixture
def gold(tmp_path):
    nlp = spacy.blank("en")
    doc = nlp("Marie Curie lived in Paris.")
    doc.ents = [doc.char_span(0, 11, label="person")]
    DocBin(docs=[doc]).to_disk(tmp_path / "gold.spacy")
    return tmp_path / "gold.spacy"


def snapshot(folder):
    return {str(path.relative_to(folder)): (path.stat().st_mtime_ns, path.stat().st_size) for path in folder.rglob("*")}


def test_adapt_refuses_to_write_over_into_or_around_the_student(student, gold):
    before = snapshot(student.parent)
    one_line_error(spacy_uniner("adapt", student, gold, gold, student), f"the output {student} is the student {student}")
    refused("adapt", student, gold, gold, student / "adapted", message=f"the output {student / 'adapted'} is inside the student {student}")
    refused("adapt", student, gold, gold, student.parent, message=f"the output {student.parent} holds the student {student}")
    assert snapshot(student.parent) == before  # nothing written, not even an empty checkpoints folder


def test_adapt_refuses_checkpoints_inside_the_student(student, gold, tmp_path):
    refused("adapt", student, gold, gold, tmp_path / "adapted", "--checkpoints", student / "checkpoints", message="is inside the student")
    assert not (student / "checkpoints").exists() and not (tmp_path / "adapted").exists()


def test_average_refuses_an_output_inside_a_student(student):
    before = snapshot(student)
    refused("average", student, student, student / "avg", message="is inside the student pipeline #1")
    assert snapshot(student) == before and not list(student.glob(".avg*"))


def test_train_build_data_and_passages_refuse_their_input_as_output(tmp_path):
    text = tmp_path / "docs.txt"
    text.write_text("Marie Curie lived in Paris.\n")
    refused("passages", text, text, message=f"the output {text} is the source {text}")
    assert text.read_text() == "Marie Curie lived in Paris.\n"
    conversations = tmp_path / "conversations.json"
    srsly.write_json(conversations, [])
    refused("train", conversations, tmp_path, "--checkpoints", tmp_path / "c", message=f"the output {tmp_path} holds the conversations {conversations}")
    annotations = tmp_path / "annotations.spacy"
    DocBin().to_disk(annotations)
    refused("build-data", annotations, tmp_path / "c.json", "--report", annotations, message="is the annotations")


def test_outputs_get_the_modes_the_umask_gives(tmp_path):
    """mkstemp and mkdtemp make private files (0600) and folders (0700); a rename keeps their modes."""
    text = tmp_path / "docs.txt"
    text.write_text("Marie Curie lived in Paris.\n")
    previous = os.umask(0o027)
    try:
        done = spacy_uniner("passages", text, tmp_path / "out" / "passages.jsonl")
    finally:
        os.umask(previous)
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE((tmp_path / "out" / "passages.jsonl").stat().st_mode) == 0o640


@pytest.mark.parametrize("write", ["atomic_file", "atomic_folder"])
def test_a_write_that_fails_leaves_neither_its_output_nor_the_folders_made_for_it(tmp_path, write):
    from spacy_uniner import files

    with pytest.raises(RuntimeError):
        with getattr(files, write)(tmp_path / "made" / "for it" / "out"):
            raise RuntimeError("killed mid-write")
    assert list(tmp_path.iterdir()) == []


def test_evaluate_benchmarks_and_the_gguf_export_refuse_outputs_inside_the_pipeline(student, tmp_path):
    texts = tmp_path / "texts.jsonl"
    srsly.write_jsonl(texts, [{"text": "Marie Curie lived in Paris."}])
    refused("evaluate", student, student / "evaluation", "--limit", "1", message=f"the output {student / 'evaluation'} is inside the pipeline {student}")
    refused("benchmark", student, texts, texts, student / "speed.json", message="is inside the pipeline")
    refused("export-gguf", student, student / "student.gguf", message="is inside the pipeline")
    assert not (student / "evaluation").exists() and not (student / "evaluation.json").exists()


def test_a_pipeline_names_its_data_from_its_own_folder(tmp_path, monkeypatch):
    # meta.json names the conversations a student learned from relative to the pipeline, so a
    # project moved whole keeps finding them; across drives (Windows) no relative path exists.
    (tmp_path / "corpus").mkdir()
    assert path_from(tmp_path / "training" / "uniner", tmp_path / "corpus" / "conversations.json") == "../../corpus/conversations.json"
    assert path_from(tmp_path / "training", tmp_path / "training" / "data.json") == "data.json"

    def other_drive(path, start):
        raise ValueError("path is on mount 'D:', start on mount 'C:'")

    monkeypatch.setattr(os.path, "relpath", other_drive)
    assert path_from(tmp_path / "training", tmp_path / "corpus" / "conversations.json") == str((tmp_path / "corpus" / "conversations.json").resolve())
