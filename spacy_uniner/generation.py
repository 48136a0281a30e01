"""Greedy generation with a Hugging Face causal LM, loaded lazily and saved with safetensors. The
prompts of one text share one pass over it; `decoding` answers them in batches."""
import json
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple, Union

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    StoppingCriteria,
    StoppingCriteriaList,
)

from .attention import use_grouped_attention
from .constraints import PassageConstraint
from .decoding import GreedyDecoder, QuestionBatch, SharedPrefixes, token_logprobs
from .precision import narrow, resolve_precision
from .prompts import TURN_ENDS, prompt_context, prompt_text
from .scores import ScoredAnswer

ANSWER_END = TURN_ENDS[1]


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


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
        constrained: bool = False,
    ):
        if batch_size < 1 or max_new_tokens < 1:
            raise ValueError(f"[uniner] config keys 'batch_size' and 'max_new_tokens' must be >= 1, got {batch_size} and {max_new_tokens}")
        self.source = str(source)
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.device = resolve_device(device)
        self.precision = resolve_precision(dtype, self.device)
        self.dtype = self.precision.weights
        self.trust_remote_code = trust_remote_code
        self.model_kwargs = dict(model_kwargs or {})
        self.constrained = constrained
        self._model: Optional[PreTrainedModel] = None
        self._tokenizer: Optional[PreTrainedTokenizerBase] = None
        self._stop: Optional[AnswerStop] = None
        self.generated_tokens = 0  # by both paths, for throughput figures

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
        kwargs = dict(self.model_kwargs, dtype=self.precision.load_dtype, trust_remote_code=self.trust_remote_code)
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
        narrow(model, self.precision)
        use_grouped_attention(model)
        model.eval()
        self._model, self._tokenizer = model, tokenizer
        self._stop = AnswerStop.for_model(model, tokenizer)

    @property
    def stop(self) -> "AnswerStop":
        if self._stop is None:
            self.load()
        return self._stop

    def generate(self, prompts: List[str]) -> List[str]:
        """One answer per prompt, in order, each exactly as `generate_one_by_one` gives it.

        Prompts that share their text (one per label, as the component asks) are answered from one
        pass over the shared tokens: its key/value cache is copied to each label's row, so an extra
        label costs its question and answer only. Rows are batched `batch_size` at a time, sorted by
        length; a row that has answered leaves the batch, and the few still answering when the rest
        are done go on with the next batch (see `decoding`). When `constrained`, every answer is a
        JSON list of strings found in its prompt's text (see `constraints`), and may differ.
        """
        return [answer.text for answer in self.answer_prompts(prompts, scored=False)]

    def generate_scored(self, prompts: List[str]) -> List[ScoredAnswer]:
        """`generate`, with the log-probability of every answer token (see `scores`)."""
        return self.answer_prompts(prompts, scored=True)

    @torch.inference_mode()
    def answer_prompts(self, prompts: List[str], scored: bool) -> List[ScoredAnswer]:
        if not prompts:
            return []
        groups = prompt_groups(self.tokenizer, prompts)
        constraints = [PassageConstraint(prompt_text(prompts[rows[0]])) for _, _, rows in groups] if self.constrained else None
        stop = self.stop
        # Rows of a batch still answering join the next batch while they are no more than half one.
        decoder = GreedyDecoder(self.model, stop, self.tokenizer.pad_token_id, self.max_new_tokens, scored, carry=self.batch_size // 2)
        answers: List[ScoredAnswer] = [ScoredAnswer("")] * len(prompts)
        for (group, k), ids, logprobs in decoder.answers(self.question_batches(groups, constraints)):
            answer = stop.scored(ids, logprobs) if scored else ScoredAnswer(stop.answer(ids))
            if constraints is not None:
                answer.text = constraints[group].close(answer.text)
            answers[groups[group][2][k]] = answer
            self.generated_tokens += len(ids)
        return answers

    def question_batches(self, groups: List[Tuple[List[int], List[List[int]], List[int]]], constraints: Optional[List[PassageConstraint]]) -> Iterator[QuestionBatch]:
        """`answer_batches` with their shared prefixes, each pass made when a batch first needs it."""
        owner: Dict[int, int] = {}  # group -> its row in `prefixes`
        for batch in answer_batches(groups, self.batch_size):
            # A text with more labels than batch_size fills several batches in a row: one pass for all.
            if any(group not in owner for group, _ in batch):
                owner = {group: i for i, group in enumerate(dict.fromkeys(group for group, _ in batch))}
                prefixes = SharedPrefixes(self.model, [groups[group][0] for group in owner], self.tokenizer.pad_token_id)
            yield QuestionBatch(
                prefixes=prefixes,
                continuations=[groups[group][1][k] for group, k in batch],
                owners=[owner[group] for group, _ in batch],
                keys=batch,
                constraints=None if constraints is None else [constraints[group] for group, _ in batch],
            )

    @torch.inference_mode()
    def generate_one_by_one(self, prompts: List[str], scored: bool = False) -> Union[List[str], List[ScoredAnswer]]:
        """The reference implementation's loop: one unpadded `model.generate` per prompt, stopping
        where `generate` stops. The baseline that `generate` (and, `scored`, `generate_scored`) must
        match answer for answer. Plain greedy decoding, as the reference's vLLM call (temperature 0):
        a fresh generation config, so no processor from the model's own (a repetition penalty, say)
        applies."""
        stop = self.stop
        greedy = GenerationConfig(
            do_sample=False,
            max_new_tokens=self.max_new_tokens,
            eos_token_id=stop.stop_ids.tolist(),
            pad_token_id=self.tokenizer.pad_token_id,
            output_logits=scored,
            return_dict_in_generate=True,
        )
        answers = []
        for ids in encode_texts(self.tokenizer, prompts)[0]:
            input_ids = torch.tensor([ids], device=self.model.device)
            output = self.model.generate(
                input_ids,
                attention_mask=torch.ones_like(input_ids),
                generation_config=greedy,
                stopping_criteria=StoppingCriteriaList([AnswerEnded(stop, len(ids))]),
            )
            answer = output.sequences[0, len(ids) :]
            answer_ids = answer.tolist()
            if scored:
                answers.append(stop.scored(answer_ids, token_logprobs(torch.cat(output.logits), answer).tolist()))
            else:
                answers.append(stop.answer(answer_ids))
            self.generated_tokens += len(answer_ids)
        return answers

    def save(self, path: Union[str, Path]) -> None:
        """The weights as the source stores them: a model decoding in a narrower precision (bf16 or
        int8 from float32 weights, a float32 output layer over bf16) is saved from its source, so
        that saving loses nothing."""
        model = self.model
        # transformers loads weights without a recorded dtype in float32.
        stored = getattr(AutoConfig.from_pretrained(self.source, trust_remote_code=self.trust_remote_code), "dtype", None) or torch.float32
        stored = getattr(torch, stored) if isinstance(stored, str) else stored
        if self.precision.alters_model or self.dtype != stored:
            model = AutoModelForCausalLM.from_pretrained(self.source, **dict(self.model_kwargs, dtype="auto", trust_remote_code=self.trust_remote_code))
        model.save_pretrained(path, safe_serialization=True)
        self.tokenizer.save_pretrained(path)


class AnswerStop:
    """Where an answer ends, the same for `generate` and `generate_one_by_one`: at an end-of-sequence
    token, at the template's "</s>" (as text when the tokenizer spells it in pieces, like BERT's
    "< / s >"), or as soon as the answer is a complete JSON list, which is all an answer holds.

    Only a token that can complete one of those (it holds "]" or a marker's last character) has the
    answer decoded and checked, so a batch's step costs no Python work per row.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, stop_ids: List[int], markers: List[str], vocab_size: int):
        self.tokenizer = tokenizer
        self.stop_set = set(stop_ids)
        self.stop_ids = torch.tensor(sorted(self.stop_set), dtype=torch.long)
        self.markers = markers
        closing = {"]"} | {marker[-1] for marker in markers}
        # The model's vocabulary may be padded beyond the tokenizer's: those ids close nothing.
        tokens = tokenizer.convert_ids_to_tokens(list(range(min(len(tokenizer), vocab_size))))
        self.may_close = torch.zeros(vocab_size, dtype=torch.bool)
        self.may_close[: len(tokens)] = torch.tensor([any(char in (token or "") for char in closing) for token in tokens])

    @classmethod
    def for_model(cls, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> "AnswerStop":
        eos = model.generation_config.eos_token_id
        stop_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if tokenizer.eos_token_id is not None:
            stop_ids.add(tokenizer.eos_token_id)
        end_id = tokenizer.convert_tokens_to_ids(ANSWER_END)
        if end_id is not None and end_id != tokenizer.unk_token_id:
            stop_ids.add(end_id)
        spelled = tokenizer.decode(tokenizer(ANSWER_END, add_special_tokens=False)["input_ids"], skip_special_tokens=True).strip()
        markers = list(dict.fromkeys(marker for marker in (ANSWER_END, spelled) if marker))
        return cls(tokenizer, sorted(stop_ids), markers, model.get_output_embeddings().weight.shape[0])

    def ended(self, ids: List[int]) -> bool:
        """Whether the answer written so far (token ids) is finished."""
        if ids and ids[-1] in self.stop_set:
            return True
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        return any(marker in text for marker in self.markers) or is_json_list(text)

    def answer(self, ids: List[int]) -> str:
        """The answer's text: up to its first stop token or marker, stripped."""
        return self.raw_answer(ids[: self.length(ids)]).strip()

    def raw_answer(self, ids: List[int]) -> str:
        """`ids` decoded, up to the first marker."""
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        for marker in self.markers:
            text = text.split(marker, 1)[0]
        return text

    def length(self, ids: List[int]) -> int:
        """Tokens before the first stop token."""
        return next((i for i, token in enumerate(ids) if token in self.stop_set), len(ids))

    def scored(self, ids: List[int], logprobs: List[float]) -> ScoredAnswer:
        """`answer` with each token's log-probability and where the token ends in the answer's text
        (decoding every prefix: a byte-level token may end inside a character)."""
        ids = ids[: self.length(ids)]
        ends = [len(self.tokenizer.decode(ids[: i + 1], skip_special_tokens=True)) for i in range(len(ids))]
        return ScoredAnswer.from_raw(self.raw_answer(ids), ends, logprobs[: len(ids)])


class AnswerEnded(StoppingCriteria):
    """`AnswerStop` as a transformers stopping criterion, for a prompt of `prompt_length` tokens."""

    def __init__(self, stop: AnswerStop, prompt_length: int):
        self.stop = stop
        self.prompt_length = prompt_length

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.BoolTensor:
        return torch.tensor([self.stop.ended(row[self.prompt_length :].tolist()) for row in input_ids], device=input_ids.device)


def is_json_list(text: str) -> bool:
    text = text.strip()
    if not (text.startswith("[") and text.endswith("]")):
        return False
    try:
        return isinstance(json.loads(text), list)
    except ValueError:
        return False


def prompt_groups(tokenizer: PreTrainedTokenizerBase, prompts: List[str]) -> List[Tuple[List[int], List[List[int]], List[int]]]:
    """Prompts grouped by their text (`prompt_context`): per group, the tokens all its prompts start
    with, what follows in each, and the prompts' indices."""
    token_ids, _ = encode_texts(tokenizer, prompts)
    by_context: Dict[str, List[int]] = {}
    for index, prompt in enumerate(prompts):
        by_context.setdefault(prompt_context(prompt), []).append(index)
    return [shared_prefix_split([token_ids[i] for i in rows]) + (rows,) for rows in by_context.values()]


def shared_prefix_split(rows: List[List[int]]) -> Tuple[List[int], List[List[int]]]:
    """The tokens all `rows` start with, and what follows in each. Every row keeps at least its last
    token after the prefix: the first answer token is predicted from it."""
    length = min(len(row) for row in rows) - 1
    for position in range(length):
        if any(row[position] != rows[0][position] for row in rows):
            length = position
            break
    return rows[0][:length], [row[length:] for row in rows]


def answer_batches(groups: List[Tuple[List[int], List[List[int]], List[int]]], batch_size: int) -> List[List[Tuple[int, int]]]:
    """Rows, as (group, index in group), in batches of `batch_size`: groups in order of prefix length,
    rows in order of continuation length, so a batch pads little and a group's rows stay together."""
    rows = [
        (group, index)
        for group in sorted(range(len(groups)), key=lambda g: len(groups[g][0]))
        for index in sorted(range(len(groups[group][1])), key=lambda k: len(groups[group][1][k]))
    ]
    return [rows[first : first + batch_size] for first in range(0, len(rows), batch_size)]
