"""Benchmark sentences from the files of the mirror, in the formats their sources ship: tagged-token
columns (token first, label first, CoNLL's token-POS-chunk-tag, or one tag column per nesting layer)
and CSV rows of tag ids; BIO, BIOES and IO tags. Which file each set lives in, its domain and how
its raw tags read as entity types is data (assets/benchmarks.json), not code."""
import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import srsly

from ..errors import UserError
from ..prompts import label_of_question, text_turn

BENCHMARKS = Path(__file__).parent.parent.parent / "assets" / "benchmarks.json"
# Column formats: which column holds the token and which hold tags (one per annotation layer).
# Columns are split at tabs, or at spaces in a file that has no tab on a line.
COLUMNS = {
    "bio": (0, slice(1, 2)),  # token<TAB>tag (further columns, as in StackOverflow-NER, are other annotations)
    "bio-label-first": (1, slice(0, 1)),  # tag<TAB>token (MIT)
    "conll": (0, slice(-1, None)),  # token POS chunk tag (CoNLL-2003)
    "nested": (0, slice(1, None)),  # token<TAB>layer 1<TAB>layer 2 ... (nested GENIA)
}
# CSV with a header, one token a row: tag id, token, document id, sentence id (FiNER-ORD); the set's
# `tag_ids` names the tag of each id.
CSV_TAG_IDS = "csv-tag-ids"
FORMATS = (*COLUMNS, CSV_TAG_IDS)
_TAG = re.compile(r"O|[BIES]-.+")
DEV = "-dev"  # NAME-dev: the dev split of a set that has one (dev_path), to choose settings on


# A set's gold passages in training data (`build-data --gold-sets`) have ids gold-NAME-N: what
# `evaluate` reads to score a set the student saw apart from the zero-shot ones.
GOLD_ID = "gold"


def set_of_passage_id(passage_id: str) -> Optional[str]:
    """The benchmark set of a gold passage id, None for any other id."""
    return passage_id[len(GOLD_ID) + 1 :].rpartition("-")[0] if passage_id.startswith(GOLD_ID + "-") else None


def benchmark_specs(benchmarks: Path = BENCHMARKS) -> Dict[str, dict]:
    return {name: spec for name, spec in srsly.read_json(benchmarks).items() if not name.startswith("_")}


ZERO_SHOT_NAMES = [name for name, spec in benchmark_specs().items() if spec.get("zero_shot")]
DOMAINS = list(dict.fromkeys(spec["domain"] for spec in benchmark_specs().values()))


def names_in_domains(domains: Sequence[str], benchmarks: Path = BENCHMARKS) -> List[str]:
    """Every set of the named domains ("all": of every domain), in the file's order."""
    specs = benchmark_specs(benchmarks)
    known = list(dict.fromkeys(spec["domain"] for spec in specs.values()))
    unknown = [domain for domain in domains if domain not in known and domain != "all"]
    if unknown:
        raise UserError(f"Unknown domains {unknown}; {benchmarks} has {known} (or all)")
    return [name for name, spec in specs.items() if "all" in domains or spec["domain"] in domains]


def benchmark_spec(name: str, benchmarks: Path = BENCHMARKS) -> dict:
    """A set's entry in `benchmarks`; for NAME-dev, NAME's entry with its dev file as path and no
    paper file."""
    specs = benchmark_specs(benchmarks)
    base = name[: -len(DEV)] if name.endswith(DEV) else name
    if base not in specs or (base != name and "dev_path" not in specs[base]):
        known = list(specs) + [key + DEV for key, spec in specs.items() if "dev_path" in spec]
        raise UserError(f"Unknown benchmark {name!r}; {benchmarks} describes {known}")
    spec = dict(specs[base])
    if base != name:
        spec.update(path=spec.pop("dev_path"), paper_file=None, test_path=spec["path"])
    return spec


