"""Where an answer ends: the same rule for batched decoding (`decoding`) and for the reference loop
(`benchmarks.component.reference_answers`, through transformers' stopping criteria)."""
import json
from typing import List

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase, StoppingCriteria

from .prompts import TURN_ENDS
from .scores import ScoredAnswer

ANSWER_END = TURN_ENDS[1]


class AnswerStop:
    """Where an answer ends, the same for batched decoding and the reference loop: at an end-of-sequence
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
