"""Averaging students: the mean of their weights in a pipeline that loads and answers, and a clear
error for what cannot be averaged."""
import shutil
from pathlib import Path

import pytest
import spacy
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM
from typer.testing import CliRunner

from spacy_uniner.average import average_students
from spacy_uniner.cli import app


def student_pipeline(model: Path, output: Path, **config) -> Path:
    nlp = spacy.blank("en")
    nlp.add_pipe("uniner", config={"model": {"name": str(model), "max_new_tokens": 4}, "labels": ["person"], **config})
    nlp.to_disk(output)
    return output


def other_student(tiny_llama_path: Path, output: Path, seed: int, **changes) -> Path:
    """A model of tiny_llama's tokenizer with its own random weights (and `changes` to its shape)."""
    shutil.copytree(tiny_llama_path, output)
    config = LlamaConfig.from_pretrained(tiny_llama_path)
    for key, value in changes.items():
        setattr(config, key, value)
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(output)
    return output


def test_the_averaged_pipeline_holds_the_mean_weights_and_the_first_ones_settings(tiny_llama_path, tmp_path):
    first = student_pipeline(tiny_llama_path, tmp_path / "first", threshold=0.3)
    second = student_pipeline(other_student(tiny_llama_path, tmp_path / "model-2", seed=1), tmp_path / "second")
    third = student_pipeline(other_student(tiny_llama_path, tmp_path / "model-3", seed=2), tmp_path / "third")
    result = CliRunner().invoke(app, ["average", str(first), str(second), str(third), str(tmp_path / "mean")])
    assert result.exit_code == 0, result.output
    assert "the mean of 3 students" in result.output

    weights = [load_file(pipeline / "uniner" / "model" / "model.safetensors") for pipeline in (first, second, third)]
    averaged = AutoModelForCausalLM.from_pretrained(tmp_path / "mean" / "uniner" / "model").state_dict()
    name = "model.layers.0.mlp.up_proj.weight"
    assert not torch.equal(weights[0][name], weights[1][name])
    for key, tensor in averaged.items():
        if key in weights[0]:  # a tied output layer is stored once, as the embeddings
            torch.testing.assert_close(tensor, sum(weight[key] for weight in weights) / 3)

    nlp = spacy.load(tmp_path / "mean")
    assert nlp.get_pipe("uniner").threshold == 0.3
    doc = nlp("Ada Lovelace wrote notes.")
    assert nlp.get_pipe("uniner").stats["queries"] == 1
    assert doc.text == "Ada Lovelace wrote notes."


def test_what_cannot_be_averaged_is_named(tiny_llama_path, tmp_path):
    first = student_pipeline(tiny_llama_path, tmp_path / "first")
    wider = student_pipeline(other_student(tiny_llama_path, tmp_path / "wider", seed=1, intermediate_size=96), tmp_path / "wider-pipeline")
    with pytest.raises(ValueError, match=r"is not shaped as .*first's \(\d+ weights differ, e\.g\. model\.layers\.0\.mlp\..*only students of one base"):
        average_students([first, wider], tmp_path / "mean")
    with pytest.raises(ValueError, match="averaging needs at least two student pipelines, got 1"):
        average_students([first], tmp_path / "mean")
    with pytest.raises(ValueError, match="the output .*first is the student pipeline #1"):
        average_students([first, first], tmp_path / "first")
    (tmp_path / "taken").mkdir()
    with pytest.raises(ValueError, match="exists: give a new folder"):
        average_students([first, first], tmp_path / "taken")
    served = spacy.blank("en")
    served.add_pipe("uniner", config={"model": {"@uniner_models": "spacy_uniner.CompletionsServer.v1", "url": "http://127.0.0.1:9/v1", "name": "student"}, "labels": ["person"]})
    served.to_disk(tmp_path / "served")
    with pytest.raises(ValueError, match="asks the server at http://127.0.0.1:9/v1: it holds no weights"):
        average_students([first, tmp_path / "served"], tmp_path / "mean")
    assert not (tmp_path / "mean").exists()


def test_students_of_other_vocabularies_are_refused(tiny_llama_path, tmp_path):
    other = other_student(tiny_llama_path, tmp_path / "other", seed=1)
    tokenizer = AutoTokenizer.from_pretrained(other)
    tokenizer.add_tokens(["<extra>"])
    tokenizer.save_pretrained(other)
    first = student_pipeline(tiny_llama_path, tmp_path / "first")
    second = student_pipeline(other, tmp_path / "second")
    with pytest.raises(ValueError, match="has another vocabulary than .*only students of one base"):
        average_students([first, second], tmp_path / "mean")
