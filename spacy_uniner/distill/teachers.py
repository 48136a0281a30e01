"""Teachers for distillation, as spacy-llm models: recorded answers replayed offline, and any server
that speaks OpenAI's chat-completions API (OpenAI, Anthropic's compatibility endpoint, vLLM,
llama.cpp, Ollama)."""
import json
import warnings
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import requests
from confection import SimpleFrozenDict
import srsly
from spacy_llm.models.rest.openai.model import OpenAI
from spacy_llm.registry import registry

from ..client import key_headers, retrying_session
from ..errors import UserError
from ..prompts import passage_of
from .inflight import AnswerJournal, InFlightLimit, TeacherCounts


class RecordedTeacher:
    """Answers each teacher prompt with the response recorded for its passage."""

    def __init__(self, path: Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise UserError(f"[RecordedTeacher] no file of recorded responses at {self.path}")
        self.responses: Dict[str, str] = {}
        for i, record in enumerate(srsly.read_jsonl(self.path), 1):
            if not isinstance(record, dict) or not isinstance(record.get("text"), str) or not isinstance(record.get("response"), str):
                raise UserError(f'[RecordedTeacher] {self.path} line {i}: expected {{"text": str, "response": str}}')
            self.responses[record["text"]] = record["response"]

    def __call__(self, prompts: Iterable[Iterable[str]]) -> Iterable[Iterable[str]]:
        return [[self.respond(prompt) for prompt in doc_prompts] for doc_prompts in prompts]

    def respond(self, prompt: str) -> str:
        passage = passage_of(prompt)
        if passage not in self.responses:
            raise UserError(
                f"[RecordedTeacher] {self.path} has no recorded response for the passage "
                f"{passage[:100]!r}{'...' if len(passage) > 100 else ''}: record one, or distill with a "
                "live teacher (configs/teachers/)."
            )
        return self.responses[passage]


@registry.llm_models("spacy_uniner.RecordedTeacher.v1")
def make_recorded_teacher(path: Path) -> RecordedTeacher:
    """Replay recorded teacher responses: a .jsonl file of {"text": passage, "response": answer}."""
    return RecordedTeacher(path)


class TeacherError(ValueError):
    """Passages the teacher did not answer after every retry: `failures` maps a passage's text to
    its error. The answered ones are in the journal."""

    def __init__(self, failures: Dict[str, Exception], asked: int):
        passage, error = next(iter(failures.items()))
        super().__init__(f"the teacher did not answer {len(failures)} of {asked} passages; the first, {passage[:80]!r}: {error}")
        self.failures = failures


class OpenAICompatible(OpenAI):
    """spacy-llm's OpenAI model, pointed at any chat-completions endpoint, with `concurrency`
    requests in flight.

    spacy-llm's own checks its key against api.openai.com whatever the endpoint
    (explosion/spacy-llm#499), which fails offline beside a local server, retries only 429 and 503,
    and asks one prompt at a time. This one checks the server it talks to, sends a key only when
    there is one, retries server errors and dropped connections too, keeps `concurrency` requests
    in flight over kept-alive connections (fewer while the server rate-limits), and keeps every
    answer in its journal (`journal_path`) the moment it arrives.
    """

    def __init__(self, name: str, endpoint: str, api_key_env: Optional[str], concurrency: int = 16, journal_path: Optional[Path] = None, verify: bool = True, **kwargs: Any):
        self._api_key_env = api_key_env
        self._verify = verify
        self._limit = InFlightLimit(concurrency)
        self._session = retrying_session(kwargs["max_tries"], kwargs["interval"], connections=concurrency)
        self.journal = AnswerJournal(journal_path)
        self.counts = TeacherCounts()
        # Called with the counts after each answer or failure (the progress bar's figures).
        self.on_answer: Optional[Callable[[Dict[str, int]], None]] = None
        super().__init__(name=name, endpoint=endpoint, **kwargs)

    @property
    def credentials(self) -> Dict[str, str]:
        return key_headers(self._api_key_env)

    def _verify_auth(self) -> None:
        if not self._verify:  # batch files: written and read without the server
            return
        url = self._endpoint.rsplit("/chat/completions", 1)[0] + "/models"
        try:
            response = self._session.get(url, headers=self._credentials, timeout=self._max_request_time)
        except requests.RequestException as error:
            raise ConnectionError(f"[OpenAICompatible] cannot reach the teacher server at {url}: {error}") from error
        if response.status_code != 200:
            warnings.warn(f"[OpenAICompatible] {url} answered {response.status_code}: {response.text[:200]}")
            return
        models: List[str] = [model.get("id") for model in response.json().get("data", [])]
        if models and self._name not in models:
            raise UserError(f"[OpenAICompatible] the server at {url} has no model {self._name!r}; it has {sorted(models)}")

    def __call__(self, prompts: Iterable[Iterable[str]]) -> Iterable[Iterable[str]]:
        """The answers to each doc's prompts, in order: journaled ones without a request, the others
        asked with `concurrency` in flight. Raises `TeacherError` when any passage fails for good,
        after every other request of the batch is answered (and journaled)."""
        per_doc = [list(doc_prompts) for doc_prompts in prompts]
        flat = [prompt for doc_prompts in per_doc for prompt in doc_prompts]
        answers: List[Optional[str]] = [self.journal.get(prompt) for prompt in flat]
        self.counts.add(journaled=sum(answer is not None for answer in answers))
        failures: Dict[str, Exception] = {}
        with ThreadPoolExecutor(max_workers=self._limit.most) as pool:
            asked = {pool.submit(self.ask, flat[i]): i for i, answer in enumerate(answers) if answer is None}
            for future in as_completed(asked):
                try:
                    answers[asked[future]] = future.result()
                    self.counts.add(answered=1)
                except (requests.RequestException, ValueError) as error:
                    failures[passage_of(flat[asked[future]])] = error
                    self.counts.add(failed=1)
                if self.on_answer is not None:
                    self.on_answer(self.counts.as_dict())
        if failures:
            raise TeacherError(failures, len(asked))
        answer_iter = iter(answers)
        return [[next(answer_iter) for _ in doc_prompts] for doc_prompts in per_doc]

    def ask(self, prompt: str) -> str:
        """One chat completion, journaled as soon as it arrives."""
        body = self.request_body(prompt)
        self._limit.acquire()
        rate_limited = False
        try:
            response = self._session.post(self._endpoint, headers={**self._credentials, "Content-Type": "application/json"}, json=body, timeout=self._max_request_time)
            # urllib3 keeps the attempts it retried on the response: they are this request's retries.
            history = getattr(getattr(response.raw, "retries", None), "history", ()) or ()
            rate_limited = response.status_code == 429 or any(attempt.status == 429 for attempt in history)
            self.counts.add(requests=1 + len(history), retries=len(history), rate_limited=sum(attempt.status == 429 for attempt in history))
        finally:
            self._limit.release(rate_limited)
        answer, usage = self.read_answer(response)
        self.journal.add(prompt, answer, usage)
        self.counts.add(prompt_tokens=usage.get("prompt_tokens") or 0, completion_tokens=usage.get("completion_tokens") or 0)
        return answer

    def request_body(self, prompt: str) -> Dict[str, Any]:
        """The chat-completions request for `prompt`: the teacher's model and settings."""
        return {"messages": [{"role": "user", "content": prompt}], **self._config, "model": self._name}

    def read_answer(self, response: requests.Response) -> Tuple[str, Dict[str, Any]]:
        """The message and `usage` of a chat completion; an error body (or, unless `strict`, the
        error as the answer, as spacy-llm's model does) otherwise."""
        try:
            body = response.json()
        except ValueError:
            raise UserError(f"{self._endpoint} answered {response.status_code} with no JSON: {response.text[:200]!r}") from None
        if response.status_code != 200 or (isinstance(body, dict) and "error" in body):
            error = body.get("error", body) if isinstance(body, dict) else body
            if self._strict:
                raise UserError(f"{self._endpoint} answered {response.status_code}: {json.dumps(error)[:300]}")
            return json.dumps(body), {}
        try:
            message = body["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise UserError(f"{self._endpoint} sent no chat completion the OpenAI API describes: {response.text[:200]!r}") from None
        if not isinstance(message, str):
            raise UserError(f"{self._endpoint} sent a completion whose message content is {type(message).__name__}, not text: {response.text[:200]!r}")
        return message, body.get("usage") or {}


@registry.llm_models("spacy_uniner.OpenAICompatible.v1")
def make_openai_compatible(
    name: str,
    endpoint: str = "https://api.openai.com/v1/chat/completions",
    api_key_env: Optional[str] = "OPENAI_API_KEY",
    config: Dict[str, Any] = SimpleFrozenDict(temperature=0.0),
    strict: bool = True,
    max_tries: int = 6,
    interval: float = 1.0,
    max_request_time: float = 120.0,
    context_length: Optional[int] = None,
    concurrency: int = 16,
    journal_path: Optional[Path] = None,
    verify: bool = True,
) -> OpenAICompatible:
    """A teacher behind a chat-completions endpoint. `api_key_env` names the environment variable that
    holds the key (none for a local server); failed requests are retried `max_tries` times in all,
    waiting `interval` seconds, then twice that, and so on (Retry-After is honoured).
    `concurrency` requests are in flight at once (fewer while the server answers 429); every answer
    is appended to `journal_path` when one is set (`distill` sets it inside the cache folder).
    `verify` false skips asking the server for its models at load (batch files need no server)."""
    return OpenAICompatible(
        name=name,
        endpoint=endpoint,
        api_key_env=api_key_env,
        config=dict(config),
        strict=strict,
        max_tries=max_tries,
        interval=interval,
        max_request_time=max_request_time,
        context_length=context_length,
        concurrency=concurrency,
        journal_path=journal_path,
        verify=verify,
    )
