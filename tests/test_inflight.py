"""The in-flight limit under rate limits, and the answer journal across a kill."""
import json
import threading

import pytest

from spacy_uniner.distill.inflight import AnswerJournal, InFlightLimit


def test_rate_limits_halve_the_requests_in_flight_and_clean_answers_win_them_back():
    limit = InFlightLimit(16)
    for _ in range(16):
        limit.acquire()
    limit.release(rate_limited=True)
    assert limit.limit == 8
    limit.release(rate_limited=True)
    assert limit.limit == 4
    for _ in range(14):
        limit.release(rate_limited=False)
    assert limit.held == 0 and limit.limit == 6  # one more after each run of `limit` clean answers
    for _ in range(200):
        limit.acquire()
        limit.release(rate_limited=False)
    assert limit.limit == 16  # never past the configured concurrency
    with pytest.raises(ValueError, match="concurrency must be at least 1"):
        InFlightLimit(0)


def test_acquire_waits_while_the_limit_is_held():
    limit = InFlightLimit(1)
    limit.acquire()
    entered = threading.Event()
    waiter = threading.Thread(target=lambda: (limit.acquire(), entered.set()))
    waiter.start()
    assert not entered.wait(0.2)
    limit.release(rate_limited=False)
    assert entered.wait(5)
    waiter.join()


def test_the_journal_keeps_every_answer_and_skips_a_line_cut_by_a_kill(tmp_path):
    path = tmp_path / "cache" / "teacher_answers.jsonl"
    journal = AnswerJournal(path)
    journal.add("prompt one", '[("Bayer", "company")]', {"prompt_tokens": 12})
    journal.add("prompt two", "[]")
    with path.open("a") as cut:
        cut.write(json.dumps({"key": "x", "response": "[]"})[:20])  # killed mid-write
    again = AnswerJournal(path)
    assert again.get("prompt one") == '[("Bayer", "company")]' and again.get("prompt two") == "[]"
    assert again.get("prompt three") is None and len(again.answers) == 2
    assert AnswerJournal(None).get("prompt one") is None
