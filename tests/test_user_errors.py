"""Mistakes a user makes on the command line, run as a user runs them (a subprocess): each is one
line naming what and where, a non-zero exit, and the earlier output left as it was."""
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from conftest import save_tiny_pipeline
from spacy_uniner.pipelines import load_pipeline

ROOT = Path(__file__).parent.parent


def spacy_uniner(*args, cwd=ROOT, **env):
    # Wide: typer's error box wraps its message at the terminal's width, and a long temporary path
    # would split the words a test looks for.
    return subprocess.run([sys.executable, "-m", "spacy_uniner", *map(str, args)], capture_output=True, text=True, cwd=cwd, env={**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "400", **env}, timeout=300)


@pytest.fixture(scope="module")
def broken_pipeline(tiny_llama_path, tmp_path_factory):
    """A saved pipeline whose student lost its weights file."""
    path = save_tiny_pipeline(tiny_llama_path, tmp_path_factory.mktemp("broken") / "pipeline")
    (path / "uniner" / "model" / "model.safetensors").unlink()
    return path


def one_line_error(done, *words):
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in done.stderr, done.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def test_a_user_error_is_one_line_and_the_variable_shows_its_traceback(tmp_path):
    (tmp_path / "garbage.spacy").write_bytes(b"not a DocBin")
    one_line_error(spacy_uniner("build-data", tmp_path / "garbage.spacy", tmp_path / "out.json"), "garbage.spacy", "not a readable .spacy DocBin")
    shown = spacy_uniner("build-data", tmp_path / "garbage.spacy", tmp_path / "out.json", SPACY_UNINER_TRACEBACK="1")
    assert shown.returncode == 1 and "Traceback" in shown.stderr and "not a readable .spacy DocBin" in shown.stderr
    assert not (tmp_path / "out.json").exists()


def test_a_warning_is_one_line_and_the_variable_keeps_where_it_came_from(monkeypatch):
    from spacy_uniner import cli

    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)
    monkeypatch.setattr(cli, "app", lambda prog_name: None)
    monkeypatch.setenv(cli.TRACEBACK_VARIABLE, "1")
    cli.run()
    assert "adapt.py:163" in warnings.formatwarning("[adapt] a", UserWarning, "adapt.py", 163)
    monkeypatch.delenv(cli.TRACEBACK_VARIABLE)
    cli.run()
    assert warnings.formatwarning("[adapt] gold.spacy has no gold mention of\n['CHEM']", UserWarning, "adapt.py", 163) == "UserWarning: [adapt] gold.spacy has no gold mention of ['CHEM']\n"