@dataclass
class Sentence:
    """One test sentence: its tokens, whether each is followed by a space (by default every one but
    the last: the text is the tokens joined by spaces, as in the paper's files; a spaCy doc's
    sentence keeps its own spacing), and its gold mentions as token spans (start, end exclusive,
    entity type)."""

    dataset: str
    index: int
    tokens: List[str]
    spans: List[Tuple[int, int, str]] = field(default_factory=list)
    spaces: Optional[List[bool]] = None

    def words(self, start: int = 0, end: Optional[int] = None) -> str:
        end = len(self.tokens) if end is None else end
        spaces = self.spaces or [True] * len(self.tokens)
        return "".join(token + (" " if space and i < end - 1 else "") for i, (token, space) in enumerate(zip(self.tokens[start:end], spaces[start:end]), start))

    @property
    def text(self) -> str:
        return self.words()

    def mentions(self, entity_type: str) -> List[str]:
        return [self.words(start, end) for start, end, label in self.spans if label == entity_type]


def words_key(text: str) -> List[str]:
    """A text's words, lower case, without punctuation: benchmark text is pre-tokenized ("model s ,"),
    so texts are compared by these."""
    return re.findall(r"[a-z0-9]+", text.lower())


@dataclass
class Benchmark:
    name: str
    types: List[str]
    sentences: List[Sentence]


@dataclass
class TaggedSentence:
    """A sentence as its file has it: tokens, one tag sequence per annotation layer (nested sets
    have several), and the file line of each token (for errors)."""

    tokens: List[str]
    layers: List[List[str]]
    lines: List[int]


def checked_tag(tag: str, path: Path, number: int) -> str:
    if not _TAG.fullmatch(tag):
        raise UserError(f"{path}:{number}: the tag {tag!r} is neither O nor a B-, I-, E- or S- tag")
    return tag


def read_columns(path: Path, format: str = "bio") -> Iterator[TaggedSentence]:
    """The sentences of a tagged-token file: blocks that end at a blank (or whitespace-only) line or
    a -DOCSTART- line; CRLF line ends read as LF."""
    token_column, tag_columns = COLUMNS[format]
    sentence = TaggedSentence([], [], [])
    for number, line in enumerate(Path(path).read_text(encoding="utf8").splitlines(), 1):
        columns = line.split("\t") if "\t" in line else line.split()
        if line.strip() and len(columns) < 2:
            raise UserError(f"{path}:{number}: expected a token and a tag, got {line!r}")
        if not line.strip() or columns[token_column] == "-DOCSTART-":
            if sentence.tokens:
                yield sentence
            sentence = TaggedSentence([], [], [])
            continue
        tags = [checked_tag(tag, path, number) for tag in columns[tag_columns]]
        sentence.layers = sentence.layers or [[] for _ in tags]
        if len(tags) != len(sentence.layers):
            raise UserError(f"{path}:{number}: {len(tags)} tag columns where the sentence's first line has {len(sentence.layers)}")
        for layer, tag in zip(sentence.layers, tags):
            layer.append(tag)
        sentence.tokens.append(columns[token_column])
        sentence.lines.append(number)
    if sentence.tokens:
        yield sentence


def read_csv_tag_ids(path: Path, tag_ids: Dict[str, str]) -> Iterator[TaggedSentence]:
    """The sentences of a CSV file of (tag id, token, document id, sentence id) rows under a header."""
    sentence, key = TaggedSentence([], [[]], []), None
    with Path(path).open(encoding="utf8", newline="") as file:
        rows = csv.reader(file)
        next(rows, None)
        for number, row in enumerate(rows, 2):
            if len(row) != 4:
                raise UserError(f"{path}:{number}: expected tag id, token, document id and sentence id, got {row!r}")
            tag_id, token, document, index = row
            if tag_id not in tag_ids:
                raise UserError(f"{path}:{number}: the tag id {tag_id!r} is not in the set's tag_ids {tag_ids}")
            if (document, index) != key and sentence.tokens:
                yield sentence
                sentence = TaggedSentence([], [[]], [])
            key = (document, index)
            sentence.tokens.append(token)
            sentence.layers[0].append(checked_tag(tag_ids[tag_id], path, number))
            sentence.lines.append(number)
    if sentence.tokens:
        yield sentence


