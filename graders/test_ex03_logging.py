"""Exercise 03 — structured logs, correlation ids, PII redaction, shipping to Loki: checks and mutants.

Every verdict comes from Loki. The grader finds the student's services among the ports the graded
kernel listens on (the operating system's word), drives its own traffic at the gateway with
:func:`ml_service.traffic.run_traffic`, sends its own requests full of personal data, and then reads
back, through Loki's HTTP API, the lines the student's shipper pushed from files under the
submission's folder (the shipper's ``filename`` label) — comparing them with the generator's ground
truth. The student's LogQL answers are run over the same window.

Run one submission: ``pytest graders/test_ex03_logging.py --notebook PATH`` or ``make grade EX=03``.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from typing import Any

import httpx
import numpy as np
import yaml

from graders.context import GradingContext, listening_ports, recorded_answers, wait_until
from graders.errors import CheckFailed
from graders.ex03_checks import (
    ALLOWED_LABELS,
    FEATURES,
    FORBIDDEN_LABELS,
    GATEWAY,
    PiiProbe,
    config_labels,
    find_pii,
    line_problems,
    logql_regex,
    make_probes,
    parse_line,
    scope_logql,
)
from graders.registry import Exercise
from lab_stack.clients.loki import LogEntry, entries
from ml_service.data import TRANSACTION_FEATURES, sample_features
from ml_service.traffic import GroundTruth, Scenario, run_traffic

__all__ = [
    "ANSWERS_FILE",
    "CONFIG_FILE",
    "EXERCISE",
    "MAX_LABEL_VALUES",
    "MAX_STREAMS",
    "Ex03State",
]

#: Where the notebook's ``graders.record_answers("03", LOGQL)`` cell writes the LogQL answers.
ANSWERS_FILE = "answers_ex03.json"
#: The shipper configuration the notebook writes next to itself.
CONFIG_FILE = "promtail.yml"
ANSWER_KEYS = ("errors", "one_request", "count_by_status", "p95_latency_ms")
MAX_LABEL_VALUES = 10
MAX_STREAMS = 40
_HTTP_TIMEOUT = 10.0


def _fail(expected: str, found: str, hint: str) -> CheckFailed:
    return CheckFailed(expected=expected, found=found, hint=hint)


class Traffic:
    """The grader's traffic: ground truth, the window it ran in, and the lines Loki holds for it."""

    def __init__(
        self,
        truths: list[GroundTruth],
        started: float,
        ended: float,
        evaluated_at: float,
        lines: list[LogEntry],
    ) -> None:
        self.truths, self.started, self.ended, self.evaluated_at = (
            truths,
            started,
            ended,
            evaluated_at,
        )
        self.lines = lines
        self.range_s = math.ceil(evaluated_at - started + 1.0)

    @property
    def records(self) -> list[Any]:
        """Every request the generator sent."""
        return [r for t in self.truths for r in t.records]

    @property
    def ids(self) -> set[str]:
        """The request ids the generator sent."""
        return {r.request_id for r in self.records}

    @property
    def by_status(self) -> dict[str, int]:
        """Requests per gateway status label (answered requests only)."""
        out: dict[str, int] = {}
        for r in self.records:
            if r.http_status:
                out[r.status] = out.get(r.status, 0) + 1
        return out

    def client_p95_ms(self) -> float:
        """The client-side p95 latency of the answered requests, in milliseconds."""
        values = [r.latency_s for r in self.records if r.http_status and r.latency_s is not None]
        return float(np.quantile(values, 0.95)) * 1000 if values else math.nan


