"""The live-teacher path over a real socket: a chat-completions server on 127.0.0.1 that answers from
recorded responses and fails on purpose, driven through spacy-llm's OpenAI model class."""
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
import spacy
import srsly
from spacy.tokens import DocBin

from spacy_uniner.distill import make_passages, read_documents, run_distillation
from spacy_uniner.benchmarks.teacher import LoopbackHandler
from spacy_uniner.prompts import passage_of

from test_distill import PASSAGES, RESPONSES, write_records

ROOT = Path(__file__).parent.parent
CONFIG = ROOT / "configs" / "distill.cfg"


class FakeTeacher(ThreadingHTTPServer):
    """Answers like an OpenAI-compatible server. `inject` holds error statuses served to the next
    requests, one each ("drop": the connection is closed unanswered; "error body": a 200 whose body
    is an error); while `outage` is set every completion fails with 500; `delay` slows answers (a
    dict: per passage id). It counts the requests it holds at once."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.inject, self.outage, self.delay = [], False, 0.0
        self.log = []  # (passage id, status) of every completion request
        self.lock = threading.Lock()
        self.in_flight = self.most_in_flight = 0

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.server_address[1]}/v1/chat/completions"

    def answered(self):
        return Counter(passage for passage, status in self.log if status == 200)


class Handler(LoopbackHandler):
    """The benchmark's loopback teacher's JSON handling, answering from the recorded responses."""

    def do_GET(self):
        self.send(200, {"object": "list", "data": [{"id": "teacher-model", "object": "model"}]})

    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        assert request["model"] == "teacher-model" and request["temperature"] == 0.0
        passage = passage_of(request["messages"][-1]["content"])
        passage_id = next(i for i, text in PASSAGES.items() if text == passage)
        server = self.server
        with server.lock:
            status = server.inject.pop(0) if server.inject else 500 if server.outage else 200
            server.log.append((passage_id, status))
            server.in_flight += 1
            server.most_in_flight = max(server.most_in_flight, server.in_flight)
        try:
            if status == "drop":
                self.close_connection = True
                return self.connection.shutdown(2)
            if status == "error body":
                return self.send(200, {"error": {"message": "The model is overloaded", "type": "server_error"}})
            if status != 200:
                return self.send(status, {"error": {"message": f"injected {status}"}})
            time.sleep(server.delay[passage_id] if isinstance(server.delay, dict) else server.delay)
            usage = {"prompt_tokens": len(request["messages"][-1]["content"].split()), "completion_tokens": 7, "total_tokens": 0}
            self.send(200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": RESPONSES[passage_id]}, "finish_reason": "stop"}], "usage": usage})
        finally:
            with server.lock:
                server.in_flight -= 1


@pytest.fixture(autouse=True)
def in_a_folder_of_its_own(tmp_path, monkeypatch):
    """The distillation config's cache path is relative (corpus/teacher_cache): each test runs in its
    own folder, so that none writes into the project's corpus."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def server():
    server = FakeTeacher()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


@pytest.fixture
def setup(tmp_path, server):
    srsly.write_jsonl(tmp_path / "passages.jsonl", make_passages(read_documents(write_records(tmp_path / "records.jsonl"))))
    teacher = tmp_path / "live.cfg"
    teacher.write_text(
        f'[model]\n@llm_models = "spacy_uniner.OpenAICompatible.v1"\nname = "teacher-model"\n'
        f'endpoint = "{server.endpoint}"\napi_key_env = null\ninterval = 0.01\nmax_tries = 4\n'
    )
    recorded = tmp_path / "recorded.cfg"
    recorded.write_text(f'[model]\n@llm_models = "spacy_uniner.RecordedTeacher.v1"\npath = "{tmp_path / "records.jsonl"}"\n')
    return tmp_path, teacher, recorded


