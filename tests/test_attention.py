"""Grouped-query attention without the per-head key/value copy: the same numbers as transformers'
own SDPA attention, and what a CPU generator runs."""
import torch
from transformers import AutoModelForCausalLM
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from spacy_uniner.attention import GROUPED_SDPA, PrefixedQuestions, grouped_sdpa_attention, use_grouped_attention
from spacy_uniner.decoding import left_padded
from spacy_uniner.generation import HFGenerator


class GroupedHeads(torch.nn.Module):
    num_key_value_groups = 3
    layer_idx = 0


def test_grouped_attention_equals_repeated_heads_with_a_padding_mask():
    torch.manual_seed(0)
    rows, positions, cached = 5, 7, 20
    query = torch.randn(rows, 9, positions, 16)
    key, value = torch.randn(rows, 3, cached, 16), torch.randn(rows, 3, cached, 16)
    mask = torch.ones(rows, 1, positions, cached, dtype=torch.bool).tril(cached - positions)
    mask[:, :, :, : 4] = False  # left padding
    grouped, _ = grouped_sdpa_attention(GroupedHeads(), query, key, value, mask, scaling=0.25)
    repeated, _ = sdpa_attention_forward(GroupedHeads(), query, key, value, mask, scaling=0.25)
    assert grouped.shape == (rows, positions, 9, 16)
    assert torch.equal(grouped, repeated)
    # Heads are grouped as transformers groups them: query head h reads key/value head h // 3.
    shifted, _ = sdpa_attention_forward(GroupedHeads(), query, key.roll(1, dims=1), value.roll(1, dims=1), mask, scaling=0.25)
    assert not torch.allclose(grouped, shifted)


def test_a_cpu_generator_runs_grouped_attention_with_the_same_logits(tiny_llama_path):
    generator = HFGenerator(tiny_llama_path, device="cpu", dtype="float32")
    assert generator.model.config._attn_implementation == GROUPED_SDPA
    reference = AutoModelForCausalLM.from_pretrained(tiny_llama_path, attn_implementation="sdpa").eval()
    ids, mask = left_padded([[5, 6, 7, 8, 9, 10], [11, 12, 13]], generator.tokenizer.pad_token_id, torch.device("cpu"))
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.inference_mode():
        grouped = generator.model(input_ids=ids, attention_mask=mask, position_ids=positions).logits
        repeated = reference(input_ids=ids, attention_mask=mask, position_ids=positions).logits
    assert torch.equal(grouped, repeated)


def test_models_without_sdpa_keep_their_attention(tiny_llama_path):
    eager = AutoModelForCausalLM.from_pretrained(tiny_llama_path, attn_implementation="eager")
    assert not use_grouped_attention(eager)
    assert eager.config._attn_implementation == "eager"


def test_questions_over_shared_prefixes_attend_as_rows_holding_prefix_and_question():
    torch.manual_seed(0)
    texts, prefix_width, rows, length, dim = 3, 7, 5, 4, 16
    prefix_keys, prefix_values = torch.randn(texts, 3, prefix_width, dim), torch.randn(texts, 3, prefix_width, dim)
    prefix_mask = torch.ones(texts, prefix_width, dtype=torch.long)
    prefix_mask[1, :3] = prefix_mask[2, :6] = 0  # left padding; text 2 keeps one position
    owners = torch.tensor([0, 2, 0, 1, 2])  # texts ask 2, 1 and 2 questions, rows not sorted by text
    question_mask = torch.ones(rows, length, dtype=torch.long)
    question_mask[0, :2] = question_mask[3, :3] = 0
    query = torch.randn(rows, 9, length, dim)
    key, value = torch.randn(rows, 3, length, dim), torch.randn(rows, 3, length, dim)
    prefixed = PrefixedQuestions([(prefix_keys, prefix_values)], prefix_mask, owners, question_mask)
    output, _ = grouped_sdpa_attention(GroupedHeads(), query, key, value, None, scaling=0.25, prefixed_questions=prefixed)
    # The reference: each row holds a copy of its prefix, then its question, under one causal mask.
    whole_keys = torch.cat([prefix_keys[owners], key], dim=2)
    whole_values = torch.cat([prefix_values[owners], value], dim=2)
    visible = torch.cat([prefix_mask[owners], question_mask], dim=1).bool()[:, None, None, :] & torch.ones(length, prefix_width + length, dtype=torch.bool).tril(prefix_width)
    expected, _ = grouped_sdpa_attention(GroupedHeads(), query, whole_keys, whole_values, visible, scaling=0.25)
    assert output.shape == (rows, length, 9, dim) and prefixed.layers_served == 1
    assert torch.allclose(output, expected, atol=1e-6)
    assert not output.isnan().any()


def test_layers_without_a_number_attend_as_before():
    prefixed = PrefixedQuestions([(torch.zeros(1, 3, 2, 16),) * 2], torch.ones(1, 2), torch.tensor([0]), torch.ones(1, 3))
    query, key = torch.randn(1, 9, 3, 16), torch.randn(1, 3, 3, 16)
    unnumbered = GroupedHeads()
    unnumbered.layer_idx = None
    output, _ = grouped_sdpa_attention(unnumbered, query, key, key, None, scaling=0.25, prefixed_questions=prefixed)
    plain, _ = grouped_sdpa_attention(unnumbered, query, key, key, None, scaling=0.25)
    assert torch.equal(output, plain) and prefixed.layers_served == 0
