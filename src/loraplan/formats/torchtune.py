"""torchtune LoRA recipe overrides (`tune run lora_finetune_single_device --config FILE`).

torchtune names attention projections q_proj/k_proj/v_proj/output_proj, switches the MLP and the
output layer on as a whole (`apply_lora_to_mlp`, `apply_lora_to_output`), and builds models from
named builders; it has no stacked-expert LoRA for HF MoE layouts and schedules by cosine warmup.
The method is the recipe's, and the config says it through its `loss` (cross-entropy for SFT,
DPOLoss with its beta for DPO); torchtune has no LoRA RL recipe.
"""

from __future__ import annotations

from typing import Any

from loraplan.formats.base import Fields, dump_yaml, load_yaml_mapping
from loraplan.formats.flat import make_setup, project_paths, set_path
from loraplan.setup import LossMask, Method, Schedule, TrainingSetup

NAME = "torchtune"
SUFFIX = ".yaml"
ATTN = {"q_proj": "q_proj", "k_proj": "k_proj", "v_proj": "v_proj", "o_proj": "output_proj"}
MLP = ("gate_proj", "up_proj", "down_proj")
SCHEDULER = "torchtune.training.lr_schedulers.get_cosine_schedule_with_warmup"
SFT_LOSS = "torchtune.modules.loss.CEWithChunkedOutputLoss"  # recipes/configs/*_lora_single_device.yaml
DPO_LOSS = "torchtune.rlhf.loss.DPOLoss"  # recipes/configs/*_lora_dpo_single_device.yaml
# HF model id -> torchtune LoRA builder (looked up case-insensitively).
BUILDERS = {
    "meta-llama/Llama-3.1-8B": "torchtune.models.llama3_1.lora_llama3_1_8b",
    "meta-llama/Llama-3.1-70B": "torchtune.models.llama3_1.lora_llama3_1_70b",
    "meta-llama/Llama-3.2-1B": "torchtune.models.llama3_2.lora_llama3_2_1b",
    "meta-llama/Llama-3.2-3B": "torchtune.models.llama3_2.lora_llama3_2_3b",
    "meta-llama/Llama-2-7b-hf": "torchtune.models.llama2.lora_llama2_7b",
    "meta-llama/Llama-2-13b-hf": "torchtune.models.llama2.lora_llama2_13b",
    "meta-llama/Llama-2-70b-hf": "torchtune.models.llama2.lora_llama2_70b",
    "mistralai/Mistral-7B-v0.1": "torchtune.models.mistral.lora_mistral_7b",
    "google/gemma-2-9b": "torchtune.models.gemma2.lora_gemma2_9b",
    "Qwen/Qwen2.5-0.5B": "torchtune.models.qwen2_5.lora_qwen2_5_0_5b",
    "Qwen/Qwen2.5-1.5B": "torchtune.models.qwen2_5.lora_qwen2_5_1_5b_base",
    "Qwen/Qwen2.5-7B": "torchtune.models.qwen2_5.lora_qwen2_5_7b_base",
    # No Qwen3: torchtune 0.6.1, the latest release, has no qwen3 builders (only its main branch does).
    "microsoft/Phi-3-mini-4k-instruct": "torchtune.models.phi3.lora_phi3_mini",
}
# torchtune's LoRA builders that reach MoE experts (torchtune.modules.peft.LoRAGroupedExperts, built by
# lora_llama4_moe in torchtune/models/llama4/_component_builders.py at pytorch/torchtune@bd2a0fc): text model_type
# -> builder. No other torchtune model family has an MoE builder.
MOE_BUILDERS = {"llama4_text": "torchtune.models.llama4.lora_llama4_scout_17b_16e",
                "llama4": "torchtune.models.llama4.lora_llama4_scout_17b_16e"}
# The model a builder builds (the catalogue's spelling), for reading a config back.
BUILDER_MODELS = {builder.lower(): model for model, builder in BUILDERS.items()}
BUILDER_OF = {model.lower(): builder for model, builder in BUILDERS.items()}
PATHS = ["model", "data.path", "lora.rank", "lora.alpha", "lora.dropout", "lora.use_dora", "lora.target_modules",
         "lora.unembed",
         "optim.learning_rate", "optim.weight_decay", "optim.warmup_steps", "optim.micro_batch_size",
         "optim.gradient_accumulation_steps", "optim.epochs", "optim.max_grad_norm", "optim.schedule",
         "data.max_length", "method", "extras.dpo_beta"]


