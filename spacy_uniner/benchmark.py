"""Inference speed: the `uniner` component against the reference implementation's loop (one
`model.generate` per (text, label) query), on the same model, texts and prompts."""
import ctypes
import gc
import platform
import statistics
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Sequence, Tuple, Union

import psutil
import torch
from spacy.language import Language
from transformers import GenerationConfig, StoppingCriteriaList

from .data import normalize_type, question_pairs, read_conversations
from .decoding import SharedPrefixes, token_logprobs
from .distill import read_documents
from .component import uniner_of
from .engine_benchmark import Answers, agreement, timed_answers
from .evaluate.run import recording
from .generation import HFGenerator, prompt_groups
from .precision import Precision, decoder_layers
from .prompts import build_prompt, label_of_question
from .scores import ScoredAnswer
from .stopping import AnswerEnded
from .tokens import encode_texts


def frequent_labels(conversations: Path, count: int) -> List[str]:
    """The `count` entity types the teacher asked about most: real open types to ask about."""
    types = Counter(normalize_type(label_of_question(question)) for _, messages in read_conversations(conversations) for question, _ in question_pairs(messages))
    if len(types) < count:
        raise ValueError(f"{conversations} has {len(types)} entity types; the benchmark asks about up to {count}")
    return [label for label, _ in types.most_common(count)]


def passages(path: Path, tokenizer, count: int, tokens: int) -> List[str]:
    """The first `count` texts (of a .jsonl or .txt file or a folder, as `distill` reads them) that
    have at least `tokens` tokens, each cut after its `tokens`-th token: passages of one length."""
    texts = [document["text"] for document in read_documents(path)]
    cut = []
    for text, offsets in zip(texts, encode_texts(tokenizer, texts)[1]):
        if len(offsets) >= tokens:
            cut.append(text[: offsets[tokens - 1][1]])
        if len(cut) == count:
            return cut
    raise ValueError(f"{path} has {len(cut)} texts of at least {tokens} tokens; the benchmark needs {count}")


def release_freed_memory() -> None:
    """Hand memory that earlier runs freed back to the system (glibc keeps it otherwise), so that
    a run's resident-memory growth is its own."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: growth may then read low
        pass


class PeakMemory:
    """Peak memory above the start, in MiB, of what runs inside: the GPU's allocated memory on CUDA,
    the process's resident memory (sampled every 5 ms) on a CPU."""

    def __init__(self, device: str):
        self.device = device
        self.peak_mib = 0.0

    def __enter__(self) -> "PeakMemory":
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated()
        else:
            release_freed_memory()
            self.process = psutil.Process()
            self.start = self.highest = self.process.memory_info().rss
            self.running = True
            self.sampler = threading.Thread(target=self._sample, daemon=True)
            self.sampler.start()
        return self

    def _sample(self) -> None:
        while self.running:
            self.highest = max(self.highest, self.process.memory_info().rss)
            time.sleep(0.005)

    def __exit__(self, *exc) -> None:
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            self.peak_mib = (torch.cuda.max_memory_allocated() - self.start) / 2**20
        else:
            self.running = False
            self.sampler.join()
            self.peak_mib = (self.highest - self.start) / 2**20


def timed(generator: HFGenerator, device: str, run: Callable[[], Any]) -> Tuple[Any, float, int, float]:
    """What `run` returns, its seconds, the tokens it generated and its peak memory."""
    tokens = generator.generated_tokens
    with PeakMemory(device) as memory:
        started = time.perf_counter()
        result = run()
        seconds = time.perf_counter() - started
    return result, seconds, generator.generated_tokens - tokens, memory.peak_mib


def token_bound(generator: HFGenerator, prompts: Sequence[str], answer_tokens: float) -> float:
    """How much faster sharing can be, by token counts: the naive loop reads every prompt and answer
    in full; sharing reads each text's shared part once, then per label its question and answer."""
    groups = prompt_groups(generator.tokenizer, prompts)
    prompt_tokens = sum(len(prefix) * len(rest) + sum(len(tail) for tail in rest) for prefix, rest, _ in groups)
    shared_tokens = sum(len(prefix) + sum(len(tail) for tail in rest) for prefix, rest, _ in groups)
    answers = answer_tokens * len(prompts)
    return (prompt_tokens + answers) / (shared_tokens + answers)


