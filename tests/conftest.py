import json
import math
import os
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
import spacy
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from spacy_uniner.prompts import build_prompt
from spacy_uniner.scores import ScoredAnswer

CORPUS = [
    build_prompt("Barack Obama visited Paris with Michelle Obama in 2009.", "person"),
    build_prompt("Aspirin can cause bleeding in patients with ulcers.", "disease"),
    '["Barack Obama", "Michelle Obama"] [] ["Paris"] ["aspirin"]</s>',
    "Python and Rust are programming languages used at Google and in Zürich by Ana María.",
]


# Set by .ci/run: a guard of an edge to real software (the browser, llama.cpp) that cannot run there
# fails the run instead of skipping, so CI never passes without running it.
REQUIRE_GUARDS = "SPACY_UNINER_REQUIRE_GUARDS"


def needs(available: bool, reason: str) -> pytest.MarkDecorator:
    """Skip a module's tests when what they drive is not here, or, where $SPACY_UNINER_REQUIRE_GUARDS
    is set (CI), stop the run at collection saying what is missing."""
    if not available and os.environ.get(REQUIRE_GUARDS):
        pytest.fail(f"{reason}; ${REQUIRE_GUARDS} is set, so these tests must run", pytrace=False)
    return pytest.mark.skipif(not available, reason=reason)


@pytest.fixture(scope="session")
def tiny_llama_path(tmp_path_factory) -> Path:
    """A random 2-layer Llama with a byte-level BPE tokenizer trained here: the real model code path,
    offline, in a second."""
    path = tmp_path_factory.mktemp("tiny-llama")
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<unk>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(CORPUS * 20, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    tokenizer.save_pretrained(path)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(path)
    return path


def save_tiny_pipeline(model: Path, path: Path) -> Path:
    """A saved pipeline whose `uniner` component asks `model` about persons, on the CPU."""
    nlp = spacy.blank("en")
    nlp.add_pipe("uniner", config={"model": {"name": str(model), "device": "cpu"}, "labels": ["person"]})
    nlp.to_disk(path)
    return path


class ScriptedGenerator:
    """A model whose answers the test chooses: keyed by (window text, label), "[]" otherwise.
    It records every prompt, so tests see exactly what the component asked."""

    def __init__(self, answers: Dict[Tuple[str, str], str]):
        self.answers = {build_prompt(text, label): answer for (text, label), answer in answers.items()}
        self.calls: List[List[str]] = []

    def generate(self, prompts: List[str]) -> List[str]:
        self.calls.append(list(prompts))
        return [self.answers.get(prompt, "[]") for prompt in prompts]

    def load(self, source=None) -> None:
        pass

    def save(self, path) -> None:
        Path(path).mkdir(parents=True, exist_ok=True)


class ScoredScriptedGenerator(ScriptedGenerator):
    """Scripted answers with scores: each answer a list of (mention, probability), written as a JSON
    list whose quoted mentions are one token of that probability each (brackets and commas certain)."""

    def generate_scored(self, prompts: List[str]) -> List[ScoredAnswer]:
        self.calls.append(list(prompts))
        return [self.scored(self.answers.get(prompt, [])) for prompt in prompts]

    def generate(self, prompts: List[str]) -> List[str]:
        return [answer.text for answer in self.generate_scored(prompts)]

    @staticmethod
    def scored(mentions: List[Tuple[str, float]]) -> ScoredAnswer:
        pieces = [("[", 1.0)] + [piece for i, (mention, p) in enumerate(mentions) for piece in ([(", ", 1.0)] if i else []) + [(json.dumps(mention), p)]] + [("]", 1.0)]
        text, ends, logprobs = "", [], []
        for piece, p in pieces:
            text += piece
            ends.append(len(text))
            logprobs.append(math.log(p))
        return ScoredAnswer(text, ends, logprobs)


@pytest.fixture
def scripted_nlp():
    """A pipeline whose `uniner` component answers from a script; the model named in the config is
    never loaded (the component loads weights lazily)."""

    def make(answers: Dict[Tuple[str, str], str], labels: List[str], lang: str = "en", **config):
        nlp = spacy.blank(lang)
        uniner = nlp.add_pipe("uniner", config={"model": "unused/never-loaded", "labels": labels, **config})
        scored = any(isinstance(answer, list) for answer in answers.values())
        uniner.generator = (ScoredScriptedGenerator if scored else ScriptedGenerator)(answers)
        return nlp

    return make


@pytest.fixture
def assert_same_scored_answers():
    """Scored answers equal: the same texts, token ends and tokens, log-probabilities within float
    tolerance (batched and padded matmuls round differently)."""

    def check(answers, expected):
        assert [a.text for a in answers] == [e.text for e in expected]
        assert [a.token_ends for a in answers] == [e.token_ends for e in expected]
        for answer, reference in zip(answers, expected):
            assert answer.token_logprobs == pytest.approx(reference.token_logprobs, abs=1e-4)

    return check
