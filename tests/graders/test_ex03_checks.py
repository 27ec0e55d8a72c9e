"""Exercise 03's pure check logic: line validation, LogQL scoping, PII probes and search, config labels."""

from __future__ import annotations

import json
import re

import yaml

from graders.ex03_checks import (
    FEATURES,
    GATEWAY,
    config_labels,
    find_pii,
    is_iso_utc,
    line_problems,
    logql_regex,
    make_probes,
    parse_line,
    scope_logql,
    unsalted_digests,
)

GOOD = {
    "timestamp": "2024-05-01T09:30:12.480123Z",
    "level": "info",
    "event": "prediction",
    "logger": "prediction-gateway.predict",
    "service": GATEWAY,
    "request_id": "abc-000001",
}
TX = {
    "amount": 12.5,
    "merchant_category": "grocery",
    "channel": "online",
    "hour": 3,
    "distance_from_home_km": 1.0,
    "device_age_days": 10.0,
}


def test_a_complete_line_has_no_problems() -> None:
    """A JSON object with every required field, ISO UTC time and a known level passes."""
    assert line_problems(parse_line(json.dumps(GOOD))) == []


def test_console_rendered_lines_are_not_json() -> None:
    """A ConsoleRenderer/key=value line is reported as not a JSON object."""
    line = "2024-05-01T09:30:12Z [info     ] prediction    request_id=abc"
    assert parse_line(line) is None
    assert line_problems(parse_line(line)) == ["not a JSON object"]
    assert parse_line("[1, 2]") is None


def test_missing_fields_bad_level_and_unknown_service_are_named() -> None:
    """Each missing field, a level outside the set and a foreign service name are listed."""
    obj = {**GOOD, "level": "verbose", "service": "billing"}
    del obj["request_id"], obj["logger"]
    assert line_problems(obj) == [
        "no logger",
        "no request_id",
        "level 'verbose' is not one of ['critical', 'debug', 'error', 'info', 'warning']",
        "service 'billing' is not one of ['feature-service', 'prediction-gateway']",
    ]


def test_timestamps_must_be_iso_8601_in_utc() -> None:
    """Z or +00:00 offsets (with up to 9 fraction digits) pass; local, epoch and other offsets fail."""
    assert is_iso_utc("2024-05-01T09:30:12Z")
    assert is_iso_utc("2024-05-01T09:30:12.123456789+00:00")
    assert not is_iso_utc("2024-05-01T09:30:12.123")
    assert not is_iso_utc("2024-05-01T11:30:12+02:00")
    assert not is_iso_utc("2024-13-01T09:30:12Z")
    assert not is_iso_utc(1714555812.0)
    assert line_problems({**GOOD, "timestamp": "2024-05-01 09:30:12"}) == [
        "timestamp '2024-05-01 09:30:12' is not ISO-8601 UTC"
    ]


def test_scope_logql_adds_the_matcher_to_every_selector_but_not_inside_strings() -> None:
    """Both selectors of a query get the matcher; braces in strings and empty selectors are handled."""
    matcher = 'filename=~"/w/.+"'
    query = 'sum(count_over_time({service="a"} |~ "x{2}" [1m])) / sum(count_over_time({ } [1m]))'
    assert scope_logql(query, matcher) == (
        'sum(count_over_time({filename=~"/w/.+", service="a"} |~ "x{2}" [1m]))'
        ' / sum(count_over_time({filename=~"/w/.+"} [1m]))'
    )
    assert scope_logql('{a="\\"{"} | line_format `{{.x}}`', matcher) == (
        '{filename=~"/w/.+", a="\\"{"} | line_format `{{.x}}`'
    )


def test_logql_regex_escapes_for_a_double_quoted_string() -> None:
    """A folder with regex metacharacters matches itself once unescaped by LogQL's string rules."""
    folder = "/tmp/grade-a.b+c"
    escaped = logql_regex(folder)
    assert re.fullmatch(escaped.replace("\\\\", "\\"), folder)


def test_probes_carry_fresh_luhn_valid_pii_in_every_format() -> None:
    """Each probe's body has the e-mail, card, phone and a note with more PII; values depend on the token."""
    probes = make_probes("abcd1234", [TX] * 6)
    other = make_probes("ffff0000", [TX] * 6)
    assert len({p.request_id for p in probes}) == 6
    assert probes[0].secrets["email"] != other[0].secrets["email"]
    for probe in probes:
        assert probe.body["user_id"] == probe.user_id and probe.body["amount"] == 12.5
        assert probe.secrets["SSN"] in probe.body["note"]
        assert probe.secrets["email (in a note)"] in probe.body["note"]
        digits = [int(d) for d in probe.secrets["card number digits"]]
        checksum = sum(digits[-1::-2]) + sum(sum(divmod(2 * d, 10)) for d in digits[-2::-2])
        assert checksum % 10 == 0
    assert {p.body["phone"][0] for p in probes} >= {"+", "("}


def test_find_pii_reports_each_kind_once_and_ignores_redacted_lines() -> None:
    """Raw values, digits-only cards, unsalted hashes and traffic user ids are found; redacted text is not."""
    (probe,) = make_probes("0a0b0c0d", [TX])
    clean = json.dumps(
        {
            "event": "x",
            "user": "9be1c0d2a4f8e611",
            "request": {"email": "[REDACTED]"},
            "note": "call [PHONE], SSN [SSN]",
            "request_id": "a1b2c3d4e5f6-000123",
        }
    )
    assert find_pii([clean], [probe]) == []
    card = probe.secrets["card number digits"]
    leaky = [
        json.dumps({"email": probe.secrets["email"].upper()}),
        json.dumps({"card": card}),
        json.dumps({"user": unsalted_digests(probe.user_id)["unsalted sha256"] + "ffff"}),
        json.dumps({"path": "/features/user-00042"}),
    ]
    kinds = [what for what, _ in find_pii(leaky, [probe])]
    assert kinds == ["email", "card number digits", "unsalted sha256", "raw user id (traffic)"]


def test_config_labels_collects_static_stage_and_external_labels() -> None:
    """Label names come from static labels, the labels stage and client external_labels; __path__ is kept apart."""
    doc = yaml.safe_load("""
clients: [{url: "http://x/loki/api/v1/push", external_labels: {env: lab}}]
scrape_configs:
  - job_name: s
    static_configs: [{labels: {job: s, __path__: /abs/logs/*.log}}]
    pipeline_stages:
      - json: {expressions: {service: service, level: level, request_id: request_id}}
      - labels: {service: , level: , request_id: }
""")
    names, has_json, paths = config_labels(doc)
    assert names == {"env", "job", "service", "level", "request_id"}
    assert has_json and paths == ["/abs/logs/*.log"]
    assert config_labels({}) == (set(), False, [])


def test_service_names_match_the_ml_service_apps() -> None:
    """The grader's service names are the ones ml_service's apps report in /health."""
    from ml_service import features_app, gateway_app

    assert (GATEWAY, FEATURES) == (gateway_app.SERVICE_NAME, features_app.SERVICE_NAME)