def distill(tmp_path, teacher, name, batch_size=2, **overrides):
    """The annotations' report (without the run's times and teacher counts), the docs, and those counts."""
    overrides = {"components.llm.cache.path": str(tmp_path / f"cache-{teacher.stem}"), **overrides}
    report = run_distillation(tmp_path / "passages.jsonl", tmp_path / f"{name}.spacy", CONFIG, teacher, None, batch_size, overrides)
    docs = DocBin().from_disk(tmp_path / f"{name}.spacy").get_docs(spacy.blank("en").vocab)
    run = report.pop("run")
    return report, [(doc.text, doc.user_data["uniner_teacher"], [(s.text, s.label_) for s in doc.spans["teacher"]]) for doc in docs], run


def annotations(result):
    return result[:2]


def test_rate_limits_and_server_errors_are_retried_and_nothing_is_lost(setup, server):
    tmp_path, teacher, recorded = setup
    # max_tries = 4: up to three failures in a row per request are retried away.
    server.inject = [429, 500, 200, 502, 200, 503, 429, 500]
    live = distill(tmp_path, teacher, "live")
    assert Counter(status for _, status in server.log) == {200: 6, 429: 2, 500: 2, 502: 1, 503: 1}
    assert server.answered() == {passage: 1 for passage in PASSAGES}
    # The same annotations as replaying the recorded answers directly.
    assert annotations(live) == annotations(distill(tmp_path, recorded, "recorded"))
    counts = live[2]["teacher"]
    assert {key: counts[key] for key in ("requests", "retries", "rate_limited", "answered", "failed", "journaled", "completion_tokens")} == {
        "requests": 12, "retries": 6, "rate_limited": 2, "answered": 6, "failed": 0, "journaled": 0, "completion_tokens": 6 * 7,
    }
    assert counts["prompt_tokens"] > 6 * 10  # the server's usage, summed


def test_many_requests_are_in_flight_and_answers_keep_passage_order(setup, server):
    tmp_path, teacher, recorded = setup
    # The first passages take longest: answers arrive in reverse order.
    server.delay = {passage: 0.3 - 0.05 * i for i, passage in enumerate(PASSAGES)}
    live = distill(tmp_path, teacher, "live", batch_size=6, **{"components.llm.model.concurrency": 4})
    assert server.most_in_flight == 4
    assert annotations(live) == annotations(distill(tmp_path, recorded, "recorded"))
    assert live[2]["teacher"]["answered"] == 6 and live[2]["passages_per_s"] > 0


def test_a_dropped_connection_is_retried_and_an_error_body_is_an_error_naming_it(setup, server):
    tmp_path, teacher, recorded = setup
    server.inject = ["drop", "drop"]
    assert annotations(distill(tmp_path, teacher, "live", batch_size=6)) == annotations(distill(tmp_path, recorded, "recorded"))
    server.inject = ["error body"] * 4
    other_cache = {"components.llm.cache.path": str(tmp_path / "other-cache"), "components.llm.model.concurrency": 1}
    with pytest.raises(RuntimeError, match=r"stopped after 0 of 6 passages .*run again to resume.*did not answer 4 of 6 passages; the first, 'Aspirin is sold .* answered 200: .*The model is overloaded"):
        distill(tmp_path, teacher, "again", batch_size=6, **other_cache)
    # The two it answered in that batch were kept: the next run asks for the four others only.
    _, _, run = distill(tmp_path, teacher, "again", batch_size=6, **other_cache)
    assert (run["teacher"]["journaled"], run["teacher"]["answered"]) == (2, 4)


def test_changing_the_concurrency_keeps_the_cache(setup, server):
    tmp_path, teacher, _ = setup
    distill(tmp_path, teacher, "first")
    asked = len(server.log)
    _, _, run = distill(tmp_path, teacher, "second", **{"components.llm.model.concurrency": 3})
    assert len(server.log) == asked and run["teacher"]["answered"] == 0


def test_an_outage_stops_the_run_and_the_next_run_resumes_from_the_cache(setup, server):
    tmp_path, teacher, recorded = setup
    server.inject = [200] * 4
    server.outage = True
    with pytest.raises(RuntimeError, match=r"stopped after 4 of 6 passages .*run again to resume.*injected 500"):
        distill(tmp_path, teacher, "live")
    assert server.answered() == {"p1": 1, "p2": 1, "p3": 1, "p4": 1}
    server.outage = False
    live = distill(tmp_path, teacher, "live")
    assert server.answered() == {passage: 1 for passage in PASSAGES}  # p1-p4 were not asked again
    assert annotations(live) == annotations(distill(tmp_path, recorded, "recorded"))


