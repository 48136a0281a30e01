"""The demo page (`spacy-uniner demo`): a text, any labels, the entities the student finds."""
from .app import MAX_BODY_BYTES, MAX_CANDIDATES, MAX_CHARS, MAX_LABELS, Demo, DemoInputError, create_app, serve

__all__ = ["MAX_BODY_BYTES", "MAX_CANDIDATES", "MAX_CHARS", "MAX_LABELS", "Demo", "DemoInputError", "create_app", "serve"]
