"""Teachers for distillation, as spacy-llm models: recorded answers replayed offline, and any server
that speaks OpenAI's chat-completions API (OpenAI, Anthropic's compatibility endpoint, vLLM,
llama.cpp, Ollama)."""
import warnings
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

import requests
from confection import SimpleFrozenDict
import srsly
from spacy_llm.models.rest.openai.model import OpenAI
from spacy_llm.registry import registry

from ..client import key_headers, retrying_session
from ..prompts import passage_of


class RecordedTeacher:
    """Answers each teacher prompt with the response recorded for its passage."""

    def __init__(self, path: Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise ValueError(f"[RecordedTeacher] no file of recorded responses at {self.path}")
        self.responses: Dict[str, str] = {}
        for i, record in enumerate(srsly.read_jsonl(self.path), 1):
            if not isinstance(record, dict) or not isinstance(record.get("text"), str) or not isinstance(record.get("response"), str):
                raise ValueError(f'[RecordedTeacher] {self.path} line {i}: expected {{"text": str, "response": str}}')
            self.responses[record["text"]] = record["response"]

    def __call__(self, prompts: Iterable[Iterable[str]]) -> Iterable[Iterable[str]]:
        return [[self.respond(prompt) for prompt in doc_prompts] for doc_prompts in prompts]

    def respond(self, prompt: str) -> str:
        passage = passage_of(prompt)
        if passage not in self.responses:
            raise ValueError(
                f"[RecordedTeacher] {self.path} has no recorded response for the passage "
                f"{passage[:100]!r}{'...' if len(passage) > 100 else ''}: record one, or distill with a "
                "live teacher (configs/teachers/)."
            )
        return self.responses[passage]


@registry.llm_models("spacy_uniner.RecordedTeacher.v1")
def make_recorded_teacher(path: Path) -> RecordedTeacher:
    """Replay recorded teacher responses: a .jsonl file of {"text": passage, "response": answer}."""
    return RecordedTeacher(path)


class OpenAICompatible(OpenAI):
    """spacy-llm's OpenAI model, pointed at any chat-completions endpoint.

    spacy-llm's own checks its key against api.openai.com whatever the endpoint
    (explosion/spacy-llm#499), which fails offline beside a local server, and it retries only 429 and
    503. This one checks the server it talks to, sends a key only when there is one, and retries
    server errors too, on one kept-alive connection.
    """

    def __init__(self, name: str, endpoint: str, api_key_env: Optional[str], **kwargs: Any):
        self._api_key_env = api_key_env
        self._session = retrying_session(kwargs["max_tries"], kwargs["interval"])
        super().__init__(name=name, endpoint=endpoint, **kwargs)

    @property
    def credentials(self) -> Dict[str, str]:
        return key_headers(self._api_key_env)

    def _verify_auth(self) -> None:
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
            raise ValueError(f"[OpenAICompatible] the server at {url} has no model {self._name!r}; it has {sorted(models)}")

    def retry(self, call_method: Any, url: str, **kwargs: Any) -> requests.Response:
        # spacy-llm passes requests.post or requests.get; the session's adapter does the retrying.
        return self._session.request(call_method.__name__.upper(), url, **kwargs)


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
) -> OpenAICompatible:
    """A teacher behind a chat-completions endpoint. `api_key_env` names the environment variable that
    holds the key (none for a local server); failed requests are retried `max_tries` times in all,
    waiting `interval` seconds, then twice that, and so on."""
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
    )
