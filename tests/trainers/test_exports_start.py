"""Every format's export, for five models (dense and MoE), accepted by its trainer's own code.

Oracles, one per trainer, each the trainer's own parser or validator, installed apart (tests/trainers/envs.py):
- Axolotl: `axolotl.utils.config.validate_config` (its pydantic schema and cross-field checks);
- LLaMA-Factory: `llamafactory.hparams.get_train_args` (its HfArgumentParser and post-init checks);
- torchtune: `torchtune.config.validate` (what `tune validate` runs), plus the recipe's own source: every
  top-level key the export writes is one `recipes/lora_finetune_single_device.py` reads, and every key it
  reads without a default is there;
- Unsloth (needs a CUDA GPU to import, so it cannot run on CPU machines): its script parsed with `ast`, each
  call's keywords checked against the signatures in Unsloth's installed source (read with `ast`), TRL's
  SFTConfig fields and SFTTrainer signature, and `datasets.load_dataset`;
- TRL and PEFT: tests/trainers/test_trl_starts.py and tests/test_plan_exports.py.
Refusals (a trainer that cannot adapt a model's experts) are asserted to name the formats that can.
"""

from __future__ import annotations

import ast
import json
import re
import textwrap
from pathlib import Path

import pytest

from loraplan.arch import load_architecture
from loraplan.commands.plan_render import export_text
from loraplan.doctor import check_config
from loraplan.errors import LoraplanError
from loraplan.formats import FORMATS
from loraplan.formats.detect import read_config
from loraplan.plan import DataFacts, PlanRequest, make_plan
from loraplan.rules.calibration import resolve_calibration
from loraplan.setup import LossMask, Method, Schedule
from tests.trainers import envs

MODELS = ["meta-llama/Llama-3.1-8B", "Qwen/Qwen3-30B-A3B", "deepseek-ai/DeepSeek-V3.1", "openai/gpt-oss-20b",
          "mistralai/Mistral-7B-v0.1"]
FACTS = DataFacts(path="examples/chat.jsonl", examples=20_000, trained_tokens=10_000_000, loss_mask=LossMask.ASSISTANT)


def _exports(name: str, folder: Path, methods: tuple[Method, ...] = (Method.SFT,)) -> dict[str, Path]:
    """model/method -> the written export; refusals checked here and left out."""
    out: dict[str, Path] = {}
    for model in MODELS:
        arch = load_architecture(model)
        for method in methods:
            schedule = Schedule.COSINE if name == "torchtune" else Schedule.LINEAR
            plan = make_plan(arch, PlanRequest(method=method, data=FACTS, schedule=schedule,
                                               calibration=resolve_calibration(None)))
            try:
                text = export_text(plan.setup, name, arch)
            except LoraplanError as exc:
                assert "--format peft" in str(exc), exc
                continue
            path = folder / f"{model.replace('/', '--')}.{method.value}{FORMATS[name].SUFFIX}"
            path.write_text(text)
            report = check_config(read_config(path), model, tokens=FACTS.trained_tokens, examples=FACTS.examples,
                                  calibration=resolve_calibration(None))  # and `check` finds nothing to fix
            assert not [(f.id, f.title) for f in report.findings if f.severity.value != "info"], (model, name)
            out[f"{model} {method.value}"] = path
    return out


def _run(trainer: str, code: str, files: dict[str, Path]) -> dict[str, str]:
    try:
        proc = envs.run_with(trainer, textwrap.dedent(code), json.dumps({k: str(v) for k, v in files.items()}))
    except envs.Unavailable as exc:
        pytest.skip(str(exc))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("method", [Method.SFT, Method.DPO, Method.RL])
def test_trl_parses_every_export(tmp_path: Path, method: Method) -> None:
    """`trl sft|dpo|grpo`'s own parsers (their make_parser dataclasses), five models."""
    import trl

    config = {Method.SFT: trl.SFTConfig, Method.DPO: trl.DPOConfig, Method.RL: trl.GRPOConfig}[method]
    parser = trl.TrlParser((trl.ScriptArguments, config, trl.ModelConfig, trl.DatasetMixtureConfig))
    files = _exports("trl", tmp_path, (method,))
    assert len(files) == len(MODELS)
    for key, path in files.items():
        _script, training, model, data = parser.parse_args_and_config(
            args=["--config", str(path), "--output_dir", str(tmp_path / "out"), "--use_cpu", "true"])
        assert model.use_peft and model.lora_r and training.learning_rate > 0, key
        assert "lm_head" not in (model.lora_target_modules or []), key
        if method is Method.SFT:
            assert data.datasets and data.datasets[0].data_files == "examples/chat.jsonl", key


