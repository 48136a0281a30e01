import spacy
import srsly
from typer.testing import CliRunner

from spacy_uniner.cli import app


def test_visualize_writes_displacy_html_for_a_saved_pipeline(tiny_llama_path, tmp_path):
    nlp = spacy.blank("en")
    nlp.add_pipe("uniner", config={"model": str(tiny_llama_path), "labels": ["person"], "max_new_tokens": 4})
    nlp.to_disk(tmp_path / "pipeline")
    srsly.write_jsonl(tmp_path / "texts.jsonl", [{"text": "Ada Lovelace wrote notes."}, {"text": "Paris."}])
    result = CliRunner().invoke(
        app, ["visualize", str(tmp_path / "pipeline"), str(tmp_path / "texts.jsonl"), str(tmp_path / "out" / "view.html")]
    )
    assert result.exit_code == 0, result.output
    assert "'queries': 2" in result.output
    assert "Ada Lovelace wrote notes." in (tmp_path / "out" / "view.html").read_text()


def test_help_lists_the_commands():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0 and "visualize" in result.output
