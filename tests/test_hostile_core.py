"""Hostile model configs, calibration files, sweep tables, options and paths: one class per test.

Every hostile file is generated here (a few kB on disk) and run through the CLI in a child process
under RLIMIT_AS and a timeout (tests/hostile.py). Each case failed before this suite existed: a hang
(10**12 layers), a traceback (ZeroDivisionError, TypeError, RecursionError, the 4300-digit limit,
ENAMETOOLONG, Rich MarkupError) or a nonsense answer with exit 0 (a complex or negative LR, nan).
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest

from tests.conftest import catalogue_config
from tests.hostile import assert_refused, run_limited

LLAMA = "meta-llama/Llama-3.1-8B"


def _config(tmp_path: Path, base: str, **changes: object) -> Path:
    config = catalogue_config(base)
    config.update(changes)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return path


# (base model, field changes, words the one error line must contain)
CONFIG_CASES = [
    ("Qwen/Qwen3-4B", {"num_hidden_layers": 10**12}, ["num_hidden_layers", "LORAPLAN_CONFIG_LIMITS"]),
    ("Qwen/Qwen3-4B", {"num_attention_heads": 0}, ["num_attention_heads"]),
    ("Qwen/Qwen3-4B", {"hidden_size": 0}, ["hidden_size"]),
    ("Qwen/Qwen3-4B", {"hidden_size": -4096}, ["hidden_size"]),  # gave a complex LR with exit 0
    ("Qwen/Qwen3-4B", {"hidden_size": 1e30}, ["hidden_size", "integer"]),
    ("Qwen/Qwen3-4B", {"hidden_size": 10**30}, ["hidden_size"]),
    ("Qwen/Qwen3-4B", {"num_hidden_layers": 0}, ["num_hidden_layers"]),
    ("Qwen/Qwen3-4B", {"vocab_size": 0}, ["vocab_size"]),
    ("Qwen/Qwen3-4B", {"vocab_size": True}, ["vocab_size"]),
    ("Qwen/Qwen3-4B", {"model_type": ["qwen3"]}, ["model_type"]),
    ("meta-llama/Llama-3.1-8B", {"hidden_size": 4097}, ["multiple of `num_attention_heads`"]),
    ("Qwen/Qwen3-30B-A3B", {"decoder_sparse_step": 0}, ["decoder_sparse_step"]),
    ("Qwen/Qwen3-30B-A3B", {"mlp_only_layers": 3}, ["mlp_only_layers"]),
    ("Qwen/Qwen3-30B-A3B", {"num_experts_per_tok": 1000}, ["experts per token"]),
    ("Qwen/Qwen3-30B-A3B", {"num_experts": 10**9}, ["num_experts"]),
    ("Qwen/Qwen3-VL-4B-Instruct", {"vision_config": {"depth": 10**12}}, ["vision_config.depth"]),
]


@pytest.mark.parametrize(("base", "changes", "words"), CONFIG_CASES,
                         ids=[f"{next(iter(c))}={str(next(iter(c.values())))[:12]}" for _, c, _ in CONFIG_CASES])
def test_model_config_out_of_bounds_is_refused_before_building(tmp_path, base, changes, words) -> None:
    config = _config(tmp_path, base, **changes)
    for command in ("params", "lr"):
        assert_refused(run_limited(command, str(config), timeout=30), *words)


def test_unknown_layout_is_bounded_on_the_meta_path_too(tmp_path) -> None:
    """gpt2 has no built-in layout: transformers would build 10**7 blocks on the meta device."""
    for n_layer in (10**7, 1e7):
        config = tmp_path / "config.json"
        config.write_text(json.dumps({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_layer": n_layer,
                                      "n_embd": 768, "n_head": 12, "vocab_size": 50257}))
        assert_refused(run_limited("params", str(config), timeout=30), "n_layer")


def test_limits_can_be_raised_by_environment(tmp_path) -> None:
    config = _config(tmp_path, "Qwen/Qwen3-4B", num_hidden_layers=1100)
    assert_refused(run_limited("params", str(config), "--json"), "1,024")
    raised = run_limited("params", str(config), "--json", env={"LORAPLAN_CONFIG_LIMITS": "layers=2048"})
    assert raised.code == 0, raised.stderr
    assert json.loads(raised.stdout)["per_rank"]["attn"] > 0


def test_every_catalogue_config_is_within_bounds() -> None:
    from loraplan.arch.bounds import check_config_bounds
    from loraplan.arch.sources import catalog, load_config_file

    for entry in catalog().values():
        check_config_bounds(load_config_file(entry.path), entry.model_id)


@pytest.mark.parametrize(("text", "words"), [
    ("[" * 100_000 + "]" * 100_000, ["nested too deeply"]),
    ('{"hidden_size": ' + "9" * 5000 + "}", ["digits"]),
])
def test_config_json_that_breaks_the_parser(tmp_path, text, words) -> None:
    path = tmp_path / "config.json"
    path.write_text(text)
    assert_refused(run_limited("params", str(path), timeout=30), str(path), *words)


def _safetensors(path: Path, header: dict) -> None:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)


@pytest.mark.parametrize("shape", [[10**30, 4096], [True, 4096], [4096, -1], [1] * 20])
def test_safetensors_dimensions_that_are_not_sizes(tmp_path, shape) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(catalogue_config("meta-llama/Llama-3.2-1B")))
    _safetensors(folder / "model.safetensors", {"lm_head.weight": {"dtype": "BF16", "shape": shape,
                                                                    "data_offsets": [0, 0]}})
    assert_refused(run_limited("params", str(folder), timeout=30), "lm_head.weight", "shape")


def test_fifo_safetensors_in_a_model_folder_does_not_block(tmp_path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(catalogue_config("meta-llama/Llama-3.2-1B")))
    os.mkfifo(folder / "model.safetensors")
    assert_refused(run_limited("params", str(folder), timeout=20), "FIFO")


CALIBRATIONS = {
    "base-nan": ("[families.llama]\nbase = nan\nexponent = 0.5\n", "base"),
    "exponent-nan": ("[families.llama]\nbase = 1e-5\nexponent = nan\n", "exponent"),
    "negative-multiplier": ("[families.llama]\nbase = 1e-5\nexponent = 0.5\nlora_multiplier = -10\n",
                            "lora_multiplier"),
    "inf-exponent": ("[families.llama]\nbase = 1e-5\nexponent = inf\n", "exponent"),
    "huge-exponent": ("[families.llama]\nbase = 1e-5\nexponent = 1e300\n", "exponent"),
    "string-base": ('[families.llama]\nbase = "1e-5"\nexponent = 0.5\n', "base"),
    "typo": ("[families.llama]\nbase = 1e-5\nexponent = 0.5\nexponnet = 3\n", "exponnet"),
    "nested-100k": ("a = " + "[" * 100_000 + "]" * 100_000 + "\n", "nested"),
    "4300-digits": ("a = " + "9" * 5000 + "\n", "digits"),
    "not-utf8": ("a = 1\n\udcff", "UTF-8"),
}


@pytest.mark.parametrize("name", CALIBRATIONS)
def test_calibration_that_would_give_a_nonsense_lr(tmp_path, name) -> None:
    text, word = CALIBRATIONS[name]
    path = tmp_path / "cal.toml"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    for command in (["lr", LLAMA], ["check", _axolotl(tmp_path)]):
        assert_refused(run_limited(*command, "--calibration", str(path), timeout=30), str(path), word)


def _axolotl(tmp_path: Path) -> str:
    path = tmp_path / "axolotl.yaml"
    path.write_text("base_model: meta-llama/Llama-3.1-8B\nadapter: lora\nlora_r: 16\nlora_alpha: 32\n"
                    "learning_rate: 0.0002\nlora_target_modules: [q_proj, v_proj]\n")
    return str(path)


@pytest.mark.parametrize(("name", "text", "word"), [
    ("s.jsonl", '{"model": "a/b", "lr": 1e999, "rank": 8, "metric": 1.0}\n', "lr"),
    ("s.jsonl", '{"model": "a/b", "lr": ' + "9" * 5000 + ', "rank": 8, "metric": 1.0}\n', "JSON"),
    ("s.jsonl", "[" * 100_000 + "\n", "JSON"),
    ("s.csv", "model,lr,rank,metric\na/b," + "1" * 200_000 + ",8,1.0\n", "CSV"),
    ("s.md", "## a/b\n| LR | LoRA Rank | Test NLL |\n|--|--|--|\n| 1e400 | 8 | 1.0 |\n", "lr"),
])
def test_sweep_table_that_breaks_a_reader(tmp_path, name, text, word) -> None:
    path = tmp_path / name
    path.write_text(text)
    assert_refused(run_limited("calibrate", str(path), timeout=30), str(path), word)


@pytest.mark.parametrize(("args", "words"), [
    (["plan", LLAMA, "--tokens", "1000000", "--examples", "1000", "--epochs", "inf"], ["--epochs"]),
    (["plan", LLAMA, "--tokens", "1000000", "--examples", "1000", "--epochs", "1e308"], ["--epochs"]),
    (["plan", LLAMA, "--tokens", "0", "--examples", "0"], ["examples"]),
    (["plan", LLAMA, "--tokens", "1000000", "--examples", "1000", "--lr", "inf"], ["--lr"]),
    (["plan", LLAMA, "--tokens", "10", "--examples", "10", "--transfer-from", "Qwen/Qwen3-8B", "--transfer-lr", "inf"],
     ["--transfer-lr"]),
    (["lr", LLAMA, "--transfer-from", "Qwen/Qwen3-8B", "--transfer-lr", "inf"], ["--transfer-lr"]),
    (["capacity", LLAMA, "--tokens", "1000", "--rule", "bits", "--bits-per-token", "0"], ["--bits-per-token"]),
    (["params", LLAMA, "--targets", "nonexistent_proj"], ["nonexistent_proj", "q_proj", "attn"]),
    (["plan", LLAMA, "--tokens", "10", "--examples", "10", "--targets", "attn,nonexistent_proj"],
     ["nonexistent_proj"]),
])
def test_nonsense_options_are_refused(args, words) -> None:
    assert_refused(run_limited(*args, timeout=30), *words)


def test_valid_target_names_still_count() -> None:
    run = run_limited("params", LLAMA, "--targets", "q_proj,lm_head", "--convention", "peft", "--json")
    assert run.code == 0, run.stderr
    per_rank = json.loads(run.stdout)["per_rank"]
    assert per_rank["attn"] == 32 * (4096 + 4096) and per_rank["unembed"] == 4096 + 128256


@pytest.mark.parametrize("command", [["lr"], ["params"], ["check"], ["plan"]])
def test_file_name_too_long(command) -> None:
    assert_refused(run_limited(*command, "x" * 5000, timeout=30), "too long")


@pytest.mark.parametrize("reference", ["a/[/b]", "[bold]x[/bold]/y", "a/[red"])
def test_markup_in_user_text_is_printed_as_text(reference) -> None:
    run = run_limited("lr", reference, timeout=30)
    assert_refused(run, reference)


def test_markup_in_a_local_path_is_echoed_as_text(tmp_path) -> None:
    folder = tmp_path / "[red]m[/x]"  # two folders: `[red]m[` holding `x]`
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(catalogue_config("Qwen/Qwen3-4B")))
    for command in (["lr", str(folder)], ["params", str(folder)],
                    ["plan", str(folder), "--tokens", "100000", "--examples", "100", "--explain"]):
        run = run_limited(*command, timeout=60)
        assert run.code == 0 and "Traceback" not in run.stderr, run.stderr
        assert "[red]m[/x]" in run.stdout.replace("\n", "")


def test_gpt2_style_names_on_the_meta_path(tmp_path) -> None:
    """`n_embd`/`n_layer` configs reached `cfg["hidden_size"]`: a KeyError traceback for every GPT-2."""
    pytest.importorskip("torch")
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_layer": 2,
                                  "n_embd": 64, "n_head": 4, "vocab_size": 100}))
    run = run_limited("params", str(config), "--json", timeout=120)
    assert run.code == 0 and "Traceback" not in run.stderr, run.stderr[-2000:]
    assert json.loads(run.stdout)["model_params"] > 0
