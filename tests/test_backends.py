"""The model block: each backend with its own keys, third-party backends through the registry, and
pipelines saved before the block (flat keys) loading as they did."""
import subprocess
import sys
from importlib.metadata import entry_points

import pytest
import spacy
from confection import ConfigValidationError
from spacy.util import load_config, registry
from typer.testing import CliRunner

from spacy_uniner.backends import COMPLETIONS_SERVER, LEGACY_SERVER, TRANSFORMERS
from spacy_uniner.cli import app
from spacy_uniner.generation import HFGenerator
from spacy_uniner.pipelines import load_pipeline
from spacy_uniner.server import ServerGenerator
from spacy_uniner.upgrade import upgrade_block

# The `uniner` block as the code before the model block (31a9be8) saved it: `make run`'s student.
FLAT_BLOCK = {
    "factory": "uniner", "model": "training/checkpoints/student", "labels": ["person", "city"], "batch_size": 64,
    "max_new_tokens": 6, "device": "auto", "dtype": "auto", "window_size": 256, "window_overlap": 32, "spans_key": "uniner",
    "overwrite_ents": False, "trust_remote_code": False, "threshold": 0.0, "label_margin": 1.0, "constrained": True,
    "server": None, "concurrency": 8, "timeout": 60.0, "max_tries": 4, "on_error": "raise", "api_key_env": "OPENAI_API_KEY",
    "model_kwargs": {}, "scorer": {"@scorers": "spacy.ner_scorer.v1"},
}
TEXTS = ["Marie Curie lived in Paris.", "Alan Turing was born in London."]


def entities(nlp):
    return [[(span.start, span.end, span.label_) for span in doc.spans["uniner"]] for doc in nlp.pipe(TEXTS)]


@pytest.fixture
def flat_pipeline(tiny_llama_path, tmp_path):
    """The tiny student saved by today's code, its config.cfg then written as the old code wrote it."""
    nlp = spacy.blank("en")
    nlp.add_pipe("uniner", config={"model": {"name": str(tiny_llama_path), "max_new_tokens": 6, "batch_size": 64, "constrained": True}, "labels": ["person", "city"]})
    nlp.to_disk(tmp_path / "today")
    config = load_config(tmp_path / "today" / "config.cfg", interpolate=False)
    config["components"]["uniner"] = dict(FLAT_BLOCK)
    nlp.to_disk(tmp_path / "flat")
    config.to_disk(tmp_path / "flat" / "config.cfg")
    return tmp_path / "flat", entities(nlp)


def test_each_backend_takes_only_its_own_keys():
    nlp = spacy.blank("en")
    local = nlp.add_pipe("uniner", name="local", config={"model": {"name": "unused", "batch_size": 3, "dtype": "float32"}, "labels": ["x"]})
    assert isinstance(local.generator, HFGenerator) and local.generator.batch_size == 3
    served = nlp.add_pipe("uniner", name="served", config={"model": {"@uniner_models": COMPLETIONS_SERVER, "url": "http://127.0.0.1:9/v1", "name": "m", "concurrency": 2}, "labels": ["x"]})
    assert isinstance(served.generator, ServerGenerator) and served.generator.concurrency == 2
    assert set(nlp.config["components"]["served"]["model"]) == {"@uniner_models", "url", "name", "max_new_tokens", "concurrency", "timeout", "max_tries", "api_key_env"}
    assert set(nlp.config["components"]["local"]) == {"factory", "model", "labels", "window_size", "window_overlap", "spans_key", "overwrite_ents", "threshold", "label_margin", "dataset", "on_error", "scorer"}
    with pytest.raises(ConfigValidationError, match="batch_size"):
        spacy.blank("en").add_pipe("uniner", config={"model": {"@uniner_models": COMPLETIONS_SERVER, "url": "http://x/v1", "name": "m", "batch_size": 4}, "labels": ["x"]})
    with pytest.raises(ConfigValidationError, match="batch_size"):
        spacy.blank("en").add_pipe("uniner", config={"model": "unused", "labels": ["x"], "batch_size": 4})  # not the component's


def test_a_string_model_is_the_in_process_backend_and_backends_are_registered_entry_points():
    uniner = spacy.blank("en").add_pipe("uniner", config={"model": "some/model", "labels": ["x"]})
    assert isinstance(uniner.generator, HFGenerator) and uniner.generator.source == "some/model"
    names = {point.name for point in entry_points(group="thinc_uniner_models")}
    assert {TRANSFORMERS, COMPLETIONS_SERVER} <= names
    assert registry.uniner_models.get(TRANSFORMERS) is not None


