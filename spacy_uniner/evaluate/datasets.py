"""Benchmark sentences from the files of the mirror: BIO token files (token first, or label first as
in MIT), with BIOES and IO tags too. Which file each set lives in and how its raw labels read as
entity types is data (assets/benchmarks.json), not code."""
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import srsly

from ..prompts import label_of_question, text_turn

BENCHMARKS = Path(__file__).parent.parent.parent / "assets" / "benchmarks.json"
FORMATS = ("bio", "bio-label-first")
BENCHMARK_NAMES = [name for name in srsly.read_json(BENCHMARKS) if not name.startswith("_")]
DEV = "-dev"  # NAME-dev: the dev split of a set that has one (dev_path), to choose settings on


def benchmark_spec(name: str, benchmarks: Path = BENCHMARKS) -> dict:
    """A set's entry in `benchmarks`; for NAME-dev, NAME's entry with its dev file as path and no
    paper file."""
    specs = srsly.read_json(benchmarks)
    base = name[: -len(DEV)] if name.endswith(DEV) else name
    if base not in specs or base.startswith("_") or (base != name and "dev_path" not in specs[base]):
        known = [key for key in specs if not key.startswith("_")] + [key + DEV for key in specs if "dev_path" in specs.get(key, {})]
        raise ValueError(f"Unknown benchmark {name!r}; {benchmarks} describes {known}")
    spec = dict(specs[base])
    if base != name:
        spec.update(path=spec.pop("dev_path"), paper_file=None, test_path=spec["path"])
    return spec


@dataclass
class Sentence:
    """One test sentence: its tokens (the text is them joined by spaces, as in the paper's files)
    and its gold mentions as token spans (start, end exclusive, entity type)."""

    dataset: str
    index: int
    tokens: List[str]
    spans: List[Tuple[int, int, str]] = field(default_factory=list)

    @property
    def text(self) -> str:
        return " ".join(self.tokens)

    def mentions(self, entity_type: str) -> List[str]:
        return [" ".join(self.tokens[start:end]) for start, end, label in self.spans if label == entity_type]


@dataclass
class Benchmark:
    name: str
    types: List[str]
    sentences: List[Sentence]


def read_tagged_tokens(path: Path, label_first: bool = False) -> Iterator[Tuple[List[str], List[str]]]:
    """(tokens, tags) per sentence: blocks that end at a blank line or a -DOCSTART- line. Columns
    are tab- or space-separated; those after the first two are ignored."""
    tokens: List[str] = []
    tags: List[str] = []
    for number, line in enumerate(Path(path).read_text(encoding="utf8").splitlines(), 1):
        columns = line.split("\t") if "\t" in line else line.split()
        if columns and len(columns) < 2:
            raise ValueError(f"{path}:{number}: expected a token and a tag, got {line!r}")
        token, tag = (columns[1], columns[0]) if label_first and columns else (columns + ["", ""])[:2]
        if not columns or token == "-DOCSTART-":
            if tokens:
                yield tokens, tags
            tokens, tags = [], []
            continue
        tokens.append(token)
        tags.append(tag)
    if tokens:
        yield tokens, tags


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
    """The sentences of one set, with raw labels turned into the types the paper asks about
    (labels mapped to null, like misc, are left out as the paper does)."""
    spec = benchmark_spec(name, benchmarks)
    if spec["format"] not in FORMATS:
        raise ValueError(f"{benchmarks}: {name} has format {spec['format']!r}; expected one of {FORMATS}")
    path = Path(mirror) / spec["path"]
    if not path.exists():
        raise FileNotFoundError(f"{path} (benchmark {name}) is missing: is `mirror` the folder of the data mirror?")
    label_first = spec["format"] == "bio-label-first"
    # A dev split leaves out its sentences that are also test sentences (CrossNER's dev and test
    # files share 34), so settings chosen on it never see a test sentence.
    test_texts = {" ".join(tokens) for tokens, _ in read_tagged_tokens(Path(mirror) / spec["test_path"], label_first)} if "test_path" in spec else set()
    sentences = []
    for index, (tokens, tags) in enumerate(read_tagged_tokens(path, label_first)):
        if " ".join(tokens) in test_texts:
            continue
        spans = []
        for start, end, label in tag_spans(tags):
            if label not in spec["types"]:
                raise ValueError(f"{path}: sentence {index} has the label {label!r}, which {benchmarks} does not map for {name}")
            if spec["types"][label] is not None:
                spans.append((start, end, spec["types"][label]))
        sentences.append(Sentence(name, index, tokens, spans))
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
                raise ValueError(f"Not a text turn of the template: {text[:60]!r}")
            queries.append((sentence, label_of_question(question), answer))
        except ValueError as err:
            raise ValueError(f"{path}: record {number} is not a (text, type) query of the paper's template. {err}") from err
    return queries
