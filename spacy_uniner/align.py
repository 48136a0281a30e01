"""Answer strings -> character offsets -> token spans, and the choice of `doc.ents` among them."""
import re
from typing import AbstractSet, Iterable, List, Tuple

from spacy.tokens import Doc, Span
from spacy.util import filter_spans

WORD_PAIR = re.compile(r"\w\w")


def token_boundaries(span: Span) -> AbstractSet[int]:
    """The character offsets, within `span`'s text, where its tokens start and end."""
    return frozenset(offset - span.start_char for token in span for offset in (token.idx, token.idx + len(token.text)))


def find_mention(text: str, mention: str, boundaries: AbstractSet[int] = frozenset()) -> List[Tuple[int, int]]:
    """Character offsets of every occurrence of `mention` in `text`.

    Exact case wins; only when there is no exact occurrence are case-insensitive ones used (uncased
    models answer in lower case). Whitespace runs match any whitespace run. An occurrence may not
    start or end between two word characters ("AI" is not in "said") unless a token does there:
    `boundaries`, the offsets where the text's tokens start and end, which is how a mention is found
    in a script written without spaces ("東京" in "我住在東京。").
    """
    parts = mention.split()
    if not parts:
        return []
    for flags in (0, re.IGNORECASE):
        pattern = re.compile(r"\s+".join(re.escape(part) for part in parts), flags)
        found, position = [], 0
        while (match := pattern.search(text, position)) is not None:
            if at_boundary(text, match.start(), boundaries) and at_boundary(text, match.end(), boundaries):
                found.append(match.span())
                position = match.end()
            else:
                position = match.start() + 1
        if found:
            return found
    return []


def at_boundary(text: str, offset: int, boundaries: AbstractSet[int]) -> bool:
    """Whether a mention may start or end at `offset`: not inside a run of word characters, unless
    a token starts or ends there."""
    return offset in boundaries or WORD_PAIR.fullmatch(text, max(offset - 1, 0), offset + 1) is None


def mention_spans(window: Span, mention: str, label: str) -> List[Span]:
    """The token spans of `mention` inside `window`, labelled, snapped outward to token boundaries."""
    doc = window.doc
    spans = []
    for start, end in find_mention(window.text, mention, token_boundaries(window)):
        span = doc.char_span(
            window.start_char + start, window.start_char + end, label=label, alignment_mode="expand"
        )
        if span is not None:
            spans.append(span)
    return spans


def resolve_ents(doc: Doc, candidates: Iterable[Span], overwrite: bool) -> Tuple[Span, ...]:
    """Non-overlapping entities: longest candidate first (then the earliest); existing entities win
    every conflict unless `overwrite`, in which case the new candidates win."""
    new = filter_spans(candidates)
    existing = list(doc.ents)
    winners, others = (new, existing) if overwrite else (existing, new)
    taken = set()
    for span in winners:
        taken.update(range(span.start, span.end))
    kept = [span for span in others if taken.isdisjoint(range(span.start, span.end))]
    return tuple(sorted(winners + kept, key=lambda span: span.start))
