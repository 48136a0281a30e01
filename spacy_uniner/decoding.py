"""Batched greedy decoding for `HFGenerator.generate`: the prompts of one text share one pass over
its tokens (`SharedPrefixes`); each prompt then runs its own question after that cache and decodes
its answer, a batch of rows at a time (`AnswerRows`).

On a CPU the questions' pass reads each text's prefix in place (`attention.PrefixedQuestions`), and
only the rows still answering after it, a quarter of them or fewer with most answers `[]`, get a copy
of their prefix (`AskedQuestions`): copying the prefix to every row was a sixth of the pass's time
(docs/speed.md). Elsewhere (a GPU, where copies are cheap) every row gets its copy before the pass.

Two things keep the steps few and cheap. Keys and values sit at the start of buffers with room to
grow (`ReservedLayer`): a step writes its position in place, where transformers' `DynamicLayer`
copies the whole cache (`torch.cat`) at every step. And the rows still answering when the rest of
their batch is done join the next batch's rows instead of decoding alone (`GreedyDecoder.answers`):
most answers are `[]`, written at the question pass, and a step costs about as much with 3 rows as
with 16 on a CPU (docs/speed.md), so the long answers of many batches share one
tail of steps rather than one tail each. On a CPU, answered rows also pad a step to a multiple of 4
rows (see `GreedyDecoder`).

The last few rows of a long answer would still take one step per token, each step costing about as
much for one row as the model's fixed cost of a pass. There the decoder drafts the next tokens from
the row's own prompt (transformers' prompt lookup: an answer's mentions are the text's words) and
checks the draft in one pass over all its positions, keeping what greedy decoding would have chosen.
"""
import copy
import inspect
from dataclasses import dataclass
from typing import Any, Dict, Hashable, Iterable, Iterator, List, Optional, Tuple, Union

import torch
from transformers import DynamicCache, PreTrainedModel
from transformers.cache_utils import Cache, DynamicLayer
from transformers.generation.candidate_generator import PromptLookupCandidateGenerator

from .attention import GROUPED_SDPA, PrefixedQuestions
from .constraints import PassageConstraint

RESERVE = 32  # free positions a cache buffer keeps: one reallocation per 32 steps, not one per step
DRAFT_ROWS = 4  # drafts are checked in steps of at most this many answering rows (docs/speed.md)

Answered = Tuple[Hashable, List[int], List[float]]  # a row's key, its answer's token ids and log-probabilities


def left_padded(rows: List[List[int]], pad_id: int, device: torch.device) -> Tuple[torch.Tensor, torch.Tensor]:
    width = max(len(row) for row in rows)
    ids = torch.tensor([[pad_id] * (width - len(row)) + row for row in rows], device=device)
    mask = torch.tensor([[0] * (width - len(row)) + [1] * len(row) for row in rows], device=device)
    return ids, mask


def model_inputs(model: PreTrainedModel, cache: Cache, positions: int = 1) -> Dict[str, Any]:
    """Forward keywords beside the tokens: the cache, and logits at the last `positions` only where
    the model can skip the rest (most transformers models can)."""
    parameters = inspect.signature(model.forward).parameters
    inputs: Dict[str, Any] = {"use_cache": True}
    if "logits_to_keep" in parameters:
        inputs["logits_to_keep"] = positions
    # transformers 5.24 renamed the forward argument `past_key_values` to `cache`.
    inputs["cache" if "cache" in parameters else "past_key_values"] = cache
    return inputs


def stacked(parts: List[torch.Tensor], width: int, room: int) -> torch.Tensor:
    """Key or value states ([rows, heads, length, dim] each) stacked by rows, each part right-aligned
    in `width` positions (zeros on its left: masked padding, and never NaN, which a mask cannot
    cancel), with `room` free positions after them."""
    _, heads, _, dim = parts[0].shape
    buffer = parts[0].new_empty(sum(len(part) for part in parts), heads, width + room, dim)
    first = 0
    for part in parts:
        length = part.shape[2]
        buffer[first : first + len(part), :, : width - length] = 0
        buffer[first : first + len(part), :, width - length : width] = part
        first += len(part)
    return buffer


