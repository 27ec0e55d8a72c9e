"""Grafana provisioning files checked offline, and exercise 01's prometheus.yml on a live stack."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

import lab_stack
from lab_stack import provisioning
from lab_stack.errors import ConfigError
from lab_stack.provisioning import validate_dashboard_providers, validate_datasources
from tests.dashboards.conftest import EX01

DATASOURCES = EX01 / "grafana/provisioning/datasources/datasources.yml"
PROVIDERS = EX01 / "grafana/provisioning/dashboards/dashboards.yml"
ALL_TYPES = ("prometheus", "loki", "tempo", "alertmanager")
EX01_JOBS = ("prometheus", "ml-service", "node", "dcgm", "pushgateway")


def solution() -> dict[str, Any]:
    return copy.deepcopy(yaml.safe_load(DATASOURCES.read_text()))


def by_type(doc: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(d for d in doc["datasources"] if d["type"] == kind)


def test_solution_provisioning_files_are_valid() -> None:
    """The exercise 01 datasource and provider files have no problems."""
    assert (
        validate_datasources(
            DATASOURCES, require_types=ALL_TYPES, require_uids={t: t for t in ALL_TYPES}
        )
        == []
    )
    assert validate_dashboard_providers(PROVIDERS, dashboards_dir=EX01 / "grafana/dashboards") == []


def test_uid_typo_breaks_the_loki_to_tempo_link() -> None:
    """A Tempo uid typo leaves the derived field pointing nowhere, and the message says where."""
    doc = solution()
    by_type(doc, "tempo")["uid"] = "tmepo"
    found = [str(p) for p in validate_datasources(doc)]
    assert any(
        "derivedFields[0].datasourceUid" in m and "'tempo'" in m and "not provisioned" in m
        for m in found
    ), found


def test_tempo_links_must_point_at_the_right_types() -> None:
    """tracesToLogsV2 must name a Loki uid and tracesToMetrics a Prometheus uid."""
    doc = solution()
    tempo = by_type(doc, "tempo")
    tempo["jsonData"]["tracesToLogsV2"]["datasourceUid"] = "prometheus"
    del tempo["jsonData"]["tracesToMetrics"]["datasourceUid"]
    found = [str(p) for p in validate_datasources(doc)]
    assert any("tracesToLogsV2.datasourceUid" in m and "must be a loki one" in m for m in found)
    assert any("tracesToMetrics.datasourceUid" in m and "has no datasourceUid" in m for m in found)


@pytest.mark.parametrize(
    ("regex", "text"),
    [
        ("trace_id=\\w+", "0 capture groups"),
        ("(trace)_id=(\\w+)", "2 capture groups"),
        ("trace_id=(\\w+", "does not compile"),
    ],
)
def test_matcher_regex_needs_exactly_one_group(regex: str, text: str) -> None:
    """matcherRegex must compile and capture exactly one group (the trace id)."""
    doc = solution()
    by_type(doc, "loki")["jsonData"]["derivedFields"][0]["matcherRegex"] = regex
    found = [str(p) for p in validate_datasources(doc)]
    assert any("matcherRegex" in m and text in m for m in found), found


def test_unescaped_dollar_is_caught() -> None:
    """${__value.raw} without $$ is expanded by Grafana as an env var; the check says to escape it."""
    doc = solution()
    by_type(doc, "loki")["jsonData"]["derivedFields"][0]["url"] = "${__value.raw}"
    (found,) = [str(p) for p in validate_datasources(doc)]
    assert "derivedFields[0].url" in found and "$${__value.raw}" in found


def test_duplicate_uids_missing_types_and_bad_types() -> None:
    """Duplicate uids, a missing datasource kind and an unknown type are each reported."""
    doc = solution()
    by_type(doc, "alertmanager")["uid"] = "loki"
    by_type(doc, "prometheus")["type"] = "prometheuss"
    found = [str(p) for p in validate_datasources(doc, require_types=ALL_TYPES)]
    assert any("uids must be unique" in m for m in found)
    assert any("'prometheuss' is not a Grafana datasource type" in m for m in found)
    assert any("has no prometheus datasource" in m for m in found)


def test_provider_problems(tmp_path: Path) -> None:
    """A provider without a path, or with folders from files next to a folder, is reported."""
    doc = {
        "apiVersion": 1,
        "providers": [
            {
                "name": "a",
                "type": "file",
                "folder": "X",
                "options": {"foldersFromFilesStructure": True},
            }
        ],
    }
    found = [str(p) for p in validate_dashboard_providers(doc, dashboards_dir=tmp_path)]
    assert any("options.path" in m and "is missing" in m for m in found)
    assert any("foldersFromFilesStructure" in m for m in found)
    assert any("holds no *.json" in m for m in found)


def test_check_datasources_raises_with_a_hint() -> None:
    """check_datasources raises ProvisioningError listing the problems."""
    doc = solution()
    doc["apiVersion"] = 2
    with pytest.raises(provisioning.ProvisioningError, match=r"apiVersion.*must be 1"):
        provisioning.check_datasources(doc)


def test_unknown_placeholder_is_refused(stack: lab_stack.Stack, tmp_path: Path) -> None:
    """A placeholder the stack has no value for is refused, listing the known ones."""
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "scrape_configs:\n  - job_name: x\n    static_configs:\n"
        '      - targets: ["${NODE_EXPORTR_ADDR}"]  # ${IGNORED_URL} in a comment\n'
    )
    with pytest.raises(ConfigError, match=r"NODE_EXPORTR_ADDR.*NODE_EXPORTER_ADDR"):
        provisioning.render_prometheus_config(config, stack)


def test_ex01_prometheus_config_applies_and_jobs_are_up(
    stack: lab_stack.Stack, ml_source: str, tmp_path: Path
) -> None:
    """The solution prometheus.yml runs, every ex01 job is UP; a wrong port is caught, then undone."""
    try:
        with stack.prometheus as prom:
            rendered = provisioning.apply_prometheus_config(
                stack, EX01 / "prometheus.yml", extra={"ML_SERVICE": ml_source}
            )
            assert provisioning.running_config_problems(prom, rendered) == []
            assert provisioning.job_problems(prom, EX01_JOBS, timeout=20) == []
            # Mutant: the node job on the wrong port.
            text = (EX01 / "prometheus.yml").read_text()
            mutant = tmp_path / "mutant.yml"
            mutant.write_text(text.replace('"${NODE_EXPORTER_ADDR}"', '"127.0.0.1:1"'))
            (tmp_path / "rules").mkdir()
            provisioning.apply_prometheus_config(stack, mutant, extra={"ML_SERVICE": ml_source})
            prom.wait_for('up{job="node", instance="127.0.0.1:1"} == 0', timeout=20)
            found = provisioning.job_problems(prom, ["node"], timeout=20)
            assert len(found) == 1 and "job 'node'" in found[0] and "127.0.0.1:1" in found[0]
            assert provisioning.running_config_problems(prom, rendered)
    finally:
        stack.reset_config("prometheus")
