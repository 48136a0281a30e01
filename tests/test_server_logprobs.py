"""The three shapes in which completions servers give (or do not give) token log-probabilities, each
as an engine sends it: the legacy lists (vLLM, llama-cpp-python), llama.cpp's server `content` list,
and none at all (TGI's null), read by the server client and, through a loopback socket, by the
component."""
import math
import threading
from http.server import ThreadingHTTPServer

import pytest
import spacy

from spacy_uniner.backends import COMPLETIONS_SERVER
from spacy_uniner.server import ServerGenerator, scored_completion

from test_teacher_server import Handler as JSONHandler

ANSWER = '["Marie Curie", "Paris"]'
# One log-probability per token; the tokens below split ANSWER as a byte-level BPE does.
TOKENS = ['["', "Mar", "ie", " Cur", "ie", '",', ' "', "Paris", '"]']
LOGPROBS = [-0.11, -0.21, -0.01, -0.32, -0.02, -0.43, -0.54, -0.25, -0.06]
# The tokens overlapping each quoted mention, opening and closing quotes included.
MARIE_CURIE = math.exp(sum(LOGPROBS[0:6]))
PARIS = math.exp(sum(LOGPROBS[6:9]))

# vLLM's /v1/completions choice (vllm/entrypoints/openai/protocol.py, CompletionLogProbs).
VLLM = {
    "id": "cmpl-7f2c",
    "object": "text_completion",
    "created": 1764500000,
    "model": "student",
    "choices": [{
        "index": 0,
        "text": ANSWER,
        "logprobs": {
            "text_offset": [0, 2, 5, 7, 11, 13, 15, 17, 22],
            "token_logprobs": LOGPROBS,
            "tokens": TOKENS,
            "top_logprobs": [{token: logprob} for token, logprob in zip(TOKENS, LOGPROBS)],
        },
        "finish_reason": "stop",
        "stop_reason": "</s>",
    }],
    "usage": {"prompt_tokens": 57, "total_tokens": 66, "completion_tokens": 9},
}

# llama.cpp's server (tools/server/server-task.cpp, to_json_oaicompat and probs_vector_to_json): one
# object per token with its text, its UTF-8 bytes and its log-probability.
LLAMA_CPP = {
    "choices": [{
        "text": ANSWER,
        "index": 0,
        "logprobs": {"content": [
            {"id": 1000 + i, "token": token, "bytes": list(token.encode()), "logprob": logprob, "top_logprobs": [{"id": 1000 + i, "token": token, "bytes": list(token.encode()), "logprob": logprob}]}
            for i, (token, logprob) in enumerate(zip(TOKENS, LOGPROBS))
        ]},
        "finish_reason": "stop",
    }],
    "created": 1764500000,
    "model": "student.gguf",
    "system_fingerprint": "b7134-3f1c2b1",
    "object": "text_completion",
    "usage": {"completion_tokens": 9, "prompt_tokens": 57, "total_tokens": 66, "prompt_tokens_details": {"cached_tokens": 48}},
    "id": "chatcmpl-Q2u8",
}

# Text Generation Inference's /v1/completions (router/src/lib.rs, CompletionComplete): logprobs null.
TGI = {
    "id": "",
    "object": "text_completion",
    "created": 1764500000,
    "model": "student",
    "system_fingerprint": "3.3.6-native",
    "choices": [{"finish_reason": "eos_token", "index": 0, "logprobs": None, "text": ANSWER}],
    "usage": {"completion_tokens": 9, "prompt_tokens": 57, "total_tokens": 66},
}


@pytest.mark.parametrize("response", [VLLM, LLAMA_CPP], ids=["legacy lists", "llama.cpp content"])
def test_each_engines_logprobs_give_the_mentions_their_probability(response):
    choice = response["choices"][0]
    answer = scored_completion(choice["text"], choice["logprobs"])
    assert answer.text == ANSWER and answer.token_logprobs == LOGPROBS
    assert answer.mention_scores(["Marie Curie", "Paris"]) == pytest.approx([MARIE_CURIE, PARIS])


def test_a_character_split_between_tokens_ends_with_the_token_that_completes_it():
    # llama.cpp sends a token that holds half of "ü" with its bytes (its text is not valid UTF-8 alone).
    pieces = [b'["', b"Z\xc3", b"\xbcrich", b'"]']
    content = [{"token": piece.decode("utf8", errors="replace"), "bytes": list(piece), "logprob": -0.5} for piece in pieces]
    answer = scored_completion('["Zürich"]', {"content": content})
    assert answer.token_ends == [2, 3, 8, 10]
    assert answer.mention_scores(["Zürich"]) == pytest.approx([math.exp(-2.0)])


def test_a_completion_without_logprobs_is_unscored():
    choice = TGI["choices"][0]
    answer = scored_completion(choice["text"], choice["logprobs"])
    assert answer.text == ANSWER and answer.token_logprobs == []
    assert answer.mention_scores(["Marie Curie", "Paris"]) == [1.0, 1.0]


class RecordedCompletions(ThreadingHTTPServer):
    """Answers every /v1/completions request with one recorded engine response."""

    def __init__(self, response):
        super().__init__(("127.0.0.1", 0), Handler)
        self.response, self.requests = response, 0

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class Handler(JSONHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.server.requests += 1
        self.send(200, self.server.response)


@pytest.fixture
def recorded():
    servers = []

    def serve(response):
        server = RecordedCompletions(response)
        thread = threading.Thread(target=server.serve_forever)
        thread.start()
        servers.append((server, thread))
        return server

    yield serve
    for server, thread in servers:
        server.shutdown()
        thread.join()
        server.server_close()


TEXT = "Marie Curie worked in Paris."


def test_the_component_scores_spans_with_llama_cpps_logprobs(recorded):
    server = recorded(LLAMA_CPP)
    nlp = spacy.blank("en")
    nlp.add_pipe("uniner", config={"model": {"@uniner_models": COMPLETIONS_SERVER, "url": server.url, "name": "student.gguf"}, "labels": ["person"]})
    doc = nlp(TEXT)
    scores = dict(zip((span.text for span in doc.spans["uniner"]), doc.spans["uniner"].attrs["scores"]))
    assert scores == pytest.approx({"Marie Curie": MARIE_CURIE, "Paris": PARIS})
    nlp.get_pipe("uniner").threshold = 0.4
    assert [ent.text for ent in nlp(TEXT).ents] == ["Paris"]  # Marie Curie (0.33) is under it


def test_a_server_without_logprobs_is_said_once_in_a_warning(recorded):
    server = recorded(TGI)
    nlp = spacy.blank("en")
    nlp.add_pipe("uniner", config={"model": {"@uniner_models": COMPLETIONS_SERVER, "url": server.url, "name": "student"}, "labels": ["person", "city"], "threshold": 0.5})
    with pytest.warns(UserWarning, match=r"gives no token log-probabilities .* every span scores 1\.0 and the component's threshold cannot apply") as record:
        docs = list(nlp.pipe([TEXT, TEXT]))
    assert len([warning for warning in record if "log-probabilities" in str(warning.message)]) == 1
    assert server.requests == 4
    assert {score for doc in docs for score in doc.spans["uniner"].attrs["scores"]} == {1.0}


def test_a_server_answering_an_unknown_logprobs_shape_is_unscored_not_an_error(recorded):
    generator = ServerGenerator(recorded({"choices": [{"text": ANSWER, "logprobs": {"something": []}}]}).url, "student")
    with pytest.warns(UserWarning, match="no token log-probabilities"):
        (answer,) = generator.generate_scored(["a prompt"])
    assert answer.text == ANSWER and answer.token_logprobs == []
