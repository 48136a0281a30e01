"""The one conversation template: FastChat's "ie_as_qa", as the released UniNER models expect it.

Everything that writes a prompt or a training conversation goes through `render_conversation`,
so serving and training cannot drift apart.
"""
from typing import Optional, Sequence

SYSTEM = "A virtual assistant answers questions from a user based on the provided text."
ROLES = ("USER", "ASSISTANT")
# FastChat's ADD_COLON_TWO style: a user turn ends with a space, an assistant turn with "</s>".
TURN_ENDS = (" ", "</s>")
READ_REPLY = "I've read this text."


def text_turn(text: str) -> str:
    return f"Text: {text}"


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
