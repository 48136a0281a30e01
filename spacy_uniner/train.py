"""Instruction-tune a causal LM on the conversations: the student. Read it top to bottom.

The recipe of the paper's training code (FastChat): the conversation rendered with the one template,
a loss on what the assistant writes and nothing else, AdamW with warmup and a cosine decay. It runs
unchanged on a CPU, on one GPU (bf16) and on several under `accelerate launch` (DDP, or FSDP from
accelerate's config): accelerate owns devices, precision, gradient accumulation and checkpoints.
"""
import contextlib
import hashlib
import itertools
import json
import math
import shutil
import time
from dataclasses import dataclass, fields
from functools import partial
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import srsly
import torch
import torch.nn.functional as F
from accelerate import Accelerator, PartialState
from accelerate.utils import set_seed
from spacy import util
from thinc.api import Config
from torch.utils.data import DataLoader
from tqdm import tqdm
from transformers import PreTrainedTokenizerBase, get_scheduler

from .answers import parse_answer
from .average import RunningMean
from .data import question_pairs, read_conversations
from .errors import UserError
from .examples import IGNORE, collate, epochs_of_examples, hold_out, joined_epochs, padding_share
from .files import atomic_folder, check_output_files, check_output_folder, path_from, write_json, write_jsonl
from .loading import load_causal_lm
from .memory import peak_resident_gb, release_freed_memory, step_peak_gb, trim_heap
from .precision import decoder_layers, resolve_precision, training_mixed_precision
from .prompts import render_conversation
from .upgrade import read_config

BLOCKS_REMEDY = "set [training] freeze_layers = 0 and compile = false"  # for a model whose blocks are not found


@dataclass
class TrainSettings:
    """The [training] section of configs/train.cfg (see there for what each setting does)."""

    epochs: int = 3
    min_steps: int = 0
    learning_rate: float = 2e-5
    weight_decay: float = 0.0
    warmup_ratio: float = 0.04
    lr_scheduler: str = "cosine"
    batch_size: int = 2
    gradient_accumulation: int = 16
    max_length: int = 1024
    max_batch_tokens: int = 0
    max_grad_norm: float = 1.0
    mixed_precision: str = "auto"
    gradient_checkpointing: bool = False
    freeze_embeddings: bool = False
    freeze_layers: int = 0
    compile: bool = False
    average_last: float = 0.0
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    held_out: int = 0
    seed: int = 0

    def __post_init__(self):
        for setting in fields(self):
            value = getattr(self, setting.name)
            # A float setting takes an int (1 for 1.0); no setting but a bool takes true/false.
            wanted = (int, float) if setting.type is float else setting.type
            if not isinstance(value, wanted) or (isinstance(value, bool) and setting.type is not bool):
                raise UserError(f"[training] {setting.name} must be {setting.type.__name__}, got {value!r}")
        for names, least in ((("epochs", "batch_size", "gradient_accumulation", "max_length", "checkpoint_every", "keep_checkpoints"), 1), (("min_steps", "max_batch_tokens", "held_out", "freeze_layers"), 0)):
            for name in names:
                if getattr(self, name) < least:
                    raise UserError(f"[training] {name} must be >= {least}, got {getattr(self, name)}")
        if self.learning_rate <= 0 or not 0 <= self.warmup_ratio < 1:
            raise UserError(f"[training] needs learning_rate > 0 and 0 <= warmup_ratio < 1, got {self.learning_rate} and {self.warmup_ratio}")
        if not 0 <= self.average_last <= 1:
            raise UserError(f"[training] average_last must be a share of the steps in [0, 1], got {self.average_last}")
        if self.mixed_precision not in ("auto", "no", "bf16", "fp16"):
            raise UserError(f"[training] mixed_precision must be auto, no, bf16 or fp16, got {self.mixed_precision!r}")


def load_train_config(path: Path, overrides: Optional[Dict[str, Any]] = None) -> Config:
    """configs/train.cfg with spaCy-style overrides ({"training.epochs": 1, ...})."""
    config = util.load_config(path, overrides=overrides or {}, interpolate=True)
    unknown = set(config) - {"model", "training", "lora"}
    if unknown:
        raise UserError(f"{path}: unknown sections {sorted(unknown)}; expected [model], [training] and [lora]")
    base = config["model"].get("base")
    if not isinstance(base, str) or not base.strip():
        raise UserError(f"{path}: [model] base must name the base model, a hub id or a local folder (--model.base), got {base!r}")
    try:
        TrainSettings(**config["training"])
    except TypeError as err:
        raise UserError(f"{path}: [training] {err}; known settings: {[f.name for f in fields(TrainSettings)]}") from err
    return config


