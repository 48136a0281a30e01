"""Raw text -> passages of about 256 words, as the paper cut its Pile documents, deduplicated."""
import re
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Tuple

import spacy
import srsly

from ..errors import UserError

MAX_WORDS = 256


def read_documents(path: Path) -> Iterator[Dict[str, Any]]:
    """Documents as {"id", "text", "meta"}: a .txt file is one document, a folder holds .txt and
    .jsonl files, a .jsonl file has one {"text": ..., "id"?: ..., "meta"?: {...}} record a line."""
    path = Path(path)
    if path.is_dir():
        for child in sorted(path.iterdir()):
            if child.suffix in (".txt", ".jsonl"):
                yield from read_documents(child)
    elif path.suffix == ".jsonl":
        for i, record in enumerate(srsly.read_jsonl(path), 1):
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                raise UserError(f'{path} line {i}: expected a record with a "text" string')
            yield {"id": str(record.get("id", f"{path.stem}:{i}")), "text": record["text"], "meta": record.get("meta", {})}
    elif path.suffix == ".txt":
        yield {"id": path.stem, "text": path.read_text(encoding="utf8"), "meta": {}}
    else:
        raise UserError(f"{path}: expected a .txt or .jsonl file, or a folder of them")


def split_passages(text: str, nlp: spacy.Language, max_words: int = MAX_WORDS) -> List[str]:
    """Cut a document into passages of at most `max_words` whitespace-separated words, at sentence
    ends where it can (a longer sentence is cut between words). Passages are exact substrings of the
    document; one that fits stays whole."""
    if len(text.split()) <= max_words:
        return [text.strip()] if text.strip() else []
    # (start, end, words) pieces: sentences, or runs of max_words words of a longer sentence.
    pieces: List[Tuple[int, int, int]] = []
    paragraphs = list(re.finditer(r"[^\n]+(?:\n(?![ \t]*\n)[^\n]*)*", text))
    for paragraph, doc in zip(paragraphs, nlp.pipe(match.group() for match in paragraphs)):
        for sent in doc.sents:
            offset = paragraph.start() + sent.start_char
            words = list(re.finditer(r"\S+", sent.text))
            for i in range(0, len(words), max_words):
                run = words[i : i + max_words]
                pieces.append((offset + run[0].start(), offset + run[-1].end(), len(run)))
    passages: List[str] = []
    start, end, count = pieces[0]
    for piece_start, piece_end, piece_words in pieces[1:]:
        if count + piece_words > max_words:
            passages.append(text[start:end])
            start, count = piece_start, 0
        end, count = piece_end, count + piece_words
    passages.append(text[start:end])
    return passages


def make_passages(documents: Iterable[Dict[str, Any]], max_words: int = MAX_WORDS) -> Iterator[Dict[str, Any]]:
    """Passages of every document, each {"id", "text", "meta"} with the document's meta; a passage whose
    words were already seen (whitespace aside) is dropped."""
    if isinstance(max_words, bool) or not isinstance(max_words, int) or max_words < 1:
        raise UserError(f"the longest passage (--max-words) must be a whole number of words, at least 1, got {max_words!r}")
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    nlp.max_length = 10**8
    seen = set()
    for document in documents:
        passages = split_passages(document["text"], nlp, max_words)
        for i, passage in enumerate(passages):
            key = " ".join(passage.split())
            if key in seen:
                continue
            seen.add(key)
            passage_id = document["id"] if len(passages) == 1 else f"{document['id']}#{i}"
            yield {"id": passage_id, "text": passage, "meta": document["meta"]}
