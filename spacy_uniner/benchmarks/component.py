"""Inference speed: the `uniner` component against the reference implementation's loop (one
`model.generate` per (text, label) query), on the same model, texts and prompts; and the component
in several precisions."""
import json
import statistics
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
from spacy.language import Language
from tqdm import tqdm
from transformers import GenerationConfig, StoppingCriteriaList

from ..component import uniner_of
from ..data import normalize_type, question_pairs, read_conversations
from ..decoding import token_logprobs
from ..distill import read_documents
from ..errors import UserError
from ..evaluate.run import recording
from ..files import check_output_file, write_json
from ..generation import HFGenerator, prompt_groups
from ..pipelines import uniner_pipeline
from ..prompts import label_of_question
from ..scores import ScoredAnswer
from ..stopping import AnswerEnded
from ..tokens import encode_texts
from .measure import Answers, agreement, machine, markdown_rows, prefix_pass, profiled_ops, timed, timed_answers


def frequent_labels(conversations: Path, count: int) -> List[str]:
    """The `count` entity types the teacher asked about most: real open types to ask about."""
    types = Counter(normalize_type(label_of_question(question)) for _, messages in read_conversations(conversations) for question, _ in question_pairs(messages))
    if len(types) < count:
        raise UserError(f"{conversations} has {len(types)} entity types; the benchmark asks about up to {count}")
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
    raise UserError(f"{path} has {len(cut)} texts of at least {tokens} tokens; the benchmark needs {count}")


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
        raise UserError(f"repeats must be >= 1, got {repeats}")
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


def run_precision_benchmark(load: Callable[[str], Language], dtypes: Sequence[str], texts: List[str], labels: List[str], label_counts: Sequence[int], repeats: int = 3, profile: bool = False) -> Iterator[Dict[str, Any]]:
    """The component in each precision (`load(dtype)` gives the pipeline) over the same texts and
    labels: docs/s (the median of `repeats` runs), the speed-up over the first precision's and the
    share of (text, label) answers whose mentions are those of the first precision's; then one
    record per precision with its prefix pass's GFLOP/s beside the matmul peak in that precision,
    and with `profile`, one with the self CPU time by op group of a run at the most labels."""
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
        if profile:
            yield {"dtype": dtype, "precision": generator.precision.name, "labels": max(label_counts), "profile": profiled_ops(nlp, texts, labels[: max(label_counts)])}


def benchmark_component(pipeline: str, texts: Path, conversations: Path, output: Path, label_counts: Sequence[int], docs: int, passage_tokens: int, settings: Dict[str, Any], more_docs: int, repeats: int) -> str:
    """`run_benchmark` on the pipeline with its model block's `settings` changed, over the first
    `docs` texts of `passage_tokens` tokens and the most frequent types of `conversations`; the
    report written to `output` (JSON), its tables returned."""
    check_output_file(output, {"pipeline": pipeline, "texts": texts, "conversations": conversations})
    nlp = uniner_pipeline(pipeline, settings)
    generator = uniner_of(nlp).generator
    chosen = passages(texts, generator.tokenizer, docs * more_docs, passage_tokens)
    labels = frequent_labels(conversations, max(label_counts))
    records = []
    runs = run_benchmark(nlp, chosen[:docs], labels, label_counts, chosen if more_docs > 1 else (), repeats)
    for record in tqdm(runs, total=len(label_counts), desc="benchmark", unit="label count"):
        tqdm.write(json.dumps(record))
        records.append(record)
    prefixes = prefix_pass(generator, chosen[:docs], labels[0])
    constrained = generator.constrained
    report = {"machine": machine(generator.device), "device": generator.device, "model": pipeline, "docs": docs, "passage_tokens": passage_tokens, "batch_size": generator.batch_size, "constrained": constrained, "prompt_lookup_num_tokens": generator.prompt_lookup_num_tokens, "records": records, "prefix_pass": prefixes}
    write_json(output, report)
    return (
        f"{report['machine']}; {docs} docs of {passage_tokens} tokens; batch size {generator.batch_size}{'; constrained' if constrained else ''}; drafts of up to {generator.prompt_lookup_num_tokens} tokens\n"
        + markdown_table(records)
        + f"\nPrefix pass: {prefixes['prompt_tokens']} prompt tokens at {prefixes['tokens_per_s']:.0f} tokens/s, {prefixes['gflops']:.1f} GFLOP/s; one large matmul here ({prefixes['matmul_size']}x{prefixes['matmul_size']}): {prefixes['matmul_peak_gflops']:.1f} GFLOP/s ({100 * prefixes['share_of_peak']:.0f}% of it)"
    )


def benchmark_precisions(pipeline: str, texts: Path, conversations: Path, output: Path, dtypes: Sequence[str], label_counts: Sequence[int], docs: int, passage_tokens: int, repeats: int, settings: Optional[Dict[str, Any]] = None, profile: bool = False) -> str:
    """`run_precision_benchmark` of the pipeline in each of `dtypes` (the first is the reference),
    its model block's other `settings` changed, the report written to `output` (JSON), its tables
    returned."""
    check_output_file(output, {"pipeline": pipeline, "texts": texts, "conversations": conversations})
    settings = dict(settings or {})
    first = uniner_pipeline(pipeline, dict(settings, dtype=dtypes[0]))
    generator = uniner_of(first).generator
    chosen = passages(texts, generator.tokenizer, docs, passage_tokens)
    labels = frequent_labels(conversations, max(label_counts))
    loaded = {dtypes[0]: first}  # the first precision's pipeline, already loaded for its tokenizer
    records = []
    for record in run_precision_benchmark(lambda dtype: loaded.pop(dtype, None) or uniner_pipeline(pipeline, dict(settings, dtype=dtype)), dtypes, chosen, labels, label_counts, repeats, profile):
        tqdm.write(json.dumps(record))
        records.append(record)
    report = {"machine": machine(generator.device), "model": pipeline, "docs": docs, "passage_tokens": passage_tokens, "prompt_lookup_num_tokens": generator.prompt_lookup_num_tokens, "records": records}
    write_json(output, report)
    speed = [record for record in records if "docs_per_s" in record]
    peaks = [dict(record["prefix_pass"], dtype=record["dtype"], precision=record["precision"]) for record in records if "prefix_pass" in record]
    profiles = {record["dtype"]: record["profile"] for record in records if "profile" in record}
    return (
        f"{report['machine']}; {docs} docs of {passage_tokens} tokens; drafts of up to {generator.prompt_lookup_num_tokens} tokens\n"
        + markdown_rows(["dtype", "precision", "labels", "docs_per_s", "speedup", "identical_share"], speed)
        + "\n\n"
        + markdown_rows(["dtype", "precision", "tokens_per_s", "gflops", "matmul_peak_gflops", "matmul_size", "share_of_peak"], peaks)
        + (f"\n\nSelf CPU seconds by op, one profiled run at {max(label_counts)} labels:\n" + profile_table(profiles) if profiles else "")
    )


def profile_table(profiles: Dict[str, Dict[str, float]]) -> str:
    """Op groups as rows, precisions as columns, and the first precision's time over each other's."""
    first, *others = list(profiles)
    rows = [
        {"op": group, **{dtype: seconds[group] for dtype, seconds in profiles.items()}, **{f"{first} / {dtype}": f"{profiles[first][group] / profiles[dtype][group]:.1f}x" if profiles[dtype][group] else "" for dtype in others}}
        for group in profiles[first]
    ]
    return markdown_rows(["op", *profiles, *(f"{first} / {dtype}" for dtype in others)], rows)


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
