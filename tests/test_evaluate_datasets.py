"""Benchmark loading: tag schemes, and parity of the BIO files (with assets/benchmarks.json's type
names) with the paper's own evaluation files, query for query."""
import json
from collections import Counter
from pathlib import Path

import pytest

from spacy_uniner.evaluate import paper_parse
from spacy_uniner.evaluate.datasets import BENCHMARKS, load_benchmark, paper_queries, read_tagged_tokens, tag_spans

MIRROR = Path(__file__).parent.parent.parent / "shared" / "data"
needs_mirror = pytest.mark.skipif(not MIRROR.exists(), reason="the mirror ../shared/data is not beside the project")
SETS = [name for name in json.loads(BENCHMARKS.read_text()) if not name.startswith("_")]


def test_tag_schemes():
    assert tag_spans(["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC"]) == [(0, 2, "PER"), (3, 4, "LOC"), (4, 6, "LOC")]
    assert tag_spans(["I-ORG", "I-ORG", "O", "I-PER", "I-LOC"]) == [(0, 2, "ORG"), (3, 4, "PER"), (4, 5, "LOC")]  # IO, conlleval
    assert tag_spans(["S-MATE", "B-MANP", "I-MANP", "E-MANP", "O", "S-X"]) == [(0, 1, "MATE"), (1, 4, "MANP"), (5, 6, "X")]  # BIOES
    assert tag_spans(["B-Restaurant_Name", "I-Restaurant_Name"]) == [(0, 2, "Restaurant_Name")]
    assert tag_spans([]) == []


def test_reading_token_and_label_first_files(tmp_path):
    (tmp_path / "a.txt").write_text("-DOCSTART-\tO\n\nKobe\tB-city\nis\tO\n\n\nJapan\tB-country\n")
    assert list(read_tagged_tokens(tmp_path / "a.txt")) == [(["Kobe", "is"], ["B-city", "O"]), (["Japan"], ["B-country"])]
    (tmp_path / "b.txt").write_text("B-GENRE\tromantic\nI-GENRE\tcomedies\n")
    assert list(read_tagged_tokens(tmp_path / "b.txt", label_first=True)) == [(["romantic", "comedies"], ["B-GENRE", "I-GENRE"])]
    (tmp_path / "c.txt").write_text("Kobe\n")
    with pytest.raises(ValueError, match="c.txt:1: expected a token and a tag"):
        list(read_tagged_tokens(tmp_path / "c.txt"))


def test_unknown_sets_and_labels_give_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="Unknown benchmark 'nope'"):
        load_benchmark("nope", MIRROR)
    (tmp_path / "x.txt").write_text("Kobe\tB-city\n")
    (tmp_path / "b.json").write_text(json.dumps({"x": {"path": "x.txt", "format": "bio", "types": {"country": "country"}}}))
    with pytest.raises(ValueError, match="label 'city'"):
        load_benchmark("x", tmp_path, tmp_path / "b.json")
    with pytest.raises(FileNotFoundError, match="is `mirror`"):
        load_benchmark("x", tmp_path / "elsewhere", tmp_path / "b.json")


@needs_mirror
@pytest.mark.parametrize("name", SETS)
def test_bio_files_give_the_papers_queries_up_to_its_conversion_slips(name):
    """The paper's evaluation files hold the same (sentence, type) queries as the BIO files read with
    the type names of assets/benchmarks.json, with the same gold strings after the paper's
    normalization, except for two slips of the paper's conversion: a mention that ends a CrossNER
    sentence is missing, and a set may miss one sentence (politics, the last MIT restaurant one)."""
    benchmark = load_benchmark(name, MIRROR)
    assert len(benchmark.sentences) > 400
    ours = {}
    for sentence in benchmark.sentences:
        for entity_type in benchmark.types:
            ours.setdefault((sentence.text, entity_type), []).append((sentence, set(paper_parse(json.dumps(sentence.mentions(entity_type))))))
    paper_file = json.loads(BENCHMARKS.read_text())[name].get("paper_file")
    if paper_file is None:  # mit-movie: the mirror lacks the paper's file
        assert len(benchmark.types) == 12 and sum(map(len, ours.values())) == 12 * len(benchmark.sentences)
        return
    queries = paper_queries(MIRROR / paper_file)
    asked = Counter()
    for text, entity_type, answer in queries:
        candidates = ours[(text, entity_type)]  # KeyError: a query the BIO file does not have
        gold = set(paper_parse(answer))
        sentence, expected = next(((s, g) for s, g in candidates if g == gold), candidates[0])
        final = {paper_parse(json.dumps([" ".join(sentence.tokens[start:end])]))[0] for start, end, label in sentence.spans if end == len(sentence.tokens) and label == entity_type}
        assert gold <= expected and expected - gold <= final, (text, entity_type, gold, expected)
        asked[text] += 1
    missing = {sentence.text for sentence in benchmark.sentences} - set(asked)
    assert len(missing) <= 1 and len(queries) == len(benchmark.types) * (len(benchmark.sentences) - len(missing))


@needs_mirror
def test_dev_splits_read_with_the_test_sets_types_and_no_paper_file():
    from spacy_uniner.evaluate.datasets import benchmark_spec
    from spacy_uniner.evaluate.run import paper_golds

    dev, test = load_benchmark("CrossNER_AI-dev", MIRROR), load_benchmark("CrossNER_AI", MIRROR)
    assert dev.types == test.types
    assert len(dev.sentences) == 350 - 3 and len(test.sentences) == 431  # 3 dev sentences are test sentences too
    assert not {s.text for s in dev.sentences} & {s.text for s in test.sentences}
    assert benchmark_spec("CrossNER_AI-dev")["path"] == "crossner/ner_data/ai/dev.txt"
    assert paper_golds("CrossNER_AI-dev", MIRROR) is None  # scored against the BIO golds
    with pytest.raises(ValueError, match="Unknown benchmark 'mit-movie-dev'.*CrossNER_AI-dev"):
        load_benchmark("mit-movie-dev", MIRROR)