@torch.inference_mode()
def reference_answers(generator: HFGenerator, prompts: List[str], scored: bool = False) -> Union[List[str], List[ScoredAnswer]]:
    """The reference implementation's loop: one unpadded `model.generate` per prompt, stopping where
    the component's decoding stops. The baseline that `HFGenerator.generate` (and, `scored`,
    `generate_scored`) must match answer for answer. Plain greedy decoding, as the reference's vLLM
    call (temperature 0): a fresh generation config, so no processor from the model's own (a
    repetition penalty, say) applies."""
    model, tokenizer, stop = generator.model, generator.tokenizer, generator.stop
    greedy = GenerationConfig(
        do_sample=False,
        max_new_tokens=generator.max_new_tokens,
        eos_token_id=stop.stop_ids.tolist(),
        pad_token_id=tokenizer.pad_token_id,
        output_logits=scored,
        return_dict_in_generate=True,
    )
    answers = []
    for ids in encode_texts(tokenizer, prompts)[0]:
        input_ids = torch.tensor([ids], device=model.device)
        output = model.generate(input_ids, attention_mask=torch.ones_like(input_ids), generation_config=greedy, stopping_criteria=StoppingCriteriaList([AnswerEnded(stop, len(ids))]))
        answer = output.sequences[0, len(ids) :]
        answer_ids = answer.tolist()
        if scored:
            answers.append(stop.scored(answer_ids, token_logprobs(torch.cat(output.logits), answer).tolist()))
        else:
            answers.append(stop.answer(answer_ids))
        generator.generated_tokens += len(answer_ids)
    return answers


def run_benchmark(nlp: Language, texts: List[str], labels: List[str], label_counts: Sequence[int], more_texts: Sequence[str] = (), repeats: int = 3) -> Iterator[Dict[str, Any]]:
    """For each label count: the component over `texts` (its prompts recorded), then the reference
    loop over exactly those prompts; docs/s, generated tokens/s, peak memory and whether every
    answer is the same. With `more_texts`, also the component's peak memory over those (more docs
    in one `nlp.pipe` batch should not need more memory).

    The component's time is the median of `repeats` runs (each run's seconds are in the record): a
    run takes seconds where the reference loop takes minutes, so one slow moment of a shared machine
    would otherwise set the ratio; the loop's long run averages such moments out."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    uniner = uniner_of(nlp)
    generator: HFGenerator = uniner.generator
    uniner.labels = labels[:1]
    list(nlp.pipe(texts[:1]))  # loads the model and warms it up, outside the timings
    for count in label_counts:
        uniner.labels = labels[:count]
        with recording(uniner) as recorder:
            runs = [timed(generator, generator.device, lambda: list(nlp.pipe(texts))) for _ in range(repeats)]
        seconds, tokens, peak = statistics.median(run[1] for run in runs), runs[0][2], max(run[3] for run in runs)
        prompts = list(recorder.answers)
        naive, naive_seconds, naive_tokens, naive_peak = timed(generator, generator.device, lambda: reference_answers(generator, prompts))
        # The cost of scores: the same prompts through the same batched decoding, without them.
        unscored_seconds = statistics.median(timed(generator, generator.device, lambda: generator.generate(prompts))[1] for _ in range(repeats))
        record = {
            "labels": count,
            "docs": len(texts),
            "queries": len(prompts),
            "naive_docs_per_s": round(len(texts) / naive_seconds, 3),
            "docs_per_s": round(len(texts) / seconds, 3),
            "ratio": round(naive_seconds / seconds, 2),
            "unscored_docs_per_s": round(len(texts) / unscored_seconds, 3),
            "token_bound": round(token_bound(generator, prompts, naive_tokens / len(prompts)), 2),
            "identical": naive == [recorder.answers[prompt].text for prompt in prompts],
            "naive_tokens_per_s": round(naive_tokens / naive_seconds, 1),
            "tokens_per_s": round(tokens / seconds, 1),
            "generated_tokens": tokens,
            "component_seconds": [round(run[1], 3) for run in runs],
            "naive_peak_mib": round(naive_peak, 1),
            "peak_mib": round(peak, 1),
        }
        if more_texts:
            record["more_docs"] = len(more_texts)
            record["more_docs_peak_mib"] = round(timed(generator, generator.device, lambda: list(nlp.pipe(more_texts)))[3], 1)
        yield record


def run_precision_benchmark(load: Callable[[str], Language], dtypes: Sequence[str], texts: List[str], labels: List[str], label_counts: Sequence[int], repeats: int = 3) -> Iterator[Dict[str, Any]]:
    """The component in each precision (`load(dtype)` gives the pipeline) over the same texts and
    labels: docs/s (the median of `repeats` runs), the speed-up over the first precision's and the
    share of (text, label) answers whose mentions are those of the first precision's; then one
    record per precision with its prefix pass's GFLOP/s beside the matmul peak in that precision."""
    reference: Dict[int, Tuple[float, Answers]] = {}
    for dtype in dtypes:
        nlp = load(dtype)
        generator: HFGenerator = uniner_of(nlp).generator
        list(nlp.pipe(texts[:1]))  # loads the model and warms it up, outside the timings
        for count in label_counts:
            seconds, answers = timed_answers(nlp, texts, labels[:count], repeats)
            first_seconds, first_answers = reference.setdefault(count, (seconds, answers))
            yield {
                "dtype": dtype,
                "precision": generator.precision.name,
                "labels": count,
                "docs": len(texts),
                "queries": len(answers),
                "docs_per_s": round(len(texts) / seconds, 3),
                "speedup": round(first_seconds / seconds, 2),
                "identical_share": round(agreement(answers, first_answers), 4),
            }
        yield {"dtype": dtype, "precision": generator.precision.name, "prefix_pass": prefix_pass(generator, texts, labels[0])}


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def matmul_peak_gflops(device: str, precision: Precision = Precision("float32", torch.float32), size: int = 2048, repeats: int = 8) -> float:
    """The machine's measured rate on one large matmul, in GFLOP/s: about the most a forward pass
    in the same precision can reach here (for int8, PyTorch's dynamic int8 Linear, as the blocks run it)."""
    a, b = (torch.randn(size, size, device=device, dtype=precision.weights) for _ in range(2))
    multiply: Callable[[], Any] = lambda: a @ b
    if precision.int8:
        linear = torch.ao.nn.quantized.dynamic.Linear(size, size, dtype=torch.qint8)
        multiply = lambda: linear(a)
    multiply()  # warm-up
    synchronize(device)
    started = time.perf_counter()
    for _ in range(repeats):
        multiply()
    synchronize(device)
    return 2 * size**3 * repeats / (time.perf_counter() - started) / 1e9


