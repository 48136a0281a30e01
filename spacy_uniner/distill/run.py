"""Distillation: passages -> teacher annotations (a DocBin with the teacher's spans and raw answers),
through a spaCy pipeline whose only component is spacy-llm's `llm` with the OpenNER task."""
import hashlib
import json
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import srsly
from confection import Config
from spacy import util
from spacy.language import Language
from spacy.tokens import Doc, DocBin
from spacy_llm.cache import BatchCache
from tqdm import tqdm

from ..errors import UserError
from ..files import atomic_file, check_output_files, drop_torn_last_line, exclusive, read_jsonl_lines, write_json, write_jsonl
from .task import ANSWER_KEY

# doc.user_data keys of the passage's id and meta from the passages file.
PASSAGE_ID = "passage_id"
PASSAGE_META = "passage_meta"
# The live teacher's answers, one a line as they arrive, in its cache folder.
JOURNAL_NAME = "teacher_answers.jsonl"
# Which teacher (model block, prompt) wrote a cache's answers, in the cache folder.
TEACHER_RECORD = "teacher.json"
# spacy-llm's BatchCache index: {doc id: batch id} a line.
CACHE_INDEX = "index.jsonl"
# Teacher settings that change how it is asked, not what it answers: left out of the cache's name.
RUN_SETTINGS = ("concurrency", "journal_path", "verify")


def load_distiller(config_path: Path, teacher_path: Path, overrides: Dict[str, Any] = util.SimpleFrozenDict()) -> Language:
    """The distillation pipeline: `config_path` with its `components.llm.model` taken from the
    `[model]` block of `teacher_path`, then `overrides` (dotted config keys) applied. The cache goes
    to a subfolder of the configured path named after the teacher and a hash of its settings, unless
    `overrides` set the cache path."""
    config = util.load_config(config_path, interpolate=False)
    teacher = util.load_config(teacher_path, interpolate=False)
    if "model" not in teacher:
        raise UserError(f"{teacher_path}: expected a [model] block with a spacy-llm model (@llm_models)")
    config["components"]["llm"]["model"] = teacher["model"]
    config = util.load_config_from_str(config.to_str(), overrides=dict(overrides))
    cache = config["components"]["llm"].get("cache", {})
    if cache.get("path") and "components.llm.cache.path" not in overrides:
        # One cache folder per teacher: spacy-llm checks a cache against the prompt only, so another
        # teacher (or the same one with other settings) would silently get this one's answers.
        # How it is asked (requests in flight, where answers are journaled) is not what it answers.
        model = {key: value for key, value in config["components"]["llm"]["model"].items() if key not in RUN_SETTINGS}
        digest = hashlib.sha1(Config({"model": model}).to_str().encode("utf8")).hexdigest()[:8]
        cache["path"] = str(Path(cache["path"]) / f"{Path(teacher_path).stem}-{digest}")
    if cache.get("path"):
        check_cache_index(Path(cache["path"]) / CACHE_INDEX)
    model = config["components"]["llm"]["model"]
    if cache.get("path") and model.get("@llm_models") == "spacy_uniner.OpenAICompatible.v1" and not model.get("journal_path"):
        model["journal_path"] = str(Path(cache["path"]) / JOURNAL_NAME)
    return util.load_model_from_config(config, auto_fill=True, validate=True)


def check_cache_index(index: Path) -> None:
    """spacy-llm's cache index, checked before spacy-llm reads it (its own error names no file). A
    last line cut off mid-write (a killed run) is dropped: its passage's answer is still in the
    journal, so it is annotated again without asking. Any other line that does not read is an error
    naming the file and the line."""
    if not index.is_file():
        return
    drop_torn_last_line(index)
    for number, line in enumerate(index.read_bytes().split(b"\n"), 1):
        try:
            record = json.loads(line) if line.strip() else {}
            if isinstance(record, dict) and all(str(key).isdigit() and str(value).isdigit() for key, value in record.items()):
                continue
        except ValueError:
            pass
        raise UserError(f"{index} line {number} is not a cache index record ({line[:80]!r}): remove the line, or the cache folder, to go on")


