"""Conversations as training examples: each conversation's token ids with only the answers
supervised, split where it is too long, its questions reshuffled every epoch, batched by length; and
the passages held back from training."""
import itertools
from bisect import bisect_right
from typing import Dict, Iterable, Iterator, List, Sequence, Tuple

import numpy
import torch
from transformers import PreTrainedTokenizerBase

from .data import question_pairs
from .errors import UserError
from .prompts import conversation_parts, render_conversation
from .tokens import encode_texts

IGNORE = -100  # the label transformers and torch's cross entropy skip
Example = Tuple[List[int], List[int]]  # input ids, labels
Epoch = Tuple[List[Example], List[List[int]], Dict[str, int]]  # examples, micro-batches, report


def supervised_tokens(tokenizer: PreTrainedTokenizerBase, chunks: Sequence[Sequence[str]]) -> List[Tuple[List[int], List[int]]]:
    """(input ids, labels) per conversation: a token is supervised (label = its id) when it starts
    inside what the assistant writes (`conversation_parts`), every other label is IGNORE."""
    texts, regions = [], []
    for messages in chunks:
        text, spans = "", []
        for part, written in conversation_parts(messages):
            if written:
                spans += [len(text), len(text) + len(part)]
            text += part
        texts.append(text)
        regions.append(spans)
    examples = []
    for ids, offsets, spans in zip(*encode_texts(tokenizer, texts), regions):
        # Region boundaries alternate start, end: an odd insertion point means inside a region.
        labels = [token if bisect_right(spans, start) % 2 else IGNORE for token, (start, _) in zip(ids, offsets)]
        examples.append((ids, labels))
    return examples


def split_conversation(tokenizer: PreTrainedTokenizerBase, messages: List[str], max_length: int) -> Tuple[List[List[str]], int]:
    """A conversation too long for `max_length` tokens as several that fit, each keeping the text
    turn and its reply, with the question/answer pairs in order; and how many pairs fit nowhere (the
    text alone leaves no room for them)."""
    head = messages[:2]

    def fits(candidate: List[List[str]]) -> bool:
        ids, _ = encode_texts(tokenizer, [render_conversation(head + sum(candidate, []))])
        return len(ids[0]) <= max_length

    chunks: List[List[List[str]]] = []
    dropped = 0
    for pair in question_pairs(messages):
        if chunks and fits(chunks[-1] + [pair]):
            chunks[-1].append(pair)
        elif fits([pair]):
            chunks.append([pair])
        else:
            dropped += 1
    return [head + sum(chunk, []) for chunk in chunks], dropped


def shuffled_questions(messages: List[str], rng: numpy.random.Generator) -> List[str]:
    """The question/answer pairs in a new order: answers do not depend on the order of the
    questions, and a fixed order would let a model answer by position instead of by type."""
    pairs = question_pairs(messages)
    return messages[:2] + [message for i in rng.permutation(len(pairs)) for message in pairs[i]]


def training_examples(tokenizer, conversations: List[Tuple[str, List[str]]], max_length: int) -> Tuple[List[Tuple[List[int], List[int]]], Dict[str, int]]:
    """The supervised sequences of the conversations: whole where they fit (almost all; tokenized
    once, in one batch), split where they do not."""
    report = {"conversations": len(conversations), "split_conversations": 0, "questions_too_long": 0}
    examples = []
    for (_, messages), example in zip(conversations, supervised_tokens(tokenizer, [messages for _, messages in conversations])):
        if len(example[0]) <= max_length:
            examples.append(example)
            continue
        parts, dropped = split_conversation(tokenizer, messages, max_length)
        if parts:  # none when no question fits beside the text
            examples += supervised_tokens(tokenizer, parts)
        report["split_conversations"] += len(parts) > 1
        report["questions_too_long"] += dropped
    if not examples:
        raise UserError(f"No conversation fits max_length = {max_length} tokens, not even with one question: raise [training] max_length or cut the passages shorter")
    report.update(
        examples=len(examples),
        tokens=sum(len(ids) for ids, _ in examples),
        supervised_tokens=sum(label != IGNORE for _, labels in examples for label in labels),
    )
    return examples, report


def length_batches(lengths: Sequence[int], batch_size: int, rng: numpy.random.Generator) -> List[List[int]]:
    """One epoch's micro-batches: the examples shuffled, sorted by length within pools of 64
    batches so a batch holds similar lengths (little padding), the batch order shuffled."""
    order = rng.permutation(len(lengths)).tolist()
    pool = batch_size * 64
    batches: List[List[int]] = []
    for start in range(0, len(order), pool):
        by_length = sorted(order[start : start + pool], key=lambda i: lengths[i])
        batches += [by_length[i : i + batch_size] for i in range(0, len(by_length), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def epochs_of_examples(tokenizer, conversations, max_length: int, batch_size: int, seed: int) -> Iterator[Epoch]:
    """Each epoch's examples (questions reshuffled, as the paper's training code does), its
    micro-batches and its report, without end: seeded by (seed, epoch), so a resumed run sees the
    same ones; the caller takes as many epochs as it passes over."""
    for epoch in itertools.count():
        rng = numpy.random.default_rng([seed, epoch])
        examples, report = training_examples(tokenizer, [(i, shuffled_questions(m, rng)) for i, m in conversations], max_length)
        yield examples, length_batches([len(ids) for ids, _ in examples], batch_size, rng), report


def joined_epochs(epochs: Iterable[Epoch]) -> Tuple[List[Example], List[List[int]]]:
    """The epochs' examples in one list, and their batches as indices into it."""
    examples: List[Example] = []
    batches: List[List[int]] = []
    for epoch_examples, epoch_batches, _ in epochs:
        batches += [[len(examples) + i for i in batch] for batch in epoch_batches]
        examples += epoch_examples
    return examples, batches


def padding_share(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    padded = sum(max(lengths[i] for i in batch) * len(batch) for batch in batches)
    return 1 - sum(lengths[i] for batch in batches for i in batch) / padded


def collate(examples: List[Tuple[List[int], List[int]]], pad_id: int) -> Dict[str, torch.Tensor]:
    """Right padding: positions then count from 0 in every row, as in generation."""
    width = max(len(ids) for ids, _ in examples)
    batch = {
        "input_ids": torch.full((len(examples), width), pad_id),
        "labels": torch.full((len(examples), width), IGNORE),
        "attention_mask": torch.zeros((len(examples), width), dtype=torch.long),
    }
    for row, (ids, labels) in enumerate(examples):
        batch["input_ids"][row, : len(ids)] = torch.tensor(ids)
        batch["labels"][row, : len(ids)] = torch.tensor(labels)
        batch["attention_mask"][row, : len(ids)] = 1
    return batch


def hold_out(conversations: List[Tuple[str, List[str]]], count: int, seed: int) -> Tuple[List[Tuple[str, List[str]]], List[Tuple[str, List[str]]]]:
    """The conversations to train on, and `count` passages held back, each once, as its first
    conversation asks it. Held out by id: a passage written several times (build-data --draws) is
    held out whole."""
    rng = numpy.random.default_rng(seed)
    ids = list(dict.fromkeys(conversation_id for conversation_id, _ in conversations))
    held_ids = {ids[i] for i in rng.permutation(len(ids))[:count]}
    first_of_held: Dict[str, Tuple[str, List[str]]] = {}
    for conversation in conversations:
        if conversation[0] in held_ids:
            first_of_held.setdefault(conversation[0], conversation)
    return [conversation for conversation in conversations if conversation[0] not in held_ids], list(first_of_held.values())
