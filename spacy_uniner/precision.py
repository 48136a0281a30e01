"""The arithmetic a causal LM runs in: its weights' dtype, whether its blocks' projections are
int8, and whether its leading logits are computed again in float32.

On a GPU, bf16 (or fp16 where bf16 is missing). On a CPU the choice depends on the units it has:
AVX512-BF16 runs bf16 matmuls, VNNI runs int8 ones; "auto" reads the CPU's flags once and picks
from `CPU_AUTO`, the fastest setting measured to keep the answers (docs/speed.md).
"""
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import FrozenSet, Optional

import torch

from .errors import UserError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Weights in float32, and every Linear of the transformer blocks int8 (per output channel, the
# activations quantized on the fly): the embeddings and the output layer, whose errors reach every
# answer token directly, stay float32.
INT8 = "int8"
# The model in bf16 but its top logits in float32 (see Float32TopLogits): logits in bf16 keep 8
# bits of mantissa, so near ties between tokens fall otherwise than in float32.
BF16_FLOAT32_LOGITS = "bfloat16-float32-logits"
PRECISIONS = (*DTYPES, BF16_FLOAT32_LOGITS, INT8)
# The flag of a CPU that runs bf16 matmuls in hardware; elsewhere bf16 is emulated and slow.
BF16_FLAG = "avx512_bf16"
# The CPU flag each setting needs, most wanted first; "auto" on a CPU takes the first the CPU has,
# float32 where it has none.
CPU_AUTO = ((BF16_FLOAT32_LOGITS, BF16_FLAG),)


@dataclass(frozen=True)
class Precision:
    name: str
    weights: torch.dtype
    int8: bool = False
    float32_logits: bool = False

    @property
    def alters_model(self) -> bool:
        """Whether the model in memory is no longer the source's modules in another dtype."""
        return self.int8 or self.float32_logits

    @property
    def load_dtype(self) -> torch.dtype:
        """The dtype to load in: float32 where a part stays float32."""
        return torch.float32 if self.alters_model else self.weights


@lru_cache(maxsize=None)
def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> FrozenSet[str]:
    """The flags the CPU reports (Linux), read once; none where there is no /proc/cpuinfo."""
    try:
        text = cpuinfo.read_text(encoding="utf8", errors="replace")
    except OSError:
        return frozenset()
    return frozenset(word for line in text.splitlines() if line.startswith("flags") for word in line.split(":", 1)[-1].split())


def resolve_precision(dtype: str, device: str, flags: Optional[FrozenSet[str]] = None) -> Precision:
    """The config's `dtype` for `device`: "auto", or one of PRECISIONS. On a CPU, "auto" picks by
    `flags` (this CPU's when not given)."""
    if dtype == "auto":
        if device.startswith("cuda"):
            dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        elif device == "cpu":
            flags = cpu_flags() if flags is None else flags
            dtype = next((name for name, flag in CPU_AUTO if flag in flags), "float32")
        else:
            dtype = "float32"
    if dtype == INT8:
        if device != "cpu":
            raise UserError(f"[uniner] config key 'dtype' int8 runs on a CPU (PyTorch's dynamic int8 kernels), not on {device!r}")
        return Precision(INT8, torch.float32, int8=True)
    if dtype == BF16_FLOAT32_LOGITS:
        return Precision(BF16_FLOAT32_LOGITS, torch.bfloat16, float32_logits=True)
    if dtype not in DTYPES:
        raise UserError(f"[uniner] config key 'dtype' must be 'auto' or one of {list(PRECISIONS)}, got {dtype!r}")
    return Precision(dtype, DTYPES[dtype])


def training_mixed_precision(setting: str, flags: Optional[FrozenSet[str]] = None) -> str:
    """accelerate's `mixed_precision` for the training setting: "auto" is bf16 autocast on a GPU that
    has bf16 and on a CPU with `BF16_FLAG` (`flags`: this CPU's when not given; there it trains
    about 1.7x faster than fp32, docs/training.md), none elsewhere; any other setting as it is."""
    if setting != "auto":
        return setting
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "no"
    return "bf16" if BF16_FLAG in (cpu_flags() if flags is None else flags) else "no"


def decoder_layers(model: torch.nn.Module, remedy: str) -> torch.nn.ModuleList:
    """The transformer blocks of a causal LM, bottom first: the module list with one entry per
    hidden layer (`model.layers` in Llama, Qwen, Gemma; `transformer.h` in GPT-2). Training freezes
    and compiles them; int8 inference quantizes them. `remedy`: what to do for a model without them."""
    count = getattr(model.config, "num_hidden_layers", None)
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == count:
            return module
    raise UserError(f"Cannot find the {count} transformer blocks of {type(model).__name__}: {remedy}")


def quantize_blocks(model: torch.nn.Module) -> None:
    """Every Linear of the blocks as PyTorch's dynamic int8 Linear, in place (per-channel weights:
    per-tensor ones changed more answers)."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    for block in decoder_layers(model, "give it another dtype than int8"):
        quantize_dynamic(block, {torch.nn.Linear: per_channel_dynamic_qconfig}, inplace=True)


class Float32TopLogits(torch.nn.Module):
    """A bf16 model's output layer whose `top` highest logits of each row are computed again in
    float32, from a float32 copy of its weights: the choice among the leading tokens (greedy, or
    constrained decoding's best allowed one) is float32's, at the cost of a gather, not of a
    float32 pass over the whole vocabulary."""

    def __init__(self, head: torch.nn.Module, exact: torch.Tensor, exact_bias: Optional[torch.Tensor] = None, top: int = 64):
        super().__init__()
        self.head = head
        self.exact = torch.nn.Parameter(exact, requires_grad=False)
        # An output layer with a bias (BERT's decoder) adds it to the exact logits too.
        self.register_buffer("exact_bias", exact_bias)
        self.top = top

    @property
    def weight(self) -> torch.Tensor:
        return self.head.weight

    @property
    def bias(self) -> Optional[torch.Tensor]:
        """The head's own (models that tie a bias to their output layer, as BERT does, read it)."""
        return getattr(self.head, "bias", None)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = self.head(hidden).to(torch.float32)
        top = logits.topk(min(self.top, logits.shape[-1]), dim=-1).indices
        exact = (self.exact[top] @ hidden.to(torch.float32).unsqueeze(-1)).squeeze(-1)
        if self.exact_bias is not None:
            exact = exact + self.exact_bias[top]
        return logits.scatter(-1, top, exact)


def narrow(model: torch.nn.Module, precision: Precision) -> None:
    """A model loaded in `precision.load_dtype`, put in `precision` in place."""
    if precision.int8:
        quantize_blocks(model)
    if precision.float32_logits:
        head = model.get_output_embeddings()
        exact = head.weight.detach().to(torch.float32, copy=True)
        bias = getattr(head, "bias", None)
        exact_bias = None if bias is None else bias.detach().to(torch.float32, copy=True)
        model.to(precision.weights)
        model.set_output_embeddings(Float32TopLogits(model.get_output_embeddings(), exact, exact_bias))
