"""Long docs are read through overlapping windows, as the model was trained on passages."""
from typing import List

from spacy.tokens import Doc, Span

from .errors import UserError


def check_window_settings(size: int, overlap: int) -> None:
    if size < 1 or not 0 <= overlap < size:
        raise UserError(
            f"[uniner] config keys 'window_size' and 'window_overlap' need window_size >= 1 and "
            f"0 <= window_overlap < window_size, got {size} and {overlap}"
        )


def doc_windows(doc: Doc, size: int, overlap: int) -> List[Span]:
    """Cover `doc` with windows of at most `size` tokens that overlap by up to `overlap` tokens.

    When sentence boundaries are set, windows hold whole sentences (a sentence longer than `size`
    is cut into pieces) and the overlap is made of whole sentences too. Whitespace-only docs give none.
    """
    check_window_settings(size, overlap)
    if doc.has_annotation("SENT_START"):
        units = [piece for sent in doc.sents for piece in _chunks(doc, sent.start, sent.end, size, 0)]
        windows = _pack(doc, units, size, overlap)
    else:
        windows = _chunks(doc, 0, len(doc), size, overlap)
    # A window of nothing but whitespace tokens has no question worth asking.
    return [window for window in windows if window.text.strip()]


def _chunks(doc: Doc, start: int, end: int, size: int, overlap: int) -> List[Span]:
    step = size - overlap
    chunks = []
    for chunk_start in range(start, end, step):
        chunks.append(doc[chunk_start : min(chunk_start + size, end)])
        if chunk_start + size >= end:
            break
    return chunks


def _pack(doc: Doc, units: List[Span], size: int, overlap: int) -> List[Span]:
    """Greedily fill windows with consecutive units; the next window starts with the trailing units
    of the previous one that fit in `overlap` tokens."""
    windows = []
    first = 0
    while first < len(units):
        last = first
        while last + 1 < len(units) and units[last + 1].end - units[first].start <= size:
            last += 1
        windows.append(doc[units[first].start : units[last].end])
        if last + 1 == len(units):
            break
        next_first = last + 1
        while next_first - 1 > first and units[last].end - units[next_first - 1].start <= overlap:
            next_first -= 1
        first = next_first
    return windows
