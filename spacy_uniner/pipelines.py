"""Loading what a user names on the command line: a spaCy pipeline folder or package, or a causal
LM's folder or hub id put in a blank pipeline's `uniner` component."""
from pathlib import Path
from typing import Any, Dict, Optional

import spacy
from spacy.util import dict_to_dot, get_model_meta, load_model_from_config

from .backends import TRANSFORMERS
from .component import uniner_of
from .errors import UserError
from .upgrade import read_config, upgrade_overrides


def pipeline_meta(path: Path) -> Dict[str, Any]:
    """A pipeline folder's meta.json as spaCy reads and checks it; one cut short or edited into
    something else (not JSON, no lang, name or version) is an error naming the file."""
    try:
        return get_model_meta(path)
    except (ValueError, TypeError) as err:  # TypeError: JSON that is not an object
        raise UserError(f"{path / 'meta.json'} is not a pipeline's meta.json ({err}): restore it from the pipeline it came from") from None


def load_folder(path: Path, overrides: Dict[str, Any]) -> spacy.Language:
    """`spacy.load(path, config=overrides)`, reading a config saved before the model block (and old
    overrides) in today's shape."""
    dot = dict_to_dot(upgrade_overrides(overrides), for_overrides=True)
    config, _ = read_config(path / "config.cfg", dot)
    nlp = load_model_from_config(config, meta=pipeline_meta(path))
    return nlp.from_disk(path, exclude=["config"])  # config.cfg was read above, with the overrides


def load_pipeline(name: str, config: Optional[Dict[str, Any]] = None) -> Optional[spacy.Language]:
    """A spaCy pipeline folder or installed package, loaded with `config` overrides; None for a
    causal LM's folder or hub id. A local folder is never tried as a hub id: one that is neither says
    why (the file it lacks)."""
    path = Path(name)
    if path.exists():
        if (path / "config.cfg").is_file():
            return load_folder(path, config or {})
        if not (path / "config.json").is_file():
            raise UserError(f"{path} is neither a spaCy pipeline folder (no config.cfg) nor a transformers model folder (no config.json)")
        return None
    try:
        return spacy.load(name, config=upgrade_overrides(config or {}))  # an installed pipeline package
    except OSError:
        return None  # not one: a hub id


def uniner_pipeline(name: str, model: Optional[Dict[str, Any]] = None, **settings) -> spacy.Language:
    """A pipeline folder or package, or a causal LM's hub id or folder put in a blank pipeline; with
    `model` settings for its `uniner` component's backend (batch_size, device, ...: a block with its
    own "@uniner_models" replaces the backend) and `settings` for the component (threshold, ...)."""
    component = dict(settings, model=model) if model else settings
    nlp = load_pipeline(name, {"components": {"uniner": component}} if component else None)
    if nlp is None:
        nlp = spacy.blank("en")
        block = model if model and "@uniner_models" in model else dict(model or {}, name=name)
        nlp.add_pipe("uniner", config={"labels": ["entity"], **settings, "model": block})
    return nlp


# The student's settings a causal LM baseline is run with, so that only the weights differ: of its
# in-process backend, and of the component.
BASELINE_MODEL_SETTINGS = ("batch_size", "max_new_tokens", "device", "dtype", "constrained")
BASELINE_SETTINGS = ("window_size", "window_overlap", "threshold", "label_margin")


def baseline_pipeline(name: str, student: spacy.Language) -> spacy.Language:
    """A spaCy pipeline as it is, or a causal LM (e.g. the student's base as it ships) asked the
    student's questions with its prompt and its component's decoding settings (the component's
    defaults when the student has no `uniner`, or asks a server)."""
    nlp = load_pipeline(name)
    if nlp is not None:
        return nlp
    uniner = uniner_of(student)
    student_settings = next((student.config["components"][pipe_name] for pipe_name, pipe in student.pipeline if pipe is uniner), {})
    backend = student_settings.get("model")
    in_process = backend if isinstance(backend, dict) and backend.get("@uniner_models") == TRANSFORMERS else {}
    return uniner_pipeline(
        name,
        {key: in_process[key] for key in BASELINE_MODEL_SETTINGS if key in in_process},
        **{key: student_settings[key] for key in BASELINE_SETTINGS if key in student_settings},
    )
