"""Benchmark loading: each file format and tag scheme, errors that name file, line and tag, parity of
the BIO files (with assets/benchmarks.json's type names) with the paper's own evaluation files, query
for query, and a type for every tag of every mirrored set."""
import json
from collections import Counter
from pathlib import Path

import pytest

from spacy_uniner.evaluate import paper_parse
from spacy_uniner.evaluate.datasets import BENCHMARKS, ZERO_SHOT_NAMES, benchmark_specs, load_benchmark, names_in_domains, paper_queries, read_columns, read_sentences, tag_spans

MIRROR = Path(__file__).parent.parent.parent / "shared" / "data"
needs_mirror = pytest.mark.skipif(not MIRROR.exists(), reason="the mirror ../shared/data is not beside the project")


def test_tag_schemes():
    assert tag_spans(["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC"]) == [(0, 2, "PER"), (3, 4, "LOC"), (4, 6, "LOC")]
    assert tag_spans(["I-ORG", "I-ORG", "O", "I-PER", "I-LOC"]) == [(0, 2, "ORG"), (3, 4, "PER"), (4, 5, "LOC")]  # IO, conlleval
    assert tag_spans(["S-MATE", "B-MANP", "I-MANP", "E-MANP", "O", "S-X"]) == [(0, 1, "MATE"), (1, 4, "MANP"), (5, 6, "X")]  # BIOES
    assert tag_spans(["B-Restaurant_Name", "I-Restaurant_Name"]) == [(0, 2, "Restaurant_Name")]
    assert tag_spans([]) == []


def sentences(path, spec):
    return [(tagged.tokens, tagged.layers, tagged.lines) for tagged in read_sentences(path, spec)]


def test_each_format_family_reads_into_tokens_tag_layers_and_lines(tmp_path):
    # token<TAB>tag, -DOCSTART- and blank lines, several blank lines
    (tmp_path / "bio.txt").write_text("-DOCSTART-\tO\n\nKobe\tB-city\nis\tO\n\n\nJapan\tB-country\n")
    assert sentences(tmp_path / "bio.txt", {"format": "bio"}) == [(["Kobe", "is"], [["B-city", "O"]], [3, 4]), (["Japan"], [["B-country"]], [7])]
    # StackOverflow-NER: more columns after the tag, whitespace-only lines between sentences
    (tmp_path / "so.txt").write_text("Use\tO\tUse\tO\nnumpy\tB-Library\tnumpy\tO\n\t\nok\tO\tok\tO\n")
    assert sentences(tmp_path / "so.txt", {"format": "bio"}) == [(["Use", "numpy"], [["O", "B-Library"]], [1, 2]), (["ok"], [["O"]], [4])]
    # MIT: tag<TAB>token, with CRLF line ends (trivia10k13)
    (tmp_path / "mit.bio").write_bytes(b"B-GENRE\tromantic\r\nI-GENRE\tcomedies\r\n\r\nO\tplay\r\n")
    assert sentences(tmp_path / "mit.bio", {"format": "bio-label-first"}) == [(["romantic", "comedies"], [["B-GENRE", "I-GENRE"]], [1, 2]), (["play"], [["O"]], [4])]
    # CoNLL-2003's four space-separated columns, IO tags (SEC-filings)
    (tmp_path / "sec.txt").write_text("-DOCSTART- -X- O O\n\nSilicium NNP - I-ORG\nValley NNP - I-ORG\nsigned VBD - O\n")
    assert sentences(tmp_path / "sec.txt", {"format": "conll"}) == [(["Silicium", "Valley", "signed"], [["I-ORG", "I-ORG", "O"]], [3, 4, 5])]
    # nested GENIA: one tag column per layer
    (tmp_path / "genia.iob2").write_text("human\tB-protein\tB-DNA\tO\nIL-2\tI-protein\tI-DNA\tO\ngene\tO\tI-DNA\tO\n")
    assert sentences(tmp_path / "genia.iob2", {"format": "nested"}) == [(["human", "IL-2", "gene"], [["B-protein", "I-protein", "O"], ["B-DNA", "I-DNA", "I-DNA"], ["O", "O", "O"]], [1, 2, 3])]
    # FiNER-ORD: CSV of tag ids under a header, sentences by (document, sentence) id, quoted commas
    (tmp_path / "finer.csv").write_text('gold_label,gold_token,doc_idx,sent_idx\n1,Robin,0,8\n2,Lee,0,8\n0,",",0,8\n5,DHL,0,9\n5,Google,1,9\n')
    ids = {"0": "O", "1": "B-PER", "2": "I-PER", "5": "B-ORG"}
    assert sentences(tmp_path / "finer.csv", {"format": "csv-tag-ids", "tag_ids": ids}) == [
        (["Robin", "Lee", ","], [["B-PER", "I-PER", "O"]], [2, 3, 4]), (["DHL"], [["B-ORG"]], [5]), (["Google"], [["B-ORG"]], [6])
    ]


