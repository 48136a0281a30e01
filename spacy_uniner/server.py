"""The student behind an inference server that speaks OpenAI's completions API (`/v1/completions`:
vLLM, Text Generation Inference, llama.cpp's server): the component's prompts, byte for byte, sent
as concurrent requests, answered greedily, with token log-probabilities where the server gives them."""
import json
import math
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from itertools import accumulate
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union
from urllib.parse import urlsplit

import requests

from .client import key_headers, read_bounded, retrying_session
from .errors import UserError
from .prompts import TURN_ENDS
from .scores import ScoredAnswer


# The most a completion's reply may hold: max_new_tokens tokens with their log-probabilities take a
# few hundred bytes each; more is a server gone wrong, not an answer.
MAX_REPLY_BYTES = 16 * 1024 * 1024
# A log-probability above 0 by no more than this is the server's rounding, read as 0.
ROUNDING = 1e-4


class ServerError(ConnectionError):
    """Questions the server did not answer after every retry: `failures` maps a prompt's index to
    its error; `answers` holds the others' answers (None where one failed)."""

    def __init__(self, url: str, failures: Dict[int, Exception], answers: List[Optional[ScoredAnswer]]):
        first = next(iter(failures.values()))
        super().__init__(f"the server at {url} did not answer {len(failures)} of {len(answers)} questions; the first error: {first}")
        self.url, self.failures, self.answers = url, failures, answers


