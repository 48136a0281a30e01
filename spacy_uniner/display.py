"""displaCy colours for open labels: spaCy only has colours for its fixed label schemes."""
import threading
import zlib
from collections import OrderedDict
from typing import Dict, Iterable

from spacy.displacy.render import DEFAULT_LABEL_COLORS

# Light, distinct backgrounds that keep black text readable.
PALETTE = (
    "#ffd6a5", "#caffbf", "#9bf6ff", "#bdb2ff", "#ffc6ff", "#fdffb6", "#a0c4ff", "#ffadad",
    "#d0f4de", "#e4c1f9", "#fcf6bd", "#a9def9", "#ffcfd2", "#b9fbc0", "#f1c0e8", "#cfbaf0",
)
# The labels of the components built in this process, the most recently set last; bounded, so that
# a long-running service that sets new labels per request neither grows nor slows its renders.
MAX_LABELS_IN_USE = 256
_LABELS_IN_USE: "OrderedDict[str, None]" = OrderedDict()
# Components are built, and labels set, on any thread (the demo's requests) while displaCy reads
# the labels on another.
_LOCK = threading.Lock()


def label_color(label: str) -> str:
    """The same label always gets the same colour, in every process."""
    return PALETTE[zlib.crc32(label.encode("utf8")) % len(PALETTE)]


def register_labels(labels: Iterable[str]) -> None:
    with _LOCK:
        for label in labels:
            _LABELS_IN_USE[label] = None
            _LABELS_IN_USE.move_to_end(label)
        while len(_LABELS_IN_USE) > MAX_LABELS_IN_USE:
            _LABELS_IN_USE.popitem(last=False)


def displacy_colors() -> Dict[str, str]:
    """Entry point for spaCy's `spacy_displacy_colors` registry: displaCy calls it at render time,
    so the labels of the `uniner` components built in this process (the last MAX_LABELS_IN_USE set)
    are coloured. It feeds every render of the process, so a label that names one of spaCy's own
    (displaCy matches labels upper-cased: "person" is PERSON) keeps spaCy's colour, and other
    pipelines' renders look as they would without this package."""
    with _LOCK:
        labels = list(_LABELS_IN_USE)
    return {label: label_color(label) for label in labels if label.upper() not in DEFAULT_LABEL_COLORS}
