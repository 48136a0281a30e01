"""The live-teacher path over a real socket: a chat-completions server on 127.0.0.1 that answers from
recorded responses and fails on purpose, driven through spacy-llm's OpenAI model class."""
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import spacy
import srsly
from spacy.tokens import DocBin

from spacy_uniner.distill import make_passages, read_documents, run_distillation
from spacy_uniner.prompts import passage_of

from test_distill import PASSAGES, RESPONSES, write_records

ROOT = Path(__file__).parent.parent
CONFIG = ROOT / "configs" / "distill.cfg"


class FakeTeacher(ThreadingHTTPServer):
    """Answers like an OpenAI-compatible server. `inject` holds error statuses served to the next
    requests, one each; while `outage` is set every completion fails with 500; `delay` slows answers."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.inject, self.outage, self.delay = [], False, 0.0
        self.log = []  # (passage id, status) of every completion request
        self.lock = threading.Lock()

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.server_address[1]}/v1/chat/completions"

    def answered(self):
        return Counter(passage for passage, status in self.log if status == 200)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

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
        if status != 200:
            return self.send(status, {"error": {"message": f"injected {status}"}})
        time.sleep(server.delay)
        self.send(200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": RESPONSES[passage_id]}, "finish_reason": "stop"}]})


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


def distill(tmp_path, teacher, name, batch_size=2):
    overrides = {"components.llm.cache.path": str(tmp_path / f"cache-{teacher.stem}")}
    report = run_distillation(tmp_path / "passages.jsonl", tmp_path / f"{name}.spacy", CONFIG, teacher, None, batch_size, overrides)
    docs = DocBin().from_disk(tmp_path / f"{name}.spacy").get_docs(spacy.blank("en").vocab)
    return report, [(doc.text, doc.user_data["uniner_teacher"], [(s.text, s.label_) for s in doc.spans["teacher"]]) for doc in docs]


def test_rate_limits_and_server_errors_are_retried_and_nothing_is_lost(setup, server):
    tmp_path, teacher, recorded = setup
    # max_tries = 4: up to three failures in a row per request are retried away.
    server.inject = [429, 500, 200, 502, 200, 503, 429, 500]
    live_report, live_docs = distill(tmp_path, teacher, "live")
    assert Counter(status for _, status in server.log) == {200: 6, 429: 2, 500: 2, 502: 1, 503: 1}
    assert server.answered() == {passage: 1 for passage in PASSAGES}
    # The same annotations as replaying the recorded answers directly.
    assert (live_report, live_docs) == distill(tmp_path, recorded, "recorded")


def test_an_outage_stops_the_run_and_the_next_run_resumes_from_the_cache(setup, server):
    tmp_path, teacher, recorded = setup
    server.inject = [200] * 4
    server.outage = True
    with pytest.raises(RuntimeError, match=r"stopped after 4 of 6 passages .*run again to resume.*injected 500"):
        distill(tmp_path, teacher, "live")
    assert server.answered() == {"p1": 1, "p2": 1, "p3": 1, "p4": 1}
    server.outage = False
    report, docs = distill(tmp_path, teacher, "live")
    assert server.answered() == {passage: 1 for passage in PASSAGES}  # p1-p4 were not asked again
    assert (report, docs) == distill(tmp_path, recorded, "recorded")


def test_a_killed_run_resumes_without_asking_for_cached_passages(setup, server):
    tmp_path, teacher, _ = setup
    server.delay = 0.3
    cache = tmp_path / f"cache-{teacher.stem}"
    command = [
        sys.executable, "-m", "spacy_uniner", "distill", str(tmp_path / "passages.jsonl"), str(tmp_path / "killed.spacy"),
        "--config", str(CONFIG), "--teacher", str(teacher), "--batch-size", "1", "--components.llm.cache.path", str(cache),
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while len(server.answered()) < 3 and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.kill()
    process.wait()
    assert not (tmp_path / "killed.spacy").exists()
    cached = len((cache / "index.jsonl").read_text().splitlines())
    assert 2 <= cached < len(PASSAGES)
    before = server.answered()
    server.delay = 0.0
    report, _ = distill(tmp_path, teacher, "resumed")
    asked_again = server.answered() - before
    assert report["passages"] == len(PASSAGES)
    # Only passages missing from the cache were asked again: at most the one in flight was lost.
    assert sum(asked_again.values()) == len(PASSAGES) - cached
    assert sum(before.values()) - cached <= 1


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
