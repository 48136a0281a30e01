import pytest

from spacy_uniner.prompts import build_prompt, label_of_question, question_turn, render_conversation


def test_prompt_is_the_released_template_byte_for_byte():
    assert build_prompt("Steve Jobs founded Apple.", "person") == (
        "A virtual assistant answers questions from a user based on the provided text. "
        "USER: Text: Steve Jobs founded Apple. ASSISTANT: I've read this text.</s>"
        "USER: What describes person in the text? ASSISTANT:"
    )


def test_training_conversation_closes_each_answer_with_end_of_turn():
    rendered = render_conversation(["Text: a b", "I've read this text.", "What describes x in the text?", '["a"]'])
    assert rendered.endswith('USER: What describes x in the text? ASSISTANT: ["a"]</s>')
    assert rendered.startswith(build_prompt("a b", "x")[: -len("USER: What describes x in the text? ASSISTANT:")])


def test_labels_and_texts_are_inserted_verbatim():
    prompt = build_prompt('He said "hi" \u2014 caf\u00e9', 'programming "language"')
    assert 'Text: He said "hi" \u2014 caf\u00e9 ASSISTANT:' in prompt
    assert 'What describes programming "language" in the text?' in prompt


def test_label_of_question_inverts_question_turn():
    assert label_of_question(question_turn("musical artist")) == "musical artist"
    with pytest.raises(ValueError, match="Not a question of the template"):
        label_of_question("What is in the text?")
