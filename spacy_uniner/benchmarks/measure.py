"""What the benchmarks measure with: time and peak memory of a run, the answers a pipeline gives and
how many agree, the machine's matmul peak and the component's prefix pass against it, and tables."""
import platform
import statistics
import threading
import time
from typing import Any, Callable, Dict, List, Sequence, Tuple

import psutil
import torch
from spacy.language import Language

from ..answers import parse_answer
from ..component import uniner_of
from ..decoding import SharedPrefixes
from ..evaluate.run import recording
from ..generation import HFGenerator, prompt_groups
from ..memory import release_freed_memory
from ..precision import Precision, decoder_layers
from ..prompts import build_prompt

# Each prompt's parsed answer: the mention strings.
Answers = Dict[str, List[str]]


def timed_answers(nlp: Language, texts: List[str], labels: List[str], repeats: int) -> Tuple[float, Answers]:
    """Median seconds of `repeats` runs of `nlp.pipe(texts)` asking `labels`, and the parsed answer
    to every prompt (the first run's)."""
    uniner = uniner_of(nlp)
    uniner.labels = labels
    seconds = []
    with recording(uniner) as recorder:
        for _ in range(repeats):
            started = time.perf_counter()
            list(nlp.pipe(texts))
            seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), {prompt: parse_answer(answer.text).strings for prompt, answer in recorder.answers.items()}


# torch.profiler's ops by what they do, first match wins ("aten::add" would also match addmm).
OP_GROUPS = (
    ("matrix products", ("aten::mm", "aten::addmm", "aten::bmm", "quantized::linear")),
    ("attention", ("attention",)),
    ("elementwise", ("aten::mul", "aten::copy_", "aten::add", "aten::silu")),
)


def profiled_ops(nlp: Language, texts: List[str], labels: List[str]) -> Dict[str, float]:
    """Self CPU seconds by op group (OP_GROUPS), and of all ops, in one run of `nlp.pipe(texts)`
    asking `labels` under torch.profiler (which slows the run: compare its groups, not its total
    with unprofiled timings)."""
    uniner_of(nlp).labels = labels
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
        list(nlp.pipe(texts))
    seconds = dict.fromkeys([name for name, _ in OP_GROUPS] + ["all ops"], 0.0)
    for event in profiler.key_averages():
        spent = event.self_cpu_time_total / 1e6
        seconds["all ops"] += spent
        group = next((name for name, keys in OP_GROUPS if any(key in event.key for key in keys)), None)
        if group is not None:
            seconds[group] += spent
    return {name: round(value, 3) for name, value in seconds.items()}


def agreement(answers: Answers, reference: Answers) -> float:
    """The share of the reference's prompts whose parsed answer is the same."""
    return sum(answers.get(prompt) == strings for prompt, strings in reference.items()) / len(reference)


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


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def square_product(device: str, precision: Precision, size: int) -> Callable[[], Any]:
    """One size x size matrix product in `precision` (for int8, PyTorch's dynamic int8 Linear, as
    the blocks run it)."""
    a, b = (torch.randn(size, size, device=device, dtype=precision.weights) for _ in range(2))
    if precision.int8:
        linear = torch.ao.nn.quantized.dynamic.Linear(size, size, dtype=torch.qint8)
        return lambda: linear(a)
    return lambda: a @ b


def seconds_of(device: str, run: Callable[[], Any], repeats: int = 1) -> float:
    synchronize(device)
    started = time.perf_counter()
    for _ in range(repeats):
        run()
    synchronize(device)
    return time.perf_counter() - started


def matmul_peak_gflops(device: str, precision: Precision = Precision("float32", torch.float32), max_size: int = 2048, repeats: int = 8, least_seconds: float = 0.1) -> Tuple[float, int]:
    """The machine's measured rate on one large matmul, in GFLOP/s, and the matrices' size: about the
    most a forward pass in the same precision can reach here. The size doubles from 256 until one
    product takes `least_seconds` (or reaches `max_size`): a precision the CPU runs without its own
    instructions (bf16 without AVX512-BF16, 60 times slower than fp32) is measured in seconds on a
    smaller product, not for minutes on the largest."""
    size = 256
    while True:
        multiply = square_product(device, precision, size)
        multiply()  # warm-up
        if size >= max_size or seconds_of(device, multiply) >= least_seconds:
            break
        size *= 2
    return 2 * size**3 * repeats / seconds_of(device, multiply, repeats) / 1e9, size


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
    seconds = seconds_of(generator.device, lambda: SharedPrefixes(model, prefixes, generator.tokenizer.pad_token_id))
    tokens = sum(len(prefix) for prefix in prefixes)
    # The blocks' projections, float or int8 alike (an int8 Linear holds no Parameter to count).
    weights = sum(module.in_features * module.out_features for module in decoder_layers(model, "the prefix pass counts its blocks").modules() if hasattr(module, "in_features"))
    gflops = 2 * weights * tokens / seconds / 1e9
    peak, size = matmul_peak_gflops(generator.device, generator.precision)
    return {"prompt_tokens": tokens, "tokens_per_s": round(tokens / seconds, 1), "gflops": round(gflops, 1), "matmul_peak_gflops": round(peak, 1), "matmul_size": size, "share_of_peak": round(gflops / peak, 3)}


def machine(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name()
    return f"{platform.processor() or platform.machine()}, {psutil.cpu_count()} CPU cores, torch {torch.__version__}, {torch.get_num_threads()} threads"


def markdown_rows(columns: Sequence[str], records: List[Dict[str, Any]]) -> str:
    """`records` as a markdown table of `columns`."""
    lines = ["| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]
    lines += ["| " + " | ".join(str(record.get(column, "")) for column in columns) + " |" for record in records]
    return "\n".join(lines)
