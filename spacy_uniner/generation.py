"""Greedy generation with a Hugging Face causal LM, loaded lazily and saved with safetensors. The
prompts of one text share one pass over it; `decoding` answers them in batches."""
import os
import warnings
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

import torch
from transformers import AutoConfig, PreTrainedModel, PreTrainedTokenizerBase

from .attention import use_grouped_attention
from .constraints import PassageConstraint
from .decoding import GreedyDecoder, QuestionBatch, SharedPrefixes
from .errors import UserError
from .loading import load_causal_lm, resolve_device
from .precision import Float32TopLogits, narrow, resolve_precision
from .prompts import prompt_context, prompt_text
from .scores import ScoredAnswer
from .stopping import AnswerStop
from .tokens import encode_texts


def one_thread_after_fork() -> None:
    """A forked process (`nlp.pipe(..., n_process=N)` forks its workers on Linux) runs torch on one
    thread: the parent's intra-op thread pool does not survive a fork, and a child that enters it
    waits for good once the parent has run the model. N workers then use N cores."""
    torch.set_num_threads(1)


os.register_at_fork(after_in_child=one_thread_after_fork)


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
        prompt_lookup_num_tokens: int = 8,
    ):
        if batch_size < 1 or max_new_tokens < 1:
            raise UserError(f"[uniner] config keys 'batch_size' and 'max_new_tokens' must be >= 1, got {batch_size} and {max_new_tokens}")
        if isinstance(prompt_lookup_num_tokens, bool) or not isinstance(prompt_lookup_num_tokens, int) or prompt_lookup_num_tokens < 0:
            raise UserError(f"[uniner] config key 'prompt_lookup_num_tokens' must be an int >= 0 (0: no drafts), got {prompt_lookup_num_tokens!r}")
        self.source = str(source)
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.device = resolve_device(device)
        self.precision = resolve_precision(dtype, self.device)
        self.dtype = self.precision.weights
        self.trust_remote_code = trust_remote_code
        self.model_kwargs = dict(model_kwargs or {})
        self.constrained = constrained
        self.prompt_lookup_num_tokens = prompt_lookup_num_tokens
        self._model: Optional[PreTrainedModel] = None
        self._tokenizer: Optional[PreTrainedTokenizerBase] = None
        self._stop: Optional[AnswerStop] = None
        self._stored_dtype: Optional[torch.dtype] = None  # the source's, read when the model loads
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
        kwargs = dict(self.model_kwargs, dtype=self.precision.load_dtype)
        # Several GPUs: let accelerate place the layers; one device: put the model on it.
        if self.device == "cuda" and torch.cuda.device_count() > 1:
            kwargs.setdefault("device_map", "auto")
        model, tokenizer = load_causal_lm(self.source, f"the model {self.source!r} ([uniner] model)", trust_remote_code=self.trust_remote_code, **kwargs)
        # transformers loads weights without a recorded dtype in float32.
        stored = getattr(AutoConfig.from_pretrained(self.source, trust_remote_code=self.trust_remote_code), "dtype", None) or torch.float32
        self._stored_dtype = getattr(torch, stored) if isinstance(stored, str) else stored
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
        """One answer per prompt, in order, each exactly as the reference loop
        (`benchmarks.component.reference_answers`) gives it.

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
        decoder = GreedyDecoder(self.model, stop, self.tokenizer.pad_token_id, self.max_new_tokens, scored, carry=self.batch_size // 2, draft_tokens=self.prompt_lookup_num_tokens)
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

    def save(self, path: Union[str, Path]) -> None:
        """The weights and tokenizer, from memory where they are the source's: a model in the dtype
        its source stores. A model decoding in a narrower precision (bf16 or int8 from float32
        weights, float32 logits over bf16) is saved whole from its source while that can be read,
        and from memory, as it decodes, once it cannot (the folder it came from is gone); a model not
        loaded yet is copied from its source."""
        if self._model is None:
            self.save_from_source(path)
        elif not self.precision.alters_model and self.dtype == self._stored_dtype:
            self.save_from_memory(path)
        else:
            try:
                self.save_from_source(path)
            except OSError as error:
                if self.precision.int8:
                    raise OSError(f"cannot save the model: it decodes in int8 in memory, and its source {self.source!r} can no longer be read to save its weights whole ({error})") from error
                warnings.warn(f"[uniner] the model's source {self.source!r} can no longer be read: saving its weights from memory, in {self.precision.weights} as it decodes")
                self.save_from_memory(path)

    def save_from_source(self, path: Union[str, Path]) -> None:
        model, tokenizer = load_causal_lm(self.source, f"the model {self.source!r} ([uniner] model)", trust_remote_code=self.trust_remote_code, **dict(self.model_kwargs, dtype="auto"))
        model.save_pretrained(path, safe_serialization=True)
        tokenizer.save_pretrained(path)

    def save_from_memory(self, path: Union[str, Path]) -> None:
        """The model in memory, with its own output layer in place of the float32 top-logits one."""
        head = self._model.get_output_embeddings()
        if isinstance(head, Float32TopLogits):
            self._model.set_output_embeddings(head.head)
        try:
            self._model.save_pretrained(path, safe_serialization=True)
        finally:
            self._model.set_output_embeddings(head)
        self._tokenizer.save_pretrained(path)


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
