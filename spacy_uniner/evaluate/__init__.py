"""Evaluation on the paper's zero-shot benchmark: dataset loaders and the paper's metric."""
from .metrics import PRF, normalize_mention, paper_parse, paper_scores

__all__ = ["PRF", "normalize_mention", "paper_parse", "paper_scores"]
