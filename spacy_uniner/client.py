"""The one client for OpenAI-compatible servers, the teacher's (chat completions) and the student's
(completions): a kept-alive session that retries rate limits, server errors, timeouts and dropped
connections with exponential backoff (honouring Retry-After), and an API key from an environment
variable when one is set."""
import os
from typing import Dict, Optional

import requests
from requests.adapters import HTTPAdapter
from urllib3.util import Retry

RETRY_STATUSES = (429, 500, 502, 503, 504)


def retrying_session(max_tries: int, interval: float, connections: int = 10) -> requests.Session:
    """A session whose requests are tried `max_tries` times in all, waiting `interval` seconds, then
    twice that, and so on; `connections` kept alive per host (one per concurrent request)."""
    if max_tries < 1:
        raise ValueError(f"max_tries must be at least 1, got {max_tries}")
    retries = Retry(total=max_tries - 1, backoff_factor=interval, status_forcelist=RETRY_STATUSES, allowed_methods=None, raise_on_status=False)
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retries, pool_connections=connections, pool_maxsize=connections)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def key_headers(api_key_env: Optional[str]) -> Dict[str, str]:
    """A bearer key from the environment variable `api_key_env` when it is set; none otherwise (a
    local server needs none)."""
    key = os.getenv(api_key_env) if api_key_env else None
    return {"Authorization": f"Bearer {key}"} if key else {}
