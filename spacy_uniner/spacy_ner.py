"""spaCy's own `ner` trained on the same gold as `adapt`: the answer a spaCy user already has, and
what adapting a student has to beat. The config is `spacy init config -p ner -o efficiency`'s (a
CNN, no vectors), trained by spaCy's own loop as `spacy train` runs it, early-stopped on a dev part
carved from the gold-train (never on the part that is scored); its `model-best` is kept."""
import io
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy
import spacy
from spacy.cli.init_config import init_config
from spacy.tokens import Doc, DocBin
from spacy.training.initialize import init_nlp
from spacy.training.loop import train as train_nlp
from spacy.util import filter_spans

from .errors import UserError
from .evaluate.datasets import Benchmark, Sentence
from .evaluate.run import GOLD_MENTIONS, sentence_doc
from .files import atomic_folder

# The share of the gold-train that spaCy's training scores after each `eval_frequency` steps and
# stops on (patience): as a user without another annotated part would carve it.
DEV_SHARE = 0.2


def training_doc(nlp: spacy.Language, sentence: Sentence) -> Doc:
    """A gold sentence as a training Doc (`sentence_doc`'s gold): its mentions in doc.ents, the
    longest of overlapping ones (doc.ents holds no nesting), every other token outside an entity."""
    doc = sentence_doc(nlp, sentence, gold=True)
    doc.ents = filter_spans(doc.spans[GOLD_MENTIONS])
    return doc


def carve_dev(sentences: List[Sentence], seed: int, share: float = DEV_SHARE) -> Tuple[List[Sentence], List[Sentence]]:
    """The gold-train split by `seed` into the part trained on and the dev part (at least one
    sentence of each)."""
    if len(sentences) < 2:
        raise UserError(f"spaCy's ner needs at least 2 gold-train sentences (one to train on, one to stop on), got {len(sentences)}")
    order = numpy.random.default_rng(seed).permutation(len(sentences))
    dev_size = min(len(sentences) - 1, max(1, round(share * len(sentences))))
    return [sentences[i] for i in sorted(order[dev_size:])], [sentences[i] for i in sorted(order[:dev_size])]


def train_spacy_ner(gold_train: Benchmark, output: Path, seed: int = 0) -> Dict[str, Any]:
    """Train spaCy's `ner` on `gold_train` (DEV_SHARE of it carved off to stop on) into the folder
    `output` (its `model-best` and `model-last`, as `spacy train` writes them); the report says
    how many sentences went where, the best dev score and the minutes."""
    started = time.perf_counter()
    train_part, dev_part = carve_dev(gold_train.sentences, seed)
    config = init_config(lang="en", pipeline=["ner"], optimize="efficiency", gpu=False)
    with atomic_folder(output) as partial:
        blank = spacy.blank("en")
        for name, part in (("train.spacy", train_part), ("dev.spacy", dev_part)):
            DocBin(docs=[training_doc(blank, s) for s in part]).to_disk(partial / name)
        config = config.merge({"paths": {"train": str(partial / "train.spacy"), "dev": str(partial / "dev.spacy")}, "training": {"seed": seed}})
        nlp = init_nlp(config, use_gpu=-1)
        log = io.StringIO()
        nlp, _ = train_nlp(nlp, partial, use_gpu=-1, stdout=log, stderr=log)
        best = spacy.load(partial / "model-best").meta.get("performance", {})
    return {
        "pipeline": str(Path(output) / "model-best"),
        "train_docs": len(train_part),
        "dev_docs": len(dev_part),
        "dev_ents_f": best.get("ents_f"),
        "minutes": round((time.perf_counter() - started) / 60, 2),
    }