def forget_cached(nlp: Language, docs: List[Doc]) -> None:
    """Take `docs` out of spacy-llm's cache (its index file and the index it read), so that they
    are annotated again; their batch files stay, unreferenced."""
    cache = nlp.get_pipe("llm")._cache  # spacy-llm gives the cache no public name or removal
    if cache._path is None or not docs:
        return
    forgotten = {str(BatchCache._doc_id(doc)) for doc in docs}
    for doc_id in forgotten:
        cache._doc2batch.pop(int(doc_id), None)
    index = cache._path / CACHE_INDEX
    if index.is_file():
        write_jsonl(index, [record for _, record in read_jsonl_lines(index) if not forgotten & set(record)])


def cache_of(nlp: Language) -> Optional[Path]:
    path = nlp.config["components"]["llm"].get("cache", {}).get("path")
    return Path(path) if path else None


def journal_of(nlp: Language) -> Optional[Path]:
    path = getattr(getattr(teacher_of(nlp), "journal", None), "path", None)
    return Path(path) if path else None


def teacher_identity(nlp: Language) -> Dict[str, Any]:
    """What makes the teacher's answers its own: its model block less how it is asked, and the
    task's prompt (a hash of the template it fills)."""
    llm = nlp.get_pipe("llm")
    model = {key: value for key, value in nlp.config["components"]["llm"]["model"].items() if key not in RUN_SETTINGS}
    prompt = getattr(llm._task, "prompt_template", None)  # spacy-llm gives the task no public name
    return {"model": json.loads(json.dumps(model, default=str)), "prompt": hashlib.sha256(str(prompt).encode("utf8")).hexdigest()[:16]}


def describe_teacher(identity: Dict[str, Any]) -> str:
    model = identity.get("model", {})
    where = model.get("endpoint") or model.get("path")
    return f"{model.get('@llm_models')} {model.get('name') or ''}{f' at {where}' if where else ''}, prompt {identity.get('prompt')}".replace("  ", " ")


def check_teacher(nlp: Language) -> None:
    """The answers of a cache and its journal are one teacher's: the first run records which
    (`teacher.json` in the cache folder); a run with another teacher stops, naming both, since
    spacy-llm would hand it the recorded teacher's answers without asking."""
    cache = cache_of(nlp)
    if cache is None:
        return
    record, identity = cache / TEACHER_RECORD, teacher_identity(nlp)
    if record.is_file():
        recorded = srsly.read_json(record)
        if recorded != identity:
            raise UserError(
                f"the cache {cache} holds the answers of {describe_teacher(recorded)}; this run's teacher is {describe_teacher(identity)}: "
                "give this teacher a cache of its own (--components.llm.cache.path) or remove that one"
            )
        return
    write_json(record, identity)


def teacher_of(nlp: Language) -> Any:
    # spacy-llm gives the llm component's model no public name.
    return nlp.get_pipe("llm")._model


def read_passages(nlp: Language, path: Path) -> List[Doc]:
    """Docs of a passages .jsonl file ({"id", "text", "meta"} a line, as `spacy-uniner passages` writes)."""
    docs = []
    for i, (line, record) in enumerate(read_jsonl_lines(path), 1):
        if not isinstance(record, dict) or not isinstance(record.get("text"), str) or not record["text"].strip():
            raise UserError(f'{path} line {line}: expected a record with a non-empty "text" string')
        if len(record["text"]) > nlp.max_length:
            raise UserError(
                f"{path} line {line}: the passage has {len(record['text']):,} characters, more than a passage may have "
                f"({nlp.max_length:,}): cut the documents into passages with `spacy-uniner passages`"
            )
        doc = nlp.make_doc(record["text"])
        doc.user_data[PASSAGE_ID] = str(record.get("id", i))
        doc.user_data[PASSAGE_META] = record.get("meta", {})
        docs.append(doc)
    if not docs:
        raise UserError(f"{path} holds no passages: nothing to distill (the earlier output is kept)")
    return docs


