"""The `uniner` pipeline component: open-type NER by asking an instruction-tuned LLM, one question
per (text window, label), and writing the answers back as spans."""
import unicodedata
from collections import Counter
from pathlib import Path
from tempfile import TemporaryDirectory
from numbers import Real
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Set, Tuple, Union

import srsly
from spacy.language import Language
from spacy.pipeline import Pipe
from spacy.tokens import Doc, Span, SpanGroup
from spacy.util import SimpleFrozenList, from_bytes, load_config, minibatch, to_bytes
from spacy.vocab import Vocab

from .align import mention_spans, resolve_ents
from .answers import parse_answer
from .backends import TRANSFORMERS, Generator, transformers_model
from .display import register_labels
from .errors import UserError
from .prompts import build_prompt
from .scores import ScoredAnswer, scored_answers, within_label_margin
from .server import ServerError
from .upgrade import upgrade_config
from .windows import check_window_settings, doc_windows

SCORE_EXTENSION = "uniner_score"
# The folder, inside the component's own, that holds the student's weights and tokenizer.
MODEL_FOLDER = "model"
# What changes the answers besides the model: saved with it, on disk and in bytes.
SETTINGS = ("labels", "threshold", "label_margin", "dataset")
# What a question the server never answered does: stop with an error, or leave its doc without
# entities (counted in `stats["skipped_docs"]`).
ON_ERROR = ("raise", "skip")
if not Span.has_extension(SCORE_EXTENSION):
    Span.set_extension(SCORE_EXTENSION, default=None)


@Language.factory(
    "uniner",
    default_config={
        "model": {"@uniner_models": TRANSFORMERS},
        "labels": [],
        "window_size": 256,
        "window_overlap": 32,
        "spans_key": "uniner",
        "overwrite_ents": False,
        "threshold": 0.0,
        "label_margin": 1.0,
        "dataset": None,
        "on_error": "raise",
        "scorer": {"@scorers": "spacy.ner_scorer.v1"},
    },
    assigns=["doc.ents", "doc.spans"],
    default_score_weights={"ents_f": 1.0, "ents_p": 0.0, "ents_r": 0.0, "ents_per_type": None},
)
def make_uniner(
    nlp: Language,
    name: str,
    model: Union[str, Generator],
    labels: List[Any],
    window_size: int,
    window_overlap: int,
    spans_key: str,
    overwrite_ents: bool,
    threshold: float,
    label_margin: float,
    dataset: Optional[str],
    on_error: str,
    scorer: Optional[Callable],
) -> "UniNER":
    """`model` is a `[components.uniner.model]` block (see `backends`), or a hub id or folder as
    shorthand for the in-process backend with its defaults."""
    generator = transformers_model(model) if isinstance(model, str) else model
    return UniNER(
        nlp.vocab,
        generator,
        name,
        labels=labels,
        window_size=window_size,
        window_overlap=window_overlap,
        spans_key=spans_key,
        overwrite_ents=overwrite_ents,
        threshold=threshold,
        label_margin=label_margin,
        dataset=dataset,
        on_error=on_error,
        scorer=scorer,
    )


def validate_fraction(value: Any, key: str = "threshold") -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not 0.0 <= value <= 1.0:
        raise UserError(f"[uniner] config key '{key}' must be a number in [0, 1], got {value!r}")
    return float(value)


def unencodable(text: str) -> Optional[str]:
    """Why `text` cannot be written as UTF-8 (a lone surrogate, as JSON's "\\udc00" or a file read
    with errors="surrogateescape" gives), or None when it can."""
    try:
        text.encode("utf8")
    except UnicodeEncodeError as error:
        return f"not valid Unicode text: {text[error.start:error.end]!r} at character {error.start} is a lone surrogate"
    return None


def control_character(label: str) -> Optional[str]:
    """Why `label` is not one line of text (a newline or tab inside it would go into the question
    and into displaCy's legend as it is), or None when it is. Whitespace around it is stripped."""
    found = [char for char in label.strip() if unicodedata.category(char) == "Cc"]
    return f"a control character {found[0]!r}: a label is one line of text" if found else None


def label_problem(label: str) -> Optional[str]:
    """Why `label` cannot be asked as an entity type (not UTF-8 text, or more than one line), or None."""
    return unencodable(label) or control_character(label)