def model_files() -> dict[str, Any]:
    """Builder -> tokenizer and checkpointer, generated from torchtune's own configs (torchtune_models.json)."""
    import json
    from pathlib import Path

    return json.loads((Path(__file__).with_name("torchtune_models.json")).read_text())["builders"]


def _local_builder(path: str) -> str | None:
    from loraplan.formats.trl import local_builder

    return local_builder(path)


def _dataset(setup: TrainingSetup) -> dict[str, Any]:
    """torchtune's chat_dataset over the planned data (OpenAI `messages`); loss on assistant turns only."""
    path = setup.data.path or "DATASET"
    files = [p for p in path.split(",") if p]
    builder = _local_builder(files[0]) if files else None
    out: dict[str, Any] = {"_component_": "torchtune.datasets.chat_dataset"}
    if builder is not None:
        out.update({"source": builder, "data_files": files[0] if len(files) == 1 else files})
    else:
        out["source"] = path
    out.update({"conversation_column": "messages", "conversation_style": "openai", "split": "train",
                "train_on_input": setup.data.loss_mask is LossMask.ALL, "packed": False})
    return out


def _runtime(setup: TrainingSetup, builder: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], str]:
    """output_dir, tokenizer, checkpointer for a downloaded HF checkpoint (`tune download MODEL --output-dir DIR`)."""
    name = (setup.model or "MODEL").rstrip("/").rsplit("/", 1)[-1]
    checkpoint_dir = f"models/{name}"
    files = model_files().get(builder, {})
    tokenizer: dict[str, Any] = {}
    for key, value in files.get("tokenizer", {}).items():
        tokenizer[key] = f"{checkpoint_dir}/{value}" if key in ("path", "merges_file") else value
    tokenizer["max_seq_len"] = setup.data.max_length
    known = files.get("checkpointer", {})
    checkpointer = {"_component_": known.get("_component_", "torchtune.training.FullModelHFCheckpointer"),
                    "checkpoint_dir": checkpoint_dir,
                    "checkpoint_files": known.get("checkpoint_files", ["model.safetensors"]),
                    "recipe_checkpoint": None, "output_dir": "${output_dir}",
                    "model_type": known.get("model_type", "CHOOSE_MODEL_TYPE")}
    return {"output_dir": f"outputs/{name}-lora"}, tokenizer, checkpointer, checkpoint_dir


