"""Grouped-query attention without the per-head key/value copy: the same numbers as transformers'
own SDPA attention, and what a CPU generator runs."""
import torch
from transformers import AutoModelForCausalLM
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from spacy_uniner.attention import GROUPED_SDPA, grouped_sdpa_attention, use_grouped_attention
from spacy_uniner.decoding import left_padded
from spacy_uniner.generation import HFGenerator


class GroupedHeads(torch.nn.Module):
    num_key_value_groups = 3


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
    generator = HFGenerator(tiny_llama_path, device="cpu")
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
