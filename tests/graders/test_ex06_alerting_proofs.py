"""Exercise 06's grader parts that the spine's validity suite does not prove by grading.

Solution, starter and every mutant (the rule and Alertmanager mistakes included: the notebook
writes those files with %%writefile cells) are graded by tests/graders/test_validity.py. What is
left here: the hidden cases agree with the reference rules, the reference rules are the solution
notebook's, and the live copy of the rules is compressed as the notebook says.
"""

from __future__ import annotations

import yaml

from graders import ex06_checks as ex


def test_reference_rules_pass_every_hidden_case() -> None:
    """The reference rules agree with every hidden case's expectations (the cases are consistent)."""
    rules = ex.reference_rules()
    assert ex.judge_cases(ex.hidden_cases(), rules, rules) == []


def test_reference_rules_are_the_solution_notebooks_cell() -> None:
    """The reference is what the solution's %%writefile alert_rules.yml cell writes: every alert."""
    text = ex.written_file(ex.SOLUTION_NOTEBOOK, "alert_rules.yml")
    assert text.startswith("# Alerting rules") and "%%writefile" not in text
    assert sorted(ex.reference_rules()) == sorted(ex.REQUIRED_ALERTS)


def test_compressed_rules_keep_the_shape_and_divide_every_duration() -> None:
    """The live copy divides for: and windows by LIVE_FACTOR (120): for: 15m becomes 8 s."""
    text = ex.compress_rules(
        ex.written_file(ex.SOLUTION_NOTEBOOK, "alert_rules.yml"), factor=ex.LIVE_FACTOR
    )
    rules = {r["alert"]: r for g in yaml.safe_load(text)["groups"] for r in g["rules"]}
    assert rules["HighPredictionLatency"]["for"] == "3s"
    assert "[2s]" in rules["HighPredictionLatency"]["expr"]
    assert "[180s]" in rules["ErrorBudgetBurnSlow"]["expr"]
    assert "[15s]" in rules["ErrorBudgetBurnSlow"]["expr"]
    assert rules["ErrorBudgetBurnSlow"]["for"] == "8s"
    assert "DCGM_FI_DEV_FB_FREE[15s]" in rules["GPUMemoryWillExhaust"]["expr"]
