import pytest

from spacy_uniner.answers import parse_answer


@pytest.mark.parametrize(
    "answer,strings,well_formed,dropped",
    [
        ('["Paris", "London"]', ["Paris", "London"], True, 0),
        ("[]", [], True, 0),
        ('["Paris"] and some trailing prose', ["Paris"], True, 0),
        ('  ["Paris"]</s>["Rome"]', ["Paris"], True, 0),
        ("['Paris', 'New York']", ["Paris", "New York"], True, 0),
        ("['a]b', 'c'] tail", ["a]b", "c"], True, 0),
        ('["Paris", "Lon', ["Paris"], False, 0),
        ('["Paris", "Paris", " Rome "]', ["Paris", "Rome"], True, 0),
        ('["Paris", 3, null, "", ["x"]]', ["Paris"], True, 4),
        ('["say \\"hi\\"", "caf\\u00e9"]', ['say "hi"', "caf\u00e9"], True, 0),
        ("I could not find any.", [], False, 0),
        ("", [], False, 0),
        ("[[[[", [], False, 0),
        ('{"a": 1}', [], False, 0),
        ("[unquoted, words]", [], False, 0),
    ],
)
def test_parse_answer(answer, strings, well_formed, dropped):
    parsed = parse_answer(answer)
    assert parsed.strings == strings
    assert parsed.well_formed == well_formed
    assert parsed.dropped == dropped


def test_garbage_never_raises():
    for garbage in ["[" * 5000, "]" * 5000 + "[", "['" * 300, "\x00[\ud800]", '["\\ud800"]']:
        parse_answer(garbage)
