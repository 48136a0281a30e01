"""Pipelines saved before the model block: their `uniner` component held its backend's settings as
flat keys beside its own (`batch_size`, `server`, ...). spaCy refuses keys a factory does not take,
so such a config is rewritten into today's shape when it is read, by `pipelines.load_pipeline` (every
command) and, once and for good, by `spacy-uniner upgrade`."""
from pathlib import Path
from typing import Any, Dict, List, Tuple

from spacy.util import SimpleFrozenDict, load_config
from thinc.api import Config, ConfigValidationError

from .backends import COMPLETIONS_SERVER, LEGACY_SERVER, TRANSFORMERS
from .errors import UserError
from .files import write_text

# The flat keys and their places in each backend's block.
TRANSFORMERS_KEYS = ("batch_size", "max_new_tokens", "device", "dtype", "trust_remote_code", "model_kwargs", "constrained")
SERVER_KEYS = {"server": "url", "max_new_tokens": "max_new_tokens", "concurrency": "concurrency", "timeout": "timeout", "max_tries": "max_tries", "api_key_env": "api_key_env"}
FLAT_KEYS = frozenset(TRANSFORMERS_KEYS) | frozenset(SERVER_KEYS)


def upgrade_block(block: Dict[str, Any]) -> Tuple[Dict[str, Any], List[str]]:
    """A saved `uniner` block in today's shape, and the keys it moved (none: as it was): a server
    block under the backend's old name gets today's; a flat block's keys go into a model block. With
    `server` set the model block is the server's, otherwise the in-process one's; the other
    backend's keys, which that backend never read, are dropped. A string `model` (the in-process
    backend's shorthand) becomes its block's `name`, so that overrides of the block's keys apply."""
    model = block.get("model")
    if isinstance(model, dict) and model.get("@uniner_models") == LEGACY_SERVER:
        return dict(block, model=dict(model, **{"@uniner_models": COMPLETIONS_SERVER})), ["model.@uniner_models"]
    moved = (["model"] if isinstance(model, str) else []) + sorted(key for key in block if key in FLAT_KEYS)
    if not moved:
        return dict(block), []
    upgraded = {key: value for key, value in block.items() if key not in FLAT_KEYS}
    if block.get("server"):
        model = {"@uniner_models": COMPLETIONS_SERVER, **{SERVER_KEYS[key]: block[key] for key in SERVER_KEYS if key in block}}
    else:
        model = {"@uniner_models": TRANSFORMERS, **{key: block[key] for key in TRANSFORMERS_KEYS if key in block}}
    if isinstance(block.get("model"), str):
        model["name"] = block["model"]
    upgraded["model"] = model
    return upgraded, moved


def upgrade_config(config: Dict[str, Any]) -> Tuple[Dict[str, Any], List[str]]:
    """`config` with every `uniner` component's block upgraded, and the keys moved."""
    components = dict(config.get("components", {}))
    moved: List[str] = []
    for name, block in components.items():
        if isinstance(block, dict) and block.get("factory") == "uniner":
            components[name], block_moved = upgrade_block(block)
            moved += [f"{name}.{key}" for key in block_moved]
    return dict(config, components=components), moved


def upgrade_overrides(overrides: Dict[str, Any]) -> Dict[str, Any]:
    """Load-time overrides of a `uniner` component (`{"components": {"uniner": {...}}}`) with the
    in-process backend's flat keys moved into its model block; a server's flat key cannot be moved
    (its block needs the server's own keys at once), so it is refused with its new place."""
    components = overrides.get("components", {})
    moved = {}
    for name, block in components.items():
        flat = {key: block[key] for key in block if key in FLAT_KEYS}
        if not flat:
            continue
        server_only = sorted(key for key in flat if key not in TRANSFORMERS_KEYS)
        if server_only:
            raise UserError(
                f"[uniner] {', '.join(server_only)} moved into the component's model block: give "
                f'{{"model": {{"@uniner_models": "{COMPLETIONS_SERVER}", "url": ..., "name": ...}}}} with its keys'
            )
        given = block.get("model") or {}
        model = dict({"name": given} if isinstance(given, str) else given, **flat)
        moved[name] = dict({key: value for key, value in block.items() if key not in FLAT_KEYS}, model=model)
    if not moved:
        return overrides
    return dict(overrides, components=dict(components, **moved))


def upgraded(path: Path) -> Tuple[Config, List[str]]:
    """A config.cfg, uninterpolated, in today's shape (its sections in their order), and the keys moved."""
    try:
        saved = load_config(path, interpolate=False)
    except ConfigValidationError as error:
        # confection parses the file's text, so its message names "<string>", not the file.
        reason = " ".join((error.desc or str(error)).replace("file: '<string>', ", "").split())
        raise UserError(f"{path} is not a config spaCy can read: {reason}") from None
    config, moved = upgrade_config(saved)
    return Config(config, section_order=saved.section_order), moved


def read_config(path: Path, overrides: Dict[str, Any] = SimpleFrozenDict()) -> Tuple[Config, List[str]]:
    """A pipeline's config.cfg in today's shape with `overrides` (dot keys, as `spacy.load` takes
    them) applied after the upgrade, and the keys moved."""
    config, moved = upgraded(path)
    return Config().from_str(config.to_str(), overrides=dict(overrides)), moved


def upgrade_pipeline(path: Path) -> List[str]:
    """Rewrite a pipeline folder's config.cfg in today's shape (in one rename); the keys moved."""
    config_path = Path(path) / "config.cfg"
    config, moved = upgraded(config_path)
    if not any(isinstance(block, dict) and block.get("factory") == "uniner" for block in config.get("components", {}).values()):
        raise UserError(f"{config_path} has no uniner component: nothing to upgrade")
    if moved:
        write_text(config_path, config.to_str())
    return moved
