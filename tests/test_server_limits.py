"""A server cannot stall or poison the pipeline: every reply is bounded in bytes and in time, its
scores are checked, and its address is checked when the component is built. Loopback servers that
misbehave on purpose, over real sockets."""
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import spacy

from spacy_uniner.answers import parse_answer
from spacy_uniner.backends import COMPLETIONS_SERVER
from spacy_uniner.server import MAX_REPLY_BYTES, ServerGenerator


class Misbehaving(BaseHTTPRequestHandler):
    """Replies as `server.behaviour` says: "trickle" (headers, then a byte every 0.2 s), "huge" (a body
    past the client's limit), or a completion whose log-probabilities are `server.logprobs`."""

    def log_message(self, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        behaviour = self.server.behaviour
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if behaviour == "trickle":
            self.send_header("Content-Length", "100000")
            self.end_headers()
            for _ in range(100):  # bounded: 20 s at most, long after the client gave up
                try:
                    self.wfile.write(b" ")
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(0.2)
            return
        if behaviour == "huge":
            chunk = b'["' + b"x" * (1 << 20) + b'", '
            self.send_header("Content-Length", str(len(chunk) * 20))
            self.end_headers()
            for _ in range(20):
                try:
                    self.wfile.write(chunk)
                except OSError:
                    return
            return
        text = '["Paris"]'
        body = '{"choices": [{"text": %s, "logprobs": {"tokens": ["[\\"", "Paris", "\\"]"], "token_logprobs": [%s]}}]}' % (json.dumps(text), ", ".join(self.server.logprobs))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())


@pytest.fixture
def misbehaving():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Misbehaving)
    server.daemon_threads = True
    server.behaviour, server.logprobs = None, ["-0.1", "-0.2", "-0.1"]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def generator(server, **settings):
    return ServerGenerator(f"http://127.0.0.1:{server.server_address[1]}/v1", "m", retry_interval=0.01, **settings)


def test_a_server_that_trickles_its_reply_is_given_up_on_at_the_timeout(misbehaving):
    misbehaving.behaviour = "trickle"
    started = time.monotonic()
    with pytest.raises(ConnectionError, match="did not finish its reply in time"):
        generator(misbehaving, timeout=1.0, max_tries=2).generate(["a prompt"])
    assert time.monotonic() - started < 5.0


def test_a_reply_past_the_byte_limit_is_an_error(misbehaving):
    misbehaving.behaviour = "huge"
    with pytest.raises(ConnectionError, match=f"more than {MAX_REPLY_BYTES} bytes"):
        generator(misbehaving, max_tries=1).generate(["a prompt"])


@pytest.mark.parametrize("logprobs", [["Infinity", "-0.2", "-0.1"], ["NaN", "-0.2", "-0.1"], ["-Infinity", "-0.2", "-0.1"], ["0.5", "-0.2", "-0.1"]])
def test_log_probabilities_that_are_no_probability_make_the_reply_an_error(misbehaving, logprobs):
    misbehaving.logprobs = logprobs
    with pytest.raises(ConnectionError, match="a token log-probability of"):
        generator(misbehaving, max_tries=1).generate(["a prompt"])


def test_finite_log_probabilities_give_scores_in_0_1(misbehaving):
    misbehaving.logprobs = ["-0.1", "0.00001", "-0.0"]
    nlp = spacy.blank("en")
    nlp.add_pipe("uniner", config={"model": {"@uniner_models": COMPLETIONS_SERVER, "url": f"http://127.0.0.1:{misbehaving.server_address[1]}/v1", "name": "m"}, "labels": ["city"]})
    doc = nlp("I live in Paris.")
    (score,) = doc.spans["uniner"].attrs["scores"]
    assert 0.0 <= score <= 1.0 and score == pytest.approx(0.9048, abs=1e-4)


@pytest.mark.parametrize("url", ["gpu-host:8000/v1", "", "ftp://host/v1", "http:///v1"])
def test_a_url_without_scheme_or_host_is_refused_at_add_pipe_naming_the_key(url):
    with pytest.raises(ValueError, match="config key 'url'"):
        spacy.blank("en").add_pipe("uniner", config={"model": {"@uniner_models": COMPLETIONS_SERVER, "url": url, "name": "m"}, "labels": ["x"]})


@pytest.mark.parametrize("device", ["tpu9", "cuda", "cuda:1"])
def test_a_device_this_machine_lacks_is_refused_at_add_pipe_naming_the_key(device):
    import torch

    if device.startswith("cuda") and torch.cuda.device_count() > int(device.partition(":")[2] or 0):
        pytest.skip("this machine has that GPU")
    with pytest.raises(ValueError, match="config key 'device'"):
        spacy.blank("en").add_pipe("uniner", config={"model": {"name": "unused/never-loaded", "device": device}, "labels": ["x"]})


def test_a_long_answer_parses_in_linear_time():
    answer = json.dumps([f"mention {i}" for i in range(200_000)] * 2)
    started = time.perf_counter()
    parsed = parse_answer(answer)
    assert len(parsed.strings) == 200_000 and time.perf_counter() - started < 10.0