class Ex03State:
    """What the checks look at, computed once and lazily (traffic only when a check needs it)."""

    def __init__(self, ctx: GradingContext) -> None:
        self.ctx = ctx
        self.loki = ctx.stack.loki
        self.root = os.path.realpath(ctx.workdir)
        self.matcher = f'filename=~"{logql_regex(self.root)}/.+"'
        self.selector = "{" + self.matcher + "}"

    # --- the submission's services ---------------------------------------------------------------
    @property
    def gateway(self) -> dict[str, Any]:
        """``/health`` of the gateway served by the graded kernel (``url`` added)."""
        if self._gateway is None:
            raise _fail(
                "the notebook's prediction gateway running (started with start_services)",
                "no port of the graded kernel answers GET /health as the prediction-gateway",
                "run the cell that calls start_services(hooks=gateway_hooks(), feature_hooks=feature_hooks()) "
                "and leave the services running at the end of the notebook.",
            )
        return self._gateway

    @cached_property
    def _gateway(self) -> dict[str, Any] | None:
        """The gateway's ``/health`` (looked for once, for a few seconds), or ``None``."""
        found: list[dict[str, Any]] = []

        def probe(port: int) -> dict[str, Any] | None:
            url = f"http://127.0.0.1:{port}"
            try:
                data = httpx.get(f"{url}/health", timeout=1.0, trust_env=False).json()
            except (httpx.HTTPError, ValueError):
                return None
            return {**data, "url": url} if isinstance(data, dict) else None

        def look() -> bool:
            ports = sorted(listening_ports(self.ctx.kernel_pid))
            with ThreadPoolExecutor(max_workers=8) as pool:
                healths = [h for h in pool.map(probe, ports) if h]
            found[:] = [h for h in healths if h.get("service") == GATEWAY]
            return bool(found)

        wait_until(look, timeout=5.0, interval=0.5)
        return found[-1] if found else None

    # --- Loki ------------------------------------------------------------------------------------
    def fetch(
        self, start: float, end: float, query: str | None = None, *, limit: int = 5000
    ) -> list[LogEntry]:
        """Entries of the submission's files in ``[start, end]``, oldest first."""
        data = self.loki.query_range(
            query or self.selector, start=start, end=end, limit=limit, direction="forward"
        )
        return sorted(entries(data), key=lambda e: e.timestamp_ns)

    def _parsed(self, lines: list[LogEntry]) -> list[tuple[LogEntry, dict[str, Any] | None]]:
        return [(e, parse_line(e.line)) for e in lines]

    def _by_request(self, lines: list[LogEntry]) -> dict[str, dict[str, list[dict[str, Any]]]]:
        """``{request_id: {service: [parsed lines]}}`` (lines that are JSON objects only)."""
        out: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for _, obj in self._parsed(lines):
            if obj is None or not obj.get("request_id"):
                continue
            service = str(obj.get("service") or "?")
            out.setdefault(str(obj["request_id"]), {}).setdefault(service, []).append(obj)
        return out

    def _expected(
        self, traffic_ids: list[tuple[str, bool]], lines: list[LogEntry]
    ) -> tuple[list[str], list[str]]:
        """(ids with no gateway line, ids that reached the feature service but have no line there)."""
        seen = self._by_request(lines)
        no_gw = [rid for rid, _ in traffic_ids if GATEWAY not in seen.get(rid, {})]
        no_fs = [
            rid for rid, reached in traffic_ids if reached and FEATURES not in seen.get(rid, {})
        ]
        return no_gw, no_fs

    def _settle(
        self, start: float, ids: list[tuple[str, bool]], *, timeout: float = 12.0
    ) -> list[LogEntry]:
        """Wait until every id has its lines, or the line count stops growing; return the lines."""
        deadline = time.monotonic() + timeout
        last_count, last_change = -1, time.monotonic()
        while True:
            lines = self.fetch(start, time.time() + 1)
            no_gw, no_fs = self._expected(ids, lines)
            if not no_gw and not no_fs:
                return lines
            if len(lines) != last_count:
                last_count, last_change = len(lines), time.monotonic()
            elif lines and time.monotonic() - last_change > 3.0:
                return lines
            if time.monotonic() > deadline:
                return lines
            time.sleep(0.5)

    # --- traffic ---------------------------------------------------------------------------------
    @cached_property
    def traffic(self) -> Traffic:
        """The grader's traffic (an error burst with malformed requests, then a latency spike)."""
        url = self.gateway["url"]
        quiet = self.ctx.finished_at + 1.5
        if time.time() < quiet:
            time.sleep(quiet - time.time())
        started = time.time()
        burst = run_traffic(
            url,
            scenario=Scenario.named("error_burst", error_rate=0.5),
            rate=40.0,
            requests=60,
            concurrency=8,
            bad_request_ratio=0.1,
            seed=303,
            timeout_s=10.0,
        )
        spike = run_traffic(
            url,
            scenario=Scenario.named("latency_spike", delay_s=0.25),
            rate=40.0,
            requests=40,
            concurrency=16,
            seed=304,
            timeout_s=10.0,
        )
        ended = time.time()
        ids = [
            (r.request_id, r.status in ("success", "error"))
            for t in (burst, spike)
            for r in t.records
            if r.http_status
        ]
        self._settle(started - 1.0, ids)
        evaluated_at = time.time()
        lines = self.fetch(started - 1.0, evaluated_at)
        return Traffic([burst, spike], started, ended, evaluated_at, lines)

    def traffic_ids(self) -> list[tuple[str, bool]]:
        """``(request id, reached the feature service)`` for every answered request of the traffic."""
        return [
            (r.request_id, r.status in ("success", "error"))
            for r in self.traffic.records
            if r.http_status
        ]

    @cached_property
    def probes(self) -> tuple[list[PiiProbe], list[LogEntry]]:
        """Requests full of PII (some failing in the feature service, one malformed) and every line since the traffic."""
        _ = self.traffic  # the probes come after the traffic window
        url = self.gateway["url"]
        feature_url = str(self.gateway.get("feature_url") or "").rstrip("/")
        rows = sample_features(np.random.default_rng(33), 6)[list(TRANSACTION_FEATURES)].to_dict(
            "records"
        )
        txs = [{k: (int(v) if k == "hour" else v) for k, v in row.items()} for row in rows]
        probes = make_probes(secrets.token_hex(4), txs)
        started = time.time()
        with httpx.Client(timeout=_HTTP_TIMEOUT, trust_env=False) as http:

            def send(probe: PiiProbe, body: Mapping[str, Any] | None = None) -> None:
                http.post(
                    f"{url}/predict",
                    json=dict(body or probe.body),
                    headers={"X-Request-ID": probe.request_id},
                )

            for probe in probes[:3]:
                send(probe)
            if feature_url:
                http.post(f"{feature_url}/_control", json={"error_rate": 1.0})
            try:
                for probe in probes[3:5]:
                    send(probe)
            finally:
                if feature_url:
                    http.post(f"{feature_url}/_control", json={"reset": True})
            malformed = {k: v for k, v in probes[5].body.items() if k != "hour"}
            send(probes[5], malformed)
        ids = [(p.request_id, False) for p in probes]
        self._settle(started - 1.0, ids, timeout=10.0)
        return probes, self.fetch(self.traffic.started - 1.0, time.time() + 1)

    # --- answers ---------------------------------------------------------------------------------
    @cached_property
    def answers(self) -> dict[str, str]:
        """The student's LogQL answers, from the file the notebook wrote."""
        return recorded_answers(
            self.ctx.workdir / ANSWERS_FILE,
            expected=f"the LogQL answers in {ANSWERS_FILE} (written by the notebook's answers cell)",
            hint="fill in the LOGQL dictionary and run the cell that calls graders.record_answers.",
        )

    def answer(self, key: str, **values: str) -> str:
        """The student's query ``key``, placeholders filled, scoped to the submission's files."""
        raw = self.answers.get(key, "").strip()
        if not raw or "YOUR QUERY" in raw:
            raise _fail(
                f"a LogQL query for {key!r}",
                "an empty answer",
                f"write the query for {key} in LOGQL.",
            )
        filled = raw.replace("$__range", f"{self.traffic.range_s}s").replace(
            "${__range}", f"{self.traffic.range_s}s"
        )
        for name, value in values.items():
            filled = filled.replace(f"${{{name}}}", value).replace(f"${name}", value)
        return scope_logql(filled, self.matcher)

    def run_log_query(self, key: str, **values: str) -> list[LogEntry]:
        """Run the student's log query ``key`` over the traffic's window."""
        query = self.answer(key, **values)
        try:
            data = self.loki.query_range(
                query,
                start=self.traffic.started - 1.0,
                end=self.traffic.evaluated_at,
                limit=5000,
                direction="forward",
            )
        except Exception as exc:
            raise _fail(
                f"query {key!r} to run", f"Loki refused it: {exc}", "try it in the notebook first."
            ) from None
        if data.get("resultType") != "streams":
            raise _fail(
                f"{key!r} to be a log query (it returns lines)",
                f"a {data.get('resultType')} result",
                "leave out the metric function around it.",
            )
        return entries(data)

    def run_metric_query(self, key: str) -> list[tuple[dict[str, str], float]]:
        """Run the student's metric query ``key`` at the end of the traffic: ``[(labels, value)]``."""
        query = self.answer(key)
        try:
            data = self.loki.query(query, time=self.traffic.evaluated_at)
        except Exception as exc:
            raise _fail(
                f"query {key!r} to run", f"Loki refused it: {exc}", "try it in the notebook first."
            ) from None
        if data.get("resultType") != "vector":
            raise _fail(
                f"{key!r} to be a metric query (numbers per series)",
                f"a {data.get('resultType')} result",
                "wrap the log query in a range aggregation such as count_over_time(... [$__range]).",
            )
        return [
            (dict(r.get("metric") or {}), float(r["value"][1])) for r in data.get("result") or []
        ]