def validate_labels(labels: Any) -> List[str]:
    """Labels are the entity types asked for, written as they should appear in the question."""
    if isinstance(labels, str) or not isinstance(labels, Sequence) or not labels:
        raise UserError(f"[uniner] config key 'labels' must be a non-empty list of strings, got {labels!r}")
    bad = [label for label in labels if not isinstance(label, str) or not label.strip()]
    if bad:
        raise UserError(f"[uniner] config key 'labels' must hold non-empty strings, these are not: {bad!r}")
    for label in labels:
        problem = label_problem(label)
        if problem:
            raise UserError(f"[uniner] config key 'labels' holds {label!r}, {problem}")
    return list(dict.fromkeys(label.strip() for label in labels))


def uniner_of(nlp: Language) -> Optional["UniNER"]:
    """The pipeline's `uniner` component, whatever its name; None when it has none."""
    return next((component for _, component in nlp.pipeline if isinstance(component, UniNER)), None)


def pipeline_model(pipeline: Union[str, Path]) -> Path:
    """The transformers folder of a pipeline's `uniner` student. A pipeline whose component talks to
    a server, or has no saved weights, has none."""
    pipeline = Path(pipeline)
    config_path = pipeline / "config.cfg"
    if not config_path.is_file():
        raise UserError(f"{pipeline} is not a spaCy pipeline folder (no config.cfg)")
    config, _ = upgrade_config(load_config(config_path, interpolate=False))
    names = [name for name, block in config["components"].items() if block.get("factory") == "uniner"]
    if not names:
        raise UserError(f"{pipeline} has no uniner component")
    backend = config["components"][names[0]]["model"]
    if isinstance(backend, dict) and backend.get("@uniner_models", TRANSFORMERS) != TRANSFORMERS:
        where = f"the server at {backend['url']}" if "url" in backend else backend["@uniner_models"]
        raise UserError(f"{pipeline}'s {names[0]} asks {where}: it holds no weights; give the pipeline the model was trained into")
    model = pipeline / names[0] / MODEL_FOLDER
    if not (model / "config.json").is_file():
        raise UserError(f"{pipeline} holds no student weights at {model} (no config.json)")
    return model


