"""The peer benchmark: the same student, docs and labels through the in-process component and
through llama.cpp's llama-server (the student exported to GGUF at each weight type, served with
each slot count), side by side: docs/s, how many answers agree with the in-process ones, and how
much of the prompts the server read from its cache. Optionally the paper's evaluation both ways."""
import json
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

import srsly
from spacy.language import Language

from ..backends import COMPLETIONS_SERVER
from ..component import pipeline_model, uniner_of
from ..evaluate.datasets import ZERO_SHOT_NAMES
from ..evaluate.run import run_evaluation
from ..files import check_output_file, write_json
from ..llama_cpp import LlamaServer, export_gguf
from ..pipelines import uniner_pipeline
from ..tokens import load_tokenizer
from .component import frequent_labels, passages
from .measure import Answers, agreement, machine, markdown_rows, timed_answers


# A server decodes greedily, without the passage constraint (which needs the model in the process);
# the in-process side of the comparison decodes the same way, so that answers compare.
def local_pipeline(pipeline: Path) -> Language:
    return uniner_pipeline(str(pipeline), {"constrained": False})


def served_pipeline(pipeline: Path, url: str, concurrency: int) -> Language:
    """The pipeline with its component asking the server at `url` instead of its own weights."""
    return uniner_pipeline(str(pipeline), {"@uniner_models": COMPLETIONS_SERVER, "url": url, "name": pipeline.name, "concurrency": concurrency})


def engine_speed(pipeline: Path, texts: List[str], labels: List[str], label_counts: Sequence[int], work: Path, ggufs: Dict[str, Path], parallels: Sequence[int], threads: Optional[int], repeats: int = 2) -> Iterator[Dict[str, Any]]:
    """One record per (system, label count): the in-process component first, then llama-server on
    each exported weight type (`ggufs`: its file by type) and slot count (its requests: 4 per slot in
    flight)."""
    local = local_pipeline(pipeline)
    list(local.pipe(texts[:1]))  # loads and warms the model outside the timings
    reference: Dict[int, Answers] = {}
    for count in label_counts:
        seconds, reference[count] = timed_answers(local, texts, labels[:count], repeats)
        yield {"system": "in-process", "labels": count, "docs": len(texts), "docs_per_s": round(len(texts) / seconds, 3), "agreement": 1.0}
    for outtype, gguf in ggufs.items():
        for parallel in parallels:
            with LlamaServer(gguf, parallel=parallel, threads=threads, log_path=work / f"server-{outtype}-{parallel}.log") as server:
                served = served_pipeline(pipeline, server.url, concurrency=4 * parallel)
                generator = uniner_of(served).generator
                for count in label_counts:
                    before = generator.prompt_tokens, generator.cached_tokens
                    seconds, answers = timed_answers(served, texts, labels[:count], 1)
                    prompt_tokens, cached = generator.prompt_tokens - before[0], generator.cached_tokens - before[1]
                    yield {
                        "system": f"llama-server {outtype} --parallel {parallel}", "labels": count, "docs": len(texts),
                        "docs_per_s": round(len(texts) / seconds, 3), "agreement": round(agreement(answers, reference[count]), 4),
                        "cached_prompt_share": round(cached / prompt_tokens, 3) if prompt_tokens else None,
                    }


def export_ggufs(pipeline: Path, work: Path, outtypes: Sequence[str]) -> Dict[str, Path]:
    """The pipeline's student exported once per weight type, into `work`."""
    return {outtype: export_gguf(pipeline, work / f"student-{outtype}.gguf", outtype) for outtype in outtypes}


def engine_evaluation(pipeline: Path, work: Path, ggufs: Dict[str, Path], parallel: int, threads: Optional[int], mirror: Path, names: List[str], limit: Optional[int], training_data: Optional[Path]) -> Dict[str, Any]:
    """The paper's evaluation of the in-process student and of llama-server serving it at each
    weight type (`ggufs`), on the same sentences; per served system, the share of (sentence, type)
    questions whose parsed answer is the in-process one."""
    servers = [LlamaServer(gguf, parallel=parallel, threads=threads, log_path=work / f"eval-server-{outtype}.log") for outtype, gguf in ggufs.items()]
    try:
        systems = {"in-process": local_pipeline(pipeline)}
        for outtype, server in zip(ggufs, servers):
            systems[f"llama-server-{outtype}"] = served_pipeline(pipeline, server.start().url, concurrency=4 * parallel)
        summary = run_evaluation(systems, names, mirror, work / "evaluation", limit, 0, training_data)
    finally:
        for server in servers:
            server.stop()
    agreements = {}
    for system in systems:
        if system == "in-process":
            continue
        same = total = 0
        for name in summary["systems"][system]:
            reference = list(srsly.read_jsonl(work / "evaluation" / "in-process" / f"{name}.jsonl"))
            served = list(srsly.read_jsonl(work / "evaluation" / system / f"{name}.jsonl"))
            same += sum(a["parsed"] == b["parsed"] for a, b in zip(reference, served))
            total += len(reference)
        agreements[system] = round(same / total, 4)
    f1 = {system: round(sum(scores["paper"]["f"] for scores in sets.values()) / len(sets), 4) for system, sets in summary["systems"].items()}
    return {"paper_f1": f1, "agreement": agreements, "sets": list(summary["systems"]["in-process"]), "limit": limit}


def benchmark_engines(pipeline: Path, texts: Path, conversations: Path, output: Path, label_counts: Sequence[int], docs: int, passage_tokens: int, outtypes: Sequence[str], parallels: Sequence[int], threads: Optional[int], evaluate_limit: int, mirror: Path, training_data: Optional[Path]) -> str:
    """`engine_speed` (and, with `evaluate_limit`, `engine_evaluation` on the 7 zero-shot sets),
    the report written to `output` (JSON) as each record comes, the GGUF files and server logs in
    OUTPUT without its suffix; the table returned."""
    check_output_file(output, {"pipeline": pipeline, "texts": texts, "conversations": conversations, "training data": training_data})
    work = output.with_suffix("")
    work.mkdir(parents=True, exist_ok=True)
    chosen = passages(texts, load_tokenizer(pipeline_model(pipeline)), docs, passage_tokens)
    labels = frequent_labels(conversations, max(label_counts))
    ggufs = export_ggufs(pipeline, work, outtypes)
    result: Dict[str, Any] = {"machine": machine("cpu"), "pipeline": str(pipeline), "docs": docs, "passage_tokens": passage_tokens, "records": []}
    for record in engine_speed(pipeline, chosen, labels, label_counts, work, ggufs, parallels, threads):
        print(json.dumps(record), flush=True)
        result["records"].append(record)
        write_json(output, result)
    if evaluate_limit:
        result["evaluation"] = engine_evaluation(pipeline, work, ggufs, max(parallels), threads, mirror, list(ZERO_SHOT_NAMES), evaluate_limit, training_data)
        print(json.dumps(result["evaluation"]), flush=True)
        write_json(output, result)
    return markdown_rows(["system", "labels", "docs", "docs_per_s", "agreement", "cached_prompt_share"], result["records"])
