"""Model reference -> config (+ tensor shapes) -> Architecture.

A reference is, in this order: a local folder or config.json path, a catalogue id (the real
config.json files bundled in loraplan/catalog), or a Hugging Face hub id. Weights are never
downloaded: hub shapes come from safetensors headers through `get_safetensors_metadata`.
"""

from __future__ import annotations

import errno
import json
import os
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from loraplan.arch.bounds import check_config_bounds
from loraplan.arch.builders import build_from_config
from loraplan.arch.from_weights import architecture_from_weights, total_from_shapes, weights_from_shapes
from loraplan.arch.model import Architecture
from loraplan.arch.safetensors_header import read_folder, shapes_from_header
from loraplan.errors import ConfigError, LoraplanError, ModelNotFoundError, UnsupportedModelError
from loraplan.userfiles import read_user_text

CATALOG_DIR = Path(__file__).resolve().parent.parent / "catalog"
MAX_MODEL_CONFIG_BYTES = 16 * 1024 * 1024  # real config.json files are kilobytes (id2label tables: hundreds)


@dataclass(frozen=True)
class CatalogEntry:
    model_id: str
    path: Path


@cache
def catalog() -> dict[str, CatalogEntry]:
    """Lower-cased model id -> entry for every bundled config.json."""
    entries: dict[str, CatalogEntry] = {}
    for path in sorted(CATALOG_DIR.glob("*/*/config.json")):
        model_id = f"{path.parent.parent.name}/{path.parent.name}"
        entries[model_id.lower()] = CatalogEntry(model_id, path)
    return entries


def load_config_file(path: Path) -> dict[str, Any]:
    """A config.json as a dict, with one clear message for every way it can be wrong."""
    text = read_user_text(path, what="model config", max_bytes=MAX_MODEL_CONFIG_BYTES)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON ({exc.msg})") from exc
    except RecursionError as exc:
        raise ConfigError(f"{path}: JSON nested too deeply to be a model config") from exc
    except ValueError as exc:  # Python's 4300-digit limit on integers
        raise ConfigError(f"{path}: invalid JSON (a number over {sys.get_int_max_str_digits():,} digits)") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config.json must be a JSON object")
    return data


def architecture_from_config(
    config: dict[str, Any],
    model_id: str,
    source: str,
    shapes: dict[str, tuple[int, ...]] | None = None,
    trust_remote_code: bool = False,
) -> Architecture:
    """Built-in layout first; then tensor shapes; then transformers on the meta device.

    The config's sizes are bounded first (loraplan.arch.bounds): no layout is built from nonsense.
    """
    check_config_bounds(config, f"{model_id} config")
    try:
        arch = build_from_config(config, model_id, source)
    except UnsupportedModelError:
        if shapes:
            weights = weights_from_shapes(shapes, _text(config))
            return architecture_from_weights(config, weights, total_from_shapes(shapes), model_id,
                                             f"{source} + safetensors headers")
        from loraplan.arch.meta import build_on_meta

        return build_on_meta(config, model_id, trust_remote_code)
    if shapes:  # exact totals from the checkpoint itself
        total = total_from_shapes(shapes)
        moe_share = arch.total_params - arch.active_params
        return _replace_totals(arch, total, total - moe_share, f"{source} + safetensors headers")
    return arch


def _text(config: dict[str, Any]) -> dict[str, Any]:
    from loraplan.arch.config import text_config

    return text_config(config)


def _replace_totals(arch: Architecture, total: int, active: int, source: str) -> Architecture:
    from dataclasses import replace

    return replace(arch, total_params=total, active_params=active, source=source)


