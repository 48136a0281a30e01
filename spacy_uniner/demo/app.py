"""The demo page: type a text and any labels, see what the `uniner` component finds.

A small FastAPI app around one loaded pipeline. `POST /api/annotate` runs the pipeline with the
component's threshold at 0, so every candidate and its score comes back; `POST /api/render` draws
those candidates at any threshold with displaCy, without asking the model again: the page's
threshold slider calls it. One lock guards the component (its labels are set per request), so two
people using the page at once are answered one after the other, each with their own labels.

Every request is checked before it reaches the pipeline: its Host header (a page on this machine
answers only to the names it was started for, so a DNS-rebinding site cannot reach it), its size
(before its body is parsed), then every field; what is refused gets `{"error": ...}` and a 4xx.
"""
import html
import logging
import threading
import time
from importlib import resources
from typing import Any, Dict, List

import uvicorn
from fastapi import FastAPI, HTTPException
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field, field_validator, model_validator
from spacy import displacy
from spacy.language import Language
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..align import resolve_ents
from ..component import uniner_of, unencodable
from ..display import label_color
from ..errors import UserError
from ..generation import HFGenerator

# Bounds that keep one run of the page to seconds or minutes on a CPU: questions are windows x labels.
MAX_CHARS = 5_000
MAX_LABELS = 16
MAX_LABEL_CHARS = 100
# Bounds on what a request may carry: the largest body, checked before it is parsed, and the most
# candidates a render draws (far more than a run of MAX_LABELS labels over MAX_CHARS finds).
MAX_BODY_BYTES = 1_000_000
MAX_CANDIDATES = 10_000
# The names a page on this machine answers to, besides the address it was started on.
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
logger = logging.getLogger(__name__)


class DemoInputError(ValueError):
    """Input the page refuses, with the message it shows."""


def unicode_text(value: str) -> str:
    """A field's text as UTF-8 can hold it: a lone surrogate (JSON's "\\udc00") is refused."""
    problem = unencodable(value)
    if problem:
        raise UserError(problem)
    return value


class AnnotateRequest(BaseModel):
    text: str
    labels: str
    threshold: float = Field(0.0, ge=0.0, le=1.0)

    check_unicode = field_validator("text", "labels")(unicode_text)


class Candidate(BaseModel):
    start: int = Field(ge=0, le=MAX_CHARS)
    end: int = Field(ge=0, le=MAX_CHARS)
    label: str = Field(min_length=1, max_length=MAX_LABEL_CHARS)
    score: float = Field(ge=0.0, le=1.0, allow_inf_nan=False)

    check_unicode = field_validator("label")(unicode_text)

    @model_validator(mode="after")
    def ordered(self) -> "Candidate":
        if self.start >= self.end:
            raise UserError(f"start ({self.start}) must be before end ({self.end})")
        return self


class RenderRequest(BaseModel):
    text: str
    candidates: List[Candidate] = Field(max_length=MAX_CANDIDATES)
    threshold: float = Field(0.0, ge=0.0, le=1.0)

    check_unicode = field_validator("text")(unicode_text)

    @model_validator(mode="after")
    def within_text(self) -> "RenderRequest":
        outside = next((i for i, candidate in enumerate(self.candidates) if candidate.end > len(self.text)), None)
        if outside is not None:
            raise UserError(f"candidates.{outside} ends at {self.candidates[outside].end}, past the text's {len(self.text)} characters")
        return self


def parse_labels(labels: str) -> List[str]:
    """Labels from what a person types: separated by commas or new lines, each stripped and its
    inner white space made one space, repeats dropped."""
    parsed = list(dict.fromkeys(" ".join(label.split()) for label in labels.replace("\n", ",").split(",")))
    parsed = [label for label in parsed if label]
    if not parsed:
        raise DemoInputError("Give at least one label, for example: person, organization, disease.")
    if len(parsed) > MAX_LABELS:
        raise DemoInputError(f"At most {MAX_LABELS} labels a run: you gave {len(parsed)}. Each label is one question per window of the text.")
    too_long = [label for label in parsed if len(label) > MAX_LABEL_CHARS]
    if too_long:
        raise DemoInputError(f"A label has at most {MAX_LABEL_CHARS} characters: {too_long[0][:40]!r}... has {len(too_long[0])}.")
    return parsed


def check_text(text: str) -> str:
    if not text.strip():
        raise DemoInputError("Type a text to look for entities in.")
    if len(text) > MAX_CHARS:
        raise DemoInputError(
            f"The text has {len(text):,} characters; the page takes at most {MAX_CHARS:,}. "
            "Cut it, or run the pipeline from Python, which reads a text of any length in windows."
        )
    return text


