"""Load a tokenizer as the raw `tokenizers` backend plus its chat template and special tokens.

Counting a multi-GB corpus needs the Rust tokenizer's parallel `encode_batch`, not a
transformers object: importing transformers pulls in torch (seconds, hundreds of MB). A folder
or hub repo with `tokenizer.json` is therefore read directly, with the few pieces of
transformers' loading logic that change token ids (the BOS/EOS post-processor it rebuilds from
`add_bos_token` / `add_eos_token`). Only a repo without `tokenizer.json` (SentencePiece files
alone) goes through `AutoTokenizer`, which converts it.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loraplan.data.errors import TokenizerError, TokenizerUnavailableError
from loraplan.errors import InputFileError
from loraplan.userfiles import read_user_text

SPECIAL_TOKEN_NAMES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
TOKENIZER_JSON_BYTES = 128 * 2**20  # the largest real tokenizer.json files (256k vocabularies) are ~35 MB
CONFIG_BYTES = 16 * 2**20  # tokenizer_config.json can hold every added token: a few MB
TEMPLATE_BYTES = 4 * 2**20  # chat templates are a few to a hundred KB
_HUB_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
              "chat_template.json", "tokenizer.model", "*.tiktoken", "vocab.json", "merges.txt"]


@dataclass(frozen=True)
class TokenizerBundle:
    """What counting needs from a tokenizer.

    name: the reference it was loaded from.
    backend: the raw `tokenizers.Tokenizer` (parallel encode_batch, offsets).
    chat_template: Jinja source, or None when the tokenizer has none.
    special_tokens: bos_token, eos_token, ... as strings, passed to the template like transformers does.
    added_ids: ids of added tokens; text after one of them tokenizes independently of what precedes it.
    template_file: the --chat-template file the template was read from (None: the tokenizer's own).
    """

    name: str
    backend: Any
    chat_template: str | None
    special_tokens: Mapping[str, str]
    added_ids: frozenset[int]
    template_file: str | None = None

    @property
    def template_name(self) -> str:
        """How errors name the template: its file, or the tokenizer it came with."""
        return f"chat template {self.template_file}" if self.template_file else f"the chat template of {self.name}"

    @property
    def eos_token(self) -> str | None:
        return self.special_tokens.get("eos_token")


def load_tokenizer(reference: str, chat_template: str | Path | None = None,
                   trust_remote_code: bool = False) -> TokenizerBundle:
    """A local folder, a tokenizer.json file or a hub id; `chat_template` (a file) overrides the template."""
    path = Path(reference).expanduser()
    try:
        if path.name.endswith(".json") and os.path.lexists(path) and not path.is_dir():
            path = path.parent
        is_dir = path.is_dir()
    except OSError as exc:  # ENAMETOOLONG, EACCES, ELOOP while looking the reference up
        raise TokenizerError(f"tokenizer `{reference[:200]}`: cannot look it up ({exc.strerror or exc})") from exc
    if is_dir:
        bundle = _from_folder(path, reference, trust_remote_code)
    elif reference.count("/") == 1 and not reference.startswith((".", "/", "~")):
        bundle = _from_folder(_hub_snapshot(reference), reference, trust_remote_code)
    else:
        raise TokenizerError(f"tokenizer `{reference}` is neither a folder, a tokenizer.json nor a hub id org/name")
    return bundle if chat_template is None else with_template(bundle, chat_template)


def with_template(bundle: TokenizerBundle, chat_template: str | Path) -> TokenizerBundle:
    """The same tokenizer with the chat template read from a file (--chat-template)."""
    template_path = Path(chat_template).expanduser()
    source = _read_text(template_path, "chat template", TEMPLATE_BYTES)
    return TokenizerBundle(bundle.name, bundle.backend, source, bundle.special_tokens, bundle.added_ids,
                           str(template_path))


def _read_text(path: Path, what: str, max_bytes: int) -> str:
    """A tokenizer-side file through the one guarded open, its problems as TokenizerError."""
    try:
        return read_user_text(path, what=what, max_bytes=max_bytes)
    except InputFileError as exc:
        raise TokenizerError(str(exc)) from exc


def _read_json(path: Path) -> dict[str, Any]:
    if not os.path.lexists(path):
        return {}
    try:
        data = json.loads(_read_text(path, "tokenizer file", CONFIG_BYTES))
    except (json.JSONDecodeError, RecursionError) as exc:
        raise TokenizerError(f"{path}: not readable JSON ({exc})") from exc
    return data if isinstance(data, dict) else {}


def _token_text(value: Any) -> str | None:
    """Special tokens are stored as strings or as AddedToken dicts with a `content` field."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _template_from(folder: Path, config: Mapping[str, Any]) -> str | None:
    jinja_file = folder / "chat_template.jinja"
    if os.path.lexists(jinja_file):
        return _read_text(jinja_file, "chat template", TEMPLATE_BYTES)
    template = config.get("chat_template") or _read_json(folder / "chat_template.json").get("chat_template")
    if isinstance(template, list):  # named templates: transformers uses "default"
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    return template if isinstance(template, str) else None


def _from_folder(folder: Path, name: str, trust_remote_code: bool) -> TokenizerBundle:
    if not os.path.lexists(folder / "tokenizer.json"):
        return _via_transformers(folder, name, trust_remote_code)
    from tokenizers import Tokenizer

    source = _read_text(folder / "tokenizer.json", "tokenizer file", TOKENIZER_JSON_BYTES)
    try:
        backend = Tokenizer.from_str(source)
    except Exception as exc:  # the Rust side raises plain Exception on a malformed file
        raise TokenizerError(f"{folder / 'tokenizer.json'}: cannot load ({str(exc)[:300]})") from exc
    config = _read_json(folder / "tokenizer_config.json")
    token_map = {**_read_json(folder / "special_tokens_map.json"), **config}
    specials = {key: text for key in SPECIAL_TOKEN_NAMES if (text := _token_text(token_map.get(key))) is not None}
    _match_post_processor(backend, config, specials, folder / "tokenizer_config.json")
    added = frozenset(backend.get_added_tokens_decoder())
    return TokenizerBundle(name, backend, _template_from(folder, config), specials, added)


def _match_post_processor(backend: Any, config: Mapping[str, Any], specials: Mapping[str, str],
                          config_path: Path) -> None:
    """transformers rebuilds the post-processor when add_bos_token/add_eos_token are set or none exists."""
    if "add_bos_token" not in config and "add_eos_token" not in config and backend.post_processor is not None:
        return
    from tokenizers import processors

    bos, eos = specials.get("bos_token"), specials.get("eos_token")
    add_bos = bool(config.get("add_bos_token")) and bos is not None
    add_eos = bool(config.get("add_eos_token")) and eos is not None
    single = f"{(bos + ':0 ') if add_bos else ''}$A:0{(' ' + eos + ':0') if add_eos else ''}"
    pair = f"{single}{(' ' + bos + ':1') if add_bos else ''} $B:1{(' ' + eos + ':1') if add_eos else ''}"
    tokens = [(t, backend.token_to_id(t)) for t, on in ((bos, add_bos), (eos, add_eos)) if on and t is not None]
    missing = [t for t, token_id in tokens if token_id is None]
    if missing:
        raise TokenizerError(f"{config_path}: asks to add {', '.join(map(repr, missing))}, which the "
                             "tokenizer's vocabulary does not have")
    try:
        backend.post_processor = processors.TemplateProcessing(single=single, pair=pair, special_tokens=tokens)
    except Exception as exc:  # the Rust side rejects templates it cannot parse (e.g. a token with a space)
        raise TokenizerError(f"{config_path}: special tokens {bos!r} / {eos!r} cannot be added "
                             f"({exc})") from exc


def _via_transformers(folder: Path, name: str, trust_remote_code: bool) -> TokenizerBundle:
    """SentencePiece-only repos: let transformers convert them to a fast tokenizer."""
    from loraplan.errors import require

    transformers: Any = require("transformers", "data", "loading a tokenizer without tokenizer.json")
    for entry in folder.iterdir():  # transformers opens them itself: refuse FIFOs and devices first
        if entry.name in _HUB_FILES or entry.suffix in (".model", ".tiktoken"):
            with contextlib.suppress(OSError):
                if not stat.S_ISREG(entry.stat().st_mode):
                    raise TokenizerError(f"{entry}: the tokenizer file is not a regular file (a FIFO, device or "
                                         "folder); give a regular file")
    try:
        tok = transformers.AutoTokenizer.from_pretrained(str(folder), trust_remote_code=trust_remote_code)
    except (OSError, ValueError, ImportError) as exc:
        raise TokenizerError(f"{name}: no tokenizer.json and transformers cannot load it ({exc})") from exc
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is None:
        raise TokenizerError(f"{name}: only slow (Python) tokenizers exist for it; counting needs a fast one")
    template = tok.chat_template if isinstance(tok.chat_template, str) else None
    return TokenizerBundle(name, backend, template, dict(tok.special_tokens_map),
                           frozenset(backend.get_added_tokens_decoder()))


def _hub_snapshot(repo_id: str) -> Path:
    """Download only the tokenizer files of a hub repo (or find them in the cache when offline)."""
    from huggingface_hub import errors as hf_errors
    from huggingface_hub import snapshot_download

    token = os.environ.get("HF_TOKEN") or None
    try:
        return Path(snapshot_download(repo_id, allow_patterns=_HUB_FILES, token=token))
    except hf_errors.GatedRepoError as exc:
        raise TokenizerUnavailableError(
            f"tokenizer {repo_id} is gated: accept its licence on the hub and set HF_TOKEN") from exc
    except hf_errors.RepositoryNotFoundError as exc:
        raise TokenizerError(f"tokenizer {repo_id}: no such repo on the hub (or private: set HF_TOKEN)") from exc
    except hf_errors.LocalEntryNotFoundError as exc:
        raise TokenizerUnavailableError(
            f"tokenizer {repo_id} is not in the local cache and the hub cannot be reached") from exc
    except (OSError, hf_errors.HfHubHTTPError) as exc:
        raise TokenizerUnavailableError(f"tokenizer {repo_id} could not be downloaded ({exc})") from exc


def tokenizer_for_model(model: str) -> str:
    """A model's own tokenizer: its local folder, or its hub id (catalogue ids are hub ids)."""
    path = Path(model).expanduser()
    if path.is_dir():
        return str(path)
    if path.is_file():
        return str(path.parent)
    from loraplan.arch.sources import catalog

    entry = catalog().get(model.lower())
    return entry.model_id if entry is not None else model