class ReservedLayer(DynamicLayer):
    """A full-attention cache layer whose keys and values are the filled start of larger buffers:
    `update` writes the new positions in place and grows the buffers by `RESERVE` positions when they
    are full. Attention reads the filled part as a view."""

    def __init__(self, key_buffer: torch.Tensor, value_buffer: torch.Tensor, length: int):
        super().__init__()
        self.device, self.is_initialized = key_buffer.device, True
        self.key_buffer, self.value_buffer = key_buffer, value_buffer
        self.fill(length)

    def fill(self, length: int) -> None:
        self.keys, self.values = self.key_buffer[:, :, :length], self.value_buffer[:, :, :length]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs) -> Tuple[torch.Tensor, torch.Tensor]:
        start = self.keys.shape[2]
        end = start + key_states.shape[2]
        if end > self.key_buffer.shape[2]:
            self.key_buffer = stacked([self.keys], start, end - start + RESERVE)
            self.value_buffer = stacked([self.values], start, end - start + RESERVE)
        self.key_buffer[:, :, start:end] = key_states
        self.value_buffer[:, :, start:end] = value_states
        self.fill(end)
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        indices = indices.to(self.key_buffer.device)
        self.key_buffer, self.value_buffer = self.key_buffer.index_select(0, indices), self.value_buffer.index_select(0, indices)
        self.fill(self.keys.shape[2])


def reserved_cache(layers: Iterable[Tuple[torch.Tensor, torch.Tensor]], length: int) -> Cache:
    return Cache(layers=[ReservedLayer(keys, values, length) for keys, values in layers])


class SharedPrefixes:
    """Prompt prefixes after one pass through the model (left-padded together): their key/value
    cache, copied to as many rows as ask about them, batch after batch.

    Where every layer of the model's cache is a plain full-attention layer (Llama and most decoders),
    the copies are `ReservedLayer`s, which rows of other batches can join (`joinable`). Other caches
    (sliding windows, say) are copied as they are and each batch decodes alone."""

    def __init__(self, model: PreTrainedModel, prefixes: List[List[int]], pad_id: int):
        cache = DynamicCache(config=model.config)
        self.tokens = [torch.tensor(prefix) for prefix in prefixes]
        ids, self.mask = left_padded(prefixes, pad_id, model.device)
        model(input_ids=ids, attention_mask=self.mask, position_ids=(self.mask.cumsum(-1) - 1).clamp(min=0), **model_inputs(model, cache))
        self.joinable = all(type(layer) is DynamicLayer for layer in cache.layers)
        if self.joinable:  # room for the questions after the prefix, so the question pass writes in place; the cache itself is not kept
            width = self.mask.shape[1]
            self.buffers = [(stacked([layer.keys], width, RESERVE), stacked([layer.values], width, RESERVE)) for layer in cache.layers]
        else:
            self.cache = cache

    def layers(self) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        """Per layer, the prefixes' keys and values ([prefixes, heads, positions, dim]; joinable only)."""
        width = self.mask.shape[1]
        return [(keys[:, :, :width], values[:, :, :width]) for keys, values in self.buffers]

    def for_rows(self, rows: torch.Tensor) -> Cache:
        """A cache with row i holding prefix `rows[i]`."""
        if self.joinable:
            cache = reserved_cache(((keys.index_select(0, rows.to(keys.device)), values.index_select(0, rows.to(values.device))) for keys, values in self.buffers), self.mask.shape[1])
        else:
            cache = copy.deepcopy(self.cache)
            cache.batch_select_indices(rows)
        return cache


class AskedQuestions:
    """Rows after a question pass over shared prefixes: their prefixes (`owners`) and their
    questions' keys and values. `AnswerRows.select` drops rows here as in any cache; `rows_cache`
    then gives the rows still answering caches of their own, prefix and question in one buffer."""

    def __init__(self, prefixes: SharedPrefixes, owners: torch.Tensor, questions: Cache):
        self.prefixes, self.owners, self.questions = prefixes, owners, questions

    def batch_select_indices(self, rows: torch.Tensor) -> None:
        self.owners = self.owners[rows]
        self.questions.batch_select_indices(rows)

    def rows_cache(self) -> Cache:
        width = self.prefixes.mask.shape[1]
        layers = []
        for (prefix_keys, prefix_values), question in zip(self.prefixes.layers(), self.questions.layers):
            layers.append(tuple(prefixed_buffer(prefix, self.owners, states) for prefix, states in ((prefix_keys, question.keys), (prefix_values, question.values))))
        return reserved_cache(layers, width + self.questions.get_seq_length())


