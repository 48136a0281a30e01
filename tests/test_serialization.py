"""The component serializes as spaCy's own do: both pairs (`to_disk`/`from_disk`,
`to_bytes`/`from_bytes`), with the weights and every setting that changes answers, from memory."""
import shutil
import warnings

import pytest
import spacy
import torch

from spacy_uniner.prompts import build_prompt

TEXTS = ["Barack Obama visited Paris.", "Aspirin can cause bleeding in patients with ulcers."]
LABELS = ["person", "city", "disease"]


def built(path, **model):
    nlp = spacy.blank("en")
    nlp.add_pipe("uniner", config={"model": {"name": str(path), "max_new_tokens": 6, "device": "cpu", **model}, "labels": LABELS})
    return nlp


def answers(nlp):
    prompts = [build_prompt(text, label) for text in TEXTS for label in LABELS]
    return nlp.get_pipe("uniner").generator.generate_scored(prompts)


def change_settings(uniner):
    uniner.labels, uniner.threshold, uniner.label_margin, uniner.dataset = ["city"], 0.01, 0.5, "CrossNER_AI"


def assert_changed_settings(uniner):
    assert (uniner.labels, uniner.threshold, uniner.label_margin, uniner.dataset) == (["city"], 0.01, 0.5, "CrossNER_AI")


@pytest.fixture
def model_copy(tiny_llama_path, tmp_path):
    """A model folder of the test's own, which it may delete."""
    return shutil.copytree(tiny_llama_path, tmp_path / "source-model")


def test_to_bytes_carries_the_weights_and_settings_into_a_pipeline_built_from_the_config(model_copy, assert_same_scored_answers):
    nlp = built(model_copy)
    change_settings(nlp.get_pipe("uniner"))
    expected = answers(nlp)
    data = nlp.to_bytes()
    shutil.rmtree(model_copy)  # the bytes must hold the model
    restored = spacy.blank("en").from_config(nlp.config).from_bytes(data)
    assert_changed_settings(restored.get_pipe("uniner"))
    assert_same_scored_answers(answers(restored), expected)
    restored(TEXTS[0])
    assert restored.get_pipe("uniner").stats["queries"] == 1  # asked "city" only


def test_settings_given_at_load_time_win_over_saved_ones_in_bytes(tiny_llama_path):
    nlp = built(tiny_llama_path)
    change_settings(nlp.get_pipe("uniner"))
    config = nlp.config.copy()
    config["components"]["uniner"]["threshold"] = 0.3
    restored = spacy.blank("en").from_config(config).from_bytes(nlp.to_bytes())
    uniner = restored.get_pipe("uniner")
    assert uniner.threshold == 0.3 and uniner.labels == ["city"] and uniner.label_margin == 0.5


def test_the_component_alone_round_trips_its_bytes_excluding_what_is_asked(tiny_llama_path, assert_same_scored_answers):
    nlp = built(tiny_llama_path)
    uniner = nlp.get_pipe("uniner")
    change_settings(uniner)
    other = built(tiny_llama_path).get_pipe("uniner")
    other.from_bytes(uniner.to_bytes(exclude=["model"]), exclude=["model"])
    assert_changed_settings(other)
    assert other.generator._model is None  # the weights were left out
    fresh = built(tiny_llama_path).get_pipe("uniner")
    fresh.from_bytes(uniner.to_bytes(), exclude=["cfg"])
    assert fresh.labels == LABELS and fresh.generator._model is not None


@pytest.mark.parametrize("dtype", ["float32", "bfloat16-float32-logits"])
def test_a_built_pipeline_saves_from_memory_after_its_source_is_gone(model_copy, tmp_path, dtype, assert_same_scored_answers):
    nlp = built(model_copy, dtype=dtype)
    change_settings(nlp.get_pipe("uniner"))
    expected = answers(nlp)
    shutil.rmtree(model_copy)
    narrowed = nlp.get_pipe("uniner").generator.precision.alters_model
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        nlp.to_disk(tmp_path / "pipeline")
    assert any("can no longer be read" in str(w.message) for w in caught) == narrowed
    loaded = spacy.load(tmp_path / "pipeline")
    assert_changed_settings(loaded.get_pipe("uniner"))
    if not narrowed:
        assert_same_scored_answers(answers(loaded), expected)
        return
    # Saved in bf16, as it decoded: the same answers; the float32 top logits now come from the bf16
    # weights, not the source's float32 ones.
    got = answers(loaded)
    assert [a.text for a in got] == [e.text for e in expected]
    for answer, reference in zip(got, expected):
        assert answer.token_logprobs == pytest.approx(reference.token_logprobs, abs=1e-2)


def test_a_narrowed_model_is_saved_whole_from_its_source_while_it_can_be_read(tiny_llama_path, tmp_path):
    nlp = built(tiny_llama_path, dtype="bfloat16")
    answers(nlp)
    nlp.to_disk(tmp_path / "pipeline")
    saved = spacy.load(tmp_path / "pipeline", config={"components": {"uniner": {"model": {"dtype": "float32"}}}})
    source = built(tiny_llama_path, dtype="float32")
    for (name, weight), (_, reference) in zip(saved.get_pipe("uniner").generator.model.named_parameters(), source.get_pipe("uniner").generator.model.named_parameters()):
        assert weight.dtype == torch.float32 and torch.equal(weight, reference), name


def test_threshold_label_margin_and_dataset_set_on_a_built_component_survive_to_disk(tiny_llama_path, tmp_path):
    nlp = built(tiny_llama_path)
    change_settings(nlp.get_pipe("uniner"))
    nlp.to_disk(tmp_path / "pipeline")
    assert_changed_settings(spacy.load(tmp_path / "pipeline").get_pipe("uniner"))
    loaded = spacy.load(tmp_path / "pipeline", config={"components": {"uniner": {"label_margin": 0.9}}})
    assert loaded.get_pipe("uniner").label_margin == 0.9 and loaded.get_pipe("uniner").threshold == 0.01


def test_bytes_that_are_not_a_components_are_named_and_change_nothing(tiny_llama_path):
    uniner = built(tiny_llama_path).get_pipe("uniner")
    data = uniner.to_bytes()
    for garbage in (b"", b"garbage", data[: len(data) // 2]):
        with pytest.raises(ValueError, match="these bytes are not a uniner component's"):
            uniner.from_bytes(garbage)
        assert uniner.labels == LABELS and uniner.generator._model is None
