"""Grouped-query attention on the CPU without a copy of the keys and values per query head.

With an attention mask and more than one query position (a padded batch: the shared prefixes, and
every label's question over its copy of the prefix cache), transformers' SDPA attention repeats each
key/value head for every query head of its group before calling torch, because CUDA's fast kernels
take no grouped heads with a mask. Torch's CPU kernels do (`enable_gqa`) and give the same numbers,
so on a CPU that copy (for SmolLM2, three times each row's keys and values, in every layer) is pure
cost. Everything else is transformers' own SDPA attention and mask."""
from typing import Optional, Tuple

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
    grouped = getattr(module, "num_key_value_groups", 1) > 1
    plain = kwargs.get("position_bias") is None and kwargs.get("softcap") is None
    if not (grouped and plain and attention_mask is not None and query.shape[2] > 1):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
    output = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, dropout_p=dropout, scale=scaling, enable_gqa=True)
    return output.transpose(1, 2).contiguous(), None


AttentionInterface.register(GROUPED_SDPA, grouped_sdpa_attention)
AttentionMaskInterface.register(GROUPED_SDPA, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])


def use_grouped_attention(model: PreTrainedModel) -> bool:
    """Switch a CPU model that runs transformers' SDPA attention to `grouped_sdpa_attention`;
    whether it was switched."""
    if model.device.type != "cpu" or model.config._attn_implementation != "sdpa":
        return False
    model.set_attn_implementation(GROUPED_SDPA)
    return model.config._attn_implementation == GROUPED_SDPA
