"""Every prompt in the package: the student's conversation template (FastChat's "ie_as_qa", as the
released UniNER models expect it) and the teacher's data-construction question from the paper.

Everything that writes a student prompt or a training conversation goes through
`render_conversation`, so serving and training cannot drift apart.
"""
from typing import Optional, Sequence

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


def render_conversation(messages: Sequence[Optional[str]]) -> str:
    """Render alternating user/assistant messages, the first from the user.

    A message that is None (or empty, as in FastChat) leaves its turn open, so a conversation whose
    last message is None ends in "ASSISTANT:", ready for the model to answer.
    """
    prompt = SYSTEM + TURN_ENDS[0]
    for i, message in enumerate(messages):
        role = ROLES[i % 2]
        if message:
            prompt += f"{role}: {message}{TURN_ENDS[i % 2]}"
        else:
            prompt += f"{role}:"
    return prompt


def build_prompt(text: str, label: str) -> str:
    """The prompt that asks for the mentions of one entity type in one text."""
    return render_conversation([text_turn(text), READ_REPLY, question_turn(label), None])
