import pytest

from spacy_uniner.answers import parse_teacher_answer


@pytest.mark.parametrize(
    "answer,pairs,well_formed,dropped",
    [
        ('[("Rokkosan Pasture", "location"), ("Kobe", "city")]', [("Rokkosan Pasture", "location"), ("Kobe", "city")], True, 0),
        ('[["Kobe", "city"], ["Kobe", "city"]]', [("Kobe", "city")], True, 0),
        ('[{"entity": "Kobe", "type": "city"}, {"name": "Aspirin", "entity_type": "drug"}]', [("Kobe", "city"), ("Aspirin", "drug")], True, 0),
        ('Sure! Here they are:\n```python\n[("Kobe", "city"),]\n```\nLet me know if you need more.', [("Kobe", "city")], True, 0),
        ('[("Kobe", "city"), ("", "city"), ("Kobe", 3), "Kobe", ("a", "b", "c")]', [("Kobe", "city")], True, 4),
        ('[("Kobe", "Medical   Condition")]', [("Kobe", "Medical Condition")], True, 0),
        # a missing comma between lines, a cut-off last tuple, an apostrophe inside a mention
        ('[("Kobe", "city")\n("McDonald\'s", "company")\n("Tim Co', [("Kobe", "city"), ("McDonald's", "company")], False, 0),
        ("[('O\\'Neil', 'person')]", [("O'Neil", "person")], True, 0),
        ("[]", [], True, 0),
        ("There are no entities in this passage.", [], False, 0),
        ("[" * 5000, [], False, 0),
    ],
)
def test_parse_teacher_answer(answer, pairs, well_formed, dropped):
    parsed = parse_teacher_answer(answer)
    assert parsed.pairs == pairs
    assert parsed.well_formed is well_formed
    assert parsed.dropped == dropped
