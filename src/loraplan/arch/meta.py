"""Architecture from transformers itself, on the meta device (no weights, no memory).

Used for configs whose layout loraplan has no builder for, and by the tests as the oracle for
the builders. Needs the `meta` extra. Remote code runs only with trust_remote_code=True.
"""

from __future__ import annotations

from typing import Any

from loraplan.arch.from_weights import architecture_from_weights, expert_matrix, fused_parts, layer_of
from loraplan.arch.model import Architecture, Kind, Role, Weight
from loraplan.arch.roles import role_of
from loraplan.errors import ConfigError, UnsupportedModelError, require


def config_object(config: dict[str, Any], trust_remote_code: bool = False) -> Any:
    """A transformers config; an unknown model_type is read through the class `architectures` names."""
    transformers: Any = require("transformers", "meta", "reading this architecture")
    data = {k: v for k, v in config.items() if k not in ("quantization_config", "auto_map")}
    if trust_remote_code:
        data = dict(config)
    model_type = data.get("model_type")
    try:
        return transformers.AutoConfig.for_model(**data)
    except (ValueError, KeyError):
        pass
    for arch in config.get("architectures") or []:
        cls = getattr(transformers, str(arch), None)
        if cls is not None and getattr(cls, "config_class", None) is not None:
            fields = {k: v for k, v in data.items() if k != "model_type"}
            return cls.config_class(**fields)
    raise UnsupportedModelError(
        f"transformers does not know model_type `{model_type}` and no class in `architectures` "
        "is available; pass --trust-remote-code to let the model's own code define it"
    )


def instantiate(config: dict[str, Any], trust_remote_code: bool = False) -> Any:
    """The model on the meta device: modules and shapes, no storage."""
    torch: Any = require("torch", "meta", "reading this architecture")
    transformers: Any = require("transformers", "meta", "reading this architecture")
    cfg = config_object(config, trust_remote_code)
    arch_names = [str(a) for a in config.get("architectures") or []]
    with torch.device("meta"):
        try:  # the text model first: LoRA budgets are about the language model
            return transformers.AutoModelForCausalLM.from_config(cfg, trust_remote_code=trust_remote_code)
        except (ValueError, KeyError):
            pass
        for name in arch_names:
            cls = getattr(transformers, name, None)
            if cls is not None and hasattr(cls, "_from_config") and isinstance(cfg, cls.config_class):
                return cls._from_config(cfg)
        for auto in ("AutoModelForImageTextToText", "AutoModel"):
            try:
                return getattr(transformers, auto).from_config(cfg, trust_remote_code=trust_remote_code)
            except (ValueError, KeyError):
                continue
    raise UnsupportedModelError(f"transformers has no model class for `{config.get('model_type')}`")


def weights_of_module(model: Any, cfg: dict[str, Any]) -> list[Weight]:
    """Every Linear, Embedding, router and stacked-expert parameter of a torch model."""
    torch: Any = require("torch", "meta", "reading this architecture")
    hidden = cfg.get("hidden_size") or cfg.get("d_model") or cfg.get("n_embd") or 0
    weights: list[Weight] = []
    for name, module in model.named_modules():
        leaf = name.rsplit(".", 1)[-1]
        if isinstance(module, torch.nn.Linear):
            role = role_of(name)
            out, inn = module.out_features, module.in_features
            weights.append(Weight(name, inn, out, role, layer_of(name), parts=fused_parts(leaf, out, cfg)))
        elif isinstance(module, torch.nn.Embedding):
            role = Role.OTHER if role_of(name) is Role.OTHER else Role.EMBED  # vision position tables
            emb = Weight(name, module.num_embeddings, module.embedding_dim, role, kind=Kind.EMBEDDING)
            weights.append(emb)
        else:
            for pname, param in module.named_parameters(recurse=False):
                full = f"{name}.{pname}"
                if param.ndim == 3 and name.rsplit(".", 1)[-1] == "experts":
                    inn, out = expert_matrix(pname, (param.shape[1], param.shape[2]), hidden)
                    parts = fused_parts(pname, out, cfg) if pname in ("gate_up_proj", "w13") else ()
                    weights.append(Weight(full, inn, out, Role.EXPERT, layer_of(full), param.shape[0],
                                          parts, Kind.EXPERT_PARAM))
                elif param.ndim == 2 and pname == "weight" and role_of(name) is Role.ROUTER:
                    weights.append(Weight(name, param.shape[1], param.shape[0], Role.ROUTER,
                                          layer_of(name), kind=Kind.ROUTER_PARAM))
    return weights


def build_on_meta(
    config: dict[str, Any], model_id: str, trust_remote_code: bool = False, use_cache: bool = True
) -> Architecture:
    """Architecture read from the transformers model instantiated on the meta device.

    The derived shapes are cached by config content (see shape_cache), so only the first call for
    a config pays for torch; `use_cache=False` always asks transformers (the tests' oracle does).
    """
    from loraplan.arch import shape_cache
    from loraplan.arch.config import text_config

    # A GPT-2 style config (`n_embd`, `n_layer`) gets its canonical sizes from the built model: such configs are
    # not cached, since a cache hit builds no model to read them from.
    use_cache = use_cache and "hidden_size" in text_config(config)
    key = shape_cache.cache_key(config, trust_remote_code) if use_cache else ""
    cached = shape_cache.load(key) if use_cache else None
    if cached is not None:
        weights, total = cached
        return architecture_from_weights(config, weights, total, model_id, "meta device (transformers), cached")
    try:
        model = instantiate(config, trust_remote_code)
    except (TypeError, AttributeError) as exc:
        raise ConfigError(f"{model_id}: transformers could not build the model from its config ({exc})") from exc
    config = _with_canonical_sizes(config, model)
    weights = weights_of_module(model, text_config(config))
    total = sum(p.numel() for p in model.parameters())
    arch = architecture_from_weights(config, weights, total, model_id, "meta device (transformers)")
    if use_cache:
        shape_cache.store(key, weights, total)
    return arch


def _with_canonical_sizes(config: dict[str, Any], model: Any) -> dict[str, Any]:
    """GPT-2 style configs say `n_embd`, `n_layer`: add the canonical names from transformers' own config."""
    from loraplan.arch.config import text_config

    if "hidden_size" in text_config(config):
        return config
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    sizes = {key: getattr(cfg, key, None) for key in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                                                        "vocab_size")}
    return {**config, **{key: value for key, value in sizes.items() if isinstance(value, int)}}
