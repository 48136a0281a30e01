"""Human-annotated sets as training conversations, beside the teacher's (the paper's supervised
variant mixes gold sets into Pile-NER the same way): each named set of the mirror, read with
evaluate's loaders, cut into passages of consecutive sentences, every type of the set asked of every
passage (`[]` where it has none: real negatives), under the set's natural-language type names
(assets/benchmarks.json) and its `Dataset: NAME` line.

What is never trained on is one list, assets/held_out.json. A training sentence that shares a run
of 13 words with any sentence of a held-out set (test or dev), holds the whole of a shorter one, or
is one, is dropped, and so is a sentence already taken from another set (CoNLL03 and CoNLL++ share
their text)."""
import functools
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Set, Tuple

import numpy
import srsly

from .errors import UserError
from .evaluate.datasets import DEV, GOLD_ID, Benchmark, Sentence, benchmark_spec, benchmark_specs, load_benchmark, words_key
from .prompts import conversation

HELD_OUT = Path(__file__).parent.parent / "assets" / "held_out.json"
RUN = 13  # words in a row shared with a held-out sentence that make a training sentence a copy
# A held-out sentence shorter than RUN is a copy when a training sentence holds all of it, from this
# many words: evaluate's zero-shot rule refuses such copies. Shorter ones ("pub") only when equal.
WHOLE = 8
# `adapt`'s mix: distilled conversations beside each gold one (docs/training.md#adapting-to-your-gold-data);
# more than the maximum would drown the gold it adapts to.
DISTILLED_SHARE = 0.5
MAX_DISTILLED_SHARE = 10.0
# Questions answered [] per question with mentions, chosen on dev parts (docs/training.md#questions-answered-empty).
NEGATIVES = 4.0


def held_out_sets(path: Path = HELD_OUT) -> List[str]:
    return list(srsly.read_json(path)["sets"])


def trainable_sets() -> List[str]:
    held_out = set(held_out_sets())
    return [name for name in benchmark_specs() if name not in held_out]


def gold_conversations(gold: Benchmark, dataset: Optional[str], id_prefix: str = GOLD_ID, negatives: Optional[float] = None, seed: int = 0) -> List[Dict[str, Any]]:
    """One conversation per gold sentence or passage (ids PREFIX-N): every type of the data asked,
    `[]` where it has none. With `negatives`, at most that many questions answered `[]` per question
    with mentions: first those of sentences with a mention of another type, then those of sentences
    with none, each drawn by `seed`; the others are not asked, and a sentence left with no question
    is not trained on."""
    sentences = [sentence for sentence in gold.sentences if sentence.tokens]
    questions = [[(label, list(dict.fromkeys(sentence.mentions(label)))) for label in gold.types] for sentence in sentences]
    if negatives is not None:
        rng = numpy.random.default_rng(seed)
        mentions_any = [any(mentions for _, mentions in asked) for asked in questions]
        empty = [(i, j) for i, asked in enumerate(questions) for j, (_, mentions) in enumerate(asked) if not mentions]
        # An empty answer beside a mention of another type teaches which type a mention is; the many
        # sentences of a sparse set that mention nothing teach mostly to answer [] (docs/training.md).
        beside, alone = [i_j for i_j in empty if mentions_any[i_j[0]]], [i_j for i_j in empty if not mentions_any[i_j[0]]]
        drawn = [part[k] for part in (beside, alone) for k in rng.permutation(len(part))]
        kept = round(negatives * (sum(map(len, questions)) - len(empty)))
        dropped = set(drawn[kept:])
        questions = [[question for j, question in enumerate(asked) if (i, j) not in dropped] for i, asked in enumerate(questions)]
    return [conversation(f"{id_prefix}-{sentence.index}", sentence.text, asked, dataset) for sentence, asked in zip(sentences, questions) if asked]


def runs_of(words: Sequence[str], lengths: Iterable[int] = (RUN,)) -> Iterable[int]:
    # Hashes, not the runs: half a million 13-word tuples would take most of a gigabyte. A collision
    # can only drop one more training sentence.
    return (hash(tuple(words[i : i + length])) for length in lengths for i in range(len(words) - length + 1))


