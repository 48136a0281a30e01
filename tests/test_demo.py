"""The demo page's API (what the page's buttons call), through FastAPI's test client."""
import json
import threading
import time

import pytest
import spacy
from fastapi.testclient import TestClient

from spacy_uniner.demo import MAX_BODY_BYTES, MAX_CANDIDATES, MAX_CHARS, MAX_LABELS, Demo, create_app

TEXT = "Marie Curie discovered polonium in Paris."
LOCAL = "http://127.0.0.1:8000"  # the page answers to its own machine's names only
ANSWERS = {
    (TEXT, "person"): [("Marie Curie", 0.9)],
    (TEXT, "chemical element"): [("polonium", 0.3)],
    (TEXT, "city"): [("Paris", 0.8)],
    (TEXT, "place"): [("Paris", 0.6)],
}


@pytest.fixture
def demo_nlp(scripted_nlp):
    return scripted_nlp(ANSWERS, ["unused"], threshold=0.5)


@pytest.fixture
def client(demo_nlp):
    return TestClient(create_app(demo_nlp), base_url=LOCAL)


def annotate(client, text=TEXT, labels="person, chemical element, city", threshold=0.0):
    return client.post("/api/annotate", json={"text": text, "labels": labels, "threshold": threshold})


def test_annotate_returns_every_candidate_and_draws_those_above_the_threshold(client, demo_nlp):
    response = annotate(client, threshold=0.5)
    assert response.status_code == 200
    result = response.json()
    assert [(TEXT[c["start"] : c["end"]], c["label"], c["score"]) for c in result["candidates"]] == [
        ("Marie Curie", "person", 0.9), ("polonium", "chemical element", 0.3), ("Paris", "city", 0.8)
    ]
    assert [(row["mention"], row["label"]) for row in result["rows"]] == [("Marie Curie", "person"), ("Paris", "city")]
    assert result["html"].count("<mark") == 2 and "polonium</mark>" not in result["html"]
    assert result["questions"] == 3 and result["labels"] == ["person", "chemical element", "city"]
    assert result["seconds"] >= 0
    assert len(demo_nlp.get_pipe("uniner").generator.calls) == 1


def test_the_page_starts_at_the_pipelines_threshold(client):
    page = client.get("/").text
    assert 'id="threshold" type="range" min="0" max="1" step="0.05" value="0.5"' in page
    assert f"{MAX_LABELS} labels and {MAX_CHARS:,} characters" in page


def test_render_refilters_without_asking_the_model(client, demo_nlp):
    candidates = annotate(client).json()["candidates"]
    calls = len(demo_nlp.get_pipe("uniner").generator.calls)
    low = client.post("/api/render", json={"text": TEXT, "candidates": candidates, "threshold": 0.0}).json()
    high = client.post("/api/render", json={"text": TEXT, "candidates": candidates, "threshold": 0.85}).json()
    assert [row["mention"] for row in low["rows"]] == ["Marie Curie", "polonium", "Paris"]
    assert [row["mention"] for row in high["rows"]] == ["Marie Curie"]
    assert len(demo_nlp.get_pipe("uniner").generator.calls) == calls


def test_overlapping_mentions_are_listed_and_one_is_highlighted(client):
    result = annotate(client, labels="city, place").json()
    assert [(row["label"], row["entity"]) for row in result["rows"]] == [("city", True), ("place", False)]
    assert result["html"].count("<mark") == 1


@pytest.mark.parametrize(
    "text, labels, message",
    [
        ("  \n ", "person", "Type a text"),
        (TEXT, " , ,\n", "at least one label"),
        (TEXT, ", ".join(f"type {i}" for i in range(40)), f"At most {MAX_LABELS} labels a run: you gave 40"),
        ("word " * 20_000, "person", f"The text has 100,000 characters; the page takes at most {MAX_CHARS:,}"),
        (TEXT, "x" * 101, "A label has at most 100 characters"),
    ],
)
def test_bad_input_gets_a_message(client, demo_nlp, text, labels, message):
    response = annotate(client, text=text, labels=labels)
    assert response.status_code == 422 and message in response.json()["error"]
    assert demo_nlp.get_pipe("uniner").generator.calls == []