def prefixed_buffer(prefixes: torch.Tensor, owners: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
    """Row i: prefix `owners[i]` of `prefixes`, then `states[i]`, then `RESERVE` free positions."""
    rows, heads, length, dim = states.shape
    width = prefixes.shape[2]
    buffer = states.new_empty(rows, heads, width + length + RESERVE, dim)
    buffer[:, :, :width] = prefixes.index_select(0, owners.to(prefixes.device))
    buffer[:, :, width : width + length] = states
    return buffer


@dataclass
class QuestionBatch:
    """Rows to answer together: row i asks continuation i after prefix `owners[i]` of `prefixes`."""

    prefixes: SharedPrefixes
    continuations: List[List[int]]
    owners: List[int]
    keys: List[Hashable]  # what the caller calls each row
    constraints: Optional[List[PassageConstraint]] = None


@dataclass
class AnswerRows:
    """Rows between two forward passes: their cache, attention mask (one column past the cache: the
    pending token's), the pending token and its position, and per row the tokens written so far
    (`tokens[i, :counts[i]]`) with their log-probabilities. A row that is no longer `alive` has
    answered and only pads the batch (see `GreedyDecoder`). `prompts` are the rows' prompt token ids,
    where drafts are looked up."""

    keys: List[Hashable]
    prompts: List[torch.Tensor]
    cache: Union[Cache, AskedQuestions]  # AskedQuestions only between the question pass and its first `select`
    mask: torch.Tensor
    positions: torch.Tensor
    next_tokens: torch.Tensor
    tokens: torch.Tensor
    counts: torch.Tensor
    logprobs: torch.Tensor
    constraints: Optional[List[PassageConstraint]]
    joinable: bool
    alive: torch.Tensor

    def __len__(self) -> int:
        return len(self.keys)

    def answering(self) -> int:
        return int(self.alive.sum())

    def select(self, rows: torch.Tensor) -> None:
        self.cache.batch_select_indices(rows.cpu())
        index = rows.tolist()
        self.keys = [self.keys[row] for row in index]
        self.prompts = [self.prompts[row] for row in index]
        self.constraints = None if self.constraints is None else [self.constraints[row] for row in index]
        self.mask, self.positions, self.next_tokens = self.mask[rows], self.positions[rows], self.next_tokens[rows]
        self.tokens, self.counts, self.logprobs, self.alive = self.tokens[rows], self.counts[rows], self.logprobs[rows], self.alive[rows]

    def join(self, other: "AnswerRows") -> "AnswerRows":
        """These rows and `other`'s in one batch: caches and masks padded on the left to one width
        (positions are kept per row, so padding changes nothing)."""
        width = max(self.mask.shape[1], other.mask.shape[1])
        layers = [
            (stacked([mine.keys, theirs.keys], width - 1, RESERVE), stacked([mine.values, theirs.values], width - 1, RESERVE))
            for mine, theirs in zip(self.cache.layers, other.cache.layers)
        ]
        mask = torch.cat([torch.nn.functional.pad(rows.mask, (width - rows.mask.shape[1], 0)) for rows in (self, other)])
        return AnswerRows(
            keys=self.keys + other.keys,
            prompts=self.prompts + other.prompts,
            cache=reserved_cache(layers, width - 1),
            mask=mask,
            positions=torch.cat([self.positions, other.positions]),
            next_tokens=torch.cat([self.next_tokens, other.next_tokens]),
            tokens=torch.cat([self.tokens, other.tokens]),
            counts=torch.cat([self.counts, other.counts]),
            logprobs=torch.cat([self.logprobs, other.logprobs]),
            constraints=None if self.constraints is None else self.constraints + other.constraints,
            joinable=True,
            alive=torch.cat([self.alive, other.alive]),
        )


class GreedyDecoder:
    """Greedy answers of question batches, each exactly what one unpadded `model.generate` per prompt
    gives (`stop` says where an answer ends). Rows still answering when no more than `carry` of
    them are left join the next batch; `carry=0` decodes every batch to its end.

    On a CPU a batch of more than one row keeps answered rows as padding up to a multiple of 4 rows:
    MKL's fp32 GEMM runs the 2 or 3 rows past a multiple of 4 as that many matrix-vector products,
    each reading all the weights, so a step of 3 rows is slower than one of 4 (docs/speed.md has the
    step times).

    A step of at most `DRAFT_ROWS` answering rows checks up to `draft_tokens` tokens a row drafted by
    prompt lookup (0: none), as transformers' `prompt_lookup_num_tokens` does for one prompt."""

    def __init__(self, model: PreTrainedModel, stop, pad_id: int, max_new_tokens: int, scored: bool, carry: int, draft_tokens: int = 0):
        self.model, self.stop, self.pad_id = model, stop, pad_id
        self.max_new_tokens, self.scored, self.carry = max_new_tokens, scored, carry
        self.stop_ids, self.may_close = stop.stop_ids.to(model.device), stop.may_close.to(model.device)
        self.drafts = PromptLookupCandidateGenerator(self.stop_ids, num_output_tokens=draft_tokens, max_length=2**62) if draft_tokens else None
        self.row_multiple = 4 if model.device.type == "cpu" else 1
        # Questions read their shared prefix in place where the component's own attention runs (CPU).
        self.prefixed = model.config._attn_implementation == GROUPED_SDPA

    def answers(self, batches: Iterable[QuestionBatch]) -> Iterator[Answered]:
        """(key, token ids, log-probabilities) per row, as rows finish; log-probabilities are empty
        unless `scored`."""
        pending: Optional[AnswerRows] = None
        for batch in batches:
            rows = yield from self.start(batch)
            if pending is not None and rows is not None:
                rows = pending.join(rows)
            elif rows is None:
                rows = pending
            while rows is not None and (rows.answering() > self.carry or not rows.joinable):
                rows = yield from self.step(rows)
            pending = rows
        while pending is not None:
            pending = yield from self.step(pending)

    def start(self, batch: QuestionBatch) -> Iterator[Answered]:
        """The question pass of a batch: each row's first answer token. Returns the rows still answering."""
        device = self.model.device
        owners = torch.tensor(batch.owners)  # on the CPU: layers placed on several GPUs each take it
        input_ids, continuation_mask = left_padded(batch.continuations, self.pad_id, device)
        mask = torch.cat([batch.prefixes.mask[owners.to(device)], continuation_mask], dim=1)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, batch.prefixes.mask.shape[1] :]
        asked = self.ask_over_prefixes(batch.prefixes, owners, input_ids, continuation_mask, positions) if batch.prefixes.joinable and self.prefixed else None
        if asked is not None:
            logits, cache = asked
        else:
            cache = batch.prefixes.for_rows(owners)
            logits = self.model(input_ids=input_ids, attention_mask=mask, position_ids=positions, **model_inputs(self.model, cache)).logits[:, -1]
        count = len(batch.keys)
        rows = AnswerRows(
            keys=list(batch.keys),
            prompts=[torch.cat([batch.prefixes.tokens[owner], torch.tensor(continuation)]) for owner, continuation in zip(batch.owners, batch.continuations)],
            cache=cache,
            mask=mask,
            positions=positions[:, -1:],
            next_tokens=input_ids[:, -1],  # replaced by `advance`
            tokens=torch.full((count, self.max_new_tokens), self.pad_id, device=device),
            counts=torch.zeros(count, dtype=torch.long, device=device),
            logprobs=torch.zeros((count, self.max_new_tokens if self.scored else 0), device=device),
            constraints=batch.constraints,
            joinable=batch.prefixes.joinable,
            alive=torch.ones(count, dtype=torch.bool, device=device),
        )
        rows = yield from self.advance(rows, logits)
        if rows is not None and asked is not None:
            rows.cache = cache.rows_cache()  # after `advance` dropped the answered rows: only those still answering copy their prefix
        return rows

    def ask_over_prefixes(self, prefixes: SharedPrefixes, owners: torch.Tensor, input_ids: torch.Tensor, continuation_mask: torch.Tensor, positions: torch.Tensor) -> Optional[Tuple[torch.Tensor, AskedQuestions]]:
        """The question pass with each row's prefix read in place (`PrefixedQuestions`): its logits and
        cache. None, and the copying pass from then on, where the model did not take the prefixes in
        every layer (its forward takes no extra keywords, or its attention does not pass them on)."""
        questions = DynamicCache(config=self.model.config)
        prefixed = PrefixedQuestions(prefixes.layers(), prefixes.mask, owners.to(self.model.device), continuation_mask)
        try:
            logits = self.model(input_ids=input_ids, attention_mask=continuation_mask, position_ids=positions, prefixed_questions=prefixed, **model_inputs(self.model, questions)).logits[:, -1]
        except TypeError:
            logits = None
        if logits is None or prefixed.layers_served != len(questions.layers):
            self.prefixed = False
            return None
        return logits, AskedQuestions(prefixes, owners, questions)

    def step(self, rows: AnswerRows) -> Iterator[Answered]:
        """One decoding step of `rows`. Returns the rows still answering (None when none is)."""
        drafts = self.draft(rows) if self.drafts is not None and rows.answering() <= DRAFT_ROWS else None
        if drafts is not None:
            return (yield from self.check_drafts(rows, *drafts))
        logits = self.model(input_ids=rows.next_tokens[:, None], attention_mask=rows.mask, position_ids=rows.positions, **model_inputs(self.model, rows.cache)).logits[:, -1]
        return (yield from self.advance(rows, logits))

    def draft(self, rows: AnswerRows) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
        """Per row, the tokens that followed its last ones where they occur in its prompt or answer
        (padded with the pad id) and how many there are; None when no row has any."""
        found = []
        for prompt, tokens, count, alive in zip(rows.prompts, rows.tokens, rows.counts.tolist(), rows.alive.tolist()):
            draft = tokens.new_empty(0)
            if alive and count < self.max_new_tokens - 1:
                written = torch.cat([prompt.to(tokens.device), tokens[:count]])
                draft = self.drafts.get_candidates(written[None])[0][0, len(written) :][: self.max_new_tokens - 1 - count]
            found.append(draft)
        lengths = torch.tensor([len(draft) for draft in found], device=rows.tokens.device)
        if not lengths.any():
            return None
        drafts = torch.full((len(rows), int(lengths.max())), self.pad_id, dtype=rows.tokens.dtype, device=rows.tokens.device)
        for row, draft in enumerate(found):
            drafts[row, : len(draft)] = draft
        return drafts, lengths

    def check_drafts(self, rows: AnswerRows, drafts: torch.Tensor, lengths: torch.Tensor) -> Iterator[Answered]:
        """One pass over each row's pending token and its draft: position by position, each row writes
        what greedy decoding chooses there and goes on while that was its draft's next token. Draft
        positions not kept stay in the cache, masked. Returns the rows still answering."""
        width = drafts.shape[1]
        offsets = torch.arange(width + 1, device=drafts.device)
        mask = torch.cat([rows.mask, (offsets[None, :width] < lengths[:, None]).to(rows.mask.dtype)], dim=1)
        inputs = torch.cat([rows.next_tokens[:, None], drafts], dim=1)
        logits = self.model(input_ids=inputs, attention_mask=mask, position_ids=rows.positions + offsets, **model_inputs(self.model, rows.cache, width + 1)).logits[:, -(width + 1) :]
        checking, kept = rows.alive.clone(), torch.zeros_like(lengths)
        next_tokens = rows.next_tokens.clone()
        for position in range(width + 1):
            chosen = yield from self.write(rows, logits[:, position], checking)
            next_tokens[checking] = chosen[checking]
            if position == width:
                break
            checking &= rows.alive & (position < lengths) & (chosen == drafts[:, position])
            kept += checking.long()
            if not checking.any():
                break
        rows.mask = torch.cat([rows.mask, (offsets[None, :width] < kept[:, None]).to(rows.mask.dtype)], dim=1)
        rows.positions = rows.positions + kept[:, None]
        return self.after_step(rows, next_tokens)

    def advance(self, rows: AnswerRows, logits: torch.Tensor) -> Iterator[Answered]:
        """Each row's next token from its logits; the rows still answering (None when none is)."""
        next_tokens = yield from self.write(rows, logits, rows.alive.clone())
        return self.after_step(rows, next_tokens)

    def write(self, rows: AnswerRows, logits: torch.Tensor, writing: torch.Tensor) -> Iterator[Answered]:
        """Each `writing` row's next token from its logits (with `constraints`, the best of its top
        candidates that its constraint allows; it ends where none is, and its log-probability is
        taken among the tokens not refused). Finished rows are yielded and no longer alive. Returns
        every row's choice; a row not writing gets its plain greedy one, which nothing reads."""
        index = writing.nonzero().flatten()
        next_tokens, blocked, rejected = logits.argmax(-1), None, None
        if rows.constraints is not None:
            # Only the writing rows: a constraint's choice decodes up to 50 candidates a row.
            picked = index.tolist()
            so_far = [rows.tokens[row, : rows.counts[row]].tolist() for row in picked]
            chosen, refused, rejected = allowed_choice(logits[index], [rows.constraints[row] for row in picked], so_far, self.stop)
            next_tokens[index] = chosen
            blocked = torch.zeros_like(writing)
            blocked[index] = refused
        counts = rows.counts[index]
        rows.tokens[index, counts] = next_tokens[index]
        if self.scored:
            rows.logprobs[index, counts] = token_logprobs(logits[index], next_tokens[index], rejected)
        rows.counts[index] += 1
        finished = torch.isin(next_tokens, self.stop_ids) | (rows.counts == self.max_new_tokens)
        if blocked is not None:
            finished |= blocked
        finished &= writing
        for row in (self.may_close[next_tokens] & writing & ~finished).nonzero().flatten().tolist():
            finished[row] = self.stop.ended(rows.tokens[row, : rows.counts[row]].tolist())
        if finished.any():
            lengths = rows.counts - blocked.long() if blocked is not None else rows.counts  # a blocked row ends without its token
            for row in finished.nonzero().flatten().tolist():
                length = int(lengths[row])
                yield rows.keys[row], rows.tokens[row, :length].tolist(), rows.logprobs[row, :length].tolist()
            rows.alive &= ~finished
        return next_tokens

    def after_step(self, rows: AnswerRows, next_tokens: torch.Tensor) -> Optional[AnswerRows]:
        """Rows ready for their next step, `next_tokens` pending; None when none is answering."""
        if not rows.alive.any():
            return None
        rows.next_tokens = next_tokens
        kept = self.kept_rows(rows.alive)
        if len(kept) < len(rows):
            rows.select(kept)
        rows.mask = torch.cat([rows.mask, rows.mask.new_ones(len(rows), 1)], dim=1)
        rows.positions = rows.positions + 1
        return rows

    def kept_rows(self, alive: torch.Tensor) -> torch.Tensor:
        """The rows still answering, and answered ones as padding up to a multiple of `row_multiple`."""
        answering, answered = alive.nonzero().flatten(), (~alive).nonzero().flatten()
        padding = -len(answering) % self.row_multiple if len(answering) > 1 else 0
        return torch.cat([answering, answered[:padding]])