def test_files_that_do_not_parse_name_the_file_and_line(tmp_path):
    (tmp_path / "c.txt").write_text("Kobe\tO\nJapan\n")
    with pytest.raises(ValueError, match="c.txt:2: expected a token and a tag"):
        list(read_columns(tmp_path / "c.txt"))
    (tmp_path / "d.txt").write_text("Kobe\tO\nJapan\tCOUNTRY\n")
    with pytest.raises(ValueError, match="d.txt:2: the tag 'COUNTRY' is neither O nor"):
        list(read_columns(tmp_path / "d.txt"))
    (tmp_path / "e.txt").write_text("human\tB-protein\tO\ngene\tO\n")
    with pytest.raises(ValueError, match="e.txt:2: 1 tag columns where the sentence's first line has 2"):
        list(read_columns(tmp_path / "e.txt", "nested"))
    (tmp_path / "f.csv").write_text("gold_label,gold_token,doc_idx,sent_idx\n0,a,0,0\n9,b,0,0\n")
    with pytest.raises(ValueError, match="f.csv:3: the tag id '9'"):
        list(read_sentences(tmp_path / "f.csv", {"format": "csv-tag-ids", "tag_ids": {"0": "O"}}))


def test_nested_layers_become_overlapping_gold_mentions(tmp_path):
    (tmp_path / "genia.iob2").write_text("human\tB-protein\tB-DNA\nIL-2\tI-protein\tI-DNA\ngene\tO\tI-DNA\n\nIL-2\tB-protein\tO\n")
    (tmp_path / "b.json").write_text(json.dumps({"g": {"path": "genia.iob2", "domain": "biomedical", "format": "nested", "types": {"protein": "protein", "DNA": "DNA"}}}))
    first, second = load_benchmark("g", tmp_path, tmp_path / "b.json").sentences
    assert first.mentions("protein") == ["human IL-2"] and first.mentions("DNA") == ["human IL-2 gene"]
    assert second.spans == [(0, 1, "protein")]


def test_unknown_sets_domains_and_tags_give_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="Unknown benchmark 'nope'"):
        load_benchmark("nope", MIRROR)
    with pytest.raises(ValueError, match="Unknown domains \\['nowhere'\\]"):
        names_in_domains(["nowhere"])
    (tmp_path / "x.txt").write_text("Kobe\tO\n\nin\tO\nKobe\tB-city\n")
    (tmp_path / "b.json").write_text(json.dumps({"x": {"path": "x.txt", "domain": "general", "format": "bio", "types": {"country": "country"}}, "y": {"path": "x.txt", "domain": "general", "format": "xml", "types": {}}}))
    with pytest.raises(ValueError, match="x.txt:4: the tag 'city' has no type in .*b.json for x"):
        load_benchmark("x", tmp_path, tmp_path / "b.json")
    with pytest.raises(ValueError, match="y has format 'xml'"):
        load_benchmark("y", tmp_path, tmp_path / "b.json")
    with pytest.raises(FileNotFoundError, match="is `mirror`"):
        load_benchmark("x", tmp_path / "elsewhere", tmp_path / "b.json")


def test_the_zero_shot_sets_are_the_papers_seven_and_every_set_has_a_domain():
    assert ZERO_SHOT_NAMES == ["CrossNER_AI", "CrossNER_literature", "CrossNER_music", "CrossNER_politics", "CrossNER_science", "mit-movie", "mit-restaurant"]
    specs = benchmark_specs()
    assert len(specs) == 33 and names_in_domains(["all"]) == list(specs)
    assert names_in_domains(["finance", "law"]) == ["FiNER-ORD", "SEC-filings"]


@needs_mirror
@pytest.mark.parametrize("name", list(benchmark_specs()))
def test_every_tag_of_every_mirrored_set_has_exactly_one_reviewed_type(name):
    """The mapping of each set is the set of tags its file holds: none missing (load_benchmark would
    stop), none that the file never uses (a typo)."""
    spec = benchmark_specs()[name]
    paths = [spec["path"]] + ([spec["dev_path"]] if "dev_path" in spec else [])
    tags = {tag for path in paths for tagged in read_sentences(MIRROR / path, spec) for layer in tagged.layers for _, _, tag in tag_spans(layer)}
    assert tags == set(spec["types"])
    benchmark = load_benchmark(name, MIRROR)
    assert benchmark.sentences and all(entity_type and entity_type == entity_type.strip() for entity_type in benchmark.types)
    assert {label for sentence in benchmark.sentences for _, _, label in sentence.spans} == set(benchmark.types)


@needs_mirror
@pytest.mark.parametrize("name", ZERO_SHOT_NAMES)
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
