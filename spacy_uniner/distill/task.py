"""The spacy-llm task `spacy_uniner.OpenNER.v1`: the paper's data-construction question (every entity
of a passage with a free-form type), answers parsed into labelled spans."""
from typing import Any, Dict, Iterable, List, Tuple

from spacy.tokens import Doc, Span, SpanGroup
from spacy_llm.registry import registry

from ..align import find_mention, token_boundaries
from ..answers import parse_teacher_answer
from ..prompts import TEACHER_INSTRUCTION, teacher_prompt

# doc.user_data key of the teacher's raw answer and of what parsing it kept and dropped.
ANSWER_KEY = "uniner_teacher"


class OpenNERTask:
    def __init__(self, spans_key: str):
        self.spans_key = spans_key

    @property
    def prompt_template(self) -> str:
        # spacy-llm's cache stores this and refuses a cache written with another prompt.
        return TEACHER_INSTRUCTION

    def generate_prompts(self, docs: Iterable[Doc]) -> Iterable[str]:
        for doc in docs:
            yield teacher_prompt(doc.text)

    # Each doc's response is a list of answers, one per prompt: one here, as the task never shards.
    # (Typed Any: spacy-llm's type check expects Iterable[Iterable[Any]] for a non-sharding task.)
    def parse_responses(self, docs: Iterable[Doc], responses: Iterable[Any]) -> Iterable[Doc]:
        for doc, response in zip(docs, responses):
            answer = "".join(response)
            doc.spans[self.spans_key], doc.user_data[ANSWER_KEY] = self.read_answer(doc, answer)
            yield doc

    def read_answer(self, doc: Doc, answer: str) -> Tuple[SpanGroup, Dict[str, Any]]:
        """The token spans of every (mention, type) pair whose mention is in the passage, and a record
        of the answer: the exact character offsets of those mentions (a mention inside a token, such
        as a folder inside a path, keeps its own text there) and the counts of what was dropped."""
        parsed = parse_teacher_answer(answer)
        spans: List[Span] = []
        mentions: List[Tuple[int, int, str]] = []
        not_in_text = 0
        boundaries = token_boundaries(doc[:])
        for mention, label in parsed.pairs:
            found = find_mention(doc.text, mention, boundaries)
            not_in_text += not found
            for start, end in found:
                mentions.append((start, end, label))
                span = doc.char_span(start, end, label=label, alignment_mode="expand")
                if span is not None and span not in spans:
                    spans.append(span)
        record = {
            "answer": answer,
            "well_formed": parsed.well_formed,
            "pairs": len(parsed.pairs),
            "dropped_items": parsed.dropped,
            "mentions_not_in_text": not_in_text,
            "mentions": sorted(mentions),
        }
        return SpanGroup(doc, name=self.spans_key, spans=spans), record


@registry.llm_tasks("spacy_uniner.OpenNER.v1")
def make_open_ner_task(spans_key: str = "teacher") -> OpenNERTask:
    """Ask for every entity of a passage with its type, as the UniversalNER paper did; write the
    mentions found in the passage to `doc.spans[spans_key]`, labelled with the teacher's type."""
    return OpenNERTask(spans_key=spans_key)
