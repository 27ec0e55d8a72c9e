"""Shared plumbing of the typed backend clients: one base class that sends a request, maps failures
onto the :mod:`lab_stack.errors` family and decodes JSON.

Every failure message names the backend, the method and URL, the query (when there is one), the
backend's own error text, and ends with ``Hint: ...``:

* no answer (connection refused, reset, timeout) → :class:`~lab_stack.errors.BackendUnreachable`;
* a 404 for an object the caller named (a trace id, a dashboard uid) →
  :class:`~lab_stack.errors.NotFound`;
* any other 4xx/5xx, or a body that is not the JSON expected →
  :class:`~lab_stack.errors.QueryError`.
"""

from __future__ import annotations

import json
import time as _time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, ClassVar, Self, TypeVar

import httpx

from lab_stack.errors import BackendUnreachable, ClientError, LabError, NotFound, QueryError

__all__ = [
    "DEFAULT_TIMEOUT",
    "BaseClient",
    "Params",
    "TimeLike",
    "format_duration",
    "poll",
    "unix_seconds",
]

#: Seconds a request may take before it counts as "the backend did not answer".
DEFAULT_TIMEOUT = 10.0

#: Query parameters: ``None`` values are dropped, a list repeats the key (``match[]=a&match[]=b``).
Params = Mapping[str, str | int | float | bool | Sequence[str] | None]

#: A point in time: unix seconds, an aware/naive :class:`datetime`, or a string passed unchanged.
TimeLike = float | int | datetime | str

#: Longest piece of a backend's error body quoted in a message.
_MAX_DETAIL = 600

T = TypeVar("T")


def unix_seconds(value: TimeLike) -> str:
    """Render a time for Prometheus-style APIs: unix seconds as a decimal string (strings pass)."""
    if isinstance(value, str):
        return value
    if isinstance(value, datetime):
        return f"{value.timestamp():.3f}"
    return f"{float(value):.3f}"


def format_duration(value: float | int | timedelta | str) -> str:
    """Render a duration for a query parameter: seconds as ``"15s"``-style text (strings pass)."""
    if isinstance(value, str):
        return value
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{round(seconds * 1000)}ms"


def poll(
    fetch: Callable[[], T],
    done: Callable[[T], bool],
    *,
    timeout: float,
    interval: float,
    describe: Callable[[T | None], str],
) -> T:
    """Call ``fetch`` until ``done(result)``; on timeout raise :class:`LabError` with ``describe``.

    Connection failures and 503 answers are retried (the backend may still be starting) and the
    last one is chained onto the timeout error; any other error is raised at once.
    """
    deadline = _time.monotonic() + timeout
    last: T | None = None
    last_error: ClientError | None = None
    while True:
        try:
            last = fetch()
            last_error = None
            if done(last):
                return last
        except BackendUnreachable as exc:
            last_error = exc
        except QueryError as exc:
            # 503: the backend answers but is not ready yet (Prometheus while starting).
            if exc.status != 503:
                raise
            last_error = exc
        if _time.monotonic() >= deadline:
            break
        _time.sleep(min(interval, max(0.0, deadline - _time.monotonic())))
    message = f"Waited {timeout:g} s: {describe(last)}"
    if last_error is not None:
        message += f" The last attempt failed: {last_error}"
    raise LabError(message) from last_error


def _detail(response: httpx.Response) -> str:
    """The backend's own error text, from the JSON error conventions of each API or the raw body."""
    text = response.text.strip()
    try:
        body = json.loads(text) if text else None
    except ValueError:
        body = None
    detail: str
    if isinstance(body, dict):
        if "error" in body:
            error_type = body.get("errorType")
            detail = f"{error_type}: {body['error']}" if error_type else str(body["error"])
        elif "message" in body:
            detail = str(body["message"])
        else:
            detail = text
    elif isinstance(body, str):
        detail = body
    else:
        detail = text
    detail = " ".join(detail.split())
    if len(detail) > _MAX_DETAIL:
        detail = detail[:_MAX_DETAIL] + "…"
    return detail or "(empty body)"


def _clean_url(url: httpx.URL) -> str:
    return str(url.copy_with(query=None, fragment=None))