class ServerGenerator:
    """Answers prompts through `server` (the API's base URL, e.g. http://host:8000/v1), `concurrency`
    requests at a time, each given `timeout` seconds and tried `max_tries` times (rate limits,
    server errors, timeouts and dropped connections are retried with backoff). The model's weights
    stay on the server: saving writes none, loading reads none."""

    def __init__(
        self,
        server: str,
        model: str,
        *,
        max_new_tokens: int = 256,
        concurrency: int = 8,
        timeout: float = 60.0,
        max_tries: int = 4,
        retry_interval: float = 1.0,
        api_key_env: Optional[str] = "OPENAI_API_KEY",
    ):
        if concurrency < 1 or max_new_tokens < 1 or timeout <= 0:
            raise UserError(f"[uniner] config keys 'concurrency' and 'max_new_tokens' must be >= 1 and 'timeout' > 0, got {concurrency}, {max_new_tokens} and {timeout}")
        parts = urlsplit(server) if isinstance(server, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise UserError(f"[uniner] config key 'url' must be the API's base URL with its scheme, such as http://host:8000/v1, got {server!r}")
        self.url = server.rstrip("/") + "/completions"
        self.model = model
        self.max_new_tokens = max_new_tokens
        self.concurrency = concurrency
        self.timeout = timeout
        self.api_key_env = api_key_env
        self.session = retrying_session(max_tries, retry_interval, connections=concurrency)
        self.generated_tokens = 0
        # Prompt tokens the server reported (`usage`), and how many of them it read from its cache
        # (llama.cpp, vLLM: `prompt_tokens_details.cached_tokens`): how much of each text it reused.
        self.prompt_tokens = self.cached_tokens = 0
        self.unscored = False  # warned that the server gives no scores

    def generate_scored(self, prompts: List[str]) -> List[ScoredAnswer]:
        """One answer per prompt, in order. Raises `ServerError` when any question fails for good."""
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            futures = [pool.submit(self.complete, prompt) for prompt in prompts]
        answers: List[Optional[ScoredAnswer]] = []
        failures: Dict[int, Exception] = {}
        for index, future in enumerate(futures):
            try:
                answers.append(future.result())
            except (requests.RequestException, ValueError) as error:
                failures[index] = error
                answers.append(None)
        if failures:
            raise ServerError(self.url, failures, answers)
        return answers

    def generate(self, prompts: List[str]) -> List[str]:
        return [answer.text for answer in self.generate_scored(prompts)]

    def complete(self, prompt: str) -> ScoredAnswer:
        request = {
            "model": self.model,
            "prompt": prompt,
            "max_tokens": self.max_new_tokens,
            "temperature": 0,
            "stop": [TURN_ENDS[1]],
            "logprobs": 1,
        }
        deadline = time.monotonic() + self.timeout
        with self.session.post(self.url, json=request, headers=key_headers(self.api_key_env), timeout=self.timeout, stream=True) as response:
            text = read_bounded(response, deadline, MAX_REPLY_BYTES).decode("utf8", errors="replace")
        if response.status_code != 200:
            raise UserError(f"{self.url} answered {response.status_code}: {text[:200]}")
        try:
            body = json.loads(text)
            choice = body["choices"][0]
            answer = scored_completion(choice["text"], choice.get("logprobs"))
        except (ValueError, KeyError, IndexError, TypeError) as error:
            raise UserError(f"{self.url} sent no completion the OpenAI API describes ({error!r}): {text[:200]}") from error
        if not answer.token_logprobs and answer.text and not self.unscored:
            self.unscored = True
            warnings.warn(
                f"[uniner] the server at {self.url} gives no token log-probabilities (its completions carry "
                "logprobs: null), so every span scores 1.0 and the component's threshold cannot apply"
            )
        self.generated_tokens += len(answer.token_logprobs)
        usage = body.get("usage") or {}
        self.prompt_tokens += usage.get("prompt_tokens") or 0
        self.cached_tokens += (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
        return answer

    def load(self, source: Any = None) -> None:
        """Nothing to load: the server holds the model."""

    def save(self, path: Union[str, Path]) -> None:
        """Nothing to save: `server` and `model` are in the pipeline's config."""


def scored_completion(text: str, logprobs: Optional[Dict[str, Any]]) -> ScoredAnswer:
    """A completion as the component reads an answer (up to "</s>", stripped), with its tokens'
    log-probabilities when the server sent them: unscored (every mention 1.0) when it sent none."""
    if not isinstance(text, str):
        raise TypeError(f"the completion's text is {type(text).__name__}, not a string")
    answer = text.split(TURN_ENDS[1], 1)[0]
    tokens = token_logprobs(logprobs)
    if tokens is None:
        return ScoredAnswer(answer.strip())
    ends, values = tokens
    return ScoredAnswer.from_raw(answer, ends, values)


def token_logprobs(logprobs: Optional[Dict[str, Any]]) -> Optional[Tuple[List[int], List[float]]]:
    """Each generated token's end (in characters of the completion) and log-probability, from either
    shape the completions API takes in the wild: the legacy lists (`tokens`, `token_logprobs`: vLLM,
    llama-cpp-python, OpenAI) or llama.cpp's server (`content`: one object per token with its
    `token`, its UTF-8 `bytes` and its `logprob`). None when the server sent neither (TGI sends null)."""
    if not logprobs:
        return None
    if logprobs.get("tokens"):
        return list(accumulate(len(token) for token in logprobs["tokens"])), checked_logprobs(logprobs["token_logprobs"])
    if logprobs.get("content"):
        # A character cut between two tokens ends with the token that completes it: the ends count the
        # characters the bytes so far decode to.
        ends, values, read = [], [], b""
        for token in logprobs["content"]:
            read += bytes(token["bytes"]) if token.get("bytes") is not None else token["token"].encode("utf8")
            ends.append(len(read.decode("utf8", errors="ignore")))
            values.append(token["logprob"])
        return ends, checked_logprobs(values)
    return None


def checked_logprobs(values: List[Any]) -> List[float]:
    """Log-probabilities as a score needs them: finite numbers up to 0 (a mention's score, their
    sum's exponent, then lies in [0, 1]); anything else makes the reply an error."""
    checked = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value > ROUNDING:
            raise UserError(f"a token log-probability of {value!r}: a log-probability is a finite number up to 0")
        checked.append(min(float(value), 0.0))
    return checked
