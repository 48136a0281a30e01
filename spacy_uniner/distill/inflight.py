"""Many teacher requests in flight, and nothing answered lost: a limit on requests in flight that
halves when the server pushes back (429) and grows back while it answers cleanly, a journal that
keeps every answer the moment it arrives, and the counts a user prices a run with."""
import hashlib
import json
import threading
from collections import Counter
from pathlib import Path
from typing import Dict, Optional, Union

from ..errors import UserError
from ..files import drop_torn_last_line

COUNTS = ("requests", "retries", "rate_limited", "answered", "failed", "journaled", "prompt_tokens", "completion_tokens")


class InFlightLimit:
    """At most `limit` requests at once, `most` at the start. A request the server rate-limited
    halves the limit (down to 1; the client then waits as Retry-After says); `limit` clean answers in
    a row raise it by one, back up to `most`."""

    def __init__(self, most: int):
        if most < 1:
            raise UserError(f"concurrency must be at least 1, got {most}")
        self.most = self.limit = most
        self.held = self.clean = 0
        self.condition = threading.Condition()

    def acquire(self) -> None:
        with self.condition:
            self.condition.wait_for(lambda: self.held < self.limit)
            self.held += 1

    def release(self, rate_limited: bool) -> None:
        with self.condition:
            self.held -= 1
            if rate_limited:
                self.limit, self.clean = max(1, self.limit // 2), 0
            else:
                self.clean += 1
                if self.clean >= self.limit and self.limit < self.most:
                    self.limit, self.clean = self.limit + 1, 0
            self.condition.notify_all()


def prompt_key(prompt: str) -> str:
    return hashlib.sha1(prompt.encode("utf8")).hexdigest()


class AnswerJournal:
    """The teacher's answers keyed by their prompt's hash, each appended to `path` (a .jsonl file)
    and flushed the moment it arrives, so a run killed at any point keeps every answer it was sent;
    the next run reads them back and asks only for the rest. Without a path it keeps nothing.

    spacy-llm's own cache gets a batch's docs only once the whole batch is answered, so it cannot be
    the one that keeps each answer; it stays as it is, in front of this."""

    def __init__(self, path: Optional[Union[str, Path]] = None):
        self.path = Path(path) if path else None
        self.answers: Dict[str, str] = {}
        self.lock = threading.Lock()
        if self.path is not None and self.path.is_file():
            drop_torn_last_line(self.path)  # a run killed while writing its last answer: asked again
            for line in self.path.read_bytes().splitlines():
                try:
                    record = json.loads(line)
                    self.answers[record["key"]] = record["response"]
                except (ValueError, KeyError, TypeError):
                    continue  # a line that another program garbled: its answer is asked again

    def get(self, prompt: str) -> Optional[str]:
        return self.answers.get(prompt_key(prompt))

    def add(self, prompt: str, response: str, usage: Optional[dict] = None) -> None:
        key = prompt_key(prompt)
        with self.lock:
            self.answers[key] = response
            if self.path is None:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf8") as journal:
                journal.write(json.dumps({"key": key, "response": response, "usage": usage}, ensure_ascii=False) + "\n")


class TeacherCounts:
    """Requests, retries (of which rate limited), answered, failed and journaled prompts, and the
    prompt and completion tokens the server reported (`usage`), counted across threads."""

    def __init__(self):
        self.counts: Counter = Counter({name: 0 for name in COUNTS})
        self.lock = threading.Lock()

    def add(self, **counts: int) -> None:
        with self.lock:
            self.counts.update(counts)

    def as_dict(self) -> Dict[str, int]:
        with self.lock:
            return dict(self.counts)