def load_architecture(
    reference: str,
    trust_remote_code: bool = False,
    revision: str | None = None,
) -> Architecture:
    """Resolve any model reference to its Architecture."""
    path = Path(reference).expanduser()
    try:
        path.stat()
    except OSError as exc:  # ENAMETOOLONG, EACCES: a path that cannot be a model reference; ENOENT: not local
        if exc.errno not in (errno.ENOENT, errno.ENOTDIR):
            raise ModelNotFoundError(f"{reference[:120]}: cannot be read as a model path ({exc.strerror})") from exc
    if path.is_dir():
        config_path = path / "config.json"
        if not config_path.is_file():
            raise ModelNotFoundError(f"{path}: folder has no config.json")
        shapes = read_folder(path) or None
        return architecture_from_config(load_config_file(config_path), reference, "local folder", shapes,
                                        trust_remote_code)
    if path.is_file():
        return architecture_from_config(load_config_file(path), reference, "local config", None,
                                        trust_remote_code)
    entry = catalog().get(reference.lower())
    if entry is not None:
        return architecture_from_config(load_config_file(entry.path), entry.model_id, "catalogue", None,
                                        trust_remote_code)
    if reference.count("/") == 1 and not reference.startswith((".", "/")):
        try:
            config, shapes = fetch_from_hub(reference, revision)
        except ModelNotFoundError as exc:
            from loraplan.calibrate.features import facts_entry

            if facts_entry(reference) is None:
                raise
            raise ModelNotFoundError(
                f"{exc}. {reference} is a facts-only catalogue entry (no config.json): it gives an LR "
                "(`loraplan lr`) but cannot give LoRA counts; pass its config.json to count") from exc
        return architecture_from_config(config, reference, "hub", shapes, trust_remote_code)
    raise ModelNotFoundError(
        f"`{reference}` is not a folder, a config.json, a catalogued model (see `loraplan models`) "
        "or a hub id of the form org/name"
    )


def fetch_from_hub(repo_id: str, revision: str | None = None) -> tuple[dict[str, Any], dict[str, tuple[int, ...]]]:
    """config.json and safetensors shapes from the hub, without downloading weights.

    huggingface_hub honours HF_TOKEN, HF_HUB_OFFLINE and HF_HOME itself; we translate its
    errors into one sentence each.
    """
    from huggingface_hub import errors as hf_errors
    from huggingface_hub import get_safetensors_metadata, hf_hub_download

    token = os.environ.get("HF_TOKEN") or None
    try:
        config_file = hf_hub_download(repo_id, "config.json", revision=revision, token=token)
    except hf_errors.LocalEntryNotFoundError as exc:  # before EntryNotFoundError: it subclasses it
        raise ModelNotFoundError(
            f"{repo_id}: not in the local cache and the hub cannot be reached "
            "(offline or HF_HUB_OFFLINE=1); use a catalogued model or a local config.json") from exc
    except hf_errors.GatedRepoError as exc:
        raise ModelNotFoundError(
            f"{repo_id} is gated: accept its licence on the hub and set HF_TOKEN") from exc
    except hf_errors.RepositoryNotFoundError as exc:
        raise ModelNotFoundError(
            f"{repo_id}: no such model on the hub (or it is private: set HF_TOKEN)") from exc
    except hf_errors.RevisionNotFoundError as exc:
        raise ModelNotFoundError(f"{repo_id}: revision {revision!r} not found") from exc
    except hf_errors.EntryNotFoundError as exc:
        raise ModelNotFoundError(f"{repo_id}: the repository has no config.json") from exc
    except (OSError, hf_errors.HfHubHTTPError) as exc:
        raise ModelNotFoundError(f"{repo_id}: could not download config.json ({exc})") from exc
    config = load_config_file(Path(config_file))
    shapes: dict[str, tuple[int, ...]] = {}
    try:
        meta = get_safetensors_metadata(repo_id, revision=revision, token=token)
        for file_meta in meta.files_metadata.values():
            header = {name: {"shape": list(info.shape)} for name, info in file_meta.tensors.items()}
            shapes.update(shapes_from_header(header, repo_id))
    except (LoraplanError, OSError, hf_errors.HfHubHTTPError, hf_errors.NotASafetensorsRepoError,
            hf_errors.SafetensorsParsingError):
        shapes = {}  # config alone still gives the architecture
    return config, shapes
