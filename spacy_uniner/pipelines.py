"""Loading what a user names on the command line: a spaCy pipeline folder or package, or a causal
LM's folder or hub id put in a blank pipeline's `uniner` component."""
from pathlib import Path
from typing import Any, Dict, Optional

import spacy

from .component import uniner_of


def load_pipeline(name: str, config: Optional[Dict[str, Any]] = None) -> Optional[spacy.Language]:
    """A spaCy pipeline folder or installed package, loaded with `config` overrides; None for a
    causal LM's folder or hub id. A local folder is never tried as a hub id: one that is neither says
    why (the file it lacks)."""
    path = Path(name)
    if path.exists():
        if (path / "config.cfg").is_file():
            return spacy.load(path, config=config or {})
        if not (path / "config.json").is_file():
            raise ValueError(f"{path} is neither a spaCy pipeline folder (no config.cfg) nor a transformers model folder (no config.json)")
        return None
    try:
        return spacy.load(name, config=config or {})  # an installed pipeline package
    except OSError:
        return None  # not one: a hub id


def uniner_pipeline(name: str, **settings) -> spacy.Language:
    """A pipeline folder or package, or a causal LM's hub id or folder put in a blank pipeline; with
    `settings` for its `uniner` component (batch_size, device, ...)."""
    nlp = load_pipeline(name, {"components": {"uniner": settings}} if settings else None)
    if nlp is None:
        nlp = spacy.blank("en")
        nlp.add_pipe("uniner", config={"model": name, "labels": ["entity"], **settings})
    return nlp


# The student's component settings a causal LM baseline is run with, so that only the weights differ.
BASELINE_SETTINGS = ("batch_size", "max_new_tokens", "device", "dtype", "window_size", "window_overlap", "threshold", "label_margin", "constrained")


def baseline_pipeline(name: str, student: spacy.Language) -> spacy.Language:
    """A spaCy pipeline as it is, or a causal LM (e.g. the student's base as it ships) asked the
    student's questions with its prompt and its component's decoding settings (the component's
    defaults when the student has no `uniner`)."""
    nlp = load_pipeline(name)
    if nlp is not None:
        return nlp
    uniner = uniner_of(student)
    student_settings = next((student.config["components"][pipe_name] for pipe_name, pipe in student.pipeline if pipe is uniner), {})
    return uniner_pipeline(name, **{key: student_settings[key] for key in BASELINE_SETTINGS if key in student_settings})
