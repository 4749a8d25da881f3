"""Model reference -> config (+ tensor shapes) -> Architecture.

A reference is, in this order: a local folder or config.json path, a catalogue id (the real
config.json files bundled in loraplan/catalog), a variant or re-upload of a catalogued model
(resolved offline, see `catalog_variant`), or a Hugging Face hub id. Weights are never
downloaded: hub shapes come from safetensors headers through `get_safetensors_metadata`.
When the hub must be asked and cannot be reached, the answer comes in seconds (one connection
attempt), not after huggingface_hub's retries.
"""

from __future__ import annotations

import errno
import json
import os
import re
import socket
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


# Name parts that change the weights' values or packaging, never the architecture: chat/instruct tunes,
# base releases, dated re-releases (Qwen's -2507), quantised uploads (bitsandbytes, AWQ, GPTQ, FP8, NVFP4, GGUF)
# and the tags mirrors add (unsloth's -unsloth-bnb-4bit, axolotl-quants' -bnb-nf4-bf16).
VARIANT_PARTS = frozenset({"instruct", "base", "it", "hf", "chat", "bnb", "4bit", "8bit", "nf4", "bf16", "fp16", "awq",
                           "gptq", "fp8", "nvfp4", "mxfp4", "int4", "int8", "w4a16", "gguf", "unsloth", "dynamic",
                           "dynamic-fp8", "thinking", "it-qat", "qat"})
RELEASE_TAG = re.compile(r"\d{4}")


def _core_name(name: str) -> str:
    """`Qwen3-30B-A3B-Instruct-2507-FP8` -> `qwen3-30b-a3b`: the name without variant and upload tags."""
    parts = [p for p in name.lower().split("-") if p not in VARIANT_PARTS and not RELEASE_TAG.fullmatch(p)]
    return "-".join(parts)


def catalog_variant(reference: str) -> tuple[CatalogEntry, str] | None:
    """The catalogued model that `reference` is a variant or re-upload of, and how it was matched.

    Same name under another organisation (a mirror: NousResearch/Llama-2-7b-hf, unsloth/Llama-3.1-8B) first;
    then the name without instruct/base/-it and quantisation tags (unsloth/...-bnb-4bit, ...-AWQ, ...-FP8,
    nvidia/...-NVFP4). An instruct tune, a quantised upload and a mirror have the base model's architecture
    (the same config.json shapes), which is all loraplan reads. Ambiguous names match nothing.
    """
    if reference.count("/") != 1:
        return None
    org, name = reference.split("/")
    by_name = [e for e in catalog().values() if e.model_id.split("/")[1].lower() == name.lower()]
    if len(by_name) == 1:
        return by_name[0], f"same name, {org} hosts a copy"
    core = _core_name(name)
    if not core:
        return None
    matches = {e.model_id: e for e in catalog().values() if _core_name(e.model_id.split("/")[1]) == core}
    if not matches:
        return None
    # Several catalogued releases share a core name (Qwen3-4B and Qwen3-4B-Instruct-2507): same architecture,
    # so the one from the same organisation, then the shortest name (the base release), answers.
    entry = min(matches.values(), key=lambda e: (e.model_id.split("/")[0].lower() != org.lower(), len(e.model_id)))
    return entry, "an instruct/base variant or quantised re-upload, same architecture"


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
    variant = catalog_variant(reference)
    if variant is not None:
        entry, how = variant
        source = f"catalogue entry {entry.model_id} answering for {reference}: {how}"
        return architecture_from_config(load_config_file(entry.path), entry.model_id, source, None, trust_remote_code)
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
    if not hub_offline() and not hub_reachable():
        try:  # a copy in the local cache still answers
            config_file = hf_hub_download(repo_id, "config.json", revision=revision, token=token,
                                          local_files_only=True)
        except (hf_errors.LocalEntryNotFoundError, hf_errors.EntryNotFoundError, OSError, ValueError):
            raise ModelNotFoundError(
                f"{repo_id}: the Hugging Face hub ({hub_endpoint()}) cannot be reached and the model is not in the "
                "local cache; set HF_HUB_OFFLINE=1 to skip the hub, or pass --model with a catalogued id "
                "(`loraplan models`) or a local config.json") from None
        return load_config_file(Path(config_file)), {}
    try:
        config_file = hf_hub_download(repo_id, "config.json", revision=revision, token=token)
    except hf_errors.HFValidationError as exc:  # `a/[red`: not a repo id the hub accepts
        raise ModelNotFoundError(f"{repo_id}: not a folder, a config.json, a catalogued model or a valid hub id "
                                 "(letters, digits, '-', '_', '.')") from exc
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


PROBE_TIMEOUT_S = 3.0


def hub_offline() -> bool:
    """HF_HUB_OFFLINE as huggingface_hub reads it (set: the cache only, no network at all)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def hub_reachable(timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """One TCP connection to the hub (or the proxy that carries it), bounded by `timeout_s`.

    huggingface_hub retries an unreachable hub with backoff (about 23 s per model); one connection attempt
    tells the same in at most `timeout_s`.
    """
    from urllib.parse import urlsplit

    proxy = next((os.environ[k] for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
                  if os.environ.get(k)), None)
    url = urlsplit(proxy if proxy and "://" in proxy else (f"http://{proxy}" if proxy else hub_endpoint()))
    port = url.port or (443 if url.scheme == "https" else 80)
    if not url.hostname:
        return True  # nothing to probe: let huggingface_hub decide
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout_s):
            return True
    except OSError:
        return False
