"""The tokenizer as generation and training both use it, and the one way prompts and training texts
become token ids."""
from pathlib import Path
from typing import Iterable, List, Tuple, Union

from transformers import AutoTokenizer, PreTrainedTokenizerBase

from .errors import UserError


def load_tokenizer(source: Union[str, Path], trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """The tokenizer as generation and training both use it: left padding, always a pad token."""
    tokenizer = AutoTokenizer.from_pretrained(str(source), trust_remote_code=trust_remote_code)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    return tokenizer


def special_prefix(tokenizer: PreTrainedTokenizerBase) -> List[int]:
    """The special tokens the tokenizer puts before a text: Llama's <s>, BERT's [CLS], none for most
    byte-level BPEs. Prompts get these and no others: a token it appends (BERT's [SEP]) would sit
    between the prompt and the answer, where no training conversation has it."""
    probe = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    for start in range(len(full) - len(probe) + 1):
        if full[start : start + len(probe)] == probe:
            return full[:start]
    return []


def encode_texts(tokenizer: PreTrainedTokenizerBase, texts: Iterable[str]) -> Tuple[List[List[int]], List[List[Tuple[int, int]]]]:
    """Token ids and character offsets per text, as serving and training both see them: the whole
    text tokenized at once (so a prompt's tokens are the start of its training conversation's
    tokens), after the tokenizer's leading special tokens (offsets (0, 0))."""
    if not tokenizer.is_fast:
        raise UserError(f"[uniner] the tokenizer {type(tokenizer).__name__} is not a fast (Rust) tokenizer; training needs its character offsets")
    prefix = special_prefix(tokenizer)
    encoded = tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True)
    ids = [prefix + row for row in encoded["input_ids"]]
    offsets = [[(0, 0)] * len(prefix) + [tuple(pair) for pair in row] for row in encoded["offset_mapping"]]
    return ids, offsets