def write_docs(path: Path, docs: List[Doc]) -> None:
    """The annotated passages as a DocBin, with their answers and ids in user_data."""
    with atomic_file(path) as partial:
        DocBin(docs=docs, store_user_data=True).to_disk(partial)


def distill(nlp: Language, docs: List[Doc], batch_size: int = 64) -> Iterator[Doc]:
    """Annotate every passage with the teacher, in order. Answered passages are in spacy-llm's cache
    (when the config gives it a path), so a run that stops resumes without asking for them again."""
    done = 0
    teacher = teacher_of(nlp)
    try:
        with tqdm(total=len(docs), unit="passage", desc="distill") as progress:
            if hasattr(teacher, "on_answer"):
                teacher.on_answer = lambda counts: progress.set_postfix({name: counts[name] for name in ("answered", "retries", "failed")}, refresh=False)
            for doc in nlp.pipe(docs, batch_size=batch_size):
                done += 1
                progress.update()
                yield doc
    except Exception as error:
        cache = nlp.config["components"]["llm"].get("cache", {}).get("path")
        where = f"the answered ones are cached in {cache}; run again to resume" if cache else "no cache path is set, so nothing was kept"
        raise RuntimeError(f"Distillation stopped after {done} of {len(docs)} passages ({where}): {error}") from error


def distill_report(docs: List[Doc]) -> Dict[str, Any]:
    """What the teacher gave: passages, answers that did not parse, (mention, type) pairs, mentions
    found in the passages (every occurrence), drops, and types (the 20 in most passages)."""
    types: Counter = Counter()
    report: Counter = Counter()
    for doc in docs:
        answer = doc.user_data[ANSWER_KEY]
        report["passages"] += 1
        report["answers_malformed"] += not answer["well_formed"]
        report["parse_failures"] += not answer["well_formed"] and not answer["pairs"]
        report["pairs"] += answer["pairs"]
        report["dropped_items"] += answer["dropped_items"]
        report["mentions_not_in_text"] += answer["mentions_not_in_text"]
        report["mentions"] += len(answer["mentions"])
        types.update({label for _, _, label in answer["mentions"]})
    return {**report, "types": len(types), "passages_per_type": dict(types.most_common(20))}


def run_distillation(
    passages: Path,
    output: Path,
    config_path: Path,
    teacher_path: Path,
    report_path: Optional[Path] = None,
    batch_size: int = 64,
    overrides: Dict[str, Any] = util.SimpleFrozenDict(),
) -> Dict[str, Any]:
    """Distill a passages file into `output` (a DocBin) and return (and write) the report."""
    inputs = {"passages": passages, "distillation config": config_path, "teacher config": teacher_path}
    check_output_files((output, report_path), inputs)
    nlp = load_distiller(config_path, teacher_path, overrides)
    with ExitStack() as held:
        # One run at a time writes an output, a cache and a journal: two would ask (and pay) the
        # teacher twice for every passage.
        for path in dict.fromkeys(path for path in (output, cache_of(nlp), journal_of(nlp)) if path is not None):
            held.enter_context(exclusive(path))
        check_teacher(nlp)
        started = time.perf_counter()
        docs = list(distill(nlp, read_passages(nlp, passages), batch_size))
        wall = time.perf_counter() - started
        write_docs(output, docs)
    report = distill_report(docs)
    # How the run went, to price the next: a live teacher's requests, retries and tokens.
    report["run"] = {"wall_s": round(wall, 2), "passages_per_s": round(len(docs) / wall, 3) if wall else None}
    counts = getattr(teacher_of(nlp), "counts", None)
    if counts is not None:
        report["run"]["teacher"] = counts.as_dict()
    if report_path is not None:
        write_json(report_path, report)
    return report
