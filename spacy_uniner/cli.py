"""The `spacy-uniner` command line: thin typer wrappers over the package's functions.

Pipelines are assembled with spaCy's own `spacy assemble configs/uniner.cfg OUTPUT`."""
from pathlib import Path
from typing import List

import spacy
import srsly
import typer
from spacy import displacy

app = typer.Typer(help="Open-type NER for spaCy with UniversalNER-style LLMs.", no_args_is_help=True)


@app.callback()
def main() -> None:
    """Open-type NER for spaCy with UniversalNER-style LLMs."""


def read_texts(path: Path) -> List[str]:
    """Texts from a .jsonl file of {"text": ...} records, or from a text file, one per line."""
    if path.suffix == ".jsonl":
        return [record["text"] for record in srsly.read_jsonl(path)]
    return [line for line in path.read_text(encoding="utf8").splitlines() if line.strip()]


def visualize(pipeline: Path, texts: List[str]) -> List[spacy.tokens.Doc]:
    nlp = spacy.load(pipeline)
    docs = list(nlp.pipe(texts))
    for doc in docs:
        typer.echo(f"{doc.text[:60]!r}: {[(ent.text, ent.label_) for ent in doc.ents]}")
    for name, proc in nlp.pipeline:
        if hasattr(proc, "stats"):
            typer.echo(f"{name} answer stats: {dict(proc.stats)}")
    return docs


@app.command("visualize")
def visualize_cli(
    pipeline: Path = typer.Argument(..., help="A spaCy pipeline folder with a `uniner` component."),
    texts: Path = typer.Argument(..., help='A .jsonl file of {"text": ...} records, or a text file, one text a line.'),
    output: Path = typer.Argument(..., help="The HTML file to write displaCy's entity view to."),
):
    """Run a pipeline over a few texts, print their entities and write displaCy's view as HTML."""
    docs = visualize(pipeline, read_texts(texts))
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(displacy.render(docs, style="ent", page=True), encoding="utf8")
    typer.echo(f"Wrote {output}")