def read_sentences(path: Path, spec: dict) -> Iterator[TaggedSentence]:
    if spec["format"] == CSV_TAG_IDS:
        return read_csv_tag_ids(path, spec["tag_ids"])
    return read_columns(path, spec["format"])


def tag_spans(tags: List[str]) -> List[Tuple[int, int, str]]:
    """Token spans of a BIO, BIOES or IO tag sequence. As in conlleval, an I- tag that does not
    continue a mention of its type starts one."""
    spans: List[Tuple[int, int, str]] = []
    start: Optional[int] = None
    label = None
    for i, tag in enumerate(tags + ["O"]):
        prefix, _, name = tag.partition("-") if tag != "O" else ("O", "", None)
        continues = prefix in ("I", "E") and start is not None and name == label
        if start is not None and not continues:
            spans.append((start, i, label))
            start = None
        if prefix in ("B", "S") or (prefix in ("I", "E") and not continues):
            start, label = i, name
        if prefix in ("E", "S") and start is not None:
            spans.append((start, i + 1, label))
            start = None
    return spans


def load_benchmark(name: str, mirror: Path, benchmarks: Path = BENCHMARKS) -> Benchmark:
    """The sentences of one set, with raw tags turned into the types the paper asks about (tags
    mapped to null, the misc/other catch-alls, are left out as the paper does). Every annotation
    layer counts, so nested mentions become overlapping gold mentions."""
    spec = benchmark_spec(name, benchmarks)
    if spec.get("format") not in FORMATS:
        raise UserError(f"{benchmarks}: {name} has format {spec.get('format')!r}; expected one of {FORMATS}")
    path = Path(mirror) / spec["path"]
    if not path.exists():
        raise FileNotFoundError(f"{path} (benchmark {name}) is missing: is `mirror` the folder of the data mirror?")
    # A dev split leaves out its sentences that are also test sentences (CrossNER's dev and test
    # files share 34), so settings chosen on it never see a test sentence.
    test_texts = {" ".join(s.tokens) for s in read_sentences(Path(mirror) / spec["test_path"], spec)} if "test_path" in spec else set()
    sentences = []
    for index, tagged in enumerate(read_sentences(path, spec)):
        if " ".join(tagged.tokens) in test_texts:
            continue
        spans = []
        for layer in tagged.layers:
            for start, end, tag in tag_spans(layer):
                if tag not in spec["types"]:
                    raise UserError(f"{path}:{tagged.lines[start]}: the tag {tag!r} has no type in {benchmarks} for {name} (map it to the type to ask, or to null to leave it out)")
                if spec["types"][tag] is not None:
                    spans.append((start, end, spec["types"][tag]))
        sentences.append(Sentence(name, index, tagged.tokens, list(dict.fromkeys(spans))))
    types = [entity_type for entity_type in dict.fromkeys(spec["types"].values()) if entity_type is not None]
    return Benchmark(name, types, sentences)


def paper_queries(path: Path) -> List[Tuple[str, str, str]]:
    """(text, entity type, gold answer) per record of one of the paper's evaluation files."""
    text_prefix = text_turn("\0").split("\0")[0]
    queries = []
    for number, record in enumerate(json.loads(Path(path).read_text(encoding="utf8"))):
        text, _, question, answer = (turn["value"] for turn in record["conversations"])
        sentence = text[len(text_prefix) :]
        try:
            if text_turn(sentence) != text:
                raise UserError(f"Not a text turn of the template: {text[:60]!r}")
            queries.append((sentence, label_of_question(question), answer))
        except ValueError as err:
            raise UserError(f"{path}: record {number} is not a (text, type) query of the paper's template. {err}") from err
    return queries