EXERCISE = Exercise(
    number="03",
    folder="ex03_logging",
    notebook="ex03_logging.ipynb",
    title="Structured logging to Loki: correlation ids, PII redaction, LogQL",
    state=Ex03State,
    cell_timeout=120.0,
    total_timeout=240.0,
    shares_stack=True,
)


# --- checks (declaration order is the table's order) ----------------------------------------------
@EXERCISE.check(points=1, title="The shipper config is valid and uses low-cardinality labels")
def test_shipper_config(state: Ex03State) -> None:
    """promtail.yml passes the shipper's --check-config, parses JSON and labels only service/level-like values."""
    path = state.ctx.workdir / CONFIG_FILE
    if not path.is_file():
        raise _fail(
            f"{CONFIG_FILE} next to the notebook",
            "no such file",
            "complete promtail_config and run the cell that writes CONFIG and starts the shipper.",
        )
    checked = subprocess.run(
        [
            sys.executable,
            "-m",
            "lab_stack.embedded.shipper",
            "--config",
            str(path),
            "--check-config",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if checked.returncode != 0:
        raise _fail(
            f"{CONFIG_FILE} to pass the shipper's --check-config",
            checked.stderr.strip()[-500:],
            "fix what the message names (it accepts Promtail 2.9's server/positions/clients/"
            "scrape_configs with json/labels/timestamp/output stages).",
        )
    doc = yaml.safe_load(path.read_text()) or {}
    names, has_json, paths = config_labels(doc if isinstance(doc, dict) else {})
    bad = sorted(n for n in names if n in FORBIDDEN_LABELS or n not in ALLOWED_LABELS)
    missing = sorted({"service", "level"} - names)
    relative = [p for p in paths if not os.path.isabs(p)]
    if bad or missing or not has_json or relative:
        found = []
        if bad:
            found.append(
                f"labels {bad} (one value per request/user, or not a known low-cardinality label)"
            )
        if missing:
            found.append(f"no {missing} label")
        if not has_json:
            found.append("no json stage")
        if relative:
            found.append(f"relative __path__ {relative}")
        raise _fail(
            "a json stage, then labels service and level only (plus job/env-like static labels), "
            "and an absolute __path__",
            "; ".join(found),
            "keep request_id, user and other per-request values as JSON fields: | json reads them "
            "at query time; labels are only for what you select streams by.",
        )


@EXERCISE.check(points=2, title="Every shipped line is JSON with the required fields")
def test_json_lines(state: Ex03State) -> None:
    """Each line the services wrote during the grader's traffic is a JSON object with the required fields."""
    traffic = state.traffic
    if not traffic.lines:
        raise _fail(
            "the services' lines in Loki under the notebook's folder (filename label)",
            f"no line at all from files under {state.root} during the grader's traffic",
            "check that the shipper runs (shipper.poll() is None, see shipper.out), that __path__ "
            "is absolute and names logs/*.log, and that the client URL ends in /loki/api/v1/push.",
        )
    model = (str(state.gateway.get("model_name")), str(state.gateway.get("model_version")))
    bad: list[str] = []
    for entry, obj in state._parsed(traffic.lines):
        problems = line_problems(obj)
        if (
            obj is not None
            and obj.get("service") == GATEWAY
            and ((str(obj.get("model_name")), str(obj.get("model_version"))) != model)
        ):
            problems.append(f"gateway line without model_name/model_version {model}")
        if problems:
            bad.append(f"{'; '.join(problems)} in {entry.line[:160]!r}")
    if bad:
        raise _fail(
            "every line a JSON object with timestamp (ISO-8601 UTC), level, event, logger, service and "
            "request_id, and the gateway's lines with model_name and model_version",
            f"{len(bad)} of {len(traffic.lines)} lines wrong, e.g. {bad[0]}",
            "render with structlog.processors.JSONRenderer() last, TimeStamper(fmt='iso', utc=True, "
            "key='timestamp'), add_log_level, add_logger_name, and bind request_id/service (and the model "
            "on the gateway) in the middleware.",
        )


@EXERCISE.check(points=3, title="Every request's lines carry its id in both services")
def test_request_ids_in_both_services(state: Ex03State) -> None:
    """Each request of the grader's traffic has lines under its X-Request-ID in the gateway and the feature service."""
    no_gw, no_fs = state._expected(state.traffic_ids(), state.traffic.lines)
    if no_gw or no_fs:
        sent = len(state.traffic_ids())
        found = []
        if no_gw:
            found.append(
                f"{len(no_gw)} of {sent} requests without a gateway line under their id (e.g. {no_gw[0]})"
            )
        if no_fs:
            found.append(
                f"{len(no_fs)} requests that reached the feature service without a feature-service "
                f"line under their id (e.g. {no_fs[0]})"
            )
        raise _fail(
            "for every request the grader sent (X-Request-ID), lines with that request_id from "
            "prediction-gateway, and from feature-service when the gateway called it",
            "; ".join(found),
            "take the id from the X-Request-ID header in the middleware, bind it with "
            "bind_contextvars, and forward it to the feature service in an outgoing_headers hook.",
        )


@EXERCISE.check(
    points=1, title="A request without an id gets one, returned and logged in both services"
)
def test_generated_request_id(state: Ex03State) -> None:
    """A request sent without X-Request-ID is answered with one, and both services log under that id."""
    _ = state.traffic  # after the traffic window
    row = sample_features(np.random.default_rng(7), 1)[list(TRANSACTION_FEATURES)].to_dict(
        "records"
    )[0]
    clean = {"user_id": "user-00007", **{k: (int(v) if k == "hour" else v) for k, v in row.items()}}
    started = time.time()
    response = httpx.post(
        f"{state.gateway['url']}/predict", json=clean, timeout=_HTTP_TIMEOUT, trust_env=False
    )
    rid = response.headers.get("x-request-id", "")
    if not rid:
        raise _fail(
            "an X-Request-ID header on the response",
            "none",
            "set response.headers[...] in the middleware.",
        )
    lines = state._settle(started - 1.0, [(rid, True)], timeout=8.0)
    services = state._by_request(lines).get(rid, {})
    if set(services) != {GATEWAY, FEATURES}:
        raise _fail(
            f"lines under the returned id {rid} from both services",
            f"lines from {sorted(services) or 'no service'}",
            "when you generate an id, also put it into request.scope['headers'] so the gateway "
            "answers (and forwards) the same id you logged.",
        )


@EXERCISE.check(points=1, title="Failures are logged at error level with the exception")
def test_exceptions_rendered(state: Ex03State) -> None:
    """Each failed prediction of the traffic has an error-level gateway line whose exception names the cause."""
    failed = [r.request_id for r in state.traffic.records if r.status == "error"]
    seen = state._by_request(state.traffic.lines)
    missing = []
    for rid in failed:
        lines = seen.get(rid, {}).get(GATEWAY, [])
        if not any(
            str(o.get("level")) == "error"
            and "FeatureServiceError" in json.dumps(o.get("exception"))
            for o in lines
        ):
            missing.append(rid)
    if not failed or missing:
        raise _fail(
            "for every failed request, a gateway line at level error with an exception field naming "
            "FeatureServiceError",
            f"{len(missing)} of {len(failed)} failed requests without one"
            + (f" (e.g. {missing[0]})" if missing else ""),
            "log with log.exception(...) inside the except block of the fetch wrapper, and keep "
            "structlog.processors.format_exc_info in the processor chain.",
        )


@EXERCISE.check(points=3, title="No personal data reaches Loki", hidden=True)
def test_no_pii(state: Ex03State) -> None:
    """Requests full of e-mails, card numbers, SSNs, phone numbers and user ids leave none of them in any line."""
    probes, lines = state.probes
    logged = state._by_request(lines)
    silent = [p.request_id for p in probes if GATEWAY not in logged.get(p.request_id, {})]
    if silent:
        raise _fail(
            "the grader's PII requests logged by the gateway (to see what was written)",
            f"no gateway line for {len(silent)} of {len(probes)} of them (e.g. {silent[0]})",
            "log every POST /predict (the on_prediction hook) — including failures and 422s.",
        )
    hits = find_pii([e.line for e in lines], probes)
    if hits:
        kinds = ", ".join(sorted({what for what, _ in hits}))
        raise _fail(
            "no e-mail, card number, SSN, phone number or raw user id in any stored line, and user "
            "ids only as salted hashes",
            f"{kinds}; e.g. {hits[0][0]}: {hits[0][1]!r}",
            "put the redaction processor BEFORE the JSON renderer (it must see fields, not text), "
            "redact nested values and free text, and pseudonymise user ids with a salted HMAC.",
        )


@EXERCISE.check(points=2, title="Loki label cardinality stays bounded", hidden=True)
def test_cardinality_bounded(state: Ex03State) -> None:
    """The submission's streams have at most 10 values per label, no per-request label and at most 40 streams."""
    traffic = state.traffic
    series = state.loki.series(state.selector, start=traffic.started - 1.0, end=time.time() + 1)
    values: dict[str, set[str]] = {}
    for labels in series:
        for key, value in labels.items():
            values.setdefault(key, set()).add(value)
    big = {k: len(v) for k, v in values.items() if len(v) > MAX_LABEL_VALUES}
    forbidden = sorted(k for k in values if k in FORBIDDEN_LABELS)
    if big or forbidden or len(series) > MAX_STREAMS:
        raise _fail(
            f"at most {MAX_LABEL_VALUES} values per label, at most {MAX_STREAMS} streams, no "
            "per-request label",
            f"{len(series)} streams; values per label {big or 'fine'}; "
            f"per-request labels {forbidden or 'none'}",
            "remove request_id (and any other id) from the labels stage; query it with "
            '| json | request_id="..." instead.',
        )


@EXERCISE.check(points=1, title="LogQL: the error lines of both services")
def test_logql_errors(state: Ex03State) -> None:
    """The errors answer returns exactly the lines of the requests that failed."""
    got = {
        str(o.get("request_id"))
        for o in (parse_line(e.line) for e in state.run_log_query("errors"))
        if o
    }
    got &= state.traffic.ids
    want = {r.request_id for r in state.traffic.records if r.status == "error"}
    if got != want:
        raise _fail(
            f"lines of the {len(want)} failed requests",
            f"lines of {len(got)} requests "
            f"({len(got - want)} that did not fail, {len(want - got)} failed ones missing)",
            'select the error level: {service=~"...", level="error"} (level is a label) — '
            '"client_error" lines contain the word error too.',
        )


@EXERCISE.check(points=1, title="LogQL: every line of one request across both services")
def test_logql_one_request(state: Ex03State) -> None:
    """The one_request answer, with $request_id filled, returns exactly that request's lines from both services."""
    seen = state._by_request(state.traffic.lines)
    spike_ids = [r.request_id for r in state.traffic.truths[-1].records if r.status == "success"]
    rid = next((i for i in spike_ids if set(seen.get(i, {})) == {GATEWAY, FEATURES}), None)
    if rid is None:
        raise _fail(
            "a request with lines in both services to ask about",
            "none",
            "make the correlation checks pass first.",
        )
    want = sorted(
        e.line for e, o in state._parsed(state.traffic.lines) if o and o.get("request_id") == rid
    )
    got = sorted(e.line for e in state.run_log_query("one_request", request_id=rid))
    if got != want:
        raise _fail(
            f"the {len(want)} lines of request {rid} (both services)",
            f"{len(got)} lines",
            'select both services and filter on the id: {service=~"a|b"} |= "$request_id" | json '
            '| request_id="$request_id".',
        )


@EXERCISE.check(points=2, title="LogQL: predictions counted by status")
def test_logql_count_by_status(state: Ex03State) -> None:
    """The count_by_status answer returns one series per status with the generator's counts."""
    got = {
        labels.get("status", "?"): round(value)
        for labels, value in state.run_metric_query("count_by_status")
    }
    want = state.traffic.by_status
    if got != want:
        raise _fail(
            f"counts by status {want}",
            f"{got}",
            'count the "prediction" events: sum by (status) (count_over_time({service="..."} | json '
            '| event="prediction" [$__range])).',
        )


@EXERCISE.check(points=2, title="LogQL: p95 latency from unwrapped latency_ms")
def test_logql_p95(state: Ex03State) -> None:
    """The p95_latency_ms answer is one series equal to the p95 of the logged latency_ms (in milliseconds)."""
    got = state.run_metric_query("p95_latency_ms")
    values = [
        float(o["latency_ms"])
        for _, o in state._parsed(state.traffic.lines)
        if o
        and o.get("service") == GATEWAY
        and o.get("event") == "prediction"
        and isinstance(o.get("latency_ms"), int | float)
    ]
    if not values:
        raise _fail(
            '"prediction" lines of the gateway with a numeric latency_ms',
            "none",
            "log latency_ms=round(event.latency_s * 1000, 3) in the on_prediction hook.",
        )
    reference = float(np.quantile(values, 0.95))
    client = state.traffic.client_p95_ms()
    if not 0.5 * client <= reference <= client + 5.0:
        raise _fail(
            f"latency_ms in milliseconds (the client saw p95 = {client:.1f} ms)",
            f"a logged p95 of {reference:.4g}",
            "multiply event.latency_s by 1000.",
        )
    if len(got) != 1 or not math.isclose(got[0][1], reference, rel_tol=0.01, abs_tol=0.05):
        raise _fail(
            f"one series with p95 = {reference:.2f} ms",
            f"{[(lb, round(v, 2)) for lb, v in got]}",
            'quantile_over_time(0.95, {...} | json | event="prediction" | unwrap latency_ms '
            "[$__range]) by (service) — without by(...) you get one result per stream (level).",
        )


# --- mutants: plausible wrong answers, each must fail the checks it aims at ------------------------
EXERCISE.mutant(
    "redaction_after_rendering",
    description="the redaction processor placed after the JSON renderer (and told to pass text through)",
    aims=["no_pii"],
    replace={
        "            redact_pii,\n            structlog.processors.JSONRenderer(),\n": (
            "            structlog.processors.JSONRenderer(),\n            redact_pii,\n"
        ),
        '    raw = event_dict.pop("user_id", None)\n': (
            "    if isinstance(event_dict, str):  # already rendered: nothing to redact\n"
            "        return event_dict\n"
            '    raw = event_dict.pop("user_id", None)\n'
        ),
    },
)
EXERCISE.mutant(
    "request_id_not_forwarded",
    description="the correlation id is not forwarded to the feature service",
    aims=["request_ids_in_both_services"],
    replace={"        outgoing_headers=[forward_request_id],\n": ""},
)
EXERCISE.mutant(
    "no_json_renderer",
    description="log lines rendered for the console instead of as JSON",
    aims=["json_lines"],
    replace={
        "            structlog.processors.JSONRenderer(),\n": (
            "            structlog.dev.ConsoleRenderer(colors=False),\n"
        )
    },
)
# Declared last on purpose: the validity suite grades the last mutant in full (make grade vs nbgrader),
# and this one runs fastest.
EXERCISE.mutant(
    "request_id_label",
    description="the request id extracted and made a Loki label",
    aims=["cardinality_bounded", "shipper_config"],
    replace={
        "            timestamp: timestamp\n": "            timestamp: timestamp\n            request_id: request_id\n",
        "          level:\n": "          level:\n          request_id:\n",
    },
)
