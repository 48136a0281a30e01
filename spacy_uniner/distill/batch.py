"""Batch files, the way large annotation runs are done now: one OpenAI Batch API request per passage
(the file OpenAI's Batch API runs at half price, and `vllm run-batch` runs offline on a user's own
GPUs), and the results file read back into the same annotations and the same cache: each answer
goes into the live teacher's journal, then the distillation pipeline annotates the answered
passages from it without a request. A failed or missing passage is listed by its id; a normal
`distill` run asks for those and finds the rest cached."""
import json
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from spacy import util
from spacy.language import Language
from spacy.tokens import Doc

from ..errors import UserError
from ..files import check_output_file, check_output_files, read_jsonl_lines, write_json, write_jsonl
from .run import PASSAGE_ID, distill, distill_report, forget_cached, load_distiller, read_passages, teacher_of, write_docs
from .teachers import OpenAICompatible

CHAT_URL = "/v1/chat/completions"
CHAT_TEACHER = "spacy_uniner.OpenAICompatible.v1"


def batch_distiller(config_path: Path, teacher_path: Path, overrides: Dict[str, Any]) -> Tuple[Language, OpenAICompatible]:
    """The distillation pipeline with its chat-completions teacher, loaded without asking the server."""
    model = util.load_config(teacher_path, interpolate=False).get("model", {}).get("@llm_models")
    if model != CHAT_TEACHER:
        raise UserError(f"{teacher_path}: batch files are for a chat-completions teacher ({CHAT_TEACHER}), not {model}")
    nlp = load_distiller(config_path, teacher_path, {**overrides, "components.llm.model.verify": False})
    return nlp, teacher_of(nlp)


def passage_prompts(nlp: Language, passages: Path) -> Tuple[List[Doc], Dict[str, str]]:
    """The passages' docs and each passage id's prompt, exactly as the task asks it."""
    docs = read_passages(nlp, passages)
    ids = [doc.user_data[PASSAGE_ID] for doc in docs]
    repeated = sorted(passage for passage, times in Counter(ids).items() if times > 1)
    if repeated:
        raise UserError(f"{passages}: passage ids must be unique to name batch requests; repeated: {repeated[:5]}")
    return docs, dict(zip(ids, nlp.get_pipe("llm").task.generate_prompts(docs)))


def write_batch(passages: Path, output: Path, config_path: Path, teacher_path: Path, overrides: Dict[str, Any] = util.SimpleFrozenDict()) -> int:
    """One Batch API request a line, `custom_id` the passage id; how many were written."""
    check_output_file(output, {"passages": passages, "distillation config": config_path, "teacher config": teacher_path})
    nlp, teacher = batch_distiller(config_path, teacher_path, overrides)
    _, prompts = passage_prompts(nlp, passages)
    write_jsonl(output, ({"custom_id": passage, "method": "POST", "url": CHAT_URL, "body": teacher.request_body(prompt)} for passage, prompt in prompts.items()))
    return len(prompts)


def result_answer(record: Any) -> Tuple[Optional[str], Optional[Dict[str, Any]], str]:
    """A results line's answer and usage, or None and why it has none."""
    if record.get("error"):
        return None, None, f"error: {json.dumps(record['error'])[:200]}"
    response = record.get("response") or {}
    if response.get("status_code") != 200:
        return None, None, f"status {response.get('status_code')}: {json.dumps(response.get('body'))[:200]}"
    try:
        content = response["body"]["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return None, None, f"no chat completion in the response: {json.dumps(response)[:200]}"
    if not isinstance(content, str):
        return None, None, f"the message content is {type(content).__name__}, not text"
    return content, response["body"].get("usage"), ""


def read_results(results: Path, prompts: Dict[str, str], passages: Path) -> Tuple[Dict[str, Tuple[str, Optional[Dict[str, Any]]]], Dict[str, str], int]:
    """Each answered passage's (answer, usage), each failed one's reason, and how many lines
    repeated an answer word for word. The whole file is read before anything is kept: a line that
    is not JSON, names no passage, or answers a passage otherwise than an earlier line is an error
    naming the line(s)."""
    answers: Dict[str, Tuple[str, Optional[Dict[str, Any]]]] = {}
    answered_on: Dict[str, int] = {}
    failed: Dict[str, str] = {}
    repeats = 0
    for number, record in read_jsonl_lines(results):
        passage = record.get("custom_id") if isinstance(record, dict) else None
        if passage not in prompts:
            raise UserError(f"{results} line {number}: custom_id {passage!r} names no passage of {passages}: is it the results of another run's batch file?")
        answer, usage, why = result_answer(record)
        if answer is None:
            if passage not in answers:
                failed[passage] = why
        elif passage not in answers:
            answers[passage], answered_on[passage] = (answer, usage), number
            failed.pop(passage, None)
        elif answers[passage][0] == answer:
            repeats += 1
        else:
            raise UserError(f"{results} lines {answered_on[passage]} and {number} answer passage {passage!r} differently: which one holds is not known; keep one of them")
    if not answers and not failed:
        raise UserError(f"{results} holds no results: nothing to read (the earlier output is kept)")
    if not answers:
        first = next(iter(failed.items()))
        raise UserError(f"{results} answers none of its {len(failed)} passages (the earlier output is kept); the first, {first[0]!r}: {first[1]}")
    return answers, failed, repeats


def read_batch(passages: Path, results: Path, output: Path, config_path: Path, teacher_path: Path, report_path: Optional[Path] = None, overrides: Dict[str, Any] = util.SimpleFrozenDict()) -> Dict[str, Any]:
    """Annotations of the passages the results file answers (into `output`, and spacy-llm's cache),
    with the report of `distill` and, under `batch`, the passages it failed or left out. The
    results are authoritative: an answer that differs from the one kept earlier replaces it
    (counted as `replaced`)."""
    check_output_files((output, report_path), {"passages": passages, "results": results, "distillation config": config_path, "teacher config": teacher_path})
    nlp, teacher = batch_distiller(config_path, teacher_path, overrides)
    docs, prompts = passage_prompts(nlp, passages)
    answers, failed, repeats = read_results(results, prompts, passages)
    earlier = {passage: teacher.journal.get(prompts[passage]) for passage in answers}
    changed = {passage for passage, (answer, _) in answers.items() if earlier[passage] != answer}
    replaced = sum(earlier[passage] is not None for passage in changed)
    # spacy-llm's cache sits in front of the journal: a passage annotated from another answer
    # leaves it, so that it is annotated again from this one.
    forget_cached(nlp, [doc for doc in docs if doc.user_data[PASSAGE_ID] in changed])
    for passage in changed:
        answer, usage = answers[passage]
        teacher.journal.add(prompts[passage], answer, usage)
    missing = [passage for passage in prompts if passage not in answers and passage not in failed]
    annotated = list(distill(nlp, [doc for doc in docs if doc.user_data[PASSAGE_ID] in answers]))
    write_docs(output, annotated)
    report = distill_report(annotated)
    report["batch"] = {
        "answered": len(annotated),
        "replaced": replaced,
        "repeated_lines": repeats,
        "failed": failed,
        "missing": missing,
        "asked_the_teacher": teacher.counts.as_dict()["requests"],
    }
    if report_path is not None:
        write_json(report_path, report)
    return report