def test_axolotl_validates_every_export(tmp_path: Path) -> None:
    files = _exports("axolotl", tmp_path, (Method.SFT, Method.DPO))
    assert len(files) == 2 * len(MODELS)
    results = _run("axolotl", """
        import json, sys, yaml
        from axolotl.utils.config import validate_config
        from axolotl.utils.dict import DictDefault
        out = {}
        for key, path in json.loads(sys.argv[1]).items():
            try:
                cfg = validate_config(DictDefault(yaml.safe_load(open(path))))
                out[key] = f"ok lr={cfg.learning_rate} r={cfg.lora_r}"
            except Exception as exc:
                out[key] = f"error {type(exc).__name__}: {exc}"
        print(json.dumps(out))
    """, files)
    assert all(v.startswith("ok") for v in results.values()), results


def test_axolotl_keeps_the_counting_chat_template(tmp_path: Path) -> None:
    """The template the count used travels as the dataset's `chat_template: jinja` + `chat_template_jinja`."""
    arch = load_architecture(MODELS[0])
    jinja = str(Path(__file__).resolve().parent.parent.parent / "examples" / "tokenizer" / "chat_template.jinja")
    facts = DataFacts(path="examples/chat.jsonl", examples=470, trained_tokens=150_000, loss_mask=LossMask.ASSISTANT,
                      chat_template=jinja)
    plan = make_plan(arch, PlanRequest(data=facts, calibration=resolve_calibration(None)))
    path = tmp_path / "axolotl.yaml"
    path.write_text(export_text(plan.setup, "axolotl", arch))
    assert FORMATS["axolotl"].read(path.read_text(), str(path)).data.chat_template == jinja
    results = _run("axolotl", """
        import json, sys, yaml
        from axolotl.utils.config import validate_config
        from axolotl.utils.dict import DictDefault
        (path,) = json.loads(sys.argv[1]).values()
        dataset = validate_config(DictDefault(yaml.safe_load(open(path)))).datasets[0]
        print(json.dumps({"template": str(dataset["chat_template"]), "jinja": dataset["chat_template_jinja"]}))
    """, {"export": path})
    assert results["jinja"] == jinja and results["template"].endswith("jinja"), results  # a str enum


def test_llamafactory_parses_every_export(tmp_path: Path) -> None:
    files = _exports("llamafactory", tmp_path, (Method.SFT, Method.DPO))
    assert files
    results = _run("llamafactory", """
        import json, sys, yaml
        from llamafactory.hparams import get_train_args
        out = {}
        for key, path in json.loads(sys.argv[1]).items():
            args = yaml.safe_load(open(path))
            args.update(output_dir=path + ".out", use_cpu=True)  # bf16 needs a GPU; the parser checks it
            try:
                model, data, training, finetuning, _ = get_train_args(args)
                out[key] = f"ok stage={finetuning.stage} r={finetuning.lora_rank} lr={training.learning_rate}"
            except BaseException as exc:
                out[key] = f"error {type(exc).__name__}: {exc}"
        print(json.dumps(out))
    """, files)
    assert all(v.startswith("ok") for v in results.values()), results


def test_llamafactory_finds_the_data_set_the_header_describes(tmp_path: Path) -> None:
    """The dataset_info.json entry the export's header gives, read by LLaMA-Factory's own get_dataset_list."""
    files = _exports("llamafactory", tmp_path)
    text = next(iter(files.values())).read_text()
    entry = json.loads(next(line[2:] for line in text.splitlines() if line.startswith("# {")))
    name = next(iter(entry))
    entry[name]["file_name"] = str(Path(__file__).resolve().parent.parent.parent / entry[name]["file_name"])
    (tmp_path / "dataset_info.json").write_text(json.dumps(entry))
    results = _run("llamafactory", """
        import json, sys, types
        import llamafactory
        # llamafactory.data's __init__ imports its multimodal plugins (torchaudio, a GPU-era wheel); the parser
        # needs none of them, so the package is entered without running that __init__.
        package = types.ModuleType("llamafactory.data")
        package.__path__ = [llamafactory.__path__[0] + "/data"]
        sys.modules["llamafactory.data"] = package
        from llamafactory.data.parser import get_dataset_list
        args = json.loads(sys.argv[1])
        (attr,) = get_dataset_list([args["name"]], args["dir"])
        print(json.dumps({"load_from": attr.load_from, "formatting": attr.formatting, "messages": attr.messages,
                          "assistant": attr.assistant_tag}))
    """, {"name": name, "dir": tmp_path})
    assert results == {"load_from": "file", "formatting": "sharegpt", "messages": "messages",
                       "assistant": "assistant"}


