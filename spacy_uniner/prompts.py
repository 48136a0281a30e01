"""Every prompt in the package: the student's conversation template (FastChat's "ie_as_qa", as the
released UniNER models expect it) and the teacher's data-construction question from the paper.

Everything that writes a student prompt or a training conversation goes through
`render_conversation`, so serving and training cannot drift apart.
"""
import json
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

SYSTEM = "A virtual assistant answers questions from a user based on the provided text."
ROLES = ("USER", "ASSISTANT")
# FastChat's ADD_COLON_TWO style: a user turn ends with a space, an assistant turn with "</s>".
TURN_ENDS = (" ", "</s>")
READ_REPLY = "I've read this text."


# The paper's data-construction prompt (system message, then the question). spacy-llm's REST models
# send one user message, so the system message opens the prompt.
TEACHER_INSTRUCTION = (
    "You are a helpful information extraction system.\n\n"
    "Given a passage, your task is to extract all entities and identify their entity types. "
    "The output should be in a list of tuples of the following format: "
    '[("entity 1", "type of entity 1"), ... ].\n\n'
    "Passage: "
)


def teacher_prompt(passage: str) -> str:
    """The question the teacher LLM answers for one passage."""
    return TEACHER_INSTRUCTION + passage


def passage_of(teacher_prompt: str) -> str:
    """The passage inside a `teacher_prompt` (ValueError for any other prompt)."""
    if not teacher_prompt.startswith(TEACHER_INSTRUCTION):
        raise ValueError(f"Not a teacher prompt of spacy_uniner.OpenNER.v1: {teacher_prompt[:80]!r}")
    return teacher_prompt[len(TEACHER_INSTRUCTION):]


def text_turn(text: str, dataset: Optional[str] = None) -> str:
    """The first user turn. `dataset` gives the paper's dataset-specific variant, which tells the
    student whose annotation guidelines to follow when supervised datasets are mixed in."""
    return f"Dataset: {dataset}\nText: {text}" if dataset else f"Text: {text}"


def question_turn(label: str) -> str:
    return f"What describes {label} in the text?"


def conversation(conversation_id: str, text: str, questions: Iterable[Tuple[str, List[str]]], dataset: Optional[str] = None) -> Dict[str, Any]:
    """A training conversation in the format of the public Pile-NER-type data: the text turn, the
    reply, then each (type, mentions) as its question and the JSON list of its mentions."""
    turns = [("human", text_turn(text, dataset)), ("gpt", READ_REPLY)]
    for label, mentions in questions:
        turns += [("human", question_turn(label)), ("gpt", json.dumps(mentions, ensure_ascii=False))]
    return {"id": conversation_id, "conversations": [{"from": role, "value": value} for role, value in turns]}


def label_of_question(question: str) -> str:
    """The entity type a `question_turn` asks about (ValueError for any other text)."""
    prefix, suffix = question_turn("\0").split("\0")
    if not (question.startswith(prefix) and question.endswith(suffix)):
        raise ValueError(f"Not a question of the template ({question_turn('TYPE')!r}): {question[:80]!r}")
    return question[len(prefix) : -len(suffix)]


def conversation_parts(messages: Sequence[Optional[str]]) -> Iterator[Tuple[str, bool]]:
    """The rendered conversation in pieces, each flagged True when it is what the assistant writes:
    a reply with its turn end, from the space after "ASSISTANT:" (a prompt ends at the colon, so
    the model writes the space). Training supervises exactly the flagged pieces.

    Messages alternate user/assistant, the first from the user. A message that is None (or empty,
    as in FastChat) leaves its turn open, so a conversation whose last message is None ends in
    "ASSISTANT:", ready for the model to answer.
    """
    yield SYSTEM + TURN_ENDS[0], False
    for i, message in enumerate(messages):
        yield f"{ROLES[i % 2]}:", False
        if message:
            yield f" {message}{TURN_ENDS[i % 2]}", i % 2 == 1


def render_conversation(messages: Sequence[Optional[str]]) -> str:
    return "".join(part for part, _ in conversation_parts(messages))


def prompt_context(prompt: str) -> str:
    """What a prompt shares with the prompts of the other labels of its text: everything before its
    last user turn (the question). Generation answers such prompts from one pass over it."""
    cut = prompt.rfind(f"{ROLES[0]}:")
    return prompt[:cut] if cut > 0 else prompt


def prompt_text(prompt: str) -> str:
    """The text a `build_prompt` prompt asks about, with or without a dataset line (ValueError for
    any other prompt)."""
    head, tail = render_conversation([text_turn("\0"), READ_REPLY]).split("\0")
    context = prompt_context(prompt)
    dataset_head, _ = render_conversation([text_turn("\0", "\0")]).split("\0", 1)
    if context.startswith(dataset_head) and "\n" in context:  # a dataset name holds no new line
        context = head + context.split("\n", 1)[1][len(text_turn("")):]
    if not (context.startswith(head) and context.endswith(tail)):
        raise ValueError(f"Not a prompt of the template: {prompt[:80]!r}")
    return context[len(head) : -len(tail)]


def build_prompt(text: str, label: str, dataset: Optional[str] = None) -> str:
    """The prompt that asks for the mentions of one entity type in one text; with `dataset`, the
    paper's supervised variant, as the conversations of that dataset were written."""
    return render_conversation([text_turn(text, dataset), READ_REPLY, question_turn(label), None])
