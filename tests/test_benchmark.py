"""The speed benchmark: the component against one generate per query, on the same prompts."""
import pytest
import srsly
import torch
from transformers import AutoModelForCausalLM
from typer.testing import CliRunner

from spacy_uniner.benchmarks.measure import matmul_peak_gflops
from spacy_uniner.cli import app
from spacy_uniner.data import conversation

TEXTS = [
    "The committee met in Geneva on Monday, and Ana María from Zürich led the talks about the treaty with Google and Microsoft.",
    "Short.",
    "Aspirin can cause bleeding in patients with ulcers, said Dr. Smith at the Mayo Clinic in Rochester, Minnesota, last year.",
    "Python and Rust are programming languages used at Google, Mozilla and Amazon in Seattle and in Paris since the nineties.",
]


def test_the_benchmark_writes_one_record_per_label_count_with_identical_answers(tiny_llama_path, tmp_path):
    srsly.write_jsonl(tmp_path / "texts.jsonl", [{"text": text} for text in TEXTS])
    types = ["person", "city", "organization", "drug", "disease", "country"]
    srsly.write_json(tmp_path / "conversations.json", [
        conversation(f"c{i}", "Some text.", [(entity_type, []) for entity_type in types[: 6 - i]]) for i in range(6)
    ])
    result = CliRunner().invoke(app, [
        "benchmark", str(tiny_llama_path), str(tmp_path / "texts.jsonl"), str(tmp_path / "conversations.json"), str(tmp_path / "speed.json"),
        "--label-counts", "1,4,6", "--docs", "1", "--more-docs", "3", "--passage-tokens", "24", "--max-new-tokens", "6", "--device", "cpu",
    ])
    assert result.exit_code == 0, (result.output, result.exception)
    report = srsly.read_json(tmp_path / "speed.json")
    assert [record["labels"] for record in report["records"]] == [1, 4, 6]
    assert report["batch_size"] == 16  # without --batch-size, the component's own
    for record in report["records"]:
        assert record["identical"] is True and record["queries"] == record["labels"] and record["more_docs"] == 3
        assert record["naive_docs_per_s"] > 0 and record["docs_per_s"] > 0 and record["unscored_docs_per_s"] > 0 and record["generated_tokens"] > 0
        assert record["ratio"] > 0 and record["token_bound"] >= 1.0
        # The component's time is the median of its runs (3 by default).
        runs = record["component_seconds"]
        # Both figures are rounded to 3 decimals: what the two roundings allow, however slow the machine.
        median = sorted(runs)[1]
        # The true median lies within 0.0005 of the rounded one: docs / median moves by up to docs * 0.0005 / (median * (median - 0.0005)).
        assert len(runs) == 3 and record["docs"] / median == pytest.approx(record["docs_per_s"], abs=0.0005 + record["docs"] * 0.0005 / (median * (median - 0.0005)) + 1e-9)
    # With more labels, more of each prompt is shared.
    assert report["records"][0]["token_bound"] < report["records"][1]["token_bound"] < report["records"][2]["token_bound"]
    assert "| 6 |" in result.output and "(3 docs)" in result.output and "CPU cores" in report["machine"]
    # The prefix pass against the matmul peak: one doc's prompt prefix, its 24 tokens and the template's.
    prefixes = report["prefix_pass"]
    blocks = AutoModelForCausalLM.from_pretrained(tiny_llama_path).model.layers
    parameters = sum(module.weight.numel() for module in blocks.modules() if isinstance(module, torch.nn.Linear))
    assert 24 < prefixes["prompt_tokens"] < 24 + 60 and prefixes["tokens_per_s"] > 0 and prefixes["matmul_peak_gflops"] > 0
    assert prefixes["gflops"] == pytest.approx(2 * parameters * prefixes["tokens_per_s"] / 1e9, rel=0.01, abs=0.06)
    # share_of_peak is rounded to 3 decimals from the unrounded GFLOP/s; gflops to 1 decimal.
    assert prefixes["share_of_peak"] == pytest.approx(prefixes["gflops"] / prefixes["matmul_peak_gflops"], rel=0.01, abs=0.0005 + 0.05 / prefixes["matmul_peak_gflops"])
    assert "Prefix pass:" in result.output and "one large matmul here" in result.output