class Demo:
    """The page's work, apart from HTTP: one pipeline, loaded once, asked under a lock."""

    def __init__(self, nlp: Language):
        self.nlp = nlp
        uniner = uniner_of(nlp)
        if uniner is None:
            raise UserError(f"The pipeline has no `uniner` component (it has {nlp.pipe_names}): give a pipeline built with one.")
        self.uniner = uniner
        if isinstance(uniner.generator, HFGenerator):
            uniner.generator.model  # loaded now: a model that cannot be loaded stops the page before it serves
        # The slider starts at the pipeline's own threshold; the component itself keeps every
        # candidate, so that moving the slider never needs the model.
        self.default_threshold = self.uniner.threshold
        self.uniner.threshold = 0.0
        self.lock = threading.Lock()

    def annotate(self, text: str, labels: str, threshold: float) -> Dict[str, Any]:
        text, labels = check_text(text), parse_labels(labels)
        with self.lock:
            self.uniner.labels = labels
            asked = self.uniner.stats["queries"]  # the component counts what it asks; only this lock's holder runs it
            started = time.perf_counter()
            doc = self.nlp(text)
            seconds = time.perf_counter() - started
            questions = self.uniner.stats["queries"] - asked
        group = doc.spans[self.uniner.spans_key]
        candidates = [
            {"start": span.start_char, "end": span.end_char, "label": span.label_, "score": round(score, 4)}
            for span, score in zip(group, group.attrs["scores"])
        ]
        return dict(
            self.render(text, candidates, threshold),
            candidates=candidates,
            labels=labels,
            questions=questions,
            seconds=round(seconds, 3),
        )

    def render(self, text: str, candidates: List[Dict[str, Any]], threshold: float) -> Dict[str, Any]:
        """displaCy's view of the candidates that reach `threshold` (non-overlapping, as the
        component chooses `doc.ents`) and the table rows of all of them."""
        check_text(text)
        doc = self.nlp.make_doc(text)
        kept = []
        for candidate in candidates:
            span = doc.char_span(candidate["start"], candidate["end"], label=candidate["label"]) if candidate["score"] >= threshold else None
            if span is not None:
                kept.append((span, candidate["score"]))
        ents = resolve_ents(doc, [span for span, _ in kept], overwrite=False)
        # displaCy writes labels into the page as they are: escape them, since a label is anything
        # a person typed.
        shown = {label: html.escape(label) for label in {span.label_ for span in ents}}
        view = {"text": text, "ents": [{"start": ent.start_char, "end": ent.end_char, "label": shown[ent.label_]} for ent in ents]}
        colors = {shown[label]: label_color(label) for label in shown}
        rows = [{"mention": span.text, "label": span.label_, "score": score, "entity": span in ents} for span, score in kept]
        return {"html": displacy.render(view, style="ent", manual=True, options={"colors": colors}), "rows": rows, "threshold": threshold}


def host_name(header: str) -> str:
    """The host of a Host header, without its port: "[::1]:8000" -> "::1"."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class RequestGuard:
    """ASGI middleware in front of the page: a request for a host the page was not started for, or
    with a body over `max_bytes` (counted as it arrives, whatever Content-Length says), is refused
    before the app parses anything."""

    def __init__(self, app, hosts: List[str], max_bytes: int):
        self.app = app
        self.hosts = {host_name(host) for host in hosts}
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        host = host_name(headers.get(b"host", b"").decode("latin-1"))
        if host not in self.hosts:
            message = f"This page answers to {', '.join(sorted(self.hosts))}, not {host or 'a request without a Host header'}: start it with --allowed-hosts to add a name."
            return await JSONResponse({"error": message}, status_code=400)(scope, receive, send)
        too_large = JSONResponse({"error": f"The request is over {self.max_bytes:,} bytes: send a shorter text or fewer candidates."}, status_code=413)
        length = headers.get(b"content-length", b"0")
        if not length.isdigit() or int(length) > self.max_bytes:
            return await too_large(scope, receive, send)
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_bytes:
                return await too_large(scope, receive, send)
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def create_app(nlp: Language, title: str = "spacy-uniner", hosts: List[str] = LOCAL_HOSTS) -> FastAPI:
    """The page's app; it answers to the names in `hosts` only (Host header, port aside)."""
    demo = Demo(nlp)
    app = FastAPI(title=f"{title} demo", docs_url=None, redoc_url=None)
    app.add_middleware(RequestGuard, hosts=list(hosts), max_bytes=MAX_BODY_BYTES)
    page = (
        resources.files(__package__).joinpath("page.html").read_text(encoding="utf8")
        .replace("{{TITLE}}", html.escape(title))
        .replace("{{THRESHOLD}}", str(demo.default_threshold))
        .replace("{{MAX_CHARS}}", f"{MAX_CHARS:,}")
        .replace("{{MAX_LABELS}}", str(MAX_LABELS))
    )

    def answer(work, *args) -> Dict[str, Any]:
        """The work's result, or a message for the page: never a stack trace."""
        try:
            return work(*args)
        except DemoInputError as err:
            raise HTTPException(status_code=422, detail=str(err)) from err
        except Exception as err:  # the model or server failed: the page says so and stays usable
            logger.exception("The demo's pipeline failed")
            raise HTTPException(status_code=500, detail=f"The pipeline failed: {type(err).__name__}: {err}") from err

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    # Plain `def` endpoints run in FastAPI's thread pool: a long run does not stop the page serving.
    @app.post("/api/annotate")
    def annotate(request: AnnotateRequest) -> Dict[str, Any]:
        return answer(demo.annotate, request.text, request.labels, request.threshold)

    @app.post("/api/render")
    def render(request: RenderRequest) -> Dict[str, Any]:
        return answer(demo.render, request.text, [candidate.model_dump() for candidate in request.candidates], request.threshold)

    @app.exception_handler(StarletteHTTPException)  # ours, and the framework's (404, 405, a body that does not parse)
    def message(_, err: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": err.detail}, status_code=err.status_code)

    @app.exception_handler(RequestValidationError)
    def malformed(_, err: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(part) for part in error['loc'][1:]) or 'body'}: {error['msg']}" for error in err.errors())
        return JSONResponse({"error": f"Malformed request: {problems}"}, status_code=422)

    return app


def serve(nlp: Language, host: str = "127.0.0.1", port: int = 8000, title: str = "spacy-uniner", allowed_hosts: List[str] = ()) -> None:
    """Serve the page until interrupted (Ctrl-C). It answers to this machine's names, the address it
    listens on and `allowed_hosts`."""
    uvicorn.run(create_app(nlp, title, [*LOCAL_HOSTS, host, *allowed_hosts]), host=host, port=port)
