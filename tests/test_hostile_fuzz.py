"""Property: whatever bytes a user file holds, every reader answers (exit 0/1) or refuses in one line
(exit 2), with no traceback, in bounded time and memory.

Hypothesis writes random bytes, random JSON (also real configs with one field replaced by a random
value), random YAML, TOML and Jinja built from each language's own tokens, into trainer configs of
every format, model configs, calibration files, sweep tables and chat templates. Each example is a
batch of such files run through the CLI in one child process under RLIMIT_AS (tests/hostile.py);
a few examples keep the default run well under a minute. LORAPLAN_FUZZ_EXAMPLES=N runs N random
(not derandomized) examples instead.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.conftest import catalogue_config
from tests.hostile import assert_contained, run_batch

EXAMPLES = int(os.environ.get("LORAPLAN_FUZZ_EXAMPLES", "0"))
NO_SHRINK = (Phase.explicit, Phase.generate)  # each example is a child process: the failing argv is named instead
TOKENIZER = str(Path(__file__).resolve().parent.parent / "examples" / "tokenizer")
FORMATS = ["peft", "trl", "axolotl", "llamafactory", "torchtune", "unsloth", "tinker", None]

scalars = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True, allow_infinity=True)
           | st.text(max_size=12) | st.sampled_from(["q_proj", "all-linear", "llama", "lora", "1e-4", "-1", ""]))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)

CONFIG_KEYS = ["model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
               "head_dim", "intermediate_size", "vocab_size", "num_experts", "num_experts_per_tok",
               "moe_intermediate_size", "decoder_sparse_step", "mlp_only_layers", "tie_word_embeddings",
               "architectures", "text_config", "layer_types", "shared_expert_intermediate_size", "q_lora_rank"]
TRAINER_KEYS = ["base_model", "adapter", "lora_r", "lora_alpha", "learning_rate", "lora_target_modules",
                "lora_target_linear", "micro_batch_size", "gradient_accumulation_steps", "num_epochs", "r",
                "target_modules", "peft_type", "model_name_or_path", "lora_rank", "lora_target", "finetuning_type",
                "use_peft", "per_device_train_batch_size", "model", "optimizer", "_component_", "lr"]


@st.composite
def real_config_mutated(draw: st.DrawFn) -> str:
    config = catalogue_config(draw(st.sampled_from(["Qwen/Qwen3-30B-A3B", "meta-llama/Llama-3.2-1B",
                                                    "Qwen/Qwen3.5-35B-A3B", "deepseek-ai/DeepSeek-V3.1"])))
    for _ in range(draw(st.integers(1, 3))):
        config[draw(st.sampled_from(CONFIG_KEYS))] = draw(json_values)
    return json.dumps(config)


def _joined(tokens: list[str]) -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(tokens) | st.text(max_size=6), max_size=40).map("".join)


yaml_text = _joined([": ", "\n", "- ", "  ", "[", "]", "{", "}", ", ", "&a ", "*a", "!!python/object:os.system ",
                     "'", '"', "|", ">", "#", "~", "1e400", "nan", ".inf", "<<: *a", *[k + ": " for k in TRAINER_KEYS]])
toml_text = _joined(["[families.llama]\n", "[default]\n", "[[a]]\n", " = ", "\n", "base", "exponent", "nan", "inf",
                     "-inf", "1e-5", "-3", "0", "[", "]", "{", "}", '"', "'''", "true", "lora_multiplier",
                     "moe_multiplier", "standalone", "1979-05-27", "9" * 50])
jinja_text = _joined(["{{ ", " }}", "{% ", " %}", "for m in messages", "endfor", "if ", "endif", "m['content']",
                      "m.role", "range(", ")", "1/0", "'x'*", "|length", "|tojson", "loop.index", "messages",
                      "raise_exception('bad')", "{# ", " #}", "<|im_start|>", "<|im_end|>", "\n",
                      "add_generation_prompt", "{% generation %}", "{% endgeneration %}", "namespace(", "[0]*",
                      "9999999"])
sweep_text = _joined(["## meta-llama/Llama-3.1-8B\n", "## a/b\n", "| LR | LoRA Rank | Test NLL |\n", "|--|--|--|\n",
                      "| ", " |", "\n", "1e-4", "32", "0.5", "nan", "inf", "-1", "model,lr,rank,metric\n", ",",
                      '{"model": "a/b", "lr": 1, "rank": 2, "metric": 3}\n', "1e400"])


def _text(strategy: st.SearchStrategy[str]) -> st.SearchStrategy[bytes]:
    return strategy.map(lambda s: s.encode("utf-8", "surrogatepass"))


def _json(values: st.SearchStrategy) -> st.SearchStrategy[bytes]:
    return values.map(lambda v: json.dumps(v).encode())


trainer_dicts = st.dictionaries(st.sampled_from(TRAINER_KEYS), json_values, max_size=6)
contents = {
    "trainer": st.binary(max_size=300) | _text(yaml_text) | _json(trainer_dicts) | _json(json_values),
    "model": st.binary(max_size=300) | real_config_mutated().map(str.encode) | _json(json_values),
    "calibration": st.binary(max_size=300) | _text(toml_text),
    "sweep": st.binary(max_size=300) | _text(sweep_text),
    "template": st.binary(max_size=300) | _text(jinja_text),
}
one_input = st.sampled_from(sorted(contents)).flatmap(
    lambda reader: st.tuples(st.just(reader), contents[reader], st.sampled_from(FORMATS),
                             st.sampled_from([".md", ".csv", ".jsonl"])))

CHAT = '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n' * 2


def _argv(folder: Path, reader: str, content: bytes, fmt: str | None, suffix: str) -> list[str]:
    """Write `content` where `reader` looks for it; the command line that reads it."""
    folder.mkdir()
    if reader == "trainer":
        name = {"peft": "adapter_config.json", "unsloth": "train.py", "tinker": "train.sh"}.get(fmt or "", "cfg.yaml")
        (folder / name).write_bytes(content)
        return ["check", str(folder / name), *(["--format", fmt] if fmt else [])]
    if reader == "model":
        (folder / "config.json").write_bytes(content)
        return ["params", str(folder)]
    if reader == "calibration":
        (folder / "cal.toml").write_bytes(content)
        return ["lr", "meta-llama/Llama-3.1-8B", "--calibration", str(folder / "cal.toml")]
    if reader == "sweep":
        (folder / f"sweep{suffix}").write_bytes(content)
        return ["calibrate", str(folder / f"sweep{suffix}")]
    (folder / "chat.jsonl").write_text(CHAT)
    (folder / "template.jinja").write_bytes(content)
    return ["tokens", str(folder / "chat.jsonl"), "--tokenizer", TOKENIZER, "--chat-template",
            str(folder / "template.jinja")]


@settings(max_examples=EXAMPLES or 2, derandomize=not EXAMPLES, deadline=None, database=None, phases=NO_SHRINK,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(inputs=st.lists(one_input, min_size=10, max_size=25))
def test_every_reader_answers_or_refuses_in_one_line(inputs) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        argvs = [_argv(root / str(i), *item) for i, item in enumerate(inputs)]
        for result in run_batch(argvs, cwd=root, timeout=240):
            assert_contained(result)


@settings(max_examples=EXAMPLES or 1, derandomize=not EXAMPLES, deadline=None, database=None, phases=NO_SHRINK,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(configs=st.lists(real_config_mutated(), min_size=10, max_size=20))
def test_mutated_real_model_configs(configs) -> None:
    """A real config with a field or three replaced: the bounds and builders, not just the JSON parser."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        argvs = []
        for i, text in enumerate(configs):
            (root / f"{i}.json").write_text(text)
            argvs += [["params", str(root / f"{i}.json")], ["lr", str(root / f"{i}.json")]]
        for result in run_batch(argvs, cwd=root, timeout=240):
            assert_contained(result)