def token_logprobs(logits: torch.Tensor, chosen: torch.Tensor, rejected: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Log-probability of each row's chosen token; with `rejected` (a mask over the vocabulary of
    the tokens a constraint refused), in the distribution renormalized without them."""
    logprobs = torch.log_softmax(logits.float(), -1)
    picked = logprobs.gather(-1, chosen[:, None]).squeeze(-1)
    if rejected is None:
        return picked
    kept = torch.logsumexp(logprobs.masked_fill(rejected, float("-inf")), -1)
    return picked - kept


def allowed_choice(scores: torch.Tensor, constraints: List[PassageConstraint], written: List[List[int]], stop, candidates: int = 50) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per row, the best of its `candidates` top tokens whose answer (after the tokens `written`) its
    constraint allows, whether none was (the row then ends), and which tokens it refused on the way
    (a vocabulary mask)."""
    top = scores.topk(min(candidates, scores.shape[-1]), dim=-1).indices.tolist()
    chosen, blocked = [], []
    rejected = torch.zeros_like(scores, dtype=torch.bool)
    for row, (constraint, options, so_far) in enumerate(zip(constraints, top, written)):
        rank = next((rank for rank, option in enumerate(options) if constraint.allows(stop.tokenizer.decode(so_far + [option], skip_special_tokens=True))), None)
        chosen.append(options[0] if rank is None else options[rank])
        blocked.append(rank is None)
        rejected[row, options[: 0 if rank is None else rank]] = True
    return torch.tensor(chosen, device=scores.device), torch.tensor(blocked, device=scores.device), rejected