# ----------------------------------------------------------------------------------------------
# The loss


def answer_loss(model: torch.nn.Module, output_layer: torch.nn.Module, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean cross entropy over the supervised tokens.

    The vocabulary projection runs only where a supervised token is predicted: answers are about a
    tenth of the tokens and, in a small model, the projection is half the compute. A hook on the
    output layer selects those positions, so this works for any causal LM in transformers.
    """
    targets = batch["labels"][:, 1:]
    keep = targets != IGNORE
    predicting = torch.nn.functional.pad(keep, (0, 1), value=False)  # position t predicts token t+1
    hook = output_layer.register_forward_pre_hook(lambda _, args: (args[0][predicting],) + args[1:])
    try:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
    finally:
        hook.remove()
    return F.cross_entropy(logits.float(), targets[keep])


def pieces(batch: Dict[str, torch.Tensor], max_tokens: int) -> List[Dict[str, torch.Tensor]]:
    """The batch (right-padded) as consecutive pieces of its rows of at most `max_tokens` padded
    tokens each (a row alone where one is longer), each cut to its own longest row; the whole
    batch when it fits or `max_tokens` is 0."""
    rows, width = batch["input_ids"].shape
    if not max_tokens or rows * width <= max_tokens:
        return [batch]
    per_piece = max(1, max_tokens // width)
    parts = []
    for start in range(0, rows, per_piece):
        part = {key: value[start : start + per_piece] for key, value in batch.items()}
        length = int(part["attention_mask"].sum(1).max())
        parts.append({key: value[:, :length] for key, value in part.items()})
    return parts


def backward_in_pieces(accelerator: Accelerator, model: torch.nn.Module, output_layer: torch.nn.Module, batch: Dict[str, torch.Tensor], max_tokens: int) -> torch.Tensor:
    """The batch's loss, its gradient accumulated into the parameters. A batch of more than
    `max_tokens` padded tokens runs in pieces, one piece's activations alive at a time: each
    piece's mean loss is weighted by its share of the supervised tokens, so the gradients sum to
    the whole batch's."""
    parts = pieces(batch, max_tokens)
    supervised = [int((part["labels"][:, 1:] != IGNORE).sum()) for part in parts]  # every row has some: the read reply
    losses = []
    for number, (part, count) in enumerate(zip(parts, supervised), 1):
        # Gradients are synchronized across processes once, with the last piece.
        with contextlib.nullcontext() if number == len(parts) else accelerator.no_sync(model):
            loss = answer_loss(model, output_layer, part) * (count / sum(supervised))
            accelerator.backward(loss)
        losses.append(loss.detach())
    return torch.stack(losses).sum()


# ----------------------------------------------------------------------------------------------
# Checkpoints


def fingerprint(config: Config, data: Path) -> str:
    """What a checkpoint must match to be resumed: the data and every setting that changes the run."""
    training = {k: v for k, v in config["training"].items() if k not in ("checkpoint_every", "keep_checkpoints")}
    settings = json.dumps([config["model"], training, config["lora"]], sort_keys=True, default=str)
    return hashlib.sha1(settings.encode() + Path(data).read_bytes()).hexdigest()


def last_checkpoint(folder: Path) -> Optional[Path]:
    done = sorted(path for path in folder.glob("step-*") if (path / "state.json").exists() and not path.name.endswith(".partial"))
    return done[-1] if done else None


def save_checkpoint(accelerator: Accelerator, folder: Path, state: Dict[str, Any], keep: int) -> None:
    """accelerate's state (model, optimizer, scheduler, RNGs) plus ours, written under a temporary
    name and renamed when complete, so a kill while saving never leaves a checkpoint half-written."""
    path = folder / f"step-{state['step']:07d}"
    partial_path = path.with_name(path.name + ".partial")
    accelerator.save_state(str(partial_path))
    if accelerator.is_main_process:
        srsly.write_json(partial_path / "state.json", state)
        partial_path.rename(path)
        for old in sorted(p for p in folder.glob("step-*") if not p.name.endswith(".partial"))[:-keep]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()


# ----------------------------------------------------------------------------------------------
# The run


def load_base_model(model_config: Dict[str, Any], lora_config: Dict[str, Any], device: str):
    kwargs = dict(model_config.get("kwargs", {}), trust_remote_code=model_config.get("trust_remote_code", False))
    lora = dict(lora_config)
    use_lora = lora.pop("enabled", False)
    # Full fine-tuning keeps fp32 master weights (accelerate autocasts); frozen LoRA bases can
    # sit in bf16 on a GPU, which is what makes a 7B base fit one.
    dtype = model_config.get("dtype", "auto")
    # No flags: "auto" on a CPU is float32 for training, whatever the component would decode in there.
    precision = resolve_precision(dtype, device, flags=frozenset())
    if precision.alters_model:
        raise UserError(f"[model] dtype {precision.name} is for inference (the component's dtype): training needs one float dtype")
    kwargs["dtype"] = precision.weights if (use_lora or dtype != "auto") else torch.float32
    source = model_config["base"]
    model, tokenizer = load_causal_lm(source, f"the base model {source!r} ([model] base)", **kwargs)
    if use_lora:
        try:
            from peft import LoraConfig, get_peft_model
        except ImportError as err:
            raise ImportError("[lora] enabled = true needs peft: pip install 'spacy-uniner[lora]'") from err
        model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", **lora))
    return model, tokenizer, use_lora


def freeze_lower(model: torch.nn.Module, embeddings: bool, layers: int) -> None:
    """Keep the input embeddings and the lowest `layers` blocks as they are. With both frozen,
    nothing below the lowest trained block needs a backward pass, which is where the time goes. A
    tied output layer is the embedding matrix, so it stays frozen with it."""
    if embeddings:
        model.get_input_embeddings().requires_grad_(False)
    blocks = decoder_layers(model, BLOCKS_REMEDY) if layers else []
    if layers > len(blocks):
        raise UserError(f"[training] freeze_layers = {layers}, but the base has {len(blocks)} blocks")
    for block in list(blocks)[:layers]:
        block.requires_grad_(False)


def compile_blocks(model: torch.nn.Module, device: str) -> None:
    """torch.compile each transformer block in place (regional compilation): the blocks share one
    compiled graph, so compiling costs about a minute where the whole model would take several, and
    the state dict keeps its names for checkpoints and save_pretrained. Dynamic shapes: batches
    differ in length, and a graph per length would be compiled again and again. Attention stays the
    model's own (SDPA for transformers' Llamas): its CPU kernel keeps no attention matrix for the
    backward pass, which eager attention's softmax would hold in every block (docs/training.md)."""
    if device == "cpu" and not any(shutil.which(compiler) for compiler in ("g++", "c++", "clang++")):
        raise UserError("[training] compile = true needs a C++ compiler on a CPU (torch.compile's inductor builds C++ kernels): install g++, or set compile = false")
    for block in decoder_layers(model, BLOCKS_REMEDY):
        block.compile(dynamic=True)


def prepare_model(model: torch.nn.Module, settings: TrainSettings, use_lora: bool, device: str) -> List[torch.nn.Parameter]:
    """Freezing, compiling and gradient checkpointing as `settings` ask; the parameters to train."""
    if settings.freeze_embeddings or settings.freeze_layers:
        if use_lora:
            raise UserError("[training] freeze_embeddings and freeze_layers are for full fine-tuning; LoRA already trains only its adapters")
        freeze_lower(model, settings.freeze_embeddings, settings.freeze_layers)
    if settings.compile:
        compile_blocks(model, device)
    if settings.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        if use_lora:
            model.enable_input_require_grads()
    return [p for p in model.parameters() if p.requires_grad]


def resume(accelerator: Accelerator, checkpoints: Path, run_id: str, total_steps: int) -> Tuple[int, List[Dict[str, Any]]]:
    """The step and log of the last complete checkpoint of this same run, its state loaded; (0, [])
    without one. Checkpoints a killed save left half-written are removed."""
    checkpoints.mkdir(parents=True, exist_ok=True)
    for stale in checkpoints.glob("step-*.partial"):
        shutil.rmtree(stale, ignore_errors=True)
    resume_from = last_checkpoint(checkpoints)
    if resume_from is None:
        return 0, []
    state = srsly.read_json(resume_from / "state.json")
    if state["run"] != run_id:
        raise UserError(f"{checkpoints} holds checkpoints of another run (other data or settings). Delete it, or give another checkpoint folder, to train from the start.")
    accelerator.load_state(str(resume_from))
    accelerator.print(f"Resuming from {resume_from} (step {state['step']} of {total_steps})")
    return state["step"], state["log"]


def save_student(accelerator: Accelerator, model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, use_lora: bool, averaging: Optional[RunningMean], student_dir: Path) -> None:
    """The student (its running mean when averaging; LoRA merged into the weights) as a plain
    transformers model."""
    accelerator.wait_for_everyone()
    if averaging is not None:
        averaging.copy_to()
    student = accelerator.unwrap_model(model)
    if use_lora:  # whole weights on each process (one device or DDP)
        student, state_dict = student.merge_and_unload(), None
    else:
        state_dict = accelerator.get_state_dict(model)  # gathers FSDP shards
    if accelerator.is_main_process:
        student.save_pretrained(student_dir, state_dict=state_dict, safe_serialization=True)
        tokenizer.save_pretrained(student_dir)
    accelerator.wait_for_everyone()


def optimization(accelerator: Accelerator, model: torch.nn.Module, trainable: List[torch.nn.Parameter], loader: DataLoader, settings: TrainSettings):
    """AdamW over `trainable` and the learning-rate schedule, prepared by accelerate with the model
    and the loader; and the number of optimizer steps."""
    optimizer = torch.optim.AdamW(trainable, lr=settings.learning_rate, weight_decay=settings.weight_decay)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    total_steps = math.ceil(len(loader) / settings.gradient_accumulation)
    # accelerate steps a prepared scheduler once per process per optimizer step.
    scheduler = get_scheduler(
        settings.lr_scheduler,
        optimizer,
        num_warmup_steps=round(settings.warmup_ratio * total_steps) * accelerator.num_processes,
        num_training_steps=total_steps * accelerator.num_processes,
    )
    return model, optimizer, loader, accelerator.prepare(scheduler), total_steps


def training_accelerator(settings: TrainSettings) -> Accelerator:
    """accelerate for the run, its seed set, its mixed precision by `training_mixed_precision`."""
    mixed_precision = training_mixed_precision(settings.mixed_precision)
    accelerator = Accelerator(gradient_accumulation_steps=settings.gradient_accumulation, mixed_precision=mixed_precision)
    set_seed(settings.seed)
    return accelerator


def append_line(path: Path, entry: Dict[str, Any]) -> None:
    with Path(path).open("a", encoding="utf8") as file:
        file.write(json.dumps(entry) + "\n")


def passes(settings: TrainSettings, batches_an_epoch: int, processes: int) -> int:
    """`epochs`, or more where that many would make fewer than `min_steps` optimizer steps: data as
    small as a user's 25 gold sentences is passed over more often, not learned in a few steps."""
    steps_an_epoch = batches_an_epoch / (settings.gradient_accumulation * processes)
    return max(settings.epochs, math.ceil(settings.min_steps / steps_an_epoch))


def training_batches(tokenizer: PreTrainedTokenizerBase, train_set: List[Tuple[str, List[str]]], settings: TrainSettings, positions: Optional[int], processes: int) -> Tuple[DataLoader, List[List[int]], Dict[str, Any]]:
    """Every epoch's examples (long conversations split at max_length, capped at the base's
    `positions`) in length batches, as a loader; the batches, and the data's report (with the
    number of epochs, more than `epochs` where `min_steps` asks for more)."""
    max_length = min(settings.max_length, positions or settings.max_length)
    each_epoch = epochs_of_examples(tokenizer, train_set, max_length, settings.batch_size, settings.seed)
    first = next(each_epoch)
    epochs = passes(settings, len(first[1]), processes)
    examples, batches = joined_epochs([first, *itertools.islice(each_epoch, epochs - 1)])
    report = first[2]
    report.update(epochs=epochs, max_length=max_length, padding_share=round(padding_share([len(ids) for ids, _ in examples], batches), 4))
    return DataLoader(examples, batch_sampler=batches, collate_fn=partial(collate, pad_id=tokenizer.pad_token_id)), batches, report


def log_entry(accelerator: Accelerator, step: int, epoch: float, losses: List[torch.Tensor], lr: float, tokens: int, started: float) -> Dict[str, Any]:
    """One optimizer step's log line: the mean loss of its batches and tokens/s since the start, over every process."""
    all_tokens = int(accelerator.reduce(torch.tensor(tokens, device=accelerator.device), "sum"))
    loss = float(accelerator.reduce(torch.stack(losses).mean(), "mean"))
    return {"step": step, "epoch": round(epoch, 3), "loss": round(loss, 4), "lr": lr, "tokens_per_s": round(all_tokens / (time.perf_counter() - started), 1)}


def train(
    conversations_path: Path,
    student_dir: Path,
    config: Config,
    checkpoints: Path,
    log_path: Optional[Path] = None,
) -> Dict[str, Any]:
    """Train the student on `conversations_path` and save it (merged, safetensors) to `student_dir`.
    Resumes from the last checkpoint in `checkpoints` when there is one for the same data and
    settings. Returns the report (also the held-back conversations, for a look at the answers)."""
    settings = TrainSettings(**config["training"])
    conversations = read_conversations(conversations_path)
    run_id = fingerprint(config, conversations_path)
    accelerator = training_accelerator(settings)

    # Data: hold some passages back, split the long ones, batch by length.
    train_set, held_out = hold_out(conversations, settings.held_out, settings.seed)
    if not train_set:
        raise UserError(f"{conversations_path}: all {len(conversations)} conversations are held out ([training] held_out = {settings.held_out})")
    model, tokenizer, use_lora = load_base_model(config["model"], config["lora"], accelerator.device.type)
    loader, batches, report = training_batches(tokenizer, train_set, settings, getattr(model.config, "max_position_embeddings", None), accelerator.num_processes)
    report["held_out"] = len(held_out)

    trainable = prepare_model(model, settings, use_lora, accelerator.device.type)
    model, optimizer, loader, scheduler, total_steps = optimization(accelerator, model, trainable, loader, settings)
    # The student saved is the mean of its weights over the last steps (average_last of them), when asked.
    averaging = RunningMean(trainable) if settings.average_last else None
    if averaging is not None:
        accelerator.register_for_checkpointing(averaging)
    average_from = total_steps - max(1, round(settings.average_last * total_steps)) + 1
    output_layer = accelerator.unwrap_model(model).get_output_embeddings()

    step, log = resume(accelerator, checkpoints, run_id, total_steps)
    report["resumed_from_step"] = step
    if log_path is not None and accelerator.is_main_process:
        # The log as of the checkpoint: steps a killed run did after it are done again.
        write_jsonl(log_path, log)
    batches_done = step * settings.gradient_accumulation
    remaining = accelerator.skip_first_batches(loader, batches_done) if batches_done else loader

    # The loop.
    model.train()
    started, tokens, losses = time.perf_counter(), 0, []
    progress = tqdm(total=total_steps, initial=step, desc="train", unit="step", disable=not accelerator.is_local_main_process)
    for batch in remaining:
        with accelerator.accumulate(model):
            loss = backward_in_pieces(accelerator, model, output_layer, batch, settings.max_batch_tokens)
            if accelerator.sync_gradients:
                accelerator.clip_grad_norm_(trainable, settings.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
        losses.append(loss)
        tokens += int(batch["attention_mask"].sum())
        if not accelerator.sync_gradients:
            continue
        trim_heap()  # else freed activations of other shapes pile up in the heap (`memory`)
        step += 1
        if averaging is not None and step >= average_from:
            averaging.update()
        epoch = step * settings.gradient_accumulation * accelerator.num_processes * report["epochs"] / len(batches)
        entry = log_entry(accelerator, step, epoch, losses, scheduler.get_last_lr()[0], tokens, started)
        peak = step_peak_gb()
        if peak is not None:
            entry["peak_gb"] = peak  # this process's, since the step before (docs/training.md#memory)
        log.append(entry)
        losses = []
        progress.update(1)
        progress.set_postfix(loss=entry["loss"], lr=f"{entry['lr']:.2e}", tok_s=entry["tokens_per_s"])
        if log_path is not None and accelerator.is_main_process:
            append_line(log_path, entry)
        if step % settings.checkpoint_every == 0 and step < total_steps:
            save_checkpoint(accelerator, checkpoints, {"run": run_id, "step": step, "log": log}, settings.keep_checkpoints)
    progress.close()
    seconds = time.perf_counter() - started

    save_student(accelerator, model, tokenizer, use_lora, averaging, student_dir)
    report.update(steps=step, seconds_this_run=round(seconds, 1), tokens_per_s=log[-1]["tokens_per_s"] if log else None)
    report.update(first_loss=log[0]["loss"] if log else None, last_loss=log[-1]["loss"] if log else None, lora=use_lora)
    report.update(trained_parameters=sum(p.numel() for p in trainable), averaged_steps=averaging.count if averaging is not None else 0)
    report.update(peak_resident_gb=peak_resident_gb(), mixed_precision=accelerator.mixed_precision, processes=accelerator.num_processes)
    return {"report": report, "held_out": held_out, "log": log}


def held_out_answers(generate, held_out: List[Tuple[str, List[str]]]) -> List[Dict[str, Any]]:
    """The student's answer to every question of the held-back conversations, asked the way the
    component asks it (one question per prompt), beside the teacher's. `exact`: the same strings,
    ignoring order and case (an uncased base answers in lower case)."""
    queries = [(conversation_id, messages[:2], question, answer) for conversation_id, messages in held_out for question, answer in question_pairs(messages)]
    answers = generate([render_conversation(head + [question, None]) for _, head, question, _ in queries])
    results = []
    for (conversation_id, head, question, gold), answer in zip(queries, answers):
        same = sorted(s.lower() for s in parse_answer(answer).strings) == sorted(s.lower() for s in json.loads(gold))
        results.append({"id": conversation_id, "question": question, "teacher": gold, "student": answer, "exact": same})
    return results


def checkpoints_beside(output: Path) -> Path:
    """Where a run keeps its checkpoints unless told: OUTPUT-checkpoints, beside the pipeline it
    writes, wherever the command runs from."""
    return Path(output).with_name(Path(output).name + "-checkpoints")


def run_training(
    conversations: Path,
    output: Path,
    config_path: Path,
    pipeline_config: Path,
    checkpoints: Optional[Path] = None,
    overrides: Optional[Dict[str, Any]] = None,
    log_path: Optional[Path] = None,
    report_path: Optional[Path] = None,
    distilled: Optional[Path] = None,
) -> Dict[str, Any]:
    """Train, then write the spaCy pipeline (`pipeline_config` around the student) to `output`.
    Overrides of [nlp] and [components] go to the pipeline config, the rest to the training config.
    `checkpoints` defaults to the folder beside `output` (see `checkpoints_beside`). `distilled`: the
    distilled conversations the student learned from, named in the pipeline's meta.json
    (meta["uniner"]["distilled"], from the pipeline's folder) for `adapt` to mix in; `train` names its data."""
    checkpoints = Path(checkpoints) if checkpoints is not None else checkpoints_beside(output)
    overrides = dict(overrides or {})
    pipeline_overrides = {key: overrides.pop(key) for key in list(overrides) if key.startswith(("nlp.", "components."))}
    config = load_train_config(config_path, overrides)
    # Before hours of training, not after.
    inputs = {"conversations": conversations, "training config": config_path, "pipeline config": pipeline_config}
    check_output_folder(output, inputs)
    check_output_folder(checkpoints, inputs, replaced=False)
    check_output_files((log_path, report_path), {**inputs, "pipeline": output, "checkpoints": checkpoints})
    student_dir = checkpoints / "student"
    result = train(conversations, student_dir, config, checkpoints, log_path)
    release_freed_memory()  # the trainer's model and optimizer, before the pipeline loads the student
    if not PartialState().is_main_process:
        return result["report"]
    pipeline_overrides["components.uniner.model.name"] = str(student_dir)
    nlp = util.load_model_from_config(read_config(pipeline_config, pipeline_overrides)[0], auto_fill=True)
    if distilled is not None:
        nlp.meta["uniner"] = {"distilled": path_from(output, distilled)}
    with atomic_folder(output) as partial:
        nlp.to_disk(partial)
    for finished in checkpoints.glob("step-*"):  # they were for resuming this run, whose pipeline is on disk
        shutil.rmtree(finished)
    report = dict(result["report"], pipeline=str(output), student=str(student_dir))
    if result["held_out"]:
        answers = held_out_answers(nlp.get_pipe("uniner").generator.generate, result["held_out"])
        report.update(held_out_questions=len(answers), held_out_exact=round(sum(a["exact"] for a in answers) / len(answers), 4), held_out_answers=answers)
    if report_path is not None:
        write_json(report_path, report)
    return report