def test_labels_with_quotes_newlines_and_html_are_asked_as_typed_and_shown_escaped(scripted_nlp):
    script = '<script>alert("x")</script>'
    nlp = scripted_nlp({(TEXT, script): [("Paris", 0.9)], (TEXT, 'the "best" person'): [("Marie Curie", 0.9)]}, ["unused"])
    result = TestClient(create_app(nlp), base_url=LOCAL).post("/api/annotate", json={"text": TEXT, "labels": f'{script}\nthe "best"   person'}).json()
    assert result["labels"] == [script, 'the "best" person']
    assert "<script>" not in result["html"] and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in result["html"]
    assert {row["label"] for row in result["rows"]} == {script, 'the "best" person'}


def test_malformed_requests_get_a_message(client):
    response = client.post("/api/annotate", json={"text": TEXT})
    assert response.status_code == 422 and response.json()["error"].startswith("Malformed request: labels")
    response = client.post("/api/render", json={"text": TEXT, "candidates": [], "threshold": 2})
    assert response.status_code == 422 and "threshold" in response.json()["error"]


def test_a_failing_model_gives_a_message_and_the_page_goes_on(demo_nlp):
    generator = demo_nlp.get_pipe("uniner").generator
    working = generator.generate_scored
    generator.generate_scored = lambda prompts: (_ for _ in ()).throw(ConnectionError("the server at http://127.0.0.1:9/v1 did not answer"))
    client = TestClient(create_app(demo_nlp), base_url=LOCAL)
    response = annotate(client)
    assert response.status_code == 500
    assert response.json()["error"] == "The pipeline failed: ConnectionError: the server at http://127.0.0.1:9/v1 did not answer"
    generator.generate_scored = working
    assert annotate(client).status_code == 200


