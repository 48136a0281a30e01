"""The GGUF export's errors, which need no llama.cpp build: what has no weights, a wrong weight
type, a converter that is not there; and llama-server's absence named with how to build it."""
import pytest
import spacy

from spacy_uniner.llama_cpp import LlamaServer, export_gguf


def test_a_served_pipeline_has_no_weights_to_export(tmp_path):
    nlp = spacy.blank("en")
    nlp.add_pipe("uniner", config={"model": {"@uniner_models": "spacy_uniner.CompletionsServer.v1", "url": "http://127.0.0.1:9/v1", "name": "student"}, "labels": ["person"]})
    nlp.to_disk(tmp_path / "served")
    with pytest.raises(ValueError, match=r"asks the server at http://127.0.0.1:9/v1: it holds no weights; give the pipeline"):
        export_gguf(tmp_path / "served", tmp_path / "out.gguf")


def test_what_is_not_a_student_pipeline_is_named(tmp_path):
    (tmp_path / "not-a-pipeline").mkdir()
    with pytest.raises(ValueError, match="is not a spaCy pipeline folder"):
        export_gguf(tmp_path / "not-a-pipeline", tmp_path / "out.gguf")
    with pytest.raises(ValueError, match="is inside the pipeline"):  # the export never writes into its input
        export_gguf(tmp_path, tmp_path / "out.gguf")
    spacy.blank("en").to_disk(tmp_path / "blank")
    with pytest.raises(ValueError, match="has no uniner component"):
        export_gguf(tmp_path / "blank", tmp_path / "out.gguf")
    with pytest.raises(ValueError, match="outtype must be one of f32, f16, bf16, q8_0"):
        export_gguf(tmp_path / "blank", tmp_path / "out.gguf", "q4_k")


def test_a_missing_converter_or_server_says_how_to_build_it(tiny_llama_path, tmp_path, monkeypatch):
    nlp = spacy.blank("en")
    nlp.add_pipe("uniner", config={"model": str(tiny_llama_path), "labels": ["person"]})
    nlp.to_disk(tmp_path / "pipeline")
    monkeypatch.setenv("LLAMA_CPP_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=r"converter is not at .*nowhere/convert_hf_to_gguf.py: run `make engines`"):
        export_gguf(tmp_path / "pipeline", tmp_path / "out.gguf")
    monkeypatch.setenv("LLAMA_SERVER", str(tmp_path / "no-llama-server"))
    with pytest.raises(FileNotFoundError, match=r"llama-server is not installed at .*no-llama-server: run `make engines`"):
        LlamaServer(tmp_path / "out.gguf")