def _recipe_keys(root: Path) -> tuple[set[str], set[str]]:
    """(keys the recipe reads as cfg.KEY, keys it reads with cfg.get("KEY", default))."""
    source = (root / "recipes" / "lora_finetune_single_device.py").read_text()
    required = set(re.findall(r"\bcfg\.(\w+)\b", source)) - {"get"}
    optional = set(re.findall(r"\bcfg\.get\(\s*[\"'](\w+)[\"']", source))
    return required, optional


def test_torchtune_validates_every_export_and_knows_every_key(tmp_path: Path) -> None:
    files = _exports("torchtune", tmp_path)
    assert any(key.startswith("meta-llama") for key in files) and any(key.startswith("mistralai") for key in files)
    results = _run("torchtune", """
        import json, sys
        from omegaconf import OmegaConf
        from torchtune import config
        out = {}
        for key, path in json.loads(sys.argv[1]).items():
            try:
                config.validate(OmegaConf.load(path))
                out[key] = "ok"
            except Exception as exc:
                out[key] = f"error {type(exc).__name__}: {exc}"
        print(json.dumps(out))
    """, files)
    assert all(v == "ok" for v in results.values()), results
    import yaml

    required, optional = _recipe_keys(envs.ensure("torchtune"))
    for key, path in files.items():
        written = set(yaml.safe_load(path.read_text()))
        assert written <= required | optional, (key, written - required - optional)
        assert required - {"resume_from_checkpoint"} <= written | {"resume_from_checkpoint"}, (key, required - written)


def test_torchtune_snapshot_matches_the_installed_torchtune() -> None:
    from loraplan.formats.torchtune import BUILDERS
    from tests.trainers.torchtune_snapshot import snapshot

    try:
        root = envs.ensure("torchtune")
    except envs.Unavailable as exc:
        pytest.skip(str(exc))
    shipped = json.loads((Path(FORMATS["torchtune"].__file__).with_name("torchtune_models.json")).read_text())
    fresh = snapshot(root, sorted(set(BUILDERS.values())), envs.PACKAGES["torchtune"][0].split("==")[1])
    assert shipped == fresh
    assert set(BUILDERS.values()) <= set(shipped["builders"])  # every builder exists in that release


def _signature_names(source: Path, cls: str, method: str) -> set[str]:
    tree = ast.parse(source.read_text())
    node = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == cls)
    func = next(n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == method)
    return {a.arg for a in [*func.args.args, *func.args.kwonlyargs]}


def test_unsloth_script_calls_match_the_signatures(tmp_path: Path) -> None:
    """Unsloth imports only with a CUDA GPU; the script is checked without running it."""
    import dataclasses
    import inspect

    import datasets
    import trl

    try:
        root = envs.ensure("unsloth") / "unsloth" / "models"
    except envs.Unavailable as exc:
        pytest.skip(str(exc))
    allowed = {
        "from_pretrained": _signature_names(root / "loader.py", "FastLanguageModel", "from_pretrained"),
        "get_peft_model": _signature_names(root / "llama.py", "FastLlamaModel", "get_peft_model"),
        "SFTConfig": {f.name for f in dataclasses.fields(trl.SFTConfig)},
        "SFTTrainer": set(inspect.signature(trl.SFTTrainer.__init__).parameters),
        "load_dataset": set(inspect.signature(datasets.load_dataset).parameters),
    }
    files = _exports("unsloth", tmp_path)
    assert len(files) == len(MODELS)
    for key, path in files.items():
        tree = ast.parse(path.read_text())
        calls = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                calls[name] = {k.arg for k in node.keywords}
        assert set(allowed) <= set(calls), (key, set(allowed) - set(calls))
        for name, names in allowed.items():
            assert calls[name] <= names, (key, name, calls[name] - names)
        assert "train" in calls and "dataset_name" not in calls["SFTConfig"]
