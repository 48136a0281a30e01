"""The component as a client of an inference server, over a real socket: a completions server on
127.0.0.1 that answers with the project's own local generator on the tiny Llama, and fails on
purpose (rate limits, server errors, slow replies, a crash mid-batch, garbage)."""
import json
import socket
import threading
import time
from http.server import ThreadingHTTPServer

import pytest
import spacy
from confection import ConfigValidationError

from spacy_uniner.backends import COMPLETIONS_SERVER
from spacy_uniner.generation import HFGenerator
from spacy_uniner.prompts import build_prompt
from spacy_uniner.server import ServerGenerator

from test_teacher_server import Handler as JSONHandler
from test_train import LABELS, PASSAGES, llama_base, train_overfit_student  # noqa: F401 (a fixture)

# The student's four training texts (it knows their entities), and one it never saw.
TEXTS = [text for text, _ in PASSAGES] + ["Python came to Zürich with Michelle Obama."]


@pytest.fixture(scope="module")
def student(llama_base, tmp_path_factory):
    """A student that answers with real mentions: trained on four passages until it knows them."""
    folder = tmp_path_factory.mktemp("student")
    train_overfit_student(llama_base, folder)
    return folder / "pipeline" / "uniner" / "model"


class CompletionServer(ThreadingHTTPServer):
    """Answers /v1/completions with `generator` (one request at a time through the model). `inject`
    holds statuses served to the next requests, one each; `delay` slows every answer; after
    `answers_before_crash` answers, every connection is dropped unanswered."""

    # No thread outlives its test: `end` joins the one serving, closes the kept-alive connections the
    # handler threads wait on, and `server_close` joins those. A thread left behind would drop the last
    # reference to the model when its client's session is collected, at interpreter exit, and torch
    # then aborts the process ("terminate called without an active exception") from that thread.
    daemon_threads = False

    def __init__(self, generator: HFGenerator):
        super().__init__(("127.0.0.1", 0), CompletionHandler)
        self.connections = []
        self.generator = generator
        self.lock, self.model_lock = threading.Lock(), threading.Lock()
        self.requests, self.statuses = [], []
        self.inject, self.delay, self.answers_before_crash = [], 0.0, None
        self.in_flight = self.most_in_flight = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def get_request(self):
        connection, address = super().get_request()
        self.connections.append(connection)
        return connection, address

    def start(self) -> None:
        self.serving = threading.Thread(target=self.serve_forever)
        self.serving.start()

    def end(self) -> None:
        self.shutdown()
        self.serving.join()
        for connection in self.connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:  # closed already
                pass
        self.server_close()


class CompletionHandler(JSONHandler):
    def do_POST(self):
        server = self.server
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with server.lock:
            server.requests.append((request, self.headers.get("Authorization")))
            answered = server.statuses.count(200)
            crashed = server.answers_before_crash is not None and answered >= server.answers_before_crash
            status = server.inject.pop(0) if server.inject else 200
            server.statuses.append("dropped" if crashed else status)
            server.in_flight += 1
            server.most_in_flight = max(server.most_in_flight, server.in_flight)
        try:
            if crashed:
                self.close_connection = True
                self.connection.shutdown(2)
                return
            if status == "garbage":
                return self.send(200, ["not", "a", "completion"])
            if status != 200:
                return self.send(status, {"error": {"message": f"injected {status}"}})
            time.sleep(server.delay)
            with server.model_lock:
                server.generator.max_new_tokens = request["max_tokens"]
                (answer,) = server.generator.generate_scored([request["prompt"]])
            starts = [0] + answer.token_ends[:-1]
            tokens = [answer.text[start:end] for start, end in zip(starts, answer.token_ends)]
            self.send(200, {"choices": [{"index": 0, "text": answer.text, "logprobs": {"tokens": tokens, "token_logprobs": answer.token_logprobs}, "finish_reason": "stop"}]})
        finally:
            with server.lock:
                server.in_flight -= 1


@pytest.fixture
def server(student):
    # float32 on both sides: the server answers one prompt a pass, the component in batches, which a
    # narrower precision rounds otherwise (its tolerance: test_fast_generation).
    server = CompletionServer(HFGenerator(student, device="cpu", dtype="float32"))
    server.start()
    yield server
    server.end()


def served_nlp(server, on_error="raise", **model):
    nlp = spacy.blank("en")
    backend = {"@uniner_models": COMPLETIONS_SERVER, "url": server.url, "name": "tiny-llama", "max_new_tokens": 24, "max_tries": 3, **model}
    nlp.add_pipe("uniner", config={"model": backend, "labels": LABELS, "on_error": on_error})
    return nlp


def fast_retries(nlp, **settings):
    """The component's server generator with a short retry interval (the default waits seconds)."""
    uniner = nlp.get_pipe("uniner")
    uniner.generator = ServerGenerator(uniner.generator.url.rsplit("/completions", 1)[0], "tiny-llama", max_new_tokens=24, retry_interval=0.01, **settings)
    return nlp


def entities(docs):
    return [[(span.start, span.end, span.label_, round(score, 4)) for span, score in zip(doc.spans["uniner"], doc.spans["uniner"].attrs["scores"])] for doc in docs]