def write(setup: TrainingSetup) -> str:
    targets = set(setup.lora.target_modules or ())
    builder = BUILDER_OF.get((setup.model or "").lower(), "torchtune.models.CHOOSE_BUILDER")
    model: dict[str, Any] = {"_component_": builder,
                             "lora_attn_modules": [ATTN[t] for t in ATTN if t in targets],
                             "apply_lora_to_mlp": any(t in targets for t in MLP),
                             "apply_lora_to_output": "lm_head" in targets}
    for key, value in (("lora_rank", setup.lora.rank), ("lora_alpha", setup.lora.alpha),
                       ("lora_dropout", setup.lora.dropout), ("use_dora", setup.lora.use_dora)):
        if value is not None:
            model[key] = int(value) if key == "lora_alpha" and float(value).is_integer() else value
    top, tokenizer, checkpointer, checkpoint_dir = _runtime(setup, builder)
    out: dict[str, Any] = {**top, "model": model, "tokenizer": tokenizer, "checkpointer": checkpointer,
                           "resume_from_checkpoint": False, "save_adapter_weights_only": False,
                           "dataset": _dataset(setup), "seed": None, "shuffle": True}
    optimizer: dict[str, Any] = {"_component_": "torch.optim.AdamW", "fused": True}
    if setup.optim.learning_rate is not None:
        optimizer["lr"] = setup.optim.learning_rate
    if setup.optim.weight_decay is not None:
        optimizer["weight_decay"] = setup.optim.weight_decay
    out["optimizer"] = optimizer
    if setup.optim.schedule is Schedule.COSINE or setup.optim.warmup_steps is not None:
        out["lr_scheduler"] = {"_component_": SCHEDULER, "num_warmup_steps": setup.optim.warmup_steps or 0}
    for key, value in (("batch_size", setup.optim.micro_batch_size),
                       ("gradient_accumulation_steps", setup.optim.gradient_accumulation_steps),
                       ("epochs", int(setup.optim.epochs) if setup.optim.epochs else None),
                       ("clip_grad_norm", setup.optim.max_grad_norm)):
        if value is not None:
            out[key] = value
    out["max_steps_per_epoch"] = None
    loss = _loss(setup)
    if loss:
        out["loss"] = loss
    out.update({"compile": False, "metric_logger": {"_component_": "torchtune.training.metric_logging.DiskLogger",
                                                    "log_dir": "${output_dir}/logs"},
                "log_every_n_steps": 1, "log_peak_memory_stats": True, "device": "cuda", "dtype": "bf16",
                "enable_activation_checkpointing": True, "enable_activation_offloading": False,
                "profiler": {"_component_": "torchtune.training.setup_torch_profiler", "enabled": False}})
    recipe = "lora_dpo_single_device" if setup.method is Method.DPO else "lora_finetune_single_device"
    header = (f"Run with: tune run {recipe} --config THIS_FILE\nWritten by loraplan. First download the weights: "
              f"tune download {setup.model or 'MODEL'} --output-dir {checkpoint_dir}")
    if setup.method is Method.RL:
        header += "\nNOTE: torchtune has no LoRA RL recipe; this is the SFT recipe's config."
    if setup.optim.schedule not in (None, Schedule.COSINE):
        header += (f"\nNOTE: torchtune schedules by cosine warmup; the planned {setup.optim.schedule.value} "
                   "decay is not available.")
    if setup.lora.target_parameters:
        header += "\nWARNING: torchtune's builders do not adapt HF stacked MoE experts; use PEFT, TRL or Axolotl."
    return dump_yaml({k: v for k, v in out.items() if v is not None or k in ("seed", "max_steps_per_epoch")},
                     header)


def _loss(setup: TrainingSetup) -> dict[str, Any]:
    """The recipe's loss, which is how a torchtune config says its method."""
    if setup.method is Method.DPO:
        loss: dict[str, Any] = {"_component_": DPO_LOSS}
        if setup.extras.dpo_beta is not None:
            loss["beta"] = setup.extras.dpo_beta
        return loss
    if setup.method in (Method.SFT, Method.DISTILL):
        return {"_component_": SFT_LOSS}
    return {}


def _method(loss: Fields) -> Method | None:
    component = (loss.text("_component_") or "").lower()
    if "dpo" in component:
        return Method.DPO
    if "ce" in component.rsplit(".", 1)[-1] or "crossentropy" in component:
        return Method.SFT
    return None


def _builder_key(component: str) -> str:
    """`torchtune.models.qwen2_5.qlora_qwen2_5_1_5b_instruct` -> `qwen2_5_1_5b`: the builder's model size, with
    the QLoRA prefix and the instruct/base suffix (same architecture) taken off."""
    leaf = component.rsplit(".", 1)[-1]
    for prefix in ("qlora_", "lora_"):
        leaf = leaf.removeprefix(prefix)
    for suffix in ("_instruct", "_base"):
        leaf = leaf.removesuffix(suffix)
    return leaf


def model_from_builder(component: str | None) -> str | None:
    """The HF model a torchtune LoRA builder builds (the inverse of BUILDERS), or None for one not listed."""
    if not component:
        return None
    wanted = _builder_key(component)
    return next((model_id for model_id, builder in BUILDERS.items() if _builder_key(builder) == wanted), None)