class UniNER(Pipe):
    """Asks `generator` what describes each label in each window of each doc.

    Every aligned answer whose score (see `scores`) reaches `threshold` goes to
    `doc.spans[spans_key]` (overlaps included, scores in its `attrs["scores"]`); `doc.ents` gets the
    non-overlapping subset (see `resolve_ents`), each with its score as `span._.uniner_score`. A
    span found under several labels keeps those within `label_margin` of its best score (see
    `within_label_margin`; 1.0 keeps them all). With `dataset`, every question opens with the
    paper's "Dataset: NAME" line, as a student adapted to that dataset's gold data was taught.
    `stats` counts what was asked and what was dropped.
    """

    def __init__(
        self,
        vocab: Vocab,
        generator: Generator,
        name: str = "uniner",
        *,
        labels: Sequence[str],
        window_size: int = 256,
        window_overlap: int = 32,
        spans_key: str = "uniner",
        overwrite_ents: bool = False,
        threshold: float = 0.0,
        label_margin: float = 1.0,
        dataset: Optional[str] = None,
        on_error: str = "raise",
        scorer: Optional[Callable] = None,
    ):
        self.vocab = vocab
        self.generator = generator
        self.name = name
        self._labels = validate_labels(labels)
        check_window_settings(window_size, window_overlap)
        self.window_size = window_size
        self.window_overlap = window_overlap
        self.spans_key = spans_key
        self.overwrite_ents = overwrite_ents
        self.threshold = threshold
        self.label_margin = label_margin
        self.dataset = dataset
        if on_error not in ON_ERROR:
            raise UserError(f"[uniner] config key 'on_error' must be one of {ON_ERROR}, got {on_error!r}")
        self.on_error = on_error
        self.scorer = scorer
        self.stats: Counter = Counter()
        # As built from the config: `from_disk` and `from_bytes` restore a saved setting only while
        # the config still holds what it held when that setting was saved (see `restore_settings`).
        self._config_settings = self.settings()
        # The folder that `from_bytes` unpacked the weights into, which the generator loads from.
        self._unpacked: Optional[TemporaryDirectory] = None
        register_labels(self.labels)

    @property
    def labels(self) -> List[str]:
        return list(self._labels)

    @labels.setter
    def labels(self, labels: Sequence[str]) -> None:
        """Ask about other types from now on (evaluation asks each benchmark's own)."""
        self._labels = validate_labels(labels)
        register_labels(self.labels)

    @property
    def threshold(self) -> float:
        return self._threshold

    @threshold.setter
    def threshold(self, threshold: float) -> None:
        """Spans scoring below it are dropped; changes take effect on the next doc, no reload."""
        self._threshold = validate_fraction(threshold)

    @property
    def label_margin(self) -> float:
        return self._label_margin

    @label_margin.setter
    def label_margin(self, margin: float) -> None:
        """Like `threshold`, takes effect on the next doc."""
        self._label_margin = validate_fraction(margin, "label_margin")

    @property
    def dataset(self) -> Optional[str]:
        return self._dataset

    @dataset.setter
    def dataset(self, dataset: Optional[str]) -> None:
        if dataset is not None and (not isinstance(dataset, str) or not dataset.strip() or "\n" in dataset or unencodable(dataset)):
            raise UserError(f"[uniner] config key 'dataset' must be null or a name on one line, got {dataset!r}")
        self._dataset = dataset

    def add_label(self, label: str) -> int:
        if label in self._labels:
            return 0
        self._labels = validate_labels(self._labels + [label])
        register_labels([label])
        return 1

    def __call__(self, doc: Doc) -> Doc:
        self.set_annotations([doc], self.predict([doc]))
        return doc

    def pipe(self, stream: Iterable[Doc], *, batch_size: int = 128) -> Iterator[Doc]:
        """As `Pipe.pipe`: a batch that fails goes to the pipeline's error handler
        (`nlp.set_error_handler`), which raises by default."""
        error_handler = self.get_error_handler()
        for docs in minibatch(stream, size=batch_size):
            try:
                self.set_annotations(docs, self.predict(docs))
                yield from docs
            except Exception as error:
                error_handler(self.name, self, docs, error)

    def predict(self, docs: List[Doc]) -> List[List[Tuple[Span, float]]]:
        """Every candidate span per doc, with its score. All (window, label) questions of the batch
        go to the generator in one call, which batches them by length."""
        queries = [
            (doc_index, window, label)
            for doc_index, doc in enumerate(docs)
            for window in doc_windows(doc, self.window_size, self.window_overlap)
            for label in self._labels
        ]
        answers, skipped = self.answer_queries(docs, queries)
        candidates: List[Dict[tuple, Tuple[Span, float]]] = [{} for _ in docs]
        for (doc_index, window, label), answer in zip(queries, answers):
            if doc_index in skipped:
                continue
            for span, score in self.spans_from_answer(window, label, answer):
                # Overlapping windows find the same mention twice: keep it once, at its best score.
                key = (span.start, span.end, span.label_)
                if key not in candidates[doc_index] or score > candidates[doc_index][key][1]:
                    candidates[doc_index][key] = (span, score)
        return [sorted(found.values(), key=lambda pair: (pair[0].start, pair[0].end, pair[0].label_)) for found in candidates]

    def answer_queries(self, docs: List[Doc], queries: List[Tuple[int, Span, str]]) -> Tuple[List[ScoredAnswer], Set[int]]:
        """The answer to each (doc index, window, label) query, and the docs to leave without
        entities: those with a question a server never answered, when `on_error` is "skip"."""
        try:
            return scored_answers(self.generator, [build_prompt(window.text, label, self.dataset) for _, window, label in queries]), set()
        except ServerError as error:
            failed = sorted({queries[index][0] for index in error.failures})
            if self.on_error == "raise":
                text = docs[failed[0]].text
                unanswered = sum(queries[index][0] == failed[0] for index in error.failures)
                raise ConnectionError(
                    f"[uniner] the server at {error.url} did not answer {unanswered} questions about doc {failed[0]} of this batch "
                    f"({text[:60]!r}{'...' if len(text) > 60 else ''}): {next(iter(error.failures.values()))}. "
                    'Set on_error = "skip" to leave such docs without entities and go on.'
                ) from error
            self.stats["skipped_docs"] += len(failed)
            return [answer or ScoredAnswer("") for answer in error.answers], set(failed)

    def set_annotations(self, docs: List[Doc], candidates: List[List[Tuple[Span, float]]]) -> None:
        for doc, found in zip(docs, candidates):
            kept = [(span, score) for span, score in found if score >= self._threshold]
            rivals = within_label_margin([((span.start, span.end), score) for span, score in kept], self._label_margin)
            kept = [pair for pair, within in zip(kept, rivals) if within]
            spans = [span for span, _ in kept]
            doc.spans[self.spans_key] = SpanGroup(doc, name=self.spans_key, attrs={"scores": [score for _, score in kept]}, spans=spans)
            doc.ents = resolve_ents(doc, spans, self.overwrite_ents)
            # Extension values are keyed by a span's characters: set for the ents only, after the
            # choice, so that a span asked under two labels holds the score of the one kept.
            scores = {(span.start, span.end, span.label_): score for span, score in kept}
            for ent in doc.ents:
                if (ent.start, ent.end, ent.label_) in scores:
                    ent._.set(SCORE_EXTENSION, scores[(ent.start, ent.end, ent.label_)])

    def spans_from_answer(self, window: Span, label: str, answer: ScoredAnswer) -> List[Tuple[Span, float]]:
        parsed = parse_answer(answer.text)
        self.stats["queries"] += 1
        self.stats["malformed_answers"] += not parsed.well_formed
        self.stats["dropped_items"] += parsed.dropped
        spans = []
        for mention, score in zip(parsed.strings, answer.mention_scores(parsed.strings)):
            found = mention_spans(window, mention, label)
            self.stats["mentions"] += 1
            self.stats["mentions_not_in_text"] += not found
            spans.extend((span, score) for span in found)
        return spans

    # Serialization: the weights and tokenizer travel with the pipeline, so it loads offline, and so
    # does every setting that changes answers, including those set on the built component.
    def settings(self) -> Dict[str, Any]:
        return {key: getattr(self, key) for key in SETTINGS}

    def saved_settings(self) -> Dict[str, Any]:
        return {"settings": self.settings(), "config_settings": self._config_settings}

    def restore_settings(self, cfg: Dict[str, Any]) -> None:
        """The saved settings, each where the config still holds what it held when it was saved:
        a setting given at load time (spacy.load(..., config=...)) wins, since config.cfg does not
        record what was set on the component after it was built. Pipelines saved before the other
        settings were kept hold `labels` and `config_labels` only."""
        if "settings" in cfg:
            saved, built_from = cfg["settings"], cfg["config_settings"]
        else:
            saved, built_from = {"labels": cfg["labels"]}, {"labels": cfg.get("config_labels", cfg["labels"])}
        for key in SETTINGS:
            if key in saved and key in built_from and built_from[key] == self._config_settings[key]:
                setattr(self, key, saved[key])

    def to_disk(self, path: Path, *, exclude: Iterable[str] = SimpleFrozenList()) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        if "cfg" not in exclude:
            srsly.write_json(path / "cfg", self.saved_settings())
        if "model" not in exclude:
            self.generator.save(path / MODEL_FOLDER)

    def from_disk(self, path: Path, *, exclude: Iterable[str] = SimpleFrozenList()) -> "UniNER":
        path = Path(path)
        if "cfg" not in exclude:
            self.restore_settings(srsly.read_json(path / "cfg"))
        if "model" not in exclude:
            self.generator.load(path / MODEL_FOLDER)
        return self

    def to_bytes(self, *, exclude: Iterable[str] = SimpleFrozenList()) -> bytes:
        """The settings, and the model folder `to_disk` writes as a mapping of its files' paths to
        their bytes."""
        return to_bytes({"cfg": lambda: srsly.json_dumps(self.saved_settings()), "model": self.model_bytes}, exclude)

    def from_bytes(self, bytes_data: bytes, *, exclude: Iterable[str] = SimpleFrozenList()) -> "UniNER":
        """The model first, then the settings: bytes that do not load leave the component as it was."""
        try:
            readers = {"model": self.load_model_bytes, "cfg": lambda data: self.restore_settings(srsly.json_loads(data))}
            from_bytes(bytes_data, readers, exclude)
        except UserError:
            raise
        except (ValueError, TypeError, KeyError) as error:  # msgpack's and JSON's errors name no component
            raise UserError(f"[uniner] these bytes are not a uniner component's (from its to_bytes): {error}") from error
        return self

    def model_bytes(self) -> bytes:
        with TemporaryDirectory(prefix="uniner-") as folder:
            model = Path(folder) / MODEL_FOLDER
            self.generator.save(model)
            files = sorted(path for path in model.rglob("*") if path.is_file()) if model.is_dir() else []
            return srsly.msgpack_dumps({path.relative_to(model).as_posix(): path.read_bytes() for path in files})

    def load_model_bytes(self, data: bytes) -> None:
        """The model folder unpacked into a temporary folder of the component's, which lives as long
        as the component: the generator's source, read again to save a narrowed model whole."""
        unpacked = TemporaryDirectory(prefix="uniner-")
        model = Path(unpacked.name) / MODEL_FOLDER
        for name, content in srsly.msgpack_loads(data).items():
            target = (model / name).resolve()
            if model.resolve() not in target.parents:
                raise UserError(f"[uniner] the serialized model holds a file outside its folder: {name!r}")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        model.mkdir(parents=True, exist_ok=True)
        self.generator.load(model)
        self._unpacked = unpacked