def test_through_the_server_the_entities_and_scores_are_the_local_ones(server, student, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    server.delay = 0.05  # requests overlap
    local = spacy.blank("en")
    local.add_pipe("uniner", config={"model": {"name": str(student), "max_new_tokens": 24, "dtype": "float32"}, "labels": LABELS})
    nlp = served_nlp(server, concurrency=3)
    served = list(nlp.pipe(TEXTS, batch_size=4))
    assert entities(served) == entities(local.pipe(TEXTS))
    assert [[(e.start, e.end, e.label_) for e in doc.ents] for doc in served] == [[(e.start, e.end, e.label_) for e in doc.ents] for doc in local.pipe(TEXTS)]
    assert sum(len(doc.ents) for doc in served) >= 10  # real mentions, not empty lists
    prompts = sorted(request["prompt"] for request, _ in server.requests)
    assert prompts == sorted(build_prompt(text, label) for text in TEXTS for label in LABELS)  # byte-identical
    request, key = server.requests[0]
    assert (request["model"], request["temperature"], request["max_tokens"], request["stop"], key) == ("tiny-llama", 0, 24, ["</s>"], None)
    assert 1 < server.most_in_flight <= 3  # one batch's questions go out together, never more than `concurrency`


def test_the_api_key_comes_from_the_environment(server, monkeypatch):
    monkeypatch.setenv("STUDENT_KEY", "sekrit")
    served_nlp(server, api_key_env="STUDENT_KEY")(TEXTS[0])
    assert {key for _, key in server.requests} == {"Bearer sekrit"}


def test_rate_limits_and_server_errors_are_retried(server):
    expected = entities(served_nlp(server).pipe(TEXTS[:2]))
    server.inject = [429, 500, 503, 502]
    nlp = fast_retries(served_nlp(server), max_tries=3)
    assert entities(nlp.pipe(TEXTS[:2])) == expected
    assert server.statuses.count(200) == 2 * 2 * len(LABELS)


def test_a_slow_server_times_out_with_an_error_naming_it_and_the_doc(server):
    server.delay = 5.0
    nlp = fast_retries(served_nlp(server), max_tries=1, timeout=0.3)
    started = time.perf_counter()
    with pytest.raises(ConnectionError, match=rf"the server at {server.url}/completions did not answer {len(LABELS)} questions about doc 0 of this batch \('Barack Obama visited Paris with Michelle Obama in 2009.'\).*timed out"):
        nlp(TEXTS[0])
    assert time.perf_counter() - started < 5.0


def test_a_server_that_dies_mid_batch_skips_or_stops(server):
    server.answers_before_crash = len(LABELS) + 1  # doc 0's questions, one of doc 1's, then the crash
    nlp = fast_retries(served_nlp(server, on_error="skip"), max_tries=2, concurrency=1)
    docs = list(nlp.pipe(TEXTS, batch_size=len(TEXTS)))
    assert nlp.get_pipe("uniner").stats["skipped_docs"] == len(TEXTS) - 1
    assert docs[0].ents and all(not doc.ents and not doc.spans["uniner"] for doc in docs[1:])
    nlp = fast_retries(served_nlp(server), max_tries=2)
    with pytest.raises(ConnectionError, match=rf"did not answer {len(LABELS)} questions about doc 0 .*on_error = \"skip\""):
        nlp(TEXTS[0])


def test_garbage_from_the_server_is_an_error_naming_it(server):
    server.inject = ["garbage"] * 3
    nlp = fast_retries(served_nlp(server), max_tries=1, concurrency=1)
    with pytest.raises(ConnectionError, match=r"sent no completion the OpenAI API describes"):
        nlp(TEXTS[0])


def test_a_served_pipeline_saves_its_settings_and_no_weights(server, tmp_path):
    nlp = served_nlp(server, concurrency=2, timeout=7.5)
    nlp.to_disk(tmp_path / "pipeline")
    assert not any(path.is_file() for path in (tmp_path / "pipeline" / "uniner").rglob("*") if path.name != "cfg")
    loaded = spacy.load(tmp_path / "pipeline")
    generator = loaded.get_pipe("uniner").generator
    assert (generator.url, generator.concurrency, generator.timeout) == (server.url + "/completions", 2, 7.5)
    assert entities([loaded(TEXTS[0])]) == entities([nlp(TEXTS[0])])


def test_bad_server_settings_name_the_config_key():
    backend = {"@uniner_models": COMPLETIONS_SERVER, "url": "http://127.0.0.1:9/v1", "name": "m"}
    with pytest.raises(ValueError, match="on_error"):
        spacy.blank("en").add_pipe("uniner", config={"model": backend, "labels": ["x"], "on_error": "ignore"})
    with pytest.raises(ValueError, match="concurrency"):
        spacy.blank("en").add_pipe("uniner", config={"model": dict(backend, concurrency=0), "labels": ["x"]})
    # The constraint needs the model in this process: the server's block has no such key.
    with pytest.raises(ConfigValidationError, match="constrained"):
        spacy.blank("en").add_pipe("uniner", config={"model": dict(backend, constrained=True), "labels": ["x"]})
