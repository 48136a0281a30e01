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

import srsly
from spacy import util
from spacy.language import Language
from spacy.tokens import Doc, DocBin

from .run import PASSAGE_ID, distill, distill_report, load_distiller, read_passages, teacher_of
from .teachers import OpenAICompatible

CHAT_URL = "/v1/chat/completions"
CHAT_TEACHER = "spacy_uniner.OpenAICompatible.v1"


def batch_distiller(config_path: Path, teacher_path: Path, overrides: Dict[str, Any]) -> Tuple[Language, OpenAICompatible]:
    """The distillation pipeline with its chat-completions teacher, loaded without asking the server."""
    model = util.load_config(teacher_path, interpolate=False).get("model", {}).get("@llm_models")
    if model != CHAT_TEACHER:
        raise ValueError(f"{teacher_path}: batch files are for a chat-completions teacher ({CHAT_TEACHER}), not {model}")
    nlp = load_distiller(config_path, teacher_path, {**overrides, "components.llm.model.verify": False})
    return nlp, teacher_of(nlp)


def passage_prompts(nlp: Language, passages: Path) -> Tuple[List[Doc], Dict[str, str]]:
    """The passages' docs and each passage id's prompt, exactly as the task asks it."""
    docs = read_passages(nlp, passages)
    ids = [doc.user_data[PASSAGE_ID] for doc in docs]
    repeated = sorted(passage for passage, times in Counter(ids).items() if times > 1)
    if repeated:
        raise ValueError(f"{passages}: passage ids must be unique to name batch requests; repeated: {repeated[:5]}")
    return docs, dict(zip(ids, nlp.get_pipe("llm").task.generate_prompts(docs)))


def write_batch(passages: Path, output: Path, config_path: Path, teacher_path: Path, overrides: Dict[str, Any] = util.SimpleFrozenDict()) -> int:
    """One Batch API request a line, `custom_id` the passage id; how many were written."""
    nlp, teacher = batch_distiller(config_path, teacher_path, overrides)
    _, prompts = passage_prompts(nlp, passages)
    output.parent.mkdir(parents=True, exist_ok=True)
    srsly.write_jsonl(output, ({"custom_id": passage, "method": "POST", "url": CHAT_URL, "body": teacher.request_body(prompt)} for passage, prompt in prompts.items()))
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


def read_batch(passages: Path, results: Path, output: Path, config_path: Path, teacher_path: Path, report_path: Optional[Path] = None, overrides: Dict[str, Any] = util.SimpleFrozenDict()) -> Dict[str, Any]:
    """Annotations of the passages the results file answers (into `output`, and spacy-llm's cache),
    with the report of `distill` and, under `batch`, the passages it failed or left out."""
    nlp, teacher = batch_distiller(config_path, teacher_path, overrides)
    docs, prompts = passage_prompts(nlp, passages)
    failed: Dict[str, str] = {}
    answered = set()
    with results.open(encoding="utf8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as error:
                raise ValueError(f"{results} line {number} is not JSON ({error}): {line[:100]!r}") from None
            passage = record.get("custom_id") if isinstance(record, dict) else None
            if passage not in prompts:
                raise ValueError(f"{results} line {number}: custom_id {passage!r} names no passage of {passages}: is it the results of another run's batch file?")
            answer, usage, why = result_answer(record)
            if answer is None:
                failed[passage] = why
                continue
            teacher.journal.add(prompts[passage], answer, usage)
            answered.add(passage)
            failed.pop(passage, None)
    missing = [passage for passage in prompts if passage not in answered and passage not in failed]
    annotated = list(distill(nlp, [doc for doc in docs if doc.user_data[PASSAGE_ID] in answered]))
    output.parent.mkdir(parents=True, exist_ok=True)
    DocBin(docs=annotated, store_user_data=True).to_disk(output)
    report = distill_report(annotated)
    report["batch"] = {"answered": len(annotated), "failed": failed, "missing": missing, "asked_the_teacher": teacher.counts.as_dict()["requests"]}
    if report_path is not None:
        report_path.parent.mkdir(parents=True, exist_ok=True)
        srsly.write_json(report_path, report)
    return report