class BaseClient:
    """Base of every backend client: owns (or borrows) an :class:`httpx.Client`, maps errors.

    Subclasses set :attr:`backend` (a display name), :attr:`component` (the stack component name
    used in hints such as ``lab logs <component>``) and :attr:`query_language`; they call
    :meth:`_request`, :meth:`_json` or :meth:`_data` and stay thin.
    """

    backend: ClassVar[str] = "backend"
    component: ClassVar[str] = ""
    query_language: ClassVar[str] = ""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        client: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        headers: Mapping[str, str] | None = None,
        auth: httpx.Auth | tuple[str, str] | None = None,
    ) -> None:
        if client is not None and transport is not None:
            raise ValueError(
                "pass either client= or transport=, not both. Hint: give the transport to the "
                "httpx.Client you build yourself."
            )
        if base_url is None:
            if client is None or not str(client.base_url):
                raise ValueError(
                    f"{type(self).__name__} needs a base_url (or a client= with one). "
                    "Hint: take it from the stack, e.g. lab_stack.connect().url("
                    f"{self.component or 'name'!r})."
                )
            base_url = str(client.base_url)
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._owns_client = client is None
        self._client = client or httpx.Client(
            transport=transport, timeout=timeout, headers=dict(headers or {}), auth=auth
        )

    # -- lifecycle -------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the underlying HTTP client if this object created it."""
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url!r})"

    # -- hints (subclasses refine) ---------------------------------------------------------------

    def _unreachable_hint(self) -> str:
        name = f" {self.component}" if self.component else ""
        return (
            f"is the stack running? `lab status` shows each component and its URL; `lab up` "
            f"starts what is down, `lab logs{name}` shows why it stopped."
        )

    def _status_hint(self, status: int, query: str | None, detail: str) -> str:
        if status == 404:
            return (
                f"this URL has no such endpoint; is {self.base_url} really {self.backend}? "
                "`lab urls` lists the stack's URLs."
            )
        if status in (401, 403):
            return "the backend refused the credentials or the operation; check auth and flags."
        if status >= 500:
            name = f" {self.component}" if self.component else ""
            return f"the backend failed internally; `lab logs{name}` shows its log."
        if query is not None and self.query_language:
            return f"check the {self.query_language} syntax and the parameters of the query."
        return "check the request's parameters against the backend's API documentation."

    # -- requests --------------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return self.base_url + (path if path.startswith("/") else "/" + path)

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        json_body: Any = None,
        content: bytes | str | None = None,
        data: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        query: str | None = None,
        not_found: str | None = None,
        ok_statuses: Sequence[int] = (),
        timeout: float | None = None,
    ) -> httpx.Response:
        """Send one request; return the response or raise the mapped :class:`ClientError`.

        Args:
            query: the query text (PromQL, LogQL, TraceQL) quoted in error messages.
            not_found: what a 404 means ("trace 'abc'"); a 404 then raises :class:`NotFound`.
            ok_statuses: extra non-2xx statuses the caller handles itself (e.g. 503 for ready()).
        """
        url = self._url(path)
        query_params = _encode_params(params)
        try:
            response = self._client.request(
                method,
                url,
                params=query_params,
                json=json_body,
                content=content,
                data=data,
                headers=headers,
                timeout=self.timeout if timeout is None else timeout,
            )
        except httpx.TimeoutException as exc:
            raise BackendUnreachable(
                self._message(
                    f"did not answer within {self.timeout if timeout is None else timeout:g} s",
                    method,
                    url,
                    query,
                    detail=f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__,
                    hint="the backend is overloaded or stopped, or the query is too heavy; "
                    + self._unreachable_hint(),
                ),
                url=url,
            ) from exc
        except httpx.TransportError as exc:
            reason = str(exc) or type(exc).__name__
            raise BackendUnreachable(
                self._message(
                    "did not answer",
                    method,
                    url,
                    query,
                    detail=f"{type(exc).__name__}: {reason}",
                    hint=self._unreachable_hint(),
                ),
                url=url,
            ) from exc
        if response.is_success or response.status_code in ok_statuses:
            return response
        detail = _detail(response)
        status = response.status_code
        if not_found is not None and self._means_not_found(status, detail):
            raise NotFound(
                self._message(
                    f"has no {not_found} (HTTP {status})",
                    method,
                    _clean_url(response.request.url),
                    query,
                    detail=detail,
                    hint=self._not_found_hint(not_found),
                ),
                url=url,
                status=status,
            )
        raise QueryError(
            self._message(
                f"answered HTTP {status}",
                method,
                _clean_url(response.request.url),
                query,
                detail=detail,
                hint=self._status_hint(status, query, detail),
            ),
            url=url,
            status=status,
        )

    def _means_not_found(self, status: int, detail: str) -> bool:
        """Whether an error answer means "no such object" (404; some backends differ)."""
        return status == 404

    def _not_found_hint(self, what: str) -> str:
        return f"check the {what.split(' ')[0]} you asked for; it may not have been written yet."

    def _message(
        self,
        what: str,
        method: str,
        url: str,
        query: str | None,
        *,
        hint: str,
        detail: str | None = None,
    ) -> str:
        """``<Backend> <what> for <METHOD> <url> [with query '<q>'][: <detail>]. Hint: <hint>``."""
        text = f"{self.backend} {what} for {method} {url}"
        if query is not None:
            text += f" with query {query!r}"
        if detail:
            text += f": {detail.rstrip('. ')}"
        return f"{text}. Hint: {hint}"

    def _json(self, response: httpx.Response, *, query: str | None = None) -> Any:
        """Decode a JSON body or raise :class:`QueryError` naming the URL and what came back."""
        try:
            return response.json()
        except ValueError as exc:
            snippet = " ".join(response.text.split())[:200] or "(empty body)"
            raise QueryError(
                self._message(
                    f"answered HTTP {response.status_code} with a body that is not JSON",
                    response.request.method,
                    _clean_url(response.request.url),
                    query,
                    detail=repr(snippet),
                    hint=f"is {self.base_url} really {self.backend}? `lab urls` lists the "
                    "stack's URLs.",
                ),
                url=str(response.request.url),
                status=response.status_code,
            ) from exc

    def _get_json(
        self,
        path: str,
        *,
        params: Params | None = None,
        query: str | None = None,
        not_found: str | None = None,
    ) -> Any:
        return self._json(
            self._request("GET", path, params=params, query=query, not_found=not_found),
            query=query,
        )

    def _data(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        data: Mapping[str, str] | None = None,
        query: str | None = None,
        not_found: str | None = None,
        allow_missing_data: bool = False,
    ) -> Any:
        """Request an API answering ``{"status": "success"|"error", "data": ...}``; return data.

        This is the envelope of Prometheus, Loki and the Pushgateway's ``/api/v1``. An error
        envelope, even with a 2xx status, raises :class:`QueryError` with ``errorType`` and
        ``error`` in the message.
        """
        response = self._request(
            method, path, params=params, data=data, query=query, not_found=not_found
        )
        body = self._json(response, query=query)
        if not isinstance(body, dict) or body.get("status") != "success":
            detail = _detail(response) if isinstance(body, dict) else repr(body)[:200]
            raise QueryError(
                self._message(
                    f"answered HTTP {response.status_code} with an error",
                    method,
                    _clean_url(response.request.url),
                    query,
                    detail=detail,
                    hint=self._status_hint(400, query, detail),
                ),
                url=str(response.request.url),
                status=response.status_code,
            )
        if "data" not in body:
            if allow_missing_data:
                return None
            raise QueryError(
                self._message(
                    "answered success without a 'data' field",
                    method,
                    _clean_url(response.request.url),
                    query,
                    hint=f"is {self.base_url} really {self.backend}?",
                ),
                url=str(response.request.url),
                status=response.status_code,
            )
        return body["data"]

    def _probe(self, path: str) -> bool:
        """True when ``GET path`` answers 200; False on any other status or no answer."""
        try:
            response = self._request("GET", path, ok_statuses=range(300, 600))
        except BackendUnreachable:
            return False
        return response.status_code == 200


def _encode_params(params: Params | None) -> httpx.QueryParams | None:
    if params is None:
        return None
    pairs: list[tuple[str, str | int | float | bool | None]] = []
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool):
            pairs.append((key, "true" if value else "false"))
        elif isinstance(value, str | int | float):
            pairs.append((key, str(value)))
        else:
            pairs.extend((key, str(item)) for item in value)
    return httpx.QueryParams(pairs)