# Kept for the process: the index is the same for every build from one mirror.
@functools.lru_cache(maxsize=1)
def held_out_index(mirror: Path, names: Tuple[str, ...]) -> Tuple[Set[int], Set[str]]:
    """The 13-word runs of every sentence of the held-out sets and their dev splits (a sentence of
    WHOLE to 12 words as one run), and their whole normalized texts. A held-out set that cannot be read stops the build: its copies could not be found."""
    runs: Set[int] = set()
    texts: Set[str] = set()
    for name in names:
        for split in (name, name + DEV) if "dev_path" in benchmark_spec(name) else (name,):
            try:
                sentences = load_benchmark(split, mirror).sentences
            except OSError as err:
                raise UserError(f"cannot check the training data against the held-out set {split}: {err}") from err
            for sentence in sentences:
                words = words_key(sentence.text)
                texts.add(" ".join(words))
                runs.update(runs_of(words, [RUN] if len(words) >= RUN else [len(words)] if len(words) >= WHOLE else []))
    return runs, texts


def passages_of(benchmark: Benchmark, passage_words: int) -> List[Sentence]:
    """Consecutive sentences (the files keep their documents' order) joined into passages of at
    most `passage_words` words; a longer sentence is a passage of its own."""
    passages: List[Sentence] = []
    for sentence in benchmark.sentences:
        last = passages[-1] if passages else None
        if last is None or len(last.tokens) + len(sentence.tokens) > passage_words:
            passages.append(Sentence(benchmark.name, len(passages), list(sentence.tokens), list(sentence.spans)))
        else:
            offset = len(last.tokens)
            last.spans += [(start + offset, end + offset, label) for start, end, label in sentence.spans]
            last.tokens += sentence.tokens
    return passages


def sample_passages(passages: List[Sentence], budget: int, rng: numpy.random.Generator) -> List[Sentence]:
    """Passages drawn until their words reach `budget`, each drawn with a weight of its distinct
    types (plus one) per word: the ones that teach the most types per token come first. In file order."""
    if not passages:
        return []
    weights = numpy.array([(1 + len({label for _, _, label in passage.spans})) / len(passage.tokens) for passage in passages])
    chosen, words = [], 0
    for i in rng.choice(len(passages), size=len(passages), replace=False, p=weights / weights.sum()):
        if words >= budget:
            break
        chosen.append(passages[i])
        words += len(passages[i].tokens)
    return sorted(chosen, key=lambda passage: passage.index)


def gold_set_conversations(
    names: Sequence[str],
    mirror: Path,
    words: int,
    passage_words: int = 128,
    dataset_line: bool = True,
    seed: int = 0,
) -> Tuple[List[Dict[str, Any]], Dict[str, Any]]:
    """Conversations from the gold sets `names` of the mirror, `words` words of passage text in all
    (an equal share each; a smaller set gives what it has), and a report per set: sentences read,
    dropped as held-out copies, dropped as duplicates, passages and words kept."""
    held_out = held_out_sets()
    refused = [name for name in names if name in held_out or name.removesuffix(DEV) in held_out]
    if refused:
        raise UserError(f"gold sets {refused} are held out ({HELD_OUT}): never trained on. The sets that may be: {', '.join(trainable_sets())}")
    for name in names:
        benchmark_spec(name)  # an unknown name stops the build before any reading
    if words < 1 or passage_words < 1:
        raise UserError(f"the gold words in all and per passage must be at least 1, got {words} and {passage_words}")
    runs, texts = held_out_index(Path(mirror), tuple(held_out))
    rng = numpy.random.default_rng(seed)
    taken: Set[str] = set()
    conversations: List[Dict[str, Any]] = []
    report: Dict[str, Any] = {}
    for name in names:
        benchmark = load_benchmark(name, mirror)
        kept, copies, duplicates = [], 0, 0
        for sentence in benchmark.sentences:
            sentence_words = words_key(sentence.text)
            text = " ".join(sentence_words)
            if text in texts or any(run in runs for run in runs_of(sentence_words, range(WHOLE, RUN + 1))):
                copies += 1
            elif not text or text in taken:
                duplicates += 1
            else:
                taken.add(text)
                kept.append(sentence)
        passages = sample_passages(passages_of(Benchmark(name, benchmark.types, kept), passage_words), words // len(names), rng)
        conversations += gold_conversations(Benchmark(name, benchmark.types, passages), name if dataset_line else None, f"{GOLD_ID}-{name}")
        report[name] = {
            "sentences": len(benchmark.sentences),
            "dropped_held_out": copies,
            "dropped_duplicates": duplicates,
            "passages": len(passages),
            "words": sum(len(passage.tokens) for passage in passages),
            "mentions": sum(len(passage.spans) for passage in passages),
            "types": len(benchmark.types),
        }
    return conversations, report

