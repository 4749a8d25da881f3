"""The trial engine: it learns, it is deterministic, and it trains exactly the tokens `loraplan tokens` counts."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from loraplan.cli import _register, app
from tests.train.conftest import CHAT, TINY, TOKENIZER, tiny_spec

_register()
runner = CliRunner()


def test_a_run_lowers_the_held_out_loss_and_records_what_ran() -> None:
    from loraplan.train.engine import run_trial

    record = run_trial(tiny_spec(steps=15))
    before, after = record["eval_curve"][0][1], record["eval_loss"]
    assert after < before - 0.05, record["eval_curve"]
    assert len(record["losses"]) == 15
    assert record["setup"]["lora"] == {**record["setup"]["lora"], "rank": 8, "alpha": 32.0}
    assert record["setup"]["optim"]["learning_rate"] == 2e-3 and record["setup"]["optim"]["max_steps"] == 15
    assert record["tokens_per_s"] > 0 and record["peak_memory_bytes"] > 0
    assert record["health"]["status"] == "healthy", record["health"]["warnings"]
    assert {"torch", "transformers", "peft"} <= record["versions"].keys()
    json.dumps(record)  # plain JSON


def test_same_seed_same_losses_other_seed_other_losses() -> None:
    from loraplan.train.engine import run_trial

    first = run_trial(tiny_spec(steps=6, seed=3))
    again = run_trial(tiny_spec(steps=6, seed=3))
    other = run_trial(tiny_spec(steps=6, seed=4))
    assert first["losses"] == again["losses"] and first["eval_loss"] == again["eval_loss"]
    assert first["losses"] != other["losses"]


def test_label_tokens_of_one_epoch_equal_the_counted_trained_tokens() -> None:
    """Oracle: `loraplan tokens` (loraplan.data's counter) on the same file, tokenizer and max length."""
    from loraplan.data import count_trained_tokens, load_tokenizer
    from loraplan.train.batches import tokenize

    bundle = load_tokenizer(str(TOKENIZER))
    for seq_len in (64, 4096):  # truncating and not
        sequences, truncated, mask, _ = tokenize(str(CHAT), bundle, seq_len)
        counted = count_trained_tokens(str(CHAT), bundle, max_length=seq_len)
        assert sum(s.trained_tokens for s in sequences) == counted.trained_tokens
        assert sum(len(s.input_ids) for s in sequences) == counted.total_tokens
        assert truncated == counted.truncated_examples and mask == counted.mask
    cli = runner.invoke(app, ["tokens", str(CHAT), "--tokenizer", str(TOKENIZER), "--max-length", "64", "--json"])
    assert cli.exit_code == 0, cli.output
    assert json.loads(cli.stdout)["trained_tokens"] == sum(s.trained_tokens for s in tokenize(str(CHAT), bundle,
                                                                                                64)[0])


def test_trained_tokens_of_a_trial_are_the_label_tokens_of_its_batches(tmp_path) -> None:
    """One epoch with no held-out rows: the loss-carrying labels the Trainer saw are the file's count."""
    from loraplan.data import count_trained_tokens, load_tokenizer
    from loraplan.train.engine import run_trial

    small = tmp_path / "chat40.jsonl"
    small.write_text("".join(CHAT.read_text(encoding="utf-8").splitlines(keepends=True)[:40]), encoding="utf-8")
    counted = count_trained_tokens(str(small), load_tokenizer(str(TOKENIZER)), max_length=256)
    assert counted.examples == 40 and counted.untrained_examples == 0
    record = run_trial(tiny_spec(data=str(small), steps=5, batch_size=8, seq_len=256, eval_fraction=0.0))
    assert record["data"]["train_examples"] == 40 and record["eval_loss"] is None
    assert record["trained_tokens"] == counted.trained_tokens


def test_run_json_has_the_documented_keys() -> None:
    result = runner.invoke(app, ["run", *TINY, "--data", str(CHAT), "--tokenizer", str(TOKENIZER), "--steps", "3",
                                 "--lr", "1e-3", "--batch-size", "2", "--seq-len", "64", "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert {"losses", "eval_loss", "tokens_per_s", "trained_tokens", "health", "setup", "seed", "versions"} <= (
        record.keys())
    assert len(record["losses"]) == 3


def error_of(args: list[str]) -> str:
    """The one line `main()` prints: CliRunner hands back the LoraplanError itself."""
    from loraplan.errors import LoraplanError

    result = runner.invoke(app, ["run", *args])
    assert isinstance(result.exception, LoraplanError), (result.exception, result.output)
    message = str(result.exception)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(("args", "message"), [
    (["no-such-model", "--random-init"], "catalogued model"),
    (["./no/such/folder"], "not a folder"),
    ([*TINY, "--lr", "-1"], "--lr must be a positive number"),
    ([*TINY, "--layers", "0"], "--layers must be at least 1"),
    (["meta-llama/Llama-3.2-1B", "--layers", "2"], "add --random-init"),
])
def test_bad_input_is_one_line(args: list[str], message: str) -> None:
    assert message in error_of([*args, "--data", str(CHAT), "--tokenizer", str(TOKENIZER)])


def test_empty_data_and_unreadable_config_are_one_line(tmp_path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    broken = tmp_path / "train.yaml"
    broken.write_text("base_model: [unclosed\n")
    assert "empty.jsonl" in error_of([*TINY, "--data", str(empty), "--tokenizer", str(TOKENIZER), "--lr", "1e-3"])
    assert "train.yaml" in error_of([str(broken), "--data", str(CHAT), "--lr", "1e-3"])


def test_steps_0_through_the_console_script_is_one_line_and_exit_2() -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "loraplan", "run", *TINY, "--data", str(CHAT), "--tokenizer",
                           str(TOKENIZER), "--lr", "1e-3", "--steps", "0"], capture_output=True, text=True, timeout=300)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0] == "error: --steps must be at least 1 (got 0)"