def test_a_spacy_pipeline_without_the_student_does_not_load_the_student_stack(tiny_llama_path):
    """spaCy imports every installed factory's module whenever it makes a pipeline (`spacy.blank`
    too): the transformers backend's stack loads only when a student is built."""
    code = (
        "import sys, spacy\n"
        "nlp = spacy.blank('en')\n"
        "print('spacy_uniner.component' in sys.modules, 'spacy_uniner.generation' in sys.modules)\n"
        "nlp.add_pipe('uniner', config={'model': sys.argv[1], 'labels': ['person']})\n"
        "print('spacy_uniner.generation' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(tiny_llama_path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "False", "True"]


def test_a_pipeline_saved_with_flat_keys_loads_and_answers_as_before(flat_pipeline):
    path, expected = flat_pipeline
    with pytest.raises(ConfigValidationError, match="batch_size"):
        spacy.load(path)  # what `spacy-uniner upgrade` is for
    nlp = load_pipeline(str(path))
    model = nlp.config["components"]["uniner"]["model"]
    assert (model["@uniner_models"], model["batch_size"], model["constrained"], model["name"]) == (TRANSFORMERS, 64, True, "training/checkpoints/student")
    assert "server" not in nlp.config["components"]["uniner"]
    assert entities(nlp) == expected
    # An old key given at load time goes to its new place; a server's cannot, and says where it went.
    assert load_pipeline(str(path), {"components": {"uniner": {"constrained": False}}}).get_pipe("uniner").generator.constrained is False
    with pytest.raises(ValueError, match=r"server moved into the component's model block: give .*CompletionsServer"):
        load_pipeline(str(path), {"components": {"uniner": {"server": "http://127.0.0.1:9/v1"}}})
    result = CliRunner().invoke(app, ["upgrade", str(path)])
    assert result.exit_code == 0 and "moved uniner.model, uniner.api_key_env, uniner.batch_size" in result.output
    assert entities(spacy.load(path)) == expected
    assert "already in today's shape" in CliRunner().invoke(app, ["upgrade", str(path)]).output


def test_upgrade_refuses_a_config_without_the_component_and_old_overrides_beside_a_string_model(flat_pipeline, tmp_path):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.cfg").write_text("")
    result = CliRunner().invoke(app, ["upgrade", str(tmp_path / "other")])
    assert result.exit_code != 0 and "has no uniner component" in str(result.exception)
    path, _ = flat_pipeline
    nlp = load_pipeline(str(path), {"components": {"uniner": {"model": "elsewhere", "batch_size": 3}}})
    assert nlp.config["components"]["uniner"]["model"]["name"] == "elsewhere" and nlp.get_pipe("uniner").generator.batch_size == 3


def test_a_flat_server_block_becomes_the_servers_backend():
    block, moved = upgrade_block(dict(FLAT_BLOCK, server="http://gpu:8000/v1", constrained=False, concurrency=32))
    assert block["model"] == {"@uniner_models": COMPLETIONS_SERVER, "url": "http://gpu:8000/v1", "name": "training/checkpoints/student", "max_new_tokens": 6,
                              "concurrency": 32, "timeout": 60.0, "max_tries": 4, "api_key_env": "OPENAI_API_KEY"}
    assert "server" in moved and "batch_size" in moved and block["on_error"] == "raise"
    assert upgrade_block(block) == (block, [])


def test_the_server_backend_has_a_name_of_its_own_and_its_old_name_still_loads(tmp_path):
    """The student's server backend was registered as the teacher's spacy-llm model is named; it has
    its own name now, and a pipeline saved under the old one loads through plain spacy.load and is
    rewritten by `upgrade`."""
    assert COMPLETIONS_SERVER != LEGACY_SERVER and registry.llm_models.get(LEGACY_SERVER) is not registry.uniner_models.get(COMPLETIONS_SERVER)
    assert {point.name for point in entry_points(group="thinc_uniner_models")} >= {COMPLETIONS_SERVER, LEGACY_SERVER}
    nlp = spacy.blank("en")
    nlp.add_pipe("uniner", config={"model": {"@uniner_models": LEGACY_SERVER, "url": "http://127.0.0.1:9/v1", "name": "m", "concurrency": 3}, "labels": ["x"]})
    nlp.to_disk(tmp_path / "served")
    assert spacy.load(tmp_path / "served").get_pipe("uniner").generator.concurrency == 3
    result = CliRunner().invoke(app, ["upgrade", str(tmp_path / "served")])
    assert result.exit_code == 0 and "uniner.model.@uniner_models" in result.output
    assert spacy.load(tmp_path / "served").config["components"]["uniner"]["model"]["@uniner_models"] == COMPLETIONS_SERVER
