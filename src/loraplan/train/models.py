"""Model references -> a torch model and its tokenizer, for short training runs.

Three kinds of reference, tried in this order:

- a `.gguf` file: transformers dequantises it (`gguf_file=`), and its tokenizer and chat template
  come from the same file;
- `random_init`: any catalogue id, config.json or folder, built from its config with random weights
  and shrunk (`layers`, `hidden`), vocabulary sized to the tokenizer: a real architecture in seconds;
- a local checkpoint folder or hub id: real weights through `from_pretrained`.

Remote code never runs unless `trust_remote_code` is set.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loraplan.data.tokenizer import TokenizerBundle, load_tokenizer, tokenizer_for_model
from loraplan.errors import ConfigError, ModelNotFoundError

INIT_SEED = 0  # random-init weights do not depend on the trial seed: trials compared in validate share one model


@dataclass(frozen=True)
class ModelRef:
    """What to train.

    reference: catalogue id, local folder, config.json, hub id or a .gguf file.
    random_init: build `reference`'s architecture with random weights instead of loading weights.
    layers / hidden: shrink a random-init model to this many decoder layers / this hidden size.
    trust_remote_code: allow the model's own code (off by default).
    """

    reference: str
    random_init: bool = False
    layers: int | None = None
    hidden: int | None = None
    trust_remote_code: bool = False

    @property
    def is_gguf(self) -> bool:
        return self.reference.lower().endswith(".gguf")

    def describe(self) -> str:
        if not self.random_init:
            return self.reference
        shape = ", ".join(f"{k} {v}" for k, v in (("layers", self.layers), ("hidden", self.hidden)) if v)
        return f"{self.reference} (random init{', ' + shape if shape else ''})"


def load_tokenizer_for(ref: ModelRef, tokenizer: str | None) -> tuple[TokenizerBundle, Any]:
    """(the bundle loraplan.data counts with, the transformers tokenizer for pad/eos ids) of one model."""
    if tokenizer is None and ref.is_gguf:
        return _gguf_tokenizer(Path(ref.reference).expanduser())
    name = tokenizer or tokenizer_for_model(ref.reference)
    bundle = load_tokenizer(name, trust_remote_code=ref.trust_remote_code)
    return bundle, None


def _gguf_tokenizer(path: Path) -> tuple[TokenizerBundle, Any]:
    from loraplan.data.errors import TokenizerError

    transformers = _transformers()
    try:
        tok = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    except (OSError, ValueError, ImportError) as exc:
        raise TokenizerError(f"{path}: cannot read its tokenizer ({exc})") from exc
    backend = tok.backend_tokenizer
    template = tok.chat_template if isinstance(tok.chat_template, str) else None
    specials = {k: v for k, v in tok.special_tokens_map.items() if isinstance(v, str)}
    return TokenizerBundle(str(path), backend, template, specials,
                           frozenset(backend.get_added_tokens_decoder())), tok


def vocab_size(bundle: TokenizerBundle) -> int:
    """Embedding rows the tokenizer needs: its largest id + 1 (added tokens included)."""
    backend = bundle.backend
    return max(backend.get_vocab_size(with_added_tokens=True), max(backend.get_vocab(True).values()) + 1)


def load_model(ref: ModelRef, bundle: TokenizerBundle, dtype: Any) -> Any:
    """The causal LM in `dtype`, on the CPU (the Trainer places it)."""
    transformers = _transformers()
    if ref.is_gguf:
        path = Path(ref.reference).expanduser()
        if not path.is_file():
            raise ModelNotFoundError(f"{path}: no such GGUF file")
        # dequantised at load: training needs plain weights (transformers 5 can keep GGUF blocks, inference-only)
        config = getattr(transformers, "GgufConfig", None)
        extra = {"quantization_config": config(dequantize=True)} if config is not None else {}
        try:
            return transformers.AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                                     dtype=dtype, **extra)
        except (OSError, ValueError, ImportError) as exc:
            raise ConfigError(f"{path}: transformers cannot load this GGUF file ({exc})") from exc
    if ref.random_init:
        return _random_model(ref, bundle, dtype)
    path = Path(ref.reference).expanduser()
    if not path.is_dir() and not _looks_like_hub(ref.reference):
        raise ModelNotFoundError(f"`{ref.reference}` is not a folder, a .gguf file or a hub id org/name "
                                 "(for a catalogue architecture with random weights add --random-init)")
    try:
        return transformers.AutoModelForCausalLM.from_pretrained(
            str(path) if path.is_dir() else ref.reference, dtype=dtype, trust_remote_code=ref.trust_remote_code)
    except OSError as exc:
        raise ModelNotFoundError(f"{ref.reference}: cannot load weights ({exc})") from exc
    except ValueError as exc:
        raise ConfigError(f"{ref.reference}: transformers cannot build this model ({exc})") from exc


def _looks_like_hub(reference: str) -> bool:
    return reference.count("/") == 1 and not reference.startswith((".", "/", "~"))


def shrunk_config(config: dict[str, Any], layers: int | None, hidden: int | None, vocab: int) -> dict[str, Any]:
    """The architecture's config with fewer layers, a narrower hidden size and the tokenizer's vocabulary.

    Widths that scale with the hidden size (intermediate sizes) keep their ratio to it; heads keep their
    grouping (query heads per KV head) with at least 16 dimensions each.
    """
    config = copy.deepcopy(config)
    config.pop("quantization_config", None)
    config.pop("auto_map", None)
    text = config.get("text_config", config)
    text["vocab_size"] = vocab
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        value = text.get(key)
        ids = value if isinstance(value, list) else [value]
        if any(isinstance(i, int) and i >= vocab for i in ids):
            text[key] = None
    if layers is not None:
        first_dense = text.get("first_k_dense_replace", 0)
        text["num_hidden_layers"] = max(layers, first_dense + 1 if first_dense else layers)
        if isinstance(text.get("layer_types"), list):
            text["layer_types"] = (text["layer_types"] * layers)[: text["num_hidden_layers"]]
            if "full_attention" not in text["layer_types"]:
                text["layer_types"][-1] = "full_attention"
    if hidden is not None:
        old = int(text["hidden_size"])
        text["hidden_size"] = hidden
        for key, value in list(text.items()):
            if "intermediate_size" in key and isinstance(value, int):
                text[key] = max(8, round(value * hidden / old))
        heads = int(text.get("num_attention_heads", 1))
        kv = int(text.get("num_key_value_heads") or heads)
        new_heads, new_kv = _heads(hidden, heads, max(1, heads // kv))
        text["num_attention_heads"] = new_heads
        text["num_key_value_heads"] = new_kv
        if "head_dim" in text:
            text["head_dim"] = hidden // new_heads
    return config


def _heads(hidden: int, heads: int, group: int) -> tuple[int, int]:
    """(query heads, KV heads) for a narrow model: head size even and >= 16, grouping kept when it fits."""
    for g in (group, 1):
        for count in range(min(heads, hidden // 16), 0, -1):
            if count % g == 0 and hidden % count == 0 and (hidden // count) % 2 == 0:
                return count, count // g
    return 1, 1


def _random_model(ref: ModelRef, bundle: TokenizerBundle, dtype: Any) -> Any:
    from loraplan.arch.meta import config_object
    from loraplan.arch.sources import catalog, load_config_file

    torch = _torch()
    transformers = _transformers()
    path = Path(ref.reference).expanduser()
    entry = catalog().get(ref.reference.lower())
    if path.is_dir():
        path = path / "config.json"
    if path.is_file():
        config = load_config_file(path)
    elif entry is not None:
        config = load_config_file(entry.path)
    else:
        raise ModelNotFoundError(f"`{ref.reference}` is not a catalogued model (see `loraplan models`), a folder "
                                 "or a config.json")
    shrunk = shrunk_config(config, ref.layers, ref.hidden, vocab_size(bundle))
    try:
        cfg = config_object(shrunk, ref.trust_remote_code)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(INIT_SEED)
            model = transformers.AutoModelForCausalLM.from_config(cfg, trust_remote_code=ref.trust_remote_code)
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{ref.reference}: cannot build a random-init model from its config ({exc})") from exc
    return model.to(dtype)


def _torch() -> Any:
    from loraplan.errors import require

    return require("torch", "train", "training")


def _transformers() -> Any:
    from loraplan.errors import require

    return require("transformers", "train", "training")
