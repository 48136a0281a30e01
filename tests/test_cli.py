import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
import spacy
import srsly
import typer
from typer.testing import CliRunner

from spacy_uniner import options
from spacy_uniner.cli import app

ROOT = Path(__file__).parent.parent


def test_visualize_writes_displacy_html_for_a_saved_pipeline(tiny_llama_path, tmp_path):
    nlp = spacy.blank("en")
    nlp.add_pipe("uniner", config={"model": {"name": str(tiny_llama_path), "max_new_tokens": 4}, "labels": ["person"]})
    nlp.to_disk(tmp_path / "pipeline")
    srsly.write_jsonl(tmp_path / "texts.jsonl", [{"text": "Ada Lovelace wrote notes."}, {"text": "Paris."}])
    result = CliRunner().invoke(
        app, ["visualize", str(tmp_path / "pipeline"), str(tmp_path / "texts.jsonl"), str(tmp_path / "out" / "view.html")]
    )
    assert result.exit_code == 0, result.output
    assert "'queries': 2" in result.output
    assert "Ada Lovelace wrote notes." in (tmp_path / "out" / "view.html").read_text()


def test_the_command_line_loads_each_stage_only_when_its_command_runs():
    # A fresh process, as a user's `spacy-uniner --help` or mistyped option is: what the options
    # need loads, the trainer, the student's generation and the charts do not.
    code = (
        "import sys\n"
        "import spacy_uniner.cli\n"
        "print(sorted(name for name in ('transformers.modeling_utils', 'peft', 'matplotlib', 'spacy_uniner.train', 'spacy_uniner.adapt', 'spacy_uniner.generation', 'spacy_uniner.evaluate.run') if name in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_help_lists_the_commands():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("visualize", "pile-ner-records", "passages", "distill", "build-data", "train", "adapt", "gold-split", "average", "evaluate", "benchmark"):
        assert command in result.output


@pytest.mark.parametrize(
    "command,options",
    [
        ("passages", ["--max-words"]),
        ("distill", ["--config", "--teacher", "--report", "--passages-per-batch"]),
        ("build-data", ["--negative-rate", "--min-type-count", "--dataset", "--seed", "--report"]),
        ("train", ["--config", "--pipeline-config", "--checkpoints", "--log", "--report"]),
        ("adapt", ["--dataset", "--spans-key", "--label-names", "--distilled", "--distilled-share", "--negatives", "--checkpoints", "--report"]),
        ("gold-split", ["--train", "--eval", "--seed", "--mirror"]),
        ("evaluate", ["--datasets", "--domains", "--mirror", "--limit", "--seed", "--training-data", "--baselines", "--thresholds", "--dtype"]),
        ("benchmark", ["--label-counts", "--docs", "--passage-tokens", "--batch-size", "--max-new-tokens", "--device", "--more-docs", "--constrained"]),
    ],
)
def test_every_option_has_help(command, options):
    result = CliRunner().invoke(app, [command, "--help"], terminal_width=200)
    assert result.exit_code == 0
    for option in options:
        line = next(line for line in result.output.splitlines() if line.strip(" │").startswith(option))
        assert len(line.split(option, 1)[1].strip(" │")) > 20, line


def test_the_workflow_commands_chain(tmp_path, monkeypatch, tiny_llama_path):
    """pile-ner-records -> passages -> distill (recorded teacher) -> build-data -> train, as project.yml
    runs them."""
    monkeypatch.chdir(tmp_path)
    text = "Kobe is in Japan."
    srsly.write_jsonl("sample.jsonl", [
        {"doc_question_pairID": "1:0", "tagName": "city", "input": text, "instruction": "", "output": '["Kobe"]'},
        {"doc_question_pairID": "1:1", "tagName": "disease", "input": text, "instruction": "", "output": "[]"},
    ])
    runner = CliRunner()
    steps = [
        ["pile-ner-records", "sample.jsonl", "corpus/recorded_teacher.jsonl"],
        ["passages", "corpus/recorded_teacher.jsonl", "corpus/passages.jsonl"],
        ["distill", "corpus/passages.jsonl", "corpus/annotations.spacy", "--config", str(ROOT / "configs/distill.cfg"),
         "--teacher", str(ROOT / "configs/teachers/recorded.cfg"), "--report", "metrics/distill.json"],
        ["build-data", "corpus/annotations.spacy", "corpus/conversations.json", "--negative-rate", "0"],
        ["train", "corpus/conversations.json", "training/uniner", "--config", str(ROOT / "configs/train.cfg"),
         "--pipeline-config", str(ROOT / "configs/uniner.cfg"), "--checkpoints", "training/checkpoints",
         "--log", "metrics/train_log.jsonl", "--report", "metrics/train.json", "--model.base", str(tiny_llama_path),
         "--training.epochs", "2", "--training.batch_size", "1", "--training.gradient_accumulation", "1", "--training.checkpoint_every", "1",
         "--components.uniner.labels", '["city"]', "--components.uniner.model.max_new_tokens", "4"],
    ]
    for step in steps:
        result = runner.invoke(app, step)
        assert result.exit_code == 0, (step, result.output, result.exception)
    assert srsly.read_json("metrics/distill.json")["mentions"] == 1
    (conversation,) = srsly.read_json("corpus/conversations.json")
    values = [turn["value"] for turn in conversation["conversations"]]
    assert {values[2]: values[3], values[4]: values[5]} == {
        "What describes city in the text?": json.dumps(["Kobe"]),
        "What describes disease in the text?": "[]",
    }
    assert srsly.read_json("metrics/train.json")["steps"] == 2 and len(Path("metrics/train_log.jsonl").read_text().splitlines()) == 2
    assert not list(Path("training/checkpoints").glob("step-*"))  # a finished run leaves no resume points
    nlp = spacy.load("training/uniner")
    assert nlp.get_pipe("uniner").labels == ["city"] and (Path("training/uniner/uniner/model/model.safetensors")).exists()


def test_the_project_file_is_valid_and_its_workflows_name_its_commands():
    from weasel.util import load_project_config

    config = load_project_config(ROOT)  # exits on schema errors and on a workflow named like a command
    commands = {command["name"] for command in config["commands"]}
    assert config["workflows"]["all"][-5:] == ["train", "evaluate", "benchmark", "package", "visualize"]
    assert all(step in commands for steps in config["workflows"].values() for step in steps)


def registered_commands():
    group = typer.main.get_command(app)
    return sorted(group.commands.items())


@pytest.mark.parametrize("name,command", registered_commands(), ids=[name for name, _ in registered_commands()])
def test_every_registered_command_renders_its_help_names_its_arguments_and_refuses_bad_values(name, command):
    """Every command, as the CLI registers it: its help renders with every parameter described, a
    call without its required arguments names the first one missing, and a value of the wrong type is
    a usage error (exit code 2), not a traceback."""
    runner = CliRunner()
    result = runner.invoke(app, [name, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for param in command.params:
        assert getattr(param, "help", None), f"{name}: {param.name} has no help"
    required = [param for param in command.params if isinstance(param, click.Argument) and param.required]
    if required:
        result = runner.invoke(app, [name])
        assert result.exit_code == 2 and "Missing argument" in result.output and required[0].human_readable_name in result.output
    numeric = next((param for param in command.params if isinstance(param, click.Option) and isinstance(param.type, (click.types.IntParamType, click.types.FloatParamType))), None)
    if numeric is not None:
        result = runner.invoke(app, [name, *["no-such-file"] * len(required), numeric.opts[0], "not-a-number"])
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    # Lists are comma-separated and parsed by one parser: a bad item is a usage error naming the option.
    validated = (options.counts, options.fractions, options.precisions, options.precision, options.name_counts)
    listed = next((param for param in command.params if isinstance(param, click.Option) and getattr(param.type, "func", None) in validated), None)
    if listed is not None:
        result = runner.invoke(app, [name, *["no-such-file"] * len(required), listed.opts[0], "1,-2,x"], terminal_width=200)
        assert result.exit_code == 2 and listed.opts[0] in result.output and "Traceback" not in result.output, result.output


def test_a_list_option_reads_comma_separated_items_once_for_every_command():
    assert options.counts("4, 16,64") == [4, 16, 64] and options.fractions("0,0.15") == [0.0, 0.15]
    assert options.precisions("auto,float32") == ["auto", "float32"] and options.names("a,,b") == ["a", "b"]
    assert options.name_counts("def=2, gliner = 3,pile=0") == [("def", 2), ("gliner", 3), ("pile", 0)]
    for parse, value in ((options.counts, "4,0"), (options.counts, "4.5"), (options.fractions, "1.5"), (options.precisions, "float64"), (options.names, " , "), (options.name_counts, "def"), (options.name_counts, "=2"), (options.name_counts, "def=-1")):
        with pytest.raises(typer.BadParameter):
            parse(value)


def test_pile_ner_records_refuses_to_overwrite_a_source_left_as_the_output(tmp_path):
    """The output is the last path: with it forgotten, the last source would be overwritten."""
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    for path in (first, second):
        srsly.write_jsonl(path, [{"doc_question_pairID": "1:0", "tagName": "city", "input": "Kobe.", "instruction": "", "output": '["Kobe"]'}])
    before = second.read_text()
    result = CliRunner().invoke(app, ["pile-ner-records", str(first), str(second)])
    assert result.exit_code == 2 and "not a recorded-response file" in result.output
    assert second.read_text() == before
    for first_line in ('"a response"\n', "\xff\xfe not UTF-8\n"):  # JSON that is no record; bytes that are no text
        other = tmp_path / "other.jsonl"
        other.write_bytes(first_line.encode("latin-1"))
        result = CliRunner().invoke(app, ["pile-ner-records", str(first), str(other)])
        assert result.exit_code == 2 and "not a recorded-response file" in result.output
        assert other.read_bytes() == first_line.encode("latin-1")
    result = CliRunner().invoke(app, ["pile-ner-records", str(first), str(second), str(tmp_path / "records.jsonl")])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(app, ["pile-ner-records", str(first), str(tmp_path / "records.jsonl")])  # a rerun may overwrite its own output
    assert result.exit_code == 0, result.output
