"""Grouped-query attention on the CPU without a copy of the keys and values per query head.

With an attention mask and more than one query position (a padded batch: the shared prefixes, and
every label's question over its copy of the prefix cache), transformers' SDPA attention repeats each
key/value head for every query head of its group before calling torch, because CUDA's fast kernels
take no grouped heads with a mask. Torch's CPU kernels do (`enable_gqa`) and give the same numbers,
so on a CPU that copy (for SmolLM2, three times each row's keys and values, in every layer) is pure
cost. Everything else is transformers' own SDPA attention and mask.

The questions' pass over a shared prefix (`PrefixedQuestions`) also runs here, given as a forward
keyword: each question row attends to its text's prefix, read once per text, and to its own tokens,
so the prefix is not copied to every row before the pass (see `decoding`)."""
from typing import List, Optional, Tuple

import torch
from transformers import AttentionInterface, PreTrainedModel
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

GROUPED_SDPA = "uniner_grouped_sdpa"


def grouped_sdpa_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: Optional[torch.Tensor],
    dropout: float = 0.0,
    scaling: Optional[float] = None,
    **kwargs,
) -> Tuple[torch.Tensor, None]:
    prefixed: Optional[PrefixedQuestions] = kwargs.get("prefixed_questions")
    if prefixed is not None and prefixed.serves(module):
        return prefixed.attend(module, query, key, value, scaling), None
    grouped = getattr(module, "num_key_value_groups", 1) > 1
    plain = kwargs.get("position_bias") is None and kwargs.get("softcap") is None
    if not (grouped and plain and attention_mask is not None and query.shape[2] > 1):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
    output = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, dropout_p=dropout, scale=scaling, enable_gqa=True)
    return output.transpose(1, 2).contiguous(), None


class PrefixedQuestions:
    """Attention for a pass over questions that follow shared prefixes: row r's queries see the
    unpadded positions of prefix `owners[r]` (keys and values `prefixes[layer]`, [texts, heads,
    positions, dim], given once per text) and, causally, the unpadded positions of their own row
    (the keys and values of the pass, after `question_mask`). The two parts are softmaxed apart and
    merged by their log-sum-exp: the same attention as over one row holding the prefix and the
    question, without that row's copy of the prefix."""

    def __init__(self, prefixes: List[Tuple[torch.Tensor, torch.Tensor]], prefix_mask: torch.Tensor, owners: torch.Tensor, question_mask: torch.Tensor):
        self.prefixes, self.owners = prefixes, owners
        # Each row's slot among its text's rows (the rows of the same text before it): one batched
        # product then serves every text's rows, side by side.
        self.slots = (owners[None, :] == owners[:, None]).tril(-1).sum(1)
        self.width = int(self.slots.max()) + 1
        length = question_mask.shape[1]
        causal = torch.ones(length, length, dtype=torch.bool, device=question_mask.device).tril()
        dtype = prefixes[0][0].dtype
        # The same masks serve every layer: built once, as additive biases.
        self.prefix_bias = additive_bias(prefix_mask.bool()[:, None, None, :], dtype)  # [texts, 1, 1, prefix positions]
        self.question_bias = additive_bias((causal & question_mask.bool()[:, None, :])[:, None], dtype)  # [rows, 1, query, key]
        self.layers_served = 0

    def serves(self, module: torch.nn.Module) -> bool:
        """Whether this layer's prefix is known (transformers' decoder attention numbers its layers)."""
        return isinstance(getattr(module, "layer_idx", None), int) and module.layer_idx < len(self.prefixes)

    def attend(self, module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scaling: Optional[float]) -> torch.Tensor:
        """The attention output, [rows, positions, heads, dim], of one layer's questions."""
        prefix_keys, prefix_values = self.prefixes[module.layer_idx]
        texts = len(prefix_keys)
        rows, heads, length, dim = query.shape
        kv_heads = key.shape[1]
        groups = heads // kv_heads
        # Over the prefix, a text's queries as [kv_heads, slots x groups x positions, dim]: the query
        # heads of a group read their key/value head (h // groups, as transformers groups them).
        per_text = query.new_zeros(texts, self.width, kv_heads, groups * length, dim)
        per_text[self.owners, self.slots] = query.reshape(rows, kv_heads, groups * length, dim)
        per_text = per_text.transpose(1, 2).reshape(texts, kv_heads, self.width * groups * length, dim)
        prefix_out, prefix_lse = attention_with_lse(per_text, prefix_keys, prefix_values, self.prefix_bias, scaling)
        prefix_out = prefix_out.reshape(texts, kv_heads, self.width, groups * length, dim).transpose(1, 2)[self.owners, self.slots].reshape(rows, heads, length, dim)
        prefix_lse = prefix_lse.reshape(texts, kv_heads, self.width, groups * length).transpose(1, 2)[self.owners, self.slots].reshape(rows, heads, length)
        # Over its own few positions, each row's keys and values repeated per query head (a small copy).
        own_out, own_lse = attention_with_lse(query, key.repeat_interleave(groups, 1), value.repeat_interleave(groups, 1), self.question_bias, scaling)
        total = torch.logaddexp(prefix_lse, own_lse)[..., None]
        output = prefix_out.float() * (prefix_lse[..., None] - total).exp() + own_out.float() * (own_lse[..., None] - total).exp()
        self.layers_served += 1
        return output.to(query.dtype).transpose(1, 2).contiguous()


def additive_bias(visible: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """0 where `visible`, the lowest float elsewhere rather than -inf: a query that sees nothing then
    has a finite output and a log-sum-exp at the lowest float, so it weighs nothing when merged (-inf
    would give it 0, and NaN would reach every later position)."""
    return torch.zeros(visible.shape, dtype=dtype, device=visible.device).masked_fill_(~visible, torch.finfo(dtype).min)


def attention_with_lse(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, bias: torch.Tensor, scale: Optional[float]) -> Tuple[torch.Tensor, torch.Tensor]:
    """Attention of `query` over `key`/`value` under the additive `bias`, and each query's log-sum-exp
    of its scores, from torch's CPU flash kernel (what SDPA runs on a CPU; the public function keeps
    the log-sum-exp to itself)."""
    output, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(query, key, value, 0.0, False, attn_mask=bias, scale=scale)[:2]
    return output, lse


AttentionInterface.register(GROUPED_SDPA, grouped_sdpa_attention)
AttentionMaskInterface.register(GROUPED_SDPA, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])


def use_grouped_attention(model: PreTrainedModel) -> bool:
    """Switch a CPU model that runs transformers' SDPA attention to `grouped_sdpa_attention`;
    whether it was switched."""
    if model.device.type != "cpu" or model.config._attn_implementation != "sdpa":
        return False
    model.set_attn_implementation(GROUPED_SDPA)
    return model.config._attn_implementation == GROUPED_SDPA
