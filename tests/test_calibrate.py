"""loraplan.calibrate: readers, the issue-6 regret score, baselines and the fit, on the shipped table.

Oracles: the regret values are derived by hand on a tiny synthetic sweep; the baselines are the
figures issue 6 states (published 25/35, mean 0.57%, max 1.91% on Llama-3.2-3B; constant 3e-4,
mean 0.29%, max 2.6%), recomputed here from the table rather than copied.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from loraplan.calibrate.calfile import calibration_toml
from loraplan.calibrate.evaluate import best_constant, evaluate, groups_of, published_lr
from loraplan.calibrate.features import facts_table, model_facts
from loraplan.calibrate.fit import optimum
from loraplan.calibrate.regret import curve, curves
from loraplan.calibrate.sweep import SweepError, SweepPoint, read_sweep_file, read_sweeps
from loraplan.rules.calibration import DEFAULT_FILE, load_calibration

ROOT = Path(__file__).resolve().parent.parent
TABLE = ROOT / "data" / "tinker_cookbook_sft_sweep.md"


@pytest.fixture(scope="module")
def table_curves():
    return curves(read_sweeps([TABLE]).points)


@pytest.fixture(scope="module")
def table_facts(table_curves):
    return {m: model_facts(m) for m in table_curves}


@pytest.fixture(scope="module")
def table_evaluation(table_curves, table_facts):
    return evaluate(table_curves, table_facts)


# --- readers -----------------------------------------------------------------------------------

def test_markdown_reader_reads_every_model_and_row() -> None:
    sweep = read_sweeps([TABLE])
    assert len(sweep.models()) == 35
    assert len(sweep.points) == 548  # rows of the 35 result tables
    first = sweep.for_model("nvidia/NVIDIA-Nemotron-3-Ultra-550B-A55B-BF16")[0]
    assert (first.lr, first.rank, first.metric) == (4e-05, 1, 0.6090)


def test_csv_and_jsonl_readers(tmp_path: Path) -> None:
    csv_file = tmp_path / "s.csv"
    csv_file.write_text("model,lr,rank,metric,extra\norg/m,1e-4,8,0.5,x\norg/m,3e-4,8,0.4,y\n")
    jsonl = tmp_path / "s.jsonl"
    jsonl.write_text('{"model": "org/m", "lr": 1e-4, "rank": 8, "metric": 0.5}\n\n'
                     '{"model": "org/m", "lr": 3e-4, "rank": 8, "metric": 0.4}\n')
    assert read_sweep_file(csv_file) == [SweepPoint("org/m", 1e-4, 8, 0.5, f"{csv_file}:2"),
                                         SweepPoint("org/m", 3e-4, 8, 0.4, f"{csv_file}:3")]
    assert [(p.lr, p.metric, p.where) for p in read_sweep_file(jsonl)] == [
        (1e-4, 0.5, f"{jsonl}:1"), (3e-4, 0.4, f"{jsonl}:3")]


@pytest.mark.parametrize(("name", "text", "message"), [
    ("bad.csv", "model,lr,rank\norg/m,1e-4,8\n", "bad.csv:1: CSV header lacks metric"),
    ("bad.csv", "model,lr,rank,metric\norg/m,fast,8,0.5\n", "bad.csv:2: `lr` must be a number"),
    ("bad.csv", "model,lr,rank,metric\norg/m,1e-4,2.5,0.5\n", "bad.csv:2: `rank` must be a whole number"),
    ("bad.jsonl", '{"model": "org/m", "lr": 1e-4}\n', "bad.jsonl:1: missing rank, metric"),
    ("bad.jsonl", "[1, 2]\n", "bad.jsonl:1: each line must be a JSON object"),
    ("bad.jsonl", "{oops\n", "bad.jsonl:1: invalid JSON"),
    ("bad.md", "## org/m\n\n| LR | LoRA Rank | Test NLL |\n|---|---|---|\n| 1e-4 | 8 | -1 |\n",
     "bad.md:5: `metric` must be a positive"),
    ("bad.md", "# nothing here\n", "no `| LR | LoRA Rank | Test NLL |` table"),
    ("bad.txt", "x", "unknown sweep layout"),
])
def test_malformed_sweeps_name_file_and_line(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(SweepError) as info:
        read_sweep_file(path)
    assert message in str(info.value)


# --- regret --------------------------------------------------------------------------------------

def _synthetic() -> list[SweepPoint]:
    rows = [(1e-4, 1, 0.60), (1e-4, 8, 0.58), (1e-3, 1, 0.50), (1e-3, 8, 0.52), (1e-3, 8, 0.49),
            (1e-2, 8, 0.70)]
    return [SweepPoint("org/tiny", lr, r, nll, "t") for lr, r, nll in rows]


def test_regret_by_hand_on_a_tiny_sweep() -> None:
    c = curve("org/tiny", _synthetic())
    # f on the grid: min over ranks, duplicate (1e-3, 8) keeps the lower 0.49
    assert c.lrs == (1e-4, 1e-3, 1e-2) and c.values == (0.58, 0.49, 0.70)
    assert c.best == 0.49
    assert c.regret(1e-3) == 0.0
    assert math.isclose(c.regret(1e-4), (0.58 - 0.49) / 0.49)
    # halfway in log(lr) between 1e-4 and 1e-3 (sqrt(1e-7)): f = (0.58 + 0.49) / 2
    assert math.isclose(c.regret(math.sqrt(1e-4 * 1e-3)), (0.535 - 0.49) / 0.49)
    # held constant outside the swept range
    assert c.regret(1e-6) == c.regret(1e-4) and c.regret(1.0) == c.regret(1e-2)


def test_optimum_is_the_parabola_vertex() -> None:
    c = curve("org/tiny", _synthetic())
    opt = optimum(c)
    x0, x1, x2 = (math.log(v) for v in c.lrs)
    # equal spacing h: vertex = x1 + h/2 * (y0 - y2) / (y0 - 2 y1 + y2)
    h = x1 - x0
    assert math.isclose(opt.log_lr, x1 + h / 2 * (0.58 - 0.70) / (0.58 - 2 * 0.49 + 0.70))
    assert math.isclose(opt.weight, (0.58 - 2 * 0.49 + 0.70) / h**2 / 0.49)
    assert opt.how == "parabola" and x0 < opt.log_lr < x2


# --- the table: catalogue, baselines, fit -------------------------------------------------------

def test_every_sweep_model_is_known_to_the_catalogue(table_facts) -> None:
    facts_only = {m for m, f in table_facts.items() if f.facts_only}
    assert len(table_facts) == 35
    assert facts_only <= {e["model_id"] for e in facts_table().values()}
    assert all(f.source for f in table_facts.values())


def test_architecture_groups(table_facts) -> None:
    groups = groups_of(list(table_facts), table_facts)
    assert len(set(groups.values())) == 21
    assert groups["Qwen/Qwen3-VL-30B-A3B-Instruct"] == groups["Qwen/Qwen3-30B-A3B-Base"]
    assert groups["meta-llama/Llama-3.3-70B-Instruct"] == groups["meta-llama/Llama-3.1-70B"]
    assert groups["openai/gpt-oss-20b"] != groups["openai/gpt-oss-120b"]


def test_published_formula_baseline(table_curves, table_facts) -> None:
    regrets = {m: table_curves[m].regret(lr) for m in table_curves
               if (lr := published_lr(table_facts[m])) is not None}
    assert len(regrets) == 25
    assert {table_facts[m].family for m in regrets} == {"llama", "qwen"}
    assert round(100 * sum(regrets.values()) / 25, 2) == 0.57
    worst = max(regrets, key=regrets.__getitem__)
    assert worst == "meta-llama/Llama-3.2-3B" and round(100 * regrets[worst], 2) == 1.91


def test_best_constant_baseline(table_curves) -> None:
    lr = best_constant(table_curves)
    regrets = [c.regret(lr) for c in table_curves.values()]
    assert lr == 3e-4
    assert round(100 * sum(regrets) / 35, 2) == 0.29 and round(100 * max(regrets), 1) == 2.6


def test_fitted_rule_figures(table_evaluation) -> None:
    """What the fit reaches (issue 6 asks for LOGO mean <= 0.15%, max <= 0.75%; not reached)."""
    e = table_evaluation
    assert e.logo.covered == e.in_sample.covered == 35
    assert e.shape.name == "family + log hidden + hybrid + moe"
    assert e.logo.mean < 0.0024 and e.logo.max < 0.0114  # 0.237% / 1.14%
    assert e.in_sample.mean < 0.0018 and e.in_sample.max < 0.0075  # 0.178% / 0.74%
    assert e.logo.mean < e.constant.mean < e.published.mean
    assert e.logo.max < e.published.max < e.constant.max
    assert e.logo.mean == min(mean for _, mean, _ in e.shapes_tried)


def test_shipped_calibration_equals_a_fresh_fit(table_evaluation) -> None:
    """If this fails, regenerate the shipped file (one command):

    loraplan calibrate data/tinker_cookbook_sft_sweep.md -o src/loraplan/rules/default_calibration.toml
    """
    assert DEFAULT_FILE.read_text(encoding="utf-8") == calibration_toml(table_evaluation, [str(TABLE)])


def test_calibration_file_reproduces_the_rule(table_evaluation, table_facts) -> None:
    from loraplan.rules.calibration import ModelTraits
    from loraplan.rules.lr import recommend_lr

    cal = load_calibration(DEFAULT_FILE)
    for model, facts in table_facts.items():
        advice = recommend_lr(facts.family, facts.hidden_size, calibration=cal, total_params=facts.total_params,
                              traits=ModelTraits(facts.active_params, facts.is_hybrid, facts.is_moe))
        assert math.isclose(advice.lr, table_evaluation.rule.lr(facts), rel_tol=1e-12), model
        assert "fitted on" in advice.answered_by