def test_too_few_long_texts_or_types_is_a_clear_error(tiny_llama_path, tmp_path):
    srsly.write_jsonl(tmp_path / "texts.jsonl", [{"text": "Short."}])
    srsly.write_json(tmp_path / "conversations.json", [conversation("c", "Some text.", [("person", [])])])
    arguments = ["benchmark", str(tiny_llama_path), str(tmp_path / "texts.jsonl"), str(tmp_path / "conversations.json"), str(tmp_path / "speed.json"), "--device", "cpu"]
    result = CliRunner().invoke(app, arguments + ["--docs", "1", "--more-docs", "1", "--passage-tokens", "64"])
    assert "has 0 texts of at least 64 tokens" in str(result.exception)
    result = CliRunner().invoke(app, arguments + ["--docs", "1", "--more-docs", "1", "--passage-tokens", "2", "--label-counts", "1,4"])
    assert "has 1 entity types; the benchmark asks about up to 4" in str(result.exception)


def test_the_precision_benchmark_compares_each_precision_with_the_first(tiny_llama_path, tmp_path):
    srsly.write_jsonl(tmp_path / "texts.jsonl", [{"text": text} for text in TEXTS])
    srsly.write_json(tmp_path / "conversations.json", [conversation(f"c{i}", "Some text.", [(t, []) for t in ["person", "city", "drug", "country"][: 4 - i]]) for i in range(4)])
    arguments = ["benchmark-precision", str(tiny_llama_path), str(tmp_path / "texts.jsonl"), str(tmp_path / "conversations.json"), str(tmp_path / "precision.json")]
    result = CliRunner().invoke(app, arguments + ["--dtypes", "float32,bfloat16,int8", "--label-counts", "1,4", "--docs", "2", "--passage-tokens", "24", "--repeats", "1", "--profile"])
    assert result.exit_code == 0, (result.output, result.exception)
    records = srsly.read_json(tmp_path / "precision.json")["records"]
    speed = [record for record in records if "docs_per_s" in record]
    assert [(r["dtype"], r["labels"]) for r in speed] == [(d, n) for d in ("float32", "bfloat16", "int8") for n in (1, 4)]
    assert all(r["queries"] == 2 * r["labels"] and r["docs_per_s"] > 0 and 0 <= r["identical_share"] <= 1 for r in speed)
    assert all(r["identical_share"] == 1.0 and r["speedup"] == 1.0 for r in speed if r["dtype"] == "float32")
    peaks = [record["prefix_pass"] for record in records if "prefix_pass" in record]
    # The tiny model's GFLOP/s rounds to 0.0 on a busy machine: its tokens/s is what shows the pass
    # ran (the GFLOP/s arithmetic is checked on the component benchmark above).
    assert len(peaks) == 3 and all(peak["tokens_per_s"] > 0 and peak["matmul_peak_gflops"] > 0 and peak["matmul_size"] in (256, 512, 1024, 2048) for peak in peaks)
    assert "| int8 | int8 | 4 |" in result.output
    # The profile: each precision's ops at the most labels, matrix products a part of all ops.
    profiles = {record["dtype"]: record["profile"] for record in records if "profile" in record}
    assert list(profiles) == ["float32", "bfloat16", "int8"]
    assert all(0 < profile["matrix products"] < profile["all ops"] for profile in profiles.values())
    assert "| matrix products | " in result.output and "| float32 / bfloat16 |" in result.output
    result = CliRunner().invoke(app, arguments + ["--dtypes", "float32,int4"])
    assert result.exit_code == 2 and "int4" in result.output


def test_the_matmul_peak_grows_its_product_until_one_takes_long_enough():
    # A precision as slow as bf16 without AVX512-BF16 stops at the first size; a fast one doubles to the largest.
    assert [matmul_peak_gflops("cpu", max_size=512, repeats=1, least_seconds=seconds)[1] for seconds in (0.0, float("inf"))] == [256, 512]
    assert matmul_peak_gflops("cpu", max_size=512, repeats=2)[0] > 0
