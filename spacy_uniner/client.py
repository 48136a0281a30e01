"""The one client for OpenAI-compatible servers, the teacher's (chat completions) and the student's
(completions): a kept-alive session that retries rate limits, server errors, timeouts and dropped
connections with exponential backoff (honouring Retry-After), and an API key from an environment
variable when one is set."""
import os
import time
from typing import Dict, Optional

import requests
from requests.adapters import HTTPAdapter
from urllib3.util import Retry

from .errors import UserError

RETRY_STATUSES = (429, 500, 502, 503, 504)


def retrying_session(max_tries: int, interval: float, connections: int = 10) -> requests.Session:
    """A session whose requests are tried `max_tries` times in all, waiting `interval` seconds, then
    twice that, and so on; `connections` kept alive per host (one per concurrent request)."""
    if max_tries < 1:
        raise UserError(f"max_tries must be at least 1, got {max_tries}")
    retries = Retry(total=max_tries - 1, backoff_factor=interval, status_forcelist=RETRY_STATUSES, allowed_methods=None, raise_on_status=False)
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retries, pool_connections=connections, pool_maxsize=connections)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def read_bounded(response: requests.Response, deadline: float, limit: int) -> bytes:
    """The body of a response opened with `stream=True`, given up on once it passes `limit` bytes or
    the clock (time.monotonic) passes `deadline`: the HTTP library's timeout bounds each read, so a
    server sending a byte at a time would otherwise hold the request for as long as it likes."""
    body = bytearray()
    while True:
        if time.monotonic() > deadline:
            raise requests.Timeout(f"{response.url} did not finish its reply in time ({len(body)} bytes by the deadline)")
        chunk = response.raw.read1(65536, decode_content=True)
        if not chunk:
            return bytes(body)
        body += chunk
        if len(body) > limit:
            raise UserError(f"{response.url} sent a reply of more than {limit} bytes")


def key_headers(api_key_env: Optional[str]) -> Dict[str, str]:
    """A bearer key from the environment variable `api_key_env` when it is set; none otherwise (a
    local server needs none)."""
    key = os.getenv(api_key_env) if api_key_env else None
    return {"Authorization": f"Bearer {key}"} if key else {}