def test_an_empty_passages_file_keeps_the_earlier_annotations(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n")
    (tmp_path / "out.spacy").write_bytes(b"earlier output")
    (tmp_path / "records.jsonl").write_text('{"text": "Marie Curie worked in Paris.", "response": "[]"}\n')
    (tmp_path / "teacher.cfg").write_text(f'[model]\n@llm_models = "spacy_uniner.RecordedTeacher.v1"\npath = "{tmp_path / "records.jsonl"}"\n')
    done = spacy_uniner("distill", tmp_path / "empty.jsonl", tmp_path / "out.spacy", "--teacher", tmp_path / "teacher.cfg", "--components.llm.cache.path", tmp_path / "cache")
    one_line_error(done, "empty.jsonl holds no passages")
    assert (tmp_path / "out.spacy").read_bytes() == b"earlier output"


def test_a_pipeline_folder_that_does_not_load_says_why_and_is_never_asked_of_the_hub(broken_pipeline, tmp_path):
    line = one_line_error(spacy_uniner("evaluate", broken_pipeline, tmp_path / "eval", "--limit", "1"), str(broken_pipeline / "uniner" / "model"))
    assert "model.safetensors" in line
    demo = spacy_uniner("demo", broken_pipeline, "--port", "8765")
    assert "model.safetensors" in one_line_error(demo)
    (tmp_path / "empty").mkdir()
    one_line_error(spacy_uniner("evaluate", tmp_path / "empty", tmp_path / "eval", "--limit", "1"), "neither a spaCy pipeline folder (no config.cfg) nor a transformers model folder (no config.json)")


def test_a_pipeline_whose_meta_json_is_cut_short_or_not_one_is_named_by_every_command(broken_pipeline, tmp_path):
    folder = tmp_path / "pipeline"
    folder.mkdir()
    (folder / "config.cfg").write_bytes((broken_pipeline / "config.cfg").read_bytes())
    meta = (broken_pipeline / "meta.json").read_text()
    named = f"{folder / 'meta.json'} is not a pipeline's meta.json ("
    for damaged in ("[1, 2]", "7", '{"lang": "en"}'):  # in-process: a command's start is seconds
        (folder / "meta.json").write_text(damaged)
        with pytest.raises(ValueError, match=re.escape(named)):
            load_pipeline(str(folder))
    (folder / "meta.json").write_text(meta[:30])
    one_line_error(spacy_uniner("evaluate", folder, tmp_path / "eval", "--limit", "1"), named)
    one_line_error(spacy_uniner("demo", folder, "--port", "8767"), named)
    assert not (tmp_path / "eval").exists()


def test_a_model_folder_that_does_not_load_stops_the_demo_before_it_serves(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    one_line_error(spacy_uniner("demo", tmp_path / "model", "--port", "8766"), "could not load the model")


def test_outputs_that_are_folders_are_refused_before_the_work(broken_pipeline, tmp_path):
    (tmp_path / "out.gguf").mkdir()
    one_line_error(spacy_uniner("export-gguf", broken_pipeline, tmp_path / "out.gguf"), "out.gguf is a folder")
    assert list(tmp_path.iterdir()) == [tmp_path / "out.gguf"]  # no .partial left
    (tmp_path / "out.spacy").mkdir()
    passages = tmp_path / "passages.jsonl"
    passages.write_text('{"id": "p1", "text": "Marie Curie worked in Paris."}\n')
    one_line_error(spacy_uniner("distill", passages, tmp_path / "out.spacy", "--components.llm.cache.path", tmp_path / "cache"), "out.spacy is a folder")
    # The benchmarks refuse theirs before loading anything (the pipeline here would not load).
    (tmp_path / "speed.json").mkdir()
    for command in ("benchmark", "benchmark-precision", "benchmark-engines"):
        one_line_error(spacy_uniner(command, broken_pipeline, passages, passages, tmp_path / "speed.json"), "speed.json is a folder")
    one_line_error(spacy_uniner("benchmark-teacher", passages, tmp_path / "speed.json"), "speed.json is a folder")


def test_help_shows_every_config_section_name():
    done = subprocess.run([sys.executable, "-m", "spacy_uniner", "train", "--help"], capture_output=True, text=True, cwd=ROOT, env={**os.environ, "COLUMNS": "400"})
    assert all(section in done.stdout for section in ("[model]", "[training]", "[lora]")), done.stdout
    done = subprocess.run([sys.executable, "-m", "spacy_uniner", "distill", "--help"], capture_output=True, text=True, cwd=ROOT, env={**os.environ, "COLUMNS": "400"})
    assert "[model]" in done.stdout


@pytest.mark.parametrize(
    "names,message",
    [
        ('["ORG", "organization"]', "must hold a JSON object of label -> type name strings"),
        ("", "names.json is not a JSON file"),
        ('{"ORG": "organi', "names.json is not a JSON file"),
        ('{"ORG": "organi\\nzation"}', "maps 'ORG' to 'organi\\nzation', a control character '\\n': a label is one line of text"),
    ],
)
def test_adapt_refuses_a_label_map_that_is_not_one(tmp_path, broken_pipeline, names, message):
    (tmp_path / "names.json").write_text(names)
    (tmp_path / "gold.spacy").write_bytes(b"")
    done = spacy_uniner("adapt", broken_pipeline, tmp_path / "gold.spacy", tmp_path / "gold.spacy", tmp_path / "out", "--label-names", tmp_path / "names.json")
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert "--label-names" in done.stderr and not (tmp_path / "out-checkpoints").exists()


@pytest.mark.parametrize(
    "name,content,message",
    [
        ("train.json", "", "train.json is not a JSON file"),
        ("train.json", '[{"conversations": ', "train.json is not a JSON file"),
        ("sample.jsonl", '{"input": "x"}\n{"input": \n', "sample.jsonl line 2 is not JSON"),
    ],
)
def test_a_pile_ner_source_that_does_not_parse_is_named_in_one_line(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    one_line_error(spacy_uniner("pile-ner-records", tmp_path / name, tmp_path / "records.jsonl"), message)
    assert not (tmp_path / "records.jsonl").exists()


def test_adapt_refuses_a_negative_count_of_negatives_before_any_work(tmp_path, broken_pipeline):
    (tmp_path / "gold.spacy").write_bytes(b"")
    one_line_error(spacy_uniner("adapt", broken_pipeline, tmp_path / "gold.spacy", tmp_path / "gold.spacy", tmp_path / "out", "--negatives", "-1"), "--negatives must be a number >= 0", "got -1.0")
    assert not (tmp_path / "out").exists() and not (tmp_path / "out-checkpoints").exists()


@pytest.mark.skipif(not (ROOT.parent / "shared" / "data" / "benchmarks").is_dir(), reason="needs the data mirror ../shared/data")
def test_a_learning_curve_larger_than_its_set_is_refused_before_any_work(tmp_path, broken_pipeline):
    mirror = ROOT.parent / "shared" / "data"
    done = spacy_uniner("learning-curve", broken_pipeline, tmp_path / "curve", "--sets", "NCBI-disease", "--sizes", "25,700", "--eval", "300", "--mirror", mirror)
    one_line_error(done, "NCBI-disease has 940 sentences", "300 held out and a gold-train of 700")
    assert not (tmp_path / "curve").exists()
    done = spacy_uniner("learning-curve", broken_pipeline, tmp_path / "curve", "--sizes", "25,0")
    assert done.returncode == 2 and "--sizes" in done.stderr


def test_only_a_user_error_is_one_line_a_programming_error_keeps_its_traceback(tmp_path, monkeypatch, capsys):
    from spacy_uniner import cli
    from spacy_uniner.errors import UserError

    text = tmp_path / "docs.txt"
    text.write_text("Marie Curie lived in Paris.\n")
    monkeypatch.setattr(sys, "argv", ["spacy-uniner", "passages", str(text), str(tmp_path / "passages.jsonl")])
    monkeypatch.delenv("SPACY_UNINER_TRACEBACK", raising=False)

    def mistaken(*args, **kwargs):
        raise UserError(f"{text} holds no usable text")

    monkeypatch.setattr(cli, "make_passages", mistaken)
    with pytest.raises(SystemExit) as exited:
        cli.run()
    assert exited.value.code == 1 and capsys.readouterr().err.strip().startswith(f"Error: {text} holds no usable text")

    def buggy(*args, **kwargs):
        return int("not a number")  # a bug: Python's own ValueError

    monkeypatch.setattr(cli, "make_passages", buggy)
    with pytest.raises(ValueError, match="invalid literal for int"):
        cli.run()