def test_a_killed_run_resumes_without_asking_again_for_any_answered_passage(setup, server):
    tmp_path, teacher, _ = setup
    # One spacy-llm batch of all six, two in flight: spacy-llm's cache gets none of them before the
    # batch is done, so every answer the killed run received is the journal's.
    server.delay = 0.3
    cache = tmp_path / f"cache-{teacher.stem}"
    command = [
        sys.executable, "-m", "spacy_uniner", "distill", str(tmp_path / "passages.jsonl"), str(tmp_path / "killed.spacy"),
        "--config", str(CONFIG), "--teacher", str(teacher), "--passages-per-batch", "6", "--components.llm.cache.path", str(cache),
        "--components.llm.model.concurrency", "2",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while len(server.answered()) < 4 and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.kill()
    process.wait()
    assert not (tmp_path / "killed.spacy").exists()
    journaled = len((cache / "teacher_answers.jsonl").read_text().splitlines())
    assert 2 <= journaled < len(PASSAGES)
    before = server.answered()
    assert sum(before.values()) - journaled <= 2  # at most the requests in flight at the kill
    server.delay = 0.0
    report, _, run = distill(tmp_path, teacher, "resumed", batch_size=6)
    asked_again = server.answered() - before
    assert report["passages"] == len(PASSAGES)
    assert sum(asked_again.values()) == len(PASSAGES) - journaled  # no journaled passage asked again
    assert (run["teacher"]["journaled"], run["teacher"]["answered"]) == (journaled, len(PASSAGES) - journaled)


def test_an_unreachable_server_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the config's relative cache folder
    teacher = tmp_path / "gone.cfg"
    teacher.write_text('[model]\n@llm_models = "spacy_uniner.OpenAICompatible.v1"\nname = "m"\nendpoint = "http://127.0.0.1:9/v1/chat/completions"\nmax_tries = 1\n')
    from spacy_uniner.distill import load_distiller

    with pytest.raises(ConnectionError, match=r"cannot reach the teacher server at http://127.0.0.1:9/v1/models"):
        load_distiller(CONFIG, teacher)


def test_an_unknown_model_name_is_a_clear_error(setup, server, monkeypatch):
    tmp_path, teacher, _ = setup
    monkeypatch.chdir(tmp_path)
    from spacy_uniner.distill import load_distiller

    with pytest.raises(ValueError, match=r"has no model 'other'; it has \['teacher-model'\]"):
        load_distiller(CONFIG, teacher, {"components.llm.model.name": "other"})


def test_the_teacher_benchmark_loses_nothing_and_a_resumed_run_asks_for_no_received_answer(tmp_path):
    from spacy_uniner.benchmarks.teacher import LoopbackTeacher, benchmark_concurrency, kill_and_resume, LOOPBACK_MODEL

    srsly.write_jsonl(tmp_path / "passages.jsonl", [{"id": f"p{i}", "text": f"Passage {i} names Bayer in Leverkusen."} for i in range(12)])
    with LoopbackTeacher(latency=0.05, error_rate=0.2, seed=1) as teacher:
        records = benchmark_concurrency(tmp_path / "passages.jsonl", CONFIG, tmp_path / "work", [1, 4], 12, teacher.endpoint, LOOPBACK_MODEL, teacher=teacher)
        assert [(r["passages"], r["lost"], r["asked_twice"], r["answered"], r["most_in_flight"]) for r in records] == [(12, 0, 0, 12, 1), (12, 0, 0, 12, 4)]
        assert sum(r["injected_errors"] for r in records) == sum(r["retries"] for r in records) > 0
        killed = kill_and_resume(tmp_path / "work" / "passages.jsonl", CONFIG, tmp_path / "work", teacher, concurrency=2, kill_after=4)
    assert killed["resumed_passages"] == 12 and 0 < killed["journaled"] < 12
    assert killed["received_and_asked_again"] == 0


def batch_results(batch_file, answers, failures=()):
    """The results file OpenAI's Batch API (and `vllm run-batch`) writes, for the passages in `answers`."""
    lines = []
    for request in srsly.read_jsonl(batch_file):
        passage = request["custom_id"]
        if passage in answers:
            body = {"id": "chatcmpl-1", "object": "chat.completion", "model": request["body"]["model"], "choices": [{"index": 0, "message": {"role": "assistant", "content": answers[passage]}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}}
            lines.append({"id": f"batch_req_{passage}", "custom_id": passage, "response": {"status_code": 200, "request_id": "r", "body": body}, "error": None})
        elif passage in failures:
            lines.append({"id": f"batch_req_{passage}", "custom_id": passage, "response": {"status_code": 500, "request_id": "r", "body": {"error": {"message": "server error"}}}, "error": None})
    return lines


def test_a_batch_file_is_written_read_back_and_the_rest_asked_by_distill(setup, server):
    tmp_path, teacher, recorded = setup
    from spacy_uniner.distill.batch import read_batch, write_batch
    from spacy_uniner.prompts import teacher_prompt

    passages = tmp_path / "passages.jsonl"
    assert write_batch(passages, tmp_path / "batch.jsonl", CONFIG, teacher) == 6
    requests = list(srsly.read_jsonl(tmp_path / "batch.jsonl"))
    first = next(srsly.read_jsonl(passages))
    assert requests[0] == {"custom_id": first["id"], "method": "POST", "url": "/v1/chat/completions", "body": {"messages": [{"role": "user", "content": teacher_prompt(first["text"])}], "temperature": 0.0, "model": "teacher-model"}}
    assert server.log == []  # written without the server
    ids = [request["custom_id"] for request in requests]
    srsly.write_jsonl(tmp_path / "results.jsonl", batch_results(tmp_path / "batch.jsonl", {i: RESPONSES[i] for i in ids[:4]}, failures=ids[4:5]))
    overrides = {"components.llm.cache.path": str(tmp_path / f"cache-{teacher.stem}")}
    report = read_batch(passages, tmp_path / "results.jsonl", tmp_path / "batch.spacy", CONFIG, teacher, None, overrides)
    assert report["batch"]["answered"] == 4 and report["batch"]["missing"] == ids[5:] and report["batch"]["asked_the_teacher"] == 0
    assert list(report["batch"]["failed"]) == ids[4:5] and "status 500" in report["batch"]["failed"][ids[4]]
    # A normal run with the same teacher asks for the failed and the missing passage only.
    live = distill(tmp_path, teacher, "live")
    assert sorted(passage for passage, _ in server.log) == sorted(ids[4:])
    assert annotations(live) == annotations(distill(tmp_path, recorded, "recorded"))


def test_a_bad_results_file_names_the_line(setup):
    tmp_path, teacher, recorded = setup
    from spacy_uniner.distill.batch import read_batch, write_batch

    passages = tmp_path / "passages.jsonl"
    write_batch(passages, tmp_path / "batch.jsonl", CONFIG, teacher)
    good = batch_results(tmp_path / "batch.jsonl", {"p1": RESPONSES["p1"]})
    (tmp_path / "garbled.jsonl").write_text(json.dumps(good[0]) + "\n{not json\n")
    with pytest.raises(ValueError, match=r"garbled.jsonl line 2 is not JSON"):
        read_batch(passages, tmp_path / "garbled.jsonl", tmp_path / "out.spacy", CONFIG, teacher)
    srsly.write_jsonl(tmp_path / "other.jsonl", [dict(good[0], custom_id="request-7")])
    with pytest.raises(ValueError, match=r"other.jsonl line 1: custom_id 'request-7' names no passage of .*passages.jsonl: is it the results of another run"):
        read_batch(passages, tmp_path / "other.jsonl", tmp_path / "out.spacy", CONFIG, teacher)
    with pytest.raises(ValueError, match=r"recorded.cfg: batch files are for a chat-completions teacher \(spacy_uniner.OpenAICompatible.v1\), not spacy_uniner.RecordedTeacher.v1"):
        write_batch(passages, tmp_path / "batch.jsonl", CONFIG, recorded)


def test_batch_results_are_authoritative_and_the_replaced_answers_counted(setup):
    tmp_path, teacher, _ = setup
    from spacy_uniner.distill.batch import read_batch, write_batch

    passages, cache = tmp_path / "passages.jsonl", {"components.llm.cache.path": str(tmp_path / "cache")}
    write_batch(passages, tmp_path / "batch.jsonl", CONFIG, teacher)
    ids = [request["custom_id"] for request in srsly.read_jsonl(tmp_path / "batch.jsonl")]
    srsly.write_jsonl(tmp_path / "first.jsonl", batch_results(tmp_path / "batch.jsonl", {i: RESPONSES[i] for i in ids}))
    first = read_batch(passages, tmp_path / "first.jsonl", tmp_path / "out.spacy", CONFIG, teacher, None, cache)
    assert (first["batch"]["answered"], first["batch"]["replaced"]) == (6, 0)
    # A later results file answers p1 otherwise (a rerun with another prompt or model): its answer holds.
    other = '[("Nobody", "person")]'
    lines = batch_results(tmp_path / "batch.jsonl", {ids[0]: other, ids[1]: RESPONSES[ids[1]]})
    srsly.write_jsonl(tmp_path / "second.jsonl", lines + [lines[1]])  # an identical repeat is counted, not an error
    second = read_batch(passages, tmp_path / "second.jsonl", tmp_path / "out.spacy", CONFIG, teacher, None, cache)
    assert (second["batch"]["answered"], second["batch"]["replaced"], second["batch"]["repeated_lines"]) == (2, 1, 1)
    docs = list(DocBin().from_disk(tmp_path / "out.spacy").get_docs(spacy.blank("en").vocab))
    assert docs[0].user_data["uniner_teacher"]["answer"] == other
    # Two lines answering one passage differently: an error naming both, and nothing kept.
    conflicting = batch_results(tmp_path / "batch.jsonl", {ids[2]: RESPONSES[ids[2]]}) + batch_results(tmp_path / "batch.jsonl", {ids[2]: other})
    srsly.write_jsonl(tmp_path / "conflict.jsonl", conflicting)
    before = (tmp_path / "out.spacy").read_bytes()
    with pytest.raises(ValueError, match=r"conflict.jsonl lines 1 and 2 answer passage 'p\d' differently"):
        read_batch(passages, tmp_path / "conflict.jsonl", tmp_path / "out.spacy", CONFIG, teacher, None, cache)
    assert (tmp_path / "out.spacy").read_bytes() == before


@pytest.mark.parametrize("content, message", [("", "holds no results"), ("\n\n", "holds no results"), (None, "answers none of its 1 passages")])
def test_an_empty_results_file_is_an_error_and_the_earlier_output_is_kept(setup, content, message):
    tmp_path, teacher, _ = setup
    from spacy_uniner.distill.batch import read_batch, write_batch

    passages = tmp_path / "passages.jsonl"
    write_batch(passages, tmp_path / "batch.jsonl", CONFIG, teacher)
    (tmp_path / "out.spacy").write_bytes(b"earlier output")
    if content is None:
        srsly.write_jsonl(tmp_path / "results.jsonl", batch_results(tmp_path / "batch.jsonl", {}, failures=["p1"]))
    else:
        (tmp_path / "results.jsonl").write_text(content)
    with pytest.raises(ValueError, match=message):
        read_batch(passages, tmp_path / "results.jsonl", tmp_path / "out.spacy", CONFIG, teacher)
    assert (tmp_path / "out.spacy").read_bytes() == b"earlier output"


def test_a_torn_journal_line_is_skipped_and_the_next_answer_starts_a_line_of_its_own(tmp_path):
    from spacy_uniner.distill.inflight import AnswerJournal

    path = tmp_path / "teacher_answers.jsonl"
    journal = AnswerJournal(path)
    journal.add("prompt one", "answer one")
    with path.open("a") as file:  # a run killed while writing its second answer
        file.write('{"key": "abc", "respo')
    journal = AnswerJournal(path)
    assert journal.get("prompt one") == "answer one"
    journal.add("prompt two", "answer two")
    reread = AnswerJournal(path)
    assert (reread.get("prompt one"), reread.get("prompt two")) == ("answer one", "answer two")


def test_a_torn_cache_index_is_mended_and_a_garbled_one_names_the_file_and_line(setup):
    tmp_path, _, recorded = setup
    cache = tmp_path / "cache"
    distill(tmp_path, recorded, "first", **{"components.llm.cache.path": str(cache)})
    index = cache / "index.jsonl"
    lines = index.read_text().splitlines(keepends=True)
    index.write_text("".join(lines[:-1]) + lines[-1][:7])  # killed while spacy-llm appended its last line
    again = distill(tmp_path, recorded, "again", **{"components.llm.cache.path": str(cache)})
    assert annotations(again) == annotations(distill(tmp_path, recorded, "fresh", **{"components.llm.cache.path": str(tmp_path / "fresh")}))
    assert index.read_text().endswith("\n")
    index.write_text(lines[0] + "garbage\n" + "".join(lines[1:]))
    with pytest.raises(ValueError, match=r"index.jsonl line 2 is not a cache index record"):
        distill(tmp_path, recorded, "garbled", **{"components.llm.cache.path": str(cache)})


def test_an_empty_or_oversized_passages_file_is_an_error_and_the_earlier_output_is_kept(setup):
    tmp_path, _, recorded = setup
    (tmp_path / "out.spacy").write_bytes(b"earlier output")
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(ValueError, match=r"empty.jsonl holds no passages"):
        run_distillation(tmp_path / "empty.jsonl", tmp_path / "out.spacy", CONFIG, recorded, None, 2, {"components.llm.cache.path": str(tmp_path / "c")})
    srsly.write_jsonl(tmp_path / "huge.jsonl", [{"id": "a", "text": "Some text. "}, {"id": "b", "text": "word " * 420_000}])
    with pytest.raises(ValueError, match=r"huge.jsonl line 2: the passage has 2,100,000 characters, more than a passage may have .*spacy-uniner passages"):
        run_distillation(tmp_path / "huge.jsonl", tmp_path / "out.spacy", CONFIG, recorded, None, 2, {"components.llm.cache.path": str(tmp_path / "c")})
    assert (tmp_path / "out.spacy").read_bytes() == b"earlier output"
    (tmp_path / "folder.spacy").mkdir()
    with pytest.raises(IsADirectoryError, match="folder.spacy is a folder"):
        run_distillation(tmp_path / "passages.jsonl", tmp_path / "folder.spacy", CONFIG, recorded, None, 2, {"components.llm.cache.path": str(tmp_path / "c")})


def test_two_runs_on_one_output_and_cache_ask_the_teacher_once(setup, server):
    """Started together, one run distills; the other says which run holds the output and exits."""
    tmp_path, teacher, _ = setup
    server.delay = 3.0  # the first run holds the output far longer than the two take to start
    command = [
        sys.executable, "-m", "spacy_uniner", "distill", str(tmp_path / "passages.jsonl"), str(tmp_path / "both.spacy"),
        "--config", str(CONFIG), "--teacher", str(teacher), "--components.llm.cache.path", str(tmp_path / "cache"),
    ]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [run.communicate(timeout=120) + (run.returncode,) for run in runs]
    assert sorted(code for _, _, code in results) == [0, 1], results
    _, refused, _ = next(result for result in results if result[2] == 1)
    assert "is being written by another run (pid" in refused and len(refused.strip().splitlines()) == 1
    assert sum(server.answered().values()) == len(PASSAGES) and len(server.log) == len(PASSAGES)
    assert not list(tmp_path.glob(".*.lock")) and not list((tmp_path / "cache").glob(".*.lock"))
