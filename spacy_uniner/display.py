"""displaCy colours for open labels: spaCy only has colours for its fixed label schemes."""
import zlib
from typing import Dict, Iterable

# Light, distinct backgrounds that keep black text readable.
PALETTE = (
    "#ffd6a5", "#caffbf", "#9bf6ff", "#bdb2ff", "#ffc6ff", "#fdffb6", "#a0c4ff", "#ffadad",
    "#d0f4de", "#e4c1f9", "#fcf6bd", "#a9def9", "#ffcfd2", "#b9fbc0", "#f1c0e8", "#cfbaf0",
)
_LABELS_IN_USE = set()


def label_color(label: str) -> str:
    """The same label always gets the same colour, in every process."""
    return PALETTE[zlib.crc32(label.encode("utf8")) % len(PALETTE)]


def register_labels(labels: Iterable[str]) -> None:
    _LABELS_IN_USE.update(labels)


def displacy_colors() -> Dict[str, str]:
    """Entry point for spaCy's `spacy_displacy_colors` registry: displaCy calls it at render time,
    so the labels of every `uniner` component built in this process are coloured."""
    return {label: label_color(label) for label in _LABELS_IN_USE}
