"""Open-type named entity recognition for spaCy with UniversalNER-style LLMs."""
from .component import UniNER, make_uniner
from .prompts import build_prompt

__all__ = ["UniNER", "build_prompt", "make_uniner"]
__version__ = "0.1.0"