def test_two_people_at_once_each_get_their_own_labels(demo_nlp):
    generator = demo_nlp.get_pipe("uniner").generator
    scripted = generator.generate_scored

    def slow(prompts):
        time.sleep(0.2)  # long enough for the other request to arrive meanwhile
        return scripted(prompts)

    generator.generate_scored = slow
    client = TestClient(create_app(demo_nlp), base_url=LOCAL)
    results = {}
    threads = [threading.Thread(target=lambda labels=labels: results.update({labels: annotate(client, labels=labels).json()})) for labels in ("person", "city")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [row["mention"] for row in results["person"]["rows"]] == ["Marie Curie"]
    assert [row["mention"] for row in results["city"]["rows"]] == ["Paris"]


def test_a_pipeline_without_uniner_is_refused():
    with pytest.raises(ValueError, match="no `uniner` component"):
        Demo(spacy.blank("en"))


# Hostile or mistaken requests: each gets {"error": ...} and a 4xx, and changes nothing for the next.


def post_raw(client, path, body: bytes, **headers):
    return client.post(path, content=body, headers={"content-type": "application/json", **headers})


def test_a_label_that_is_not_unicode_text_is_refused_and_the_page_goes_on(client, demo_nlp):
    # The lone surrogate as the page's JSON would carry it: "\udc00".
    response = post_raw(client, "/api/annotate", b'{"text": "Marie Curie", "labels": "per\\udc00son"}')
    assert response.status_code == 422 and "labels" in response.json()["error"] and "lone surrogate" in response.json()["error"]
    response = post_raw(client, "/api/annotate", b'{"text": "Marie \\ud800Curie", "labels": "person"}')
    assert response.status_code == 422 and "text" in response.json()["error"]
    assert demo_nlp.get_pipe("uniner").generator.calls == []
    assert annotate(client).status_code == 200
    candidates = annotate(client).json()["candidates"]
    assert client.post("/api/render", json={"text": TEXT, "candidates": candidates}).status_code == 200
    bad = [dict(candidates[0], label="per\udc00son")]
    response = post_raw(client, "/api/render", json.dumps({"text": TEXT, "candidates": bad}).encode())
    assert response.status_code == 422 and "candidates.0.label" in response.json()["error"]
    assert spacy.displacy.render(spacy.blank("en")("Marie Curie"), style="ent")  # and displaCy still renders


def test_a_body_over_the_limit_is_refused_before_it_is_parsed(client):
    padding = MAX_BODY_BYTES - len(json.dumps({"text": TEXT, "labels": "person", "pad": ""}))
    just_under = json.dumps({"text": TEXT, "labels": "person", "pad": "x" * padding}).encode()
    assert len(just_under) == MAX_BODY_BYTES
    assert post_raw(client, "/api/annotate", just_under).status_code == 200
    response = post_raw(client, "/api/annotate", just_under[:-1] + b' }')
    assert response.status_code == 413 and f"{MAX_BODY_BYTES:,} bytes" in response.json()["error"]
    # A body sent in pieces, without Content-Length, is counted as it arrives.
    pieces = (just_under[i : i + 65536] for i in range(0, len(just_under), 65536))
    response = client.post("/api/render", content=iter([*pieces, b" "]), headers={"content-type": "application/json"})
    assert response.status_code == 413


def test_render_takes_at_most_max_candidates(client):
    one = {"start": 0, "end": 5, "label": "person", "score": 0.5}
    assert client.post("/api/render", json={"text": TEXT, "candidates": [one] * MAX_CANDIDATES}).status_code == 200
    response = client.post("/api/render", json={"text": TEXT, "candidates": [one] * (MAX_CANDIDATES + 1)})
    assert response.status_code == 422 and "candidates" in response.json()["error"]


@pytest.mark.parametrize(
    "candidate, problem",
    [
        ({"start": 0, "end": 1e23, "label": "person", "score": 0.5}, "candidates.0.end"),
        ({"start": 0, "end": len(TEXT) + 1, "label": "person", "score": 0.5}, "past the text"),
        ({"start": 5, "end": 5, "label": "person", "score": 0.5}, "must be before end"),
        ({"start": -1, "end": 5, "label": "person", "score": 0.5}, "candidates.0.start"),
        ({"start": 0, "end": 5, "label": "person", "score": 1.5}, "candidates.0.score"),
        ({"start": 0, "end": 5, "label": "", "score": 0.5}, "candidates.0.label"),
    ],
)
def test_render_checks_every_number(client, candidate, problem):
    response = client.post("/api/render", json={"text": TEXT, "candidates": [candidate]})
    assert response.status_code == 422 and problem in response.json()["error"]


def test_scores_that_are_not_finite_are_refused(client):
    for score in (b"1e999", b"NaN", b"-Infinity"):
        body = b'{"text": "Marie Curie", "candidates": [{"start": 0, "end": 5, "label": "person", "score": ' + score + b"}]}"
        response = post_raw(client, "/api/render", body)
        assert response.status_code == 422 and "candidates.0.score" in response.json()["error"], score


@pytest.mark.parametrize(
    "body",
    [b'{"text": "Marie \xff Curie", "labels": "person"}', b"not json", b'["a list"]', b""],
)
def test_a_body_that_is_not_json_text_gets_the_pages_message(client, body):
    response = post_raw(client, "/api/annotate", body)
    assert 400 <= response.status_code < 500 and set(response.json()) == {"error"}


def test_unknown_paths_and_methods_get_the_pages_message(client):
    assert client.get("/api/nothing").json() == {"error": "Not Found"}
    assert client.get("/api/annotate").status_code == 405 and "error" in client.get("/api/annotate").json()


@pytest.mark.parametrize("host", ["127.0.0.1:8000", "localhost", "LOCALHOST:1234", "[::1]:8000"])
def test_the_page_answers_to_this_machines_names(demo_nlp, host):
    client = TestClient(create_app(demo_nlp))
    assert client.get("/", headers={"host": host}).status_code == 200


@pytest.mark.parametrize("host", ["attacker.example", "attacker.example:8000", "127.0.0.1.attacker.example", ""])
def test_other_hosts_are_refused_as_dns_rebinding_would_send_them(demo_nlp, host):
    client = TestClient(create_app(demo_nlp))
    for response in (client.get("/", headers={"host": host}), client.post("/api/annotate", json={"text": TEXT, "labels": "person"}, headers={"host": host})):
        assert response.status_code == 400 and "--allowed-hosts" in response.json()["error"]
    assert demo_nlp.get_pipe("uniner").generator.calls == []


def test_a_host_the_page_was_started_for_is_served(demo_nlp):
    client = TestClient(create_app(demo_nlp, hosts=["127.0.0.1", "demo.lan"]))
    assert client.get("/", headers={"host": "demo.lan:8000"}).status_code == 200
    assert client.get("/", headers={"host": "localhost"}).status_code == 400