def read(text: str, where: str) -> TrainingSetup:
    fields = Fields(load_yaml_mapping(text, where), where)
    model = fields.table("model")
    optimizer = fields.table("optimizer")
    nested: dict[str, Any] = {}
    attn = model.names("lora_attn_modules")
    if attn is not None or "apply_lora_to_mlp" in model.data:
        reverse = {v: k for k, v in ATTN.items()}
        targets = [reverse.get(a, a) for a in attn or ()]
        if model.boolean("apply_lora_to_mlp"):
            targets.extend(MLP)
        if model.boolean("apply_lora_to_output"):
            targets.append("lm_head")
        set_path(nested, "lora.target_modules", tuple(targets))
        set_path(nested, "lora.unembed", "lm_head" in targets)
    builder = (model.text("_component_") or "").lower()
    model_id = fields.text("hf_model_id") or next(
        (BUILDER_MODELS[b] for b in (builder, builder.replace(".qlora_", ".lora_")) if b in BUILDER_MODELS), None)
    dataset = fields.table("dataset")
    data_path = dataset.data.get("data_files") or dataset.data.get("source")
    if isinstance(data_path, list) and all(isinstance(p, str) for p in data_path):
        data_path = ",".join(data_path)
    for path, value in (("model", model_id), ("data.path", data_path if isinstance(data_path, str) else None),
                        ("lora.rank", model.integer("lora_rank")),
                        ("lora.alpha", model.number("lora_alpha")), ("lora.dropout", model.number("lora_dropout")),
                        ("lora.use_dora", model.boolean("use_dora")), ("optim.learning_rate", optimizer.number("lr")),
                        ("optim.weight_decay", optimizer.number("weight_decay")),
                        ("optim.micro_batch_size", fields.integer("batch_size")),
                        ("optim.gradient_accumulation_steps", fields.integer("gradient_accumulation_steps")),
                        ("optim.epochs", fields.number("epochs")),
                        ("optim.max_grad_norm", fields.number("clip_grad_norm")),
                        ("data.max_length", fields.table("tokenizer").integer("max_seq_len"))):
        if value is not None:
            set_path(nested, path, value)
    if "model" not in nested:  # torchtune names the model by its builder, `model._component_`
        from loraplan.arch.sources import catalog

        hf_id = model_from_builder(model.text("_component_"))
        entry = catalog().get(hf_id or "")
        if entry is not None:
            nested["model"] = entry.model_id
    loss = fields.table("loss")
    nested["method"] = _method(loss)
    beta = loss.number("beta")
    if beta is not None:
        set_path(nested, "extras.dpo_beta", beta)
    scheduler = fields.table("lr_scheduler")
    if scheduler.data:
        component = scheduler.text("_component_") or ""
        set_path(nested, "optim.schedule", Schedule.COSINE if "cosine" in component else Schedule.OTHER)
        warmup = scheduler.integer("num_warmup_steps")
        if warmup is not None:
            set_path(nested, "optim.warmup_steps", warmup)
    return make_setup(where, nested)


def project(setup: TrainingSetup) -> TrainingSetup:
    """torchtune adapts the MLP as a whole and always schedules by cosine warmup."""
    projected = project_paths(setup, PATHS)
    if (projected.model or "").lower() not in BUILDER_OF:  # the file names its model by builder only
        projected = projected.model_copy(update={"model": None})
    method = projected.method
    if method is Method.DISTILL:
        method = Method.SFT  # distillation runs the SFT recipe
    elif method is Method.RL:
        method = None  # no LoRA RL recipe: the file cannot say it
    extras = projected.extras if method is Method.DPO else projected.extras.model_copy(update={"dpo_beta": None})
    projected = projected.model_copy(update={"method": method, "extras": extras})
    targets = set(projected.lora.target_modules or ())
    if targets:
        kept = {t for t in targets if t in ATTN or t == "lm_head"}
        if targets & set(MLP):
            kept |= set(MLP)
        projected = projected.model_copy(update={"lora": projected.lora.model_copy(
            update={"target_modules": tuple(sorted(kept))})})
    if projected.optim.warmup_steps is not None or projected.optim.schedule is Schedule.COSINE:
        projected = projected.model_copy(update={"optim": projected.optim.model_copy(
            update={"schedule": Schedule.COSINE})})
    else:
        projected = projected.model_copy(update={"optim": projected.optim.model_copy(update={"schedule": None})})
    if projected.optim.epochs is not None:
        projected = projected.model_copy(update={"optim": projected.optim.model_copy(
            update={"epochs": float(int(projected.optim.epochs))})})
    return projected
