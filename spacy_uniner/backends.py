"""The model a `uniner` component asks, as a registered config block of its own (as spacy-llm's
`model` blocks are): `[components.uniner.model]` with `@uniner_models = NAME`, each backend with only
its own keys. Other packages add backends through the `thinc_uniner_models` entry point group (as
spacy-llm's models are found in `thinc_llm_models`), or with `@registry.uniner_models("Their.v1")`
in code that is imported before the pipeline loads (`spacy assemble --code`)."""
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Protocol, runtime_checkable

from spacy.util import SimpleFrozenDict, registry

from .server import ServerGenerator

if TYPE_CHECKING:
    from .generation import HFGenerator

if not hasattr(registry, "uniner_models"):
    registry.create("uniner_models", entry_points=True)

TRANSFORMERS = "spacy_uniner.Transformers.v1"
COMPLETIONS_SERVER = "spacy_uniner.CompletionsServer.v1"
# The server backend's name before 2026-12-06, which the teacher's spacy-llm model also has: kept for
# the configs saved under it (`spacy-uniner upgrade` and every command rewrite it to today's).
LEGACY_SERVER = "spacy_uniner.OpenAICompatible.v1"
DEFAULT_MODEL = "Universal-NER/UniNER-7B-type"


@runtime_checkable
class Generator(Protocol):
    """What the component needs from a model: one answer per prompt, and a way to be saved. A
    generator that also has `generate_scored` (prompts -> `ScoredAnswer`s) gives spans their
    scores; without it every span scores 1.0."""

    def generate(self, prompts: List[str]) -> List[str]: ...

    def load(self, source: Any = None) -> None: ...

    def save(self, path: Path) -> None: ...


@registry.uniner_models(TRANSFORMERS)
def transformers_model(
    name: str = DEFAULT_MODEL,
    batch_size: int = 16,
    max_new_tokens: int = 256,
    device: str = "auto",
    dtype: str = "auto",
    constrained: bool = False,
    prompt_lookup_num_tokens: int = 8,
    trust_remote_code: bool = False,
    model_kwargs: Dict[str, Any] = SimpleFrozenDict(),
) -> "HFGenerator":
    """The student in this process, from a hub id or a local folder: `batch_size` questions a forward
    pass on `device` ("auto": a GPU when there is one) in `dtype` ("auto", "float32", "bfloat16",
    "float16", "int8"); `constrained` keeps answers to the passage's own words;
    `prompt_lookup_num_tokens` drafts answer tokens from the prompt for the last rows of a batch
    (as transformers' `generate` option of that name; 0: none)."""
    # Imported here, not above: spaCy imports every installed factory's module whenever it makes a
    # pipeline, so transformers would otherwise load with any spaCy pipeline at all.
    from .generation import HFGenerator

    return HFGenerator(
        name,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        device=device,
        dtype=dtype,
        trust_remote_code=trust_remote_code,
        model_kwargs=dict(model_kwargs),
        constrained=constrained,
        prompt_lookup_num_tokens=prompt_lookup_num_tokens,
    )


@registry.uniner_models(COMPLETIONS_SERVER)
@registry.uniner_models(LEGACY_SERVER)
def completions_server_model(
    url: str,
    name: str,
    max_new_tokens: int = 256,
    concurrency: int = 8,
    timeout: float = 60.0,
    max_tries: int = 4,
    api_key_env: Optional[str] = "OPENAI_API_KEY",
) -> ServerGenerator:
    """The student behind an OpenAI-compatible completions API (vLLM, TGI, llama.cpp's llama-server)
    at `url`, its base (e.g. http://host:8000/v1), serving it as `name`: `concurrency` requests in
    flight, each given `timeout` seconds and tried `max_tries` times; the key, when the environment
    variable `api_key_env` is set, goes as a bearer token. The weights stay on the server."""
    return ServerGenerator(url, name, max_new_tokens=max_new_tokens, concurrency=concurrency, timeout=timeout, max_tries=max_tries, api_key_env=api_key_env)
