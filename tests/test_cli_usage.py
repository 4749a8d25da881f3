"""Usage errors through the installed console script, the way a user types them: one line, exit 2, no traceback.

Oracle: the process itself (exit status, stderr line count). Run through `bin/loraplan` next to the test's
interpreter, so whatever click typer brings (typer >= 0.29 vendors its own as `typer._click`) is the one raising.
"""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

SCRIPT = Path(sys.executable).parent / "loraplan"
MODEL = "meta-llama/Llama-3.1-8B"


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    assert SCRIPT.exists(), f"the console script is not installed next to {sys.executable}: pip install -e ."
    env = {**os.environ, "COLUMNS": "80", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=60, env=env)


@pytest.mark.parametrize(("args", "expected"), [
    (["--bogus"], "No such option: --bogus"),
    (["nosuch"], "No such command 'nosuch'"),
    (["plan"], "Missing argument 'model'"),
    (["plan", MODEL, "--rank", "abc"], "'--rank'"),
    (["plan", MODEL, "--rank", "0"], "greater than or equal to 1"),
    (["plan", MODEL, "--rank"], "requires an argument"),
    (["plan", MODEL, "--bogus"], "No such option: --bogus"),
    (["lr", MODEL, "--batch-size", "x"], "'--batch-size'"),
    (["params", MODEL, "--rank", "-3"], "greater than or equal to 1"),
])
def test_usage_error_is_one_line_exit_2(args: list[str], expected: str) -> None:
    proc = run_script(*args)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and expected in lines[0]
    assert proc.stdout == ""


def test_bare_command_shows_help_and_exits_2() -> None:
    proc = run_script()
    assert proc.returncode == 2
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "plan" in proc.stdout + proc.stderr and "Usage" in proc.stdout + proc.stderr


def test_version_matches_the_installed_metadata() -> None:
    proc = run_script("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"loraplan {version('loraplan')}"


def test_help_exits_0() -> None:
    proc = run_script("plan", "--help")
    assert proc.returncode == 0 and "--batch-size" in proc.stdout


@pytest.mark.parametrize(("args", "expected"), [
    (["plan", MODEL, "--format", "trll"],
     "--format must be one of peft, peft-python, trl, axolotl, llamafactory, torchtune, unsloth, tinker (got 'trll'); "
     "did you mean trl?"),
    (["plan", MODEL, "--task", "stf"], "did you mean sft?"),
    (["plan", "llama-3.1-8b"], "did you mean meta-llama/Llama-3.1-8B"),
    (["params", "Qwen3-8B"], "did you mean Qwen/Qwen3-8B"),
])
def test_unknown_values_list_the_valid_ones_and_the_closest(args: list[str], expected: str) -> None:
    proc = run_script(*args)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and expected in proc.stderr


def test_every_export_format_is_listed_by_the_format_error() -> None:
    """Oracle: the names `plan --format` accepts are exactly the ones the error lists."""
    from loraplan.formats import EXPORT_FORMATS, FormatError, get_format

    with pytest.raises(FormatError) as info:
        get_format("nope")
    assert all(name in str(info.value) for name in EXPORT_FORMATS) and "peft-python" in str(info.value)


def _commands() -> dict:
    import typer.main

    from loraplan.cli import _register, app

    _register()
    return typer.main.get_command(app).commands  # type: ignore[attr-defined]


def test_every_option_has_a_description_and_every_command_an_example() -> None:
    """Oracle: the click command tree typer builds (what --help renders)."""
    missing = [f"{name} {'/'.join(param.opts)}" for name, command in _commands().items()
               for param in command.params if param.param_type_name == "option" and not (param.help or "").strip()]
    assert not missing, missing
    no_example = [name for name, command in _commands().items() if "loraplan " + name not in (command.help or "")]
    assert not no_example, no_example


def test_format_means_the_trainer_format_everywhere() -> None:
    for name, command in _commands().items():
        for param in command.params:
            if "--format" in param.opts:
                assert "trl" in (param.help or ""), (name, param.help)


def _help_examples() -> list[list[str]]:
    import shlex

    return [shlex.split(line.strip()[2:]) for command in _commands().values()
            for line in (command.help or "").splitlines() if line.strip().startswith("$ loraplan ")]


@pytest.mark.parametrize("example", _help_examples(), ids=" ".join)
def test_help_examples_run(example: list[str], tmp_path: Path) -> None:
    """Every `$ loraplan ...` line in a command's help runs from a checkout (examples/ and data/ at hand)."""
    root = Path(__file__).resolve().parent.parent
    for folder in ("examples", "data"):
        (tmp_path / folder).symlink_to(root / folder)
    env = {**os.environ, "COLUMNS": "80", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([str(SCRIPT), *example[1:]], capture_output=True, text=True, timeout=300, env=env,
                          cwd=tmp_path)
    allowed = {0, 1} if example[1] == "check" else {0}  # check exits 1 when it finds an error, as documented
    assert proc.returncode in allowed, proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("columns", [60, 80, 120])
def test_models_table_shows_whole_ids_and_fits(columns: int) -> None:
    """Oracle: the ids `models --json` lists each appear whole in the table, and no line passes the terminal."""
    import json

    ids = [m["model"] for m in json.loads(run_script("models", "--json").stdout)["models"]]
    env = {**os.environ, "COLUMNS": str(columns)}
    text = subprocess.run([str(SCRIPT), "models"], capture_output=True, text=True, timeout=60, env=env).stdout
    assert all(model_id in text for model_id in ids)
    assert max(len(line) for line in text.splitlines()) <= columns
    assert ("active" in text) and (("family" in text) == (columns >= 120))
