"""Writes touch only the file the user named, atomically, and never through a link or onto a device;
`--fix` on scripts keeps them valid Python; `check` stays near-linear in a config's target names."""

from __future__ import annotations

import itertools
import json
import os
import re
import stat
import string
from pathlib import Path

import pytest

from loraplan.atomicwrite import write_atomic
from loraplan.errors import OutputFileError
from tests.hostile import assert_refused, run_limited

LLAMA = "meta-llama/Llama-3.1-8B"
PLAN = ["plan", LLAMA, "--tokens", "1000000", "--examples", "1000", "--format", "axolotl"]
SWEEP = Path(__file__).resolve().parent.parent / "data" / "tinker_cookbook_sft_sweep.md"


def _leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_symlink_destination_is_refused_and_its_target_untouched(tmp_path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    link = tmp_path / "out.yaml"
    link.symlink_to(victim)
    with pytest.raises(OutputFileError, match="symbolic link"):
        write_atomic(link, "new")
    assert victim.read_text() == "precious" and link.is_symlink() and not _leftovers(tmp_path)
    assert_refused(run_limited(*PLAN, "-o", str(link)), "symbolic link")
    assert victim.read_text() == "precious" and link.is_symlink()


@pytest.mark.parametrize("kind", ["fifo", "device", "folder"])
def test_non_regular_destination_is_refused(tmp_path, kind) -> None:
    if kind == "fifo":
        target = tmp_path / "out.yaml"
        os.mkfifo(target)
    elif kind == "device":
        target = Path("/dev/null")  # as root, the old rename replaced the device node with a regular file
    else:
        target = tmp_path / "folder"
        target.mkdir()
    before = os.lstat(target).st_mode
    assert_refused(run_limited(*PLAN, "-o", str(target), timeout=30), str(target))
    assert os.lstat(target).st_mode == before
    assert not _leftovers(tmp_path)


def test_existing_mode_is_kept_and_new_files_follow_the_umask(tmp_path) -> None:
    existing = tmp_path / "existing.yaml"
    existing.write_text("old")
    existing.chmod(0o640)
    run = run_limited(*PLAN, "-o", str(existing), umask=0o077)
    assert run.code == 0, run.stderr
    assert stat.S_IMODE(existing.stat().st_mode) == 0o640 and "learning_rate" in existing.read_text()
    fresh = tmp_path / "fresh.yaml"
    assert run_limited(*PLAN, "-o", str(fresh), umask=0o027).code == 0
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o640  # 0o666 & ~0o027 (was 0o600 whatever the umask)
    assert not _leftovers(tmp_path)


def test_temporary_file_is_removed_on_any_error(tmp_path, monkeypatch) -> None:
    def fail(*_args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OutputFileError, match="No space left"):
        write_atomic(tmp_path / "out.toml", "x" * 10_000)
    assert list(tmp_path.iterdir()) == []


def test_an_input_of_the_same_command_is_not_overwritten(tmp_path) -> None:
    sweep = tmp_path / "sweep.md"
    sweep.write_text(SWEEP.read_text())
    assert_refused(run_limited("calibrate", str(sweep), "-o", str(sweep), timeout=120), "input of this command")
    assert sweep.read_text() == SWEEP.read_text()
    config = tmp_path / "axolotl.yaml"
    config.write_text("base_model: meta-llama/Llama-3.1-8B\nadapter: lora\nlora_r: 16\nlora_alpha: 32\n"
                      "learning_rate: 0.00002\nlora_target_modules: [q_proj, v_proj]\n")
    calibration = tmp_path / "cal.toml"
    calibration.write_text("[families.llama]\nbase = 5e-5\nexponent = 0.781\n")
    kept = calibration.read_text()
    assert_refused(run_limited("check", str(config), "--calibration", str(calibration), "--fix", "-o",
                               str(calibration)), "input of this command")
    assert calibration.read_text() == kept


def test_in_place_fix_is_still_allowed_and_keeps_the_mode(tmp_path) -> None:
    config = tmp_path / "axolotl.yaml"
    config.write_text("base_model: meta-llama/Llama-3.1-8B\nadapter: lora\nlora_r: 16\nlora_alpha: 32\n"
                      "learning_rate: 0.00002\nlora_target_modules: [q_proj, v_proj]\n")
    config.chmod(0o664)
    run = run_limited("check", str(config), "--fix", "-o", str(config))
    assert run.code == 1 and "Traceback" not in run.stderr, run.stderr
    assert "gate_proj" in config.read_text() and stat.S_IMODE(config.stat().st_mode) == 0o664


def test_plot_does_not_follow_a_planted_symlink(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    sections = re.split(r"(?m)^(?=## )", SWEEP.read_text())
    wanted = ("meta-llama/Llama-3.1-8B", "meta-llama/Llama-3.2-1B", "Qwen/Qwen3-8B", "Qwen/Qwen3-32B")
    models = [s for s in sections if s.split("\n", 1)[0][3:].strip() in wanted]
    sweep = tmp_path / "four.md"
    sweep.write_text("".join(models))
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / ".curves.png.tmp.png").symlink_to(victim)  # the fixed temporary name the old code used
    run = run_limited("calibrate", str(sweep), "--plot", str(tmp_path / "curves.png"), timeout=120)
    assert run.code == 0, run.stderr
    assert victim.read_text() == "precious"
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert_refused(run_limited("calibrate", str(sweep), "--plot", str(sweep), timeout=120), "input of this command")


UNSLOTH = '''from unsloth import FastLanguageModel
from trl import SFTConfig
x = 1  # a form feed \x0c inside a comment
model, tokenizer = FastLanguageModel.from_pretrained(model_name="meta-llama/Llama-3.1-8B", max_seq_length=2048)
note = "éé\u2028é"; other = "ü"
model = FastLanguageModel.get_peft_model(model, r=16, lora_alpha=16, target_modules=["q_proj", "v_proj"])
args = SFTConfig(learning_rate=2e-5, per_device_train_batch_size=8, gradient_accumulation_steps=4)
'''


def test_unsloth_fix_uses_byte_offsets_and_python_line_ends(tmp_path) -> None:
    import ast

    script = tmp_path / "train.py"
    script.write_text(UNSLOTH, encoding="utf-8")
    fixed = tmp_path / "fixed.py"
    run = run_limited("check", str(script), "--fix", "-o", str(fixed))
    assert run.code == 1 and "Traceback" not in run.stderr, run.stderr
    text = fixed.read_text(encoding="utf-8")
    tree = ast.parse(text)  # the old fix cut multi-byte characters' offsets short: a SyntaxError here
    calls = {getattr(n.func, "attr", getattr(n.func, "id", "")): n for n in ast.walk(tree) if isinstance(n, ast.Call)}
    targets = next(k.value for k in calls["get_peft_model"].keywords if k.arg == "target_modules")
    assert {"gate_proj", "up_proj", "down_proj", "q_proj"} <= set(ast.literal_eval(targets))
    assert 'note = "éé\u2028é"; other = "ü"' in text and "\x0c inside a comment" in text


def test_a_fix_that_would_not_parse_is_refused(monkeypatch) -> None:
    """With character offsets (the old bug) the splice lands mid-token; the re-parse refuses it."""
    from loraplan.doctor import fix_python
    from loraplan.formats.base import FormatError

    def char_offsets(source: bytes) -> list[int]:
        starts = [0]
        for line in source.decode("utf-8").splitlines(keepends=True):
            starts.append(starts[-1] + len(line))
        return starts

    monkeypatch.setattr(fix_python, "_offsets", char_offsets)
    before = "import x\nm = x.get_peft_model(model, r=16)\n"
    text = "é" * 10 + " = 1\n" + before
    with pytest.raises(FormatError, match="would not parse"):
        fix_python.fix_python(text, before, before.replace("r=16", "r=32"))


def _peft_config(tmp_path: Path, targets: list[str]) -> Path:
    path = tmp_path / "adapter_config.json"
    path.write_text(json.dumps({"peft_type": "LORA", "base_model_name_or_path": LLAMA, "r": 16, "lora_alpha": 32,
                                "target_modules": targets, "task_type": "CAUSAL_LM"}, separators=(",", ":")))
    return path


def test_check_is_near_linear_in_target_names(tmp_path) -> None:
    """144k names (the 1 MiB Axolotl case took 123 s): each name is one set lookup, not a pass over weights."""
    alphabet = string.ascii_letters + string.digits
    names = ["".join(t) for t in itertools.islice(itertools.product(alphabet, repeat=3), 144_000)]
    names += ["q_proj", "v_proj"]  # 864 kB: under the 1 MiB config limit
    run = run_limited("check", str(_peft_config(tmp_path, names)), "--json", timeout=60)
    assert run.code in (0, 1) and "Traceback" not in run.stderr, run.stderr[-2000:]
    unmatched = next(f for f in json.loads(run.stdout)["findings"] if f["id"] == "unmatched-targets")
    assert names[-3] in unmatched["evidence"] and run.seconds < 30


def test_catastrophic_regex_target_is_bounded(tmp_path) -> None:
    run = run_limited("check", str(_peft_config(tmp_path, ["q_proj", "(.*.*)*(a|aa)*X$", "(\\w|\\w)*_projx"])),
                      "--json", timeout=60)
    assert run.code in (0, 1, 2) and "Traceback" not in run.stderr, run.stderr[-2000:]
    assert run.seconds < 30
