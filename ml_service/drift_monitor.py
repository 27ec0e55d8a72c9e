"""A streaming drift monitor for the gateway: PSI per feature over a sliding window of requests.

The batch drift job compares an hour of logged inputs with a reference once per interval; this
monitor answers the same question continuously, inside the service, at a cost of a few
microseconds per request:

* **bins are fixed once, from the reference data** — quantile bins for numeric features (open at
  both ends, so any value lands somewhere), the reference's categories plus ``other`` for
  categorical ones, and one ``missing`` bin each (NaN / ``None``);
* **each request updates counts in constant time** — one bin lookup per feature (a binary search
  over at most ``n_bins`` edges), one increment, and one decrement for the request that leaves the
  window (a ring buffer holds the bin indices of the last ``window`` requests);
* **PSI is computed when Prometheus scrapes**, from the counts, by a custom collector that exports
  ``ml_streaming_feature_psi{feature}`` and ``ml_streaming_window_requests`` as gauges. Nothing is
  computed per request that a scrape can compute once.

PSI (population stability index) between reference shares ``r`` and window shares ``c`` over the
same bins is ``sum((c - r) * ln(c / r))``; empty bins are floored at :data:`EPSILON`. Common reading:
below 0.1 stable, 0.1-0.25 a moderate shift, above 0.25 a large one.

Example:
    >>> import numpy as np, pandas as pd
    >>> from prometheus_client import CollectorRegistry
    >>> ref = pd.DataFrame({"amount": np.arange(1000.0), "channel": ["online", "atm"] * 500})
    >>> monitor = DriftMonitor.from_reference(ref, window=100, registry=CollectorRegistry())
    >>> for v in range(100):
    ...     monitor.observe({"amount": 5000.0 + v, "channel": "online"})
    >>> monitor.psi()["amount"] > 1.0, monitor.window_requests
    (True, 100)
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from ml_service.hooks import PredictionEvent

__all__ = [
    "EPSILON",
    "MISSING",
    "OTHER",
    "PSI_METRIC",
    "WINDOW_METRIC",
    "DriftMonitor",
    "FeatureBins",
    "population_stability_index",
]

#: Floor of a bin's share in the PSI formula (an empty bin would make the logarithm infinite).
EPSILON = 1e-4
#: Name of the bin that collects categories the reference never had.
OTHER = "other"
#: Name of the bin that collects missing values (NaN, ``None``).
MISSING = "missing"
#: The per-feature PSI gauge.
PSI_METRIC = "ml_streaming_feature_psi"
#: The gauge with the number of requests currently in the window.
WINDOW_METRIC = "ml_streaming_window_requests"

Kind = Literal["numeric", "categorical"]


def population_stability_index(
    reference_counts: Sequence[float] | np.ndarray,
    current_counts: Sequence[float] | np.ndarray,
    *,
    epsilon: float = EPSILON,
) -> float:
    """PSI between two count vectors over the same bins (NaN when either side is empty).

    Example:
        >>> round(population_stability_index([50, 50], [50, 50]), 6)
        0.0
    """
    ref = np.asarray(reference_counts, dtype=float)
    cur = np.asarray(current_counts, dtype=float)
    if ref.shape != cur.shape:
        raise ValueError(
            f"count vectors differ in length: {ref.shape} vs {cur.shape}. "
            "Hint: count both samples over the same FeatureBins."
        )
    if ref.sum() <= 0 or cur.sum() <= 0:
        return math.nan
    r = np.maximum(ref / ref.sum(), epsilon)
    c = np.maximum(cur / cur.sum(), epsilon)
    return float(np.sum((c - r) * np.log(c / r)))


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(value != value)  # NaN (float or numpy) is the one value unequal to itself
    except (TypeError, ValueError):
        return False


@dataclass(frozen=True)
class FeatureBins:
    """The fixed bins of one feature and its reference counts.

    Numeric bins: ``edges`` are the inner quantile edges; bin ``i`` holds ``edges[i-1] <= x <
    edges[i]`` (open at both ends). Categorical bins: one per reference category, then ``other``.
    The last bin of either kind is ``missing``.
    """

    feature: str
    kind: Kind
    edges: tuple[float, ...] = ()
    categories: tuple[str, ...] = ()
    reference_counts: tuple[int, ...] = ()

    @property
    def n_bins(self) -> int:
        """Number of bins, the missing bin included."""
        if self.kind == "numeric":
            return len(self.edges) + 2
        return len(self.categories) + 2

    @property
    def labels(self) -> list[str]:
        """A readable name per bin (``[a, b)``, a category, ``other``, ``missing``)."""
        if self.kind == "categorical":
            return [*self.categories, OTHER, MISSING]
        bounds = [-math.inf, *self.edges, math.inf]
        return [f"[{bounds[i]:g}, {bounds[i + 1]:g})" for i in range(len(bounds) - 1)] + [MISSING]

    def index(self, value: Any) -> int:
        """The bin of one value: a binary search (numeric) or a dictionary lookup (categorical)."""
        if _is_missing(value):
            return self.n_bins - 1
        if self.kind == "numeric":
            try:
                x = float(value)
            except (TypeError, ValueError):
                return self.n_bins - 1
            return bisect.bisect_right(self.edges, x)
        return self._category_index.get(str(value), len(self.categories))

    @property
    def _category_index(self) -> dict[str, int]:
        cached: dict[str, int] | None = self.__dict__.get("_cat_index")
        if cached is None:
            cached = {c: i for i, c in enumerate(self.categories)}
            object.__setattr__(self, "_cat_index", cached)
        return cached

    def count(self, values: Iterable[Any] | pd.Series | np.ndarray) -> np.ndarray:
        """Counts per bin of many values at once (vectorised; same bins as :meth:`index`)."""
        series = values if isinstance(values, pd.Series) else pd.Series(list(values), dtype=object)
        missing = series.isna().to_numpy()
        out = np.zeros(self.n_bins, dtype=np.int64)
        out[-1] = int(missing.sum())
        present = series[~missing]
        if self.kind == "numeric":
            numbers = pd.to_numeric(present, errors="coerce").to_numpy(dtype=float)
            bad = np.isnan(numbers)
            out[-1] += int(bad.sum())
            idx = np.searchsorted(np.asarray(self.edges, dtype=float), numbers[~bad], side="right")
        else:
            lookup = self._category_index
            idx = np.fromiter(
                (lookup.get(str(v), len(self.categories)) for v in present),
                dtype=np.int64,
                count=len(present),
            )
        out[: self.n_bins - 1] += np.bincount(idx, minlength=self.n_bins - 1)[: self.n_bins - 1]
        return out

    @classmethod
    def from_reference(
        cls, feature: str, values: pd.Series, *, kind: Kind | None = None, n_bins: int = 10
    ) -> FeatureBins:
        """Fix the bins of ``feature`` from its reference values and count the reference in them.

        Args:
            feature: the feature's name.
            values: the reference values.
            kind: ``numeric`` or ``categorical`` (default: from the dtype).
            n_bins: numeric features: the number of quantile bins (fewer when values repeat).
        """
        if kind is None:
            numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(
                values
            )
            kind = "numeric" if numeric else "categorical"
        if kind == "numeric":
            present = pd.to_numeric(values, errors="coerce").dropna().to_numpy(dtype=float)
            if present.size == 0:
                raise ValueError(
                    f"feature {feature!r} has no numeric reference values. "
                    "Hint: pass reference data with at least one value per feature."
                )
            qs = np.quantile(present, np.linspace(0.0, 1.0, n_bins + 1)[1:-1])
            edges = tuple(float(e) for e in np.unique(qs))
            bins = cls(feature, "numeric", edges=edges)
        else:
            cats = values.dropna().astype(str)
            categories = tuple(sorted(cats.unique()))
            bins = cls(feature, "categorical", categories=categories)
        counts = tuple(int(c) for c in bins.count(values))
        return cls(bins.feature, bins.kind, bins.edges, bins.categories, counts)


class DriftMonitor(Collector):
    """PSI per feature between the reference and the last ``window`` requests, as gauges.

    Register it once, feed it each request's features with :meth:`observe` (or hand
    :meth:`on_prediction` to the gateway's hooks), and Prometheus scrapes
    ``ml_streaming_feature_psi{feature}``.

    Example:
        >>> from ml_service.hooks import Hooks                                   # doctest: +SKIP
        >>> monitor = DriftMonitor.from_reference(reference, registry=registry)  # doctest: +SKIP
        >>> hooks = Hooks(on_prediction=monitor.on_prediction)                   # doctest: +SKIP
    """

    def __init__(
        self,
        bins: Sequence[FeatureBins],
        *,
        window: int = 1_000,
        registry: CollectorRegistry | None = REGISTRY,
        epsilon: float = EPSILON,
    ) -> None:
        if window < 1:
            raise ValueError(
                f"window={window} must be at least 1. Hint: e.g. window=1000 requests."
            )
        if not bins:
            raise ValueError("no features to monitor. Hint: pass reference data with columns.")
        self.bins: tuple[FeatureBins, ...] = tuple(bins)
        self.features: tuple[str, ...] = tuple(b.feature for b in self.bins)
        self.window = int(window)
        self.epsilon = epsilon
        self._lock = threading.Lock()
        self._ring = np.zeros((self.window, len(self.bins)), dtype=np.int32)
        self._counts = [[0] * b.n_bins for b in self.bins]
        self._next = 0
        self._filled = 0
        self._total = 0
        if registry is not None:
            registry.register(self)

    @classmethod
    def from_reference(
        cls,
        reference: pd.DataFrame,
        *,
        features: Sequence[str] | None = None,
        categorical: Sequence[str] | None = None,
        n_bins: int = 10,
        window: int = 1_000,
        registry: CollectorRegistry | None = REGISTRY,
    ) -> DriftMonitor:
        """Build a monitor whose bins are fixed from ``reference`` (one column per feature).

        Args:
            reference: the reference data (e.g. the training set).
            features: the columns to monitor (default: every column).
            categorical: columns to treat as categorical (default: non-numeric dtypes).
            n_bins: quantile bins per numeric feature.
            window: the sliding window, in requests.
            registry: where to register the gauges (``None``: do not register).
        """
        chosen = list(features) if features is not None else list(reference.columns)
        missing = [f for f in chosen if f not in reference.columns]
        if missing:
            raise ValueError(
                f"features {missing} are not columns of the reference "
                f"({list(reference.columns)}). Hint: pass features= that the reference has."
            )
        cats = set(categorical or ())
        bins = [
            FeatureBins.from_reference(
                f, reference[f], kind="categorical" if f in cats else None, n_bins=n_bins
            )
            for f in chosen
        ]
        return cls(bins, window=window, registry=registry)

    # --- per request: constant time ------------------------------------------------------------
    def observe(self, row: Mapping[str, Any]) -> None:
        """Count one request's features into the window (and drop the oldest one when full)."""
        idx = [b.index(row.get(b.feature)) for b in self.bins]
        with self._lock:
            slot = self._ring[self._next]
            if self._filled == self.window:
                for j, old in enumerate(slot.tolist()):
                    self._counts[j][old] -= 1
            else:
                self._filled += 1
            for j, i in enumerate(idx):
                self._counts[j][i] += 1
            slot[:] = idx
            self._next = (self._next + 1) % self.window
            self._total += 1

    def on_prediction(self, event: PredictionEvent) -> None:
        """Gateway hook: observe the features of every request that reached the model."""
        if event.features is not None:
            self.observe(event.features)

    def reset(self) -> None:
        """Empty the window (the reference bins stay)."""
        with self._lock:
            self._counts = [[0] * b.n_bins for b in self.bins]
            self._next = self._filled = 0

    # --- per scrape ----------------------------------------------------------------------------
    @property
    def window_requests(self) -> int:
        """Requests currently in the window."""
        return self._filled

    @property
    def observed_total(self) -> int:
        """Requests observed since the monitor was created."""
        return self._total

    def window_counts(self) -> dict[str, list[int]]:
        """A copy of the window's counts per feature and bin."""
        with self._lock:
            return {b.feature: list(c) for b, c in zip(self.bins, self._counts, strict=True)}

    def psi(self) -> dict[str, float]:
        """PSI of each feature between the reference and the window (NaN while it is empty)."""
        counts = self.window_counts()
        return {
            b.feature: population_stability_index(
                b.reference_counts, counts[b.feature], epsilon=self.epsilon
            )
            for b in self.bins
        }

    def collect(self) -> Iterator[Metric]:
        """Prometheus collector: the PSI gauges and the window size, computed now."""
        psi = GaugeMetricFamily(
            PSI_METRIC,
            "Population stability index of each feature: reference vs the sliding window.",
            labels=["feature"],
        )
        for feature, value in self.psi().items():
            psi.add_metric([feature], value)
        yield psi
        yield GaugeMetricFamily(
            WINDOW_METRIC,
            "Requests in the streaming drift monitor's sliding window.",
            value=float(self.window_requests),
        )

    def describe(self) -> Iterator[Metric]:
        """Metric names for registry collision checks (no values computed)."""
        yield GaugeMetricFamily(PSI_METRIC, "PSI per feature.", labels=["feature"])
        yield GaugeMetricFamily(WINDOW_METRIC, "Requests in the window.")
