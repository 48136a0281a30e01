"""Constrained decoding: answers limited to JSON lists of strings found in the passage."""
import json
import math

import pytest
import spacy
import torch

from spacy_uniner.constraints import PassageConstraint
from spacy_uniner.decoding import allowed_choice, token_logprobs
from spacy_uniner.generation import HFGenerator
from spacy_uniner.prompts import build_prompt, prompt_text

PASSAGE = 'Marie Curie lived in Paris; she said "radium" glows.'


@pytest.mark.parametrize("answer, state", [
    ("", "start"), ("  [", "value"), ('["Marie', "string"), ('["marie curie", "Par', "string"),
    ('["Paris"', "next"), ('["Paris",', "item"), ('["Paris"]', "closed"), ("[]", "closed"),
    ('[ " marie curie " , " paris " ]', "closed"),  # BERT's decoded spacing and lower case
    ('["said \\"radium\\" glows"]', "closed"),  # JSON escapes are decoded before the check
    ("Paris", None), ('["London', None), ('["Paris"] and more', None), ('["Paris", ]', None),
    ('["Paris" "Marie"]', None), ("[1]", None), ('[["Paris"]]', None),
])
def test_the_state_of_an_answer(answer, state):
    assert PassageConstraint(PASSAGE).state(answer) == state


@pytest.mark.parametrize("answer, closed", [
    ("", "[]"), ("[", "[]"), ('["Mar', '["Mar"]'), ('["Paris", ', '["Paris"]'), ('["Paris"', '["Paris"]'), ('["Paris"]', '["Paris"]'),
])
def test_an_allowed_answer_closes_to_a_json_list(answer, closed):
    assert PassageConstraint(PASSAGE).close(answer) == closed
    assert isinstance(json.loads(closed), list)


def test_the_passage_comes_back_out_of_its_prompt():
    assert prompt_text(build_prompt(PASSAGE, "person")) == PASSAGE
    with pytest.raises(ValueError, match="Not a prompt of the template"):
        prompt_text("USER: hello ASSISTANT:")


@pytest.mark.parametrize("constrained", [False, True])
def test_constrained_answers_are_lists_of_passage_strings(tiny_llama_path, constrained):
    """A random model writes anything; constrained, every answer is a JSON list whose strings are in
    the text."""
    nlp = spacy.blank("en")
    texts = ["Barack Obama visited Paris with Michelle Obama in 2009.", "Python and Rust are programming languages used at Google."]
    labels = ["person", "location", "organization", "programming language"]
    uniner = nlp.add_pipe("uniner", config={"model": {"name": str(tiny_llama_path), "max_new_tokens": 12, "device": "cpu", "constrained": constrained}, "labels": labels})
    prompts = [build_prompt(text, label) for text in texts for label in labels]
    answers = uniner.generator.generate(prompts)
    parsed = []
    for answer in answers:
        try:
            parsed.append(json.loads(answer))
        except ValueError:
            parsed.append(None)
    if constrained:
        assert all(isinstance(items, list) for items in parsed)
        for prompt, items in zip(prompts, parsed):
            assert all(PassageConstraint(prompt_text(prompt)).allows(json.dumps([item])) for item in items)
        list(nlp.pipe(texts))
        assert uniner.stats["malformed_answers"] == 0 and uniner.stats["mentions_not_in_text"] == 0
    else:
        assert any(items is None for items in parsed)  # what the constraint prevents


def test_a_row_takes_its_best_allowed_candidate_or_ends(tiny_llama_path):
    generator = HFGenerator(tiny_llama_path, device="cpu")
    tokenizer = generator.tokenizer
    written = tokenizer('["', add_special_tokens=False)["input_ids"]
    outside, inside = tokenizer("aspirin", add_special_tokens=False)["input_ids"][0], tokenizer("Obama", add_special_tokens=False)["input_ids"][0]
    scores = torch.zeros(2, len(tokenizer))
    scores[:, outside], scores[:, inside] = 10.0, 5.0
    constraints = [PassageConstraint("Barack Obama visited Paris."), PassageConstraint("Aspirin, Obama.")]
    chosen, blocked, rejected = allowed_choice(scores, constraints, [written, written], generator.stop)
    assert chosen.tolist() == [inside, outside] and blocked.tolist() == [False, False]
    assert rejected[0].nonzero().flatten().tolist() == [outside] and not rejected[1].any()
    # The score of a constrained choice is its probability among the tokens not refused.
    logprobs = token_logprobs(scores, chosen, rejected)
    others = len(tokenizer) - 2
    assert logprobs[0].item() == pytest.approx(5.0 - math.log(math.exp(5.0) + others))
    assert logprobs[1].item() == pytest.approx(10.0 - math.log(math.exp(10.0) + math.exp(5.0) + others))
    chosen, blocked, _ = allowed_choice(scores, constraints[:1], [written], generator.stop, candidates=1)
    assert blocked.tolist() == [True]  # its only candidate is not in the passage: the row ends


@pytest.mark.parametrize("answer, state", [
    ('["東\ufffd', "string"),  # the first bytes of 京
    ('["\ufffd', "string"),
    ('["東\ufffd"', None), ('["東\ufffd\ufffd\ufffd', None),  # 京 takes three bytes: two may be missing, not three
    ('["Tok\ufffd', None),  # the passage has no character after "Tok"
])
def test_a_string_may_end_in_the_first_bytes_of_a_passage_character(answer, state):
    assert PassageConstraint("我住在東京。Tokyo").state(answer) == state
    if state == "string":
        assert "\ufffd" not in PassageConstraint("我住在東京。").close(answer)


@pytest.mark.parametrize("passage, answer", [("我住在東京。", "東京"), ("Ich wohne in München.", "München"), ("Я живу в Москве.", "Москве"), ("Ζω στην Ελλάδα.", "Ελλάδα")])
def test_constrained_decoding_writes_characters_split_across_byte_tokens(tiny_llama_path, passage, answer):
    """The tiny model's byte-level vocabulary has no token for these letters: each is written as
    several byte tokens, the first ending mid-character."""
    generator = HFGenerator(tiny_llama_path, device="cpu")
    tokenizer = generator.tokenizer
    target = tokenizer(json.dumps([answer], ensure_ascii=False), add_special_tokens=False)["input_ids"]
    assert any("\ufffd" in tokenizer.decode(target[:k]) for k in range(len(target)))
    written = []
    for token in target:
        scores = torch.zeros(1, len(tokenizer))
        scores[0, token] = 10.0
        chosen, blocked, _ = allowed_choice(scores, [PassageConstraint(passage)], [written], generator.stop)
        assert chosen.tolist() == [token] and blocked.tolist() == [False], tokenizer.decode(written)
        written.append(token)
    # A character the passage does not hold is refused once its bytes are complete.
    other = tokenizer('["巴', add_special_tokens=False)["input_ids"]
    scores = torch.zeros(1, len(tokenizer))
    scores[0, other[-1]] = 10.0
    chosen, blocked, _ = allowed_choice(scores, [PassageConstraint(passage)], [other[:-1]], generator.stop)
    assert blocked.item() or chosen.item() != other[-1]