@torch.inference_mode()
def prefix_pass(generator: HFGenerator, texts: List[str], label: str) -> Dict[str, Any]:
    """The component's shared pass over the texts' prompt prefixes (one forward, left-padded, as in
    `answer_prompts`): prompt tokens/s, and the GFLOP/s that is (2 per weight of the blocks'
    projections per token; attention left out) beside the measured matmul peak in the model's
    precision."""
    groups = prompt_groups(generator.tokenizer, [build_prompt(text, label) for text in texts])
    prefixes = [prefix for prefix, _, _ in groups]
    model = generator.model
    SharedPrefixes(model, prefixes[:1], generator.tokenizer.pad_token_id)  # warm-up
    synchronize(generator.device)
    started = time.perf_counter()
    SharedPrefixes(model, prefixes, generator.tokenizer.pad_token_id)
    synchronize(generator.device)
    seconds = time.perf_counter() - started
    tokens = sum(len(prefix) for prefix in prefixes)
    # The blocks' projections, float or int8 alike (an int8 Linear holds no Parameter to count).
    weights = sum(module.in_features * module.out_features for module in decoder_layers(model, "the prefix pass counts its blocks").modules() if hasattr(module, "in_features"))
    gflops = 2 * weights * tokens / seconds / 1e9
    peak = matmul_peak_gflops(generator.device, generator.precision)
    return {"prompt_tokens": tokens, "tokens_per_s": round(tokens / seconds, 1), "gflops": round(gflops, 1), "matmul_peak_gflops": round(peak, 1), "share_of_peak": round(gflops / peak, 3)}


def machine(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name()
    return f"{platform.processor() or platform.machine()}, {psutil.cpu_count()} CPU cores, torch {torch.__version__}, {torch.get_num_threads()} threads"


def markdown_table(records: List[Dict[str, Any]]) -> str:
    lines = [
        "| labels | naive docs/s | component docs/s | ratio | token bound | identical | docs/s without scores | naive tokens/s | component tokens/s | naive peak MiB | component peak MiB |",
        "|---" * 11 + "|",
    ]
    more = f" ({records[0]['more_docs']} docs)" if records and "more_docs" in records[0] else ""
    if more:
        lines[0] += f" component peak MiB{more} |"
        lines[1] += "---|"
    for r in records:
        lines.append(
            f"| {r['labels']} | {r['naive_docs_per_s']:.2f} | {r['docs_per_s']:.2f} | {r['ratio']:.1f}x | {r['token_bound']:.1f}x | "
            f"{'yes' if r['identical'] else 'NO'} | {r['unscored_docs_per_s']:.2f} | {r['naive_tokens_per_s']:.0f} | {r['tokens_per_s']:.0f} | {r['naive_peak_mib']:.0f} | {r['peak_mib']:.0f} |"
            + (f" {r['more_docs_peak_mib']:.0f} |" if more else "")
        )
    return "\n".join(lines)


def markdown_rows(columns: Sequence[str], records: List[Dict[str, Any]]) -> str:
    """`records` as a markdown table of `columns`."""
    lines = ["| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]
    lines += ["| " + " | ".join(str(record.get(column, "")) for column in columns) + " |" for record in records]
    return "\n".join(lines)
