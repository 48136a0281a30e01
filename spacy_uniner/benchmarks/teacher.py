"""Distillation throughput: passages/s through the real distillation pipeline (spacy-llm, the task,
the cache, the journal) at several teacher concurrencies, against a loopback chat-completions teacher
with a fixed answer latency and injected server errors, or against a real server (llama.cpp's
llama-server, vLLM) given by its endpoint; and a run killed halfway, then resumed."""
import json
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import srsly

from ..distill.inflight import AnswerJournal
from ..distill.run import JOURNAL_NAME, run_distillation
from ..files import check_output_file, write_json
from ..prompts import passage_of
from .measure import markdown_rows

# The paper's distillation set: 45,889 Pile passages.
PAPER_PASSAGES = 45_889
LOOPBACK_MODEL = "loopback-teacher"
# What the loopback teacher answers (its content does not change the throughput).
LOOPBACK_ANSWER = '[("Pile", "dataset")]'


class LoopbackTeacher(ThreadingHTTPServer):
    """A chat-completions server on 127.0.0.1 that answers after `latency` seconds, and serves a
    500 instead to a seeded `error_rate` share of requests. `answered` counts the 200s per passage."""

    daemon_threads = True

    def __init__(self, latency: float, error_rate: float = 0.0, seed: int = 0):
        super().__init__(("127.0.0.1", 0), LoopbackHandler)
        self.latency, self.error_rate = latency, error_rate
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.answered: Counter = Counter()
        self.errors = self.in_flight = self.most_in_flight = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1/chat/completions"

    def __enter__(self) -> "LoopbackTeacher":
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
        self.server_close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet: the kill-and-resume check drops its client's connections on purpose."""


class LoopbackHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def send(self, status: int, body: Dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self.send(200, {"object": "list", "data": [{"id": LOOPBACK_MODEL, "object": "model"}]})

    def do_POST(self) -> None:
        server: LoopbackTeacher = self.server  # type: ignore[assignment]
        prompt = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["messages"][-1]["content"]
        with server.lock:
            fail = server.random.random() < server.error_rate
            server.errors += fail
            server.in_flight += 1
            server.most_in_flight = max(server.most_in_flight, server.in_flight)
        try:
            time.sleep(server.latency)
            if fail:
                return self.send(500, {"error": {"message": "injected server error"}})
            with server.lock:
                server.answered[passage_of(prompt)] += 1
            self.send(200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": LOOPBACK_ANSWER}, "finish_reason": "stop"}], "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": 8}})
        finally:
            with server.lock:
                server.in_flight -= 1


def teacher_config(path: Path, endpoint: str, model: str, concurrency: int, max_tokens: Optional[int] = None) -> Path:
    """A teacher file for `--teacher`: the live teacher at `endpoint`, `concurrency` in flight."""
    settings = f"\nmax_tokens = {max_tokens}" if max_tokens else ""
    path.write_text(
        f'[model]\n@llm_models = "spacy_uniner.OpenAICompatible.v1"\nname = "{model}"\nendpoint = "{endpoint}"\n'
        f"api_key_env = null\nconcurrency = {concurrency}\nmax_tries = 8\ninterval = 0.1\n\n[model.config]\ntemperature = 0.0{settings}\n"
    )
    return path


def first_passages(source: Path, output: Path, count: int) -> int:
    """The first `count` passages of a passages file, written to `output`; how many there were."""
    records = []
    for record in srsly.read_jsonl(source):
        records.append(record)
        if len(records) == count:
            break
    srsly.write_jsonl(output, records)
    return len(records)


def benchmark_concurrency(passages: Path, config: Path, work: Path, concurrencies: Sequence[int], count: int, endpoint: str, model: str, max_tokens: Optional[int] = None, teacher: Optional[LoopbackTeacher] = None) -> List[Dict[str, Any]]:
    """One distillation of the first `count` passages per concurrency, each with a fresh cache."""
    work.mkdir(parents=True, exist_ok=True)
    chosen = first_passages(passages, work / "passages.jsonl", count)
    records = []
    for concurrency in concurrencies:
        if teacher is not None:
            teacher.answered.clear()
            teacher.most_in_flight = 0
        cache = work / f"cache-{concurrency}"
        report = run_distillation(
            work / "passages.jsonl", work / f"annotations-{concurrency}.spacy", config,
            teacher_config(work / f"teacher-{concurrency}.cfg", endpoint, model, concurrency, max_tokens),
            None, max(64, 4 * concurrency), {"components.llm.cache.path": str(cache)},
        )
        run = report["run"]
        record = {"concurrency": concurrency, "passages": report["passages"], "wall_s": run["wall_s"], "passages_per_s": run["passages_per_s"], **run["teacher"]}
        record["paper_hours"] = round(PAPER_PASSAGES / run["passages_per_s"] / 3600, 2)
        if teacher is not None:
            # Lost: a passage never answered; asked twice: an answered passage asked again.
            record["lost"] = chosen - len(teacher.answered)
            record["asked_twice"] = sum(times > 1 for times in teacher.answered.values())
            record["most_in_flight"] = teacher.most_in_flight
            record["injected_errors"] = teacher.errors
            teacher.errors = 0
        records.append(record)
    sequential = records[0]["passages_per_s"]
    for record in records:
        record["speedup"] = round(record["passages_per_s"] / sequential, 2)
    return records


def kill_and_resume(passages: Path, config: Path, work: Path, teacher: LoopbackTeacher, concurrency: int, kill_after: int) -> Dict[str, Any]:
    """`spacy-uniner distill` in a process killed once the teacher has answered `kill_after`
    passages, then run again: which answered passages the second run asked for again."""
    work.mkdir(parents=True, exist_ok=True)
    count = sum(1 for _ in srsly.read_jsonl(passages))
    cache = work / "cache-killed"
    teacher_file = teacher_config(work / "teacher-killed.cfg", teacher.endpoint, LOOPBACK_MODEL, concurrency)
    teacher.answered.clear()
    command = [sys.executable, "-m", "spacy_uniner", "distill", str(passages), str(work / "killed.spacy"), "--config", str(config),
               "--teacher", str(teacher_file), "--passages-per-batch", str(count), "--components.llm.cache.path", str(cache)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while sum(teacher.answered.values()) < kill_after and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.kill()
    process.wait()
    # The requests the dead client left in flight are still answered (into a closed socket): count
    # them before the resumed run's.
    while teacher.in_flight and time.monotonic() < deadline:
        time.sleep(0.01)
    before = Counter(teacher.answered)
    journal = AnswerJournal(next(cache.rglob(JOURNAL_NAME)))
    report = run_distillation(passages, work / "resumed.spacy", config, teacher_file, None, count, {"components.llm.cache.path": str(cache)})
    asked_again = teacher.answered - before
    return {
        "passages": count,
        # Answers the teacher sent before the kill, some still on their way when the client died.
        "sent_before_kill": sum(before.values()),
        "journaled": len(journal.answers),
        "asked_again": sum(asked_again.values()),
        "resumed_passages": report["passages"],
        # Passages asked again beyond those the killed run had not received: 0 when none is lost.
        "received_and_asked_again": sum(asked_again.values()) - (count - len(journal.answers)),
    }


def benchmark_teacher(passages: Path, output: Path, config: Path, concurrencies: Sequence[int], count: int, latency: float, error_rate: float, endpoint: Optional[str], model: str, max_tokens: Optional[int], kill_after: int) -> str:
    """`benchmark_concurrency` against the real teacher at `endpoint`, or against a loopback teacher
    (`latency`, `error_rate`) with, given `kill_after`, a killed and resumed run; the report
    written to `output` (JSON), its table returned."""
    check_output_file(output, {"passages": passages, "distillation config": config})
    work = output.with_suffix("")
    result: Dict[str, Any] = {"passages": count}
    if endpoint is not None:
        result.update(endpoint=endpoint, records=benchmark_concurrency(passages, config, work, concurrencies, count, endpoint, model, max_tokens))
    else:
        with LoopbackTeacher(latency, error_rate) as teacher:
            result.update(latency_s=latency, error_rate=error_rate, records=benchmark_concurrency(passages, config, work, concurrencies, count, teacher.endpoint, LOOPBACK_MODEL, teacher=teacher))
            if kill_after:
                result["kill_and_resume"] = kill_and_resume(work / "passages.jsonl", config, work, teacher, max(concurrencies), kill_after)
    write_json(output, result)
    columns = ["concurrency", "passages", "wall_s", "passages_per_s", "speedup", "requests", "retries", "answered", "failed", "paper_hours"]
    columns += [column for column in ("lost", "asked_twice", "most_in_flight") if column in result["records"][0]]
    table = markdown_rows(columns, result["records"])
    return table + ("\n" + json.dumps(result["kill_and_resume"]) if "kill_and_resume" in result else "")
