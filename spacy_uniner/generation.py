"""Batched greedy generation with a Hugging Face causal LM, loaded lazily and saved with safetensors."""
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from .prompts import TURN_ENDS

ANSWER_END = TURN_ENDS[1]
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    if dtype == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"[uniner] config key 'dtype' must be 'auto' or one of {sorted(DTYPES)}, got {dtype!r}")
    return DTYPES[dtype]


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
        raise ValueError(f"[uniner] the tokenizer {type(tokenizer).__name__} is not a fast (Rust) tokenizer; training needs its character offsets")
    prefix = special_prefix(tokenizer)
    encoded = tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True)
    ids = [prefix + row for row in encoded["input_ids"]]
    offsets = [[(0, 0)] * len(prefix) + [tuple(pair) for pair in row] for row in encoded["offset_mapping"]]
    return ids, offsets


class HFGenerator:
    """Answers prompts with greedy decoding, `batch_size` prompts per `generate` call.

    Weights load on first use (or `load()`), so a pipeline assembled from a config can be restored
    from disk without fetching the model named in the config.
    """

    def __init__(
        self,
        source: Union[str, Path],
        *,
        batch_size: int = 16,
        max_new_tokens: int = 256,
        device: str = "auto",
        dtype: str = "auto",
        trust_remote_code: bool = False,
        model_kwargs: Optional[Dict[str, Any]] = None,
    ):
        if batch_size < 1 or max_new_tokens < 1:
            raise ValueError(f"[uniner] config keys 'batch_size' and 'max_new_tokens' must be >= 1, got {batch_size} and {max_new_tokens}")
        self.source = str(source)
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.trust_remote_code = trust_remote_code
        self.model_kwargs = dict(model_kwargs or {})
        self._model: Optional[PreTrainedModel] = None
        self._tokenizer: Optional[PreTrainedTokenizerBase] = None

    @property
    def model(self) -> PreTrainedModel:
        if self._model is None:
            self.load()
        return self._model

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        if self._tokenizer is None:
            self.load()
        return self._tokenizer

    def load(self, source: Optional[Union[str, Path]] = None) -> None:
        if source is not None:
            self.source = str(source)
        kwargs = dict(self.model_kwargs, dtype=self.dtype, trust_remote_code=self.trust_remote_code)
        # Several GPUs: let accelerate place the layers; one device: put the model on it.
        if self.device == "cuda" and torch.cuda.device_count() > 1:
            kwargs.setdefault("device_map", "auto")
        try:
            tokenizer = load_tokenizer(self.source, self.trust_remote_code)
            model = AutoModelForCausalLM.from_pretrained(self.source, **kwargs)
        except (OSError, ValueError, KeyError) as err:
            raise OSError(
                f"[uniner] could not load the model {self.source!r}: give a Hugging Face hub id that "
                f"can be reached, or a local folder with a causal LM and its tokenizer. Cause: {err}"
            ) from err
        if "device_map" not in kwargs:
            model.to(self.device)
        model.eval()
        self._model, self._tokenizer = model, tokenizer

    def _stop_kwargs(self) -> Dict[str, Any]:
        """Stop at EOS and at the template's end-of-answer marker, whether or not that is one token."""
        tokenizer = self.tokenizer
        eos = self.model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if tokenizer.eos_token_id is not None:
            eos_ids.add(tokenizer.eos_token_id)
        end_id = tokenizer.convert_tokens_to_ids(ANSWER_END)
        if end_id is not None and end_id != tokenizer.unk_token_id:
            eos_ids.add(end_id)
            stop = {}
        else:
            stop = {"stop_strings": [ANSWER_END], "tokenizer": tokenizer}
        return dict(stop, eos_token_id=sorted(eos_ids) or None, pad_token_id=tokenizer.pad_token_id)

    @torch.inference_mode()
    def generate(self, prompts: List[str]) -> List[str]:
        """One answer per prompt, in order. Prompts of similar length are batched together so that
        left padding stays small."""
        if not prompts:
            return []
        tokenizer, model = self.tokenizer, self.model
        token_ids, _ = encode_texts(tokenizer, prompts)
        order = sorted(range(len(prompts)), key=lambda i: len(token_ids[i]))
        stop_kwargs = self._stop_kwargs()
        markers = self._answer_end_markers()
        answers: List[str] = [""] * len(prompts)
        for first in range(0, len(order), self.batch_size):
            rows = order[first : first + self.batch_size]
            batch = tokenizer.pad({"input_ids": [token_ids[i] for i in rows]}, return_tensors="pt")
            batch = batch.to(model.device)
            output = model.generate(
                **batch, do_sample=False, max_new_tokens=self.max_new_tokens, **stop_kwargs
            )
            new_tokens = output[:, batch["input_ids"].shape[1] :]
            for row, text in zip(rows, tokenizer.batch_decode(new_tokens, skip_special_tokens=True)):
                for marker in markers:
                    text = text.split(marker, 1)[0]
                answers[row] = text.strip()
        return answers

    def _answer_end_markers(self) -> List[str]:
        """"</s>" as text, and as the tokenizer decodes it where it spells it in pieces (BERT's
        wordpieces give "< / s >"): an answer ends at either."""
        ids = self.tokenizer(ANSWER_END, add_special_tokens=False)["input_ids"]
        return [marker for marker in (ANSWER_END, self.tokenizer.decode(ids, skip_special_tokens=True).strip()) if marker]

    def save(self, path: Union[str, Path]) -> None:
        self.model.save_pretrained(path, safe_serialization=True)
        self.tokenizer.save_pretrained(path)
