"""A causal LM and its tokenizer from a hub id or a local folder, the one way serving, training and
averaging load them, with one error for a model that cannot be loaded."""
from pathlib import Path
from typing import Any, Tuple, Union

import torch
from transformers import AutoModelForCausalLM, PreTrainedModel, PreTrainedTokenizerBase

from .errors import UserError
from .tokens import load_tokenizer


def resolve_device(device: str) -> str:
    """The config's `device`: "auto" (a GPU when torch sees one), or a torch device this machine
    has, checked when the component is built rather than at its first doc."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise UserError(f"[uniner] config key 'device' must be 'auto' or a torch device ('cpu', 'cuda', 'cuda:1'), got {device!r}") from None
    if parsed.type == "cuda" and parsed.index is not None and parsed.index >= torch.cuda.device_count():
        raise UserError(f"[uniner] config key 'device' is {device!r}, but torch sees {torch.cuda.device_count()} GPUs: use 'auto' or 'cpu'")
    backend = getattr(torch, parsed.type, None)
    if parsed.type != "cpu" and not (backend is not None and hasattr(backend, "is_available") and backend.is_available()):
        raise UserError(f"[uniner] config key 'device' is {device!r}, but torch sees no {parsed.type} device here (a CPU-only build, or no driver): use 'auto' or 'cpu'")
    return device


def load_causal_lm(source: Union[str, Path], what: str, *, trust_remote_code: bool = False, **kwargs: Any) -> Tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The model (`from_pretrained` with `kwargs`: dtype, device_map, ...) and its tokenizer; `what`
    names the model in the error (e.g. "the base model 'x' ([model] base)")."""
    try:
        tokenizer = load_tokenizer(source, trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(str(source), trust_remote_code=trust_remote_code, **kwargs)
    except (OSError, ValueError, KeyError) as err:
        raise OSError(f"could not load {what}: give a Hugging Face hub id that can be reached, or a local folder with a causal LM and its tokenizer. Cause: {err}") from err
    return model, tokenizer
