"""Reference and current datasets with chosen shifts per feature, and the known answer for each.

Shift sizes (:data:`ml_service.data.SHIFT_SIZES`) are expressed in each feature's own spread:
``negligible`` (0.02 sd; 0.4% of categorical mass), ``small`` (0.3 sd; 15%), ``large`` (1 sd;
35%). The known answer: ``small`` and ``large`` shifts, and a category that appears only in the
current data, are drift; ``none`` and ``negligible`` are not — a negligible shift on a large
sample is *statistically* significant but practically irrelevant, so a detector that decides on
the p-value alone gets it wrong. Missing values are removed completely at random: they do not
change the distribution of the observed values, so they are not drift by themselves; a detector
must cope with them (not crash, not flag).

Example:
    >>> ds = reference_and_current(seed=1, shifts={"amount": "large"}, n_current=500)
    >>> ds.drifted_features
    ['amount']
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from ml_service.data import CATEGORICAL_FEATURES, FEATURES, SHIFT_SIZES, sample_features

__all__ = [
    "DriftDataset",
    "FeatureTruth",
    "Shift",
    "hard_cases",
    "reference_and_current",
]

Shift = Literal["none", "negligible", "small", "large"]
Kind = Literal["numeric", "categorical"]


@dataclass(frozen=True)
class FeatureTruth:
    """The known answer for one feature."""

    feature: str
    kind: Kind
    shift: str
    drifted: bool
    new_category: str | None = None
    missing_reference: float = 0.0
    missing_current: float = 0.0


@dataclass
class DriftDataset:
    """A reference frame, a current frame, and the truth per feature."""

    name: str
    seed: int
    reference: pd.DataFrame
    current: pd.DataFrame
    truth: dict[str, FeatureTruth] = field(default_factory=dict)

    @property
    def features(self) -> list[str]:
        """Every column, in order."""
        return list(self.reference.columns)

    @property
    def drifted_features(self) -> list[str]:
        """Features that truly drifted, sorted."""
        return sorted(f for f, t in self.truth.items() if t.drifted)

    @property
    def share_drifted(self) -> float:
        """Share of features that truly drifted."""
        return len(self.drifted_features) / len(self.truth) if self.truth else 0.0

    def dataset_drifted(self, *, threshold: float = 0.5) -> bool:
        """The dataset-level answer: is the share of drifted features at least ``threshold``."""
        return self.share_drifted >= threshold


def _mask_missing(
    frame: pd.DataFrame, rng: np.random.Generator, rates: Mapping[str, float]
) -> None:
    for feature, rate in rates.items():
        mask = rng.random(len(frame)) < rate
        if feature in CATEGORICAL_FEATURES:
            frame[feature] = frame[feature].astype(object)
            frame.loc[mask, feature] = None
        else:
            frame[feature] = frame[feature].astype(float)
            frame.loc[mask, feature] = np.nan


def reference_and_current(
    *,
    seed: int = 0,
    n_reference: int = 5_000,
    n_current: int = 5_000,
    shifts: Mapping[str, str] | None = None,
    new_categories: Mapping[str, tuple[str, float]] | None = None,
    missing_reference: Mapping[str, float] | None = None,
    missing_current: Mapping[str, float] | None = None,
    extra_numeric: int = 0,
    name: str = "custom",
) -> DriftDataset:
    """Draw a reference and a current frame with the chosen shifts; same seed, same frames.

    Args:
        seed: seed of both frames (graders use hidden seeds).
        n_reference / n_current: rows in each frame.
        shifts: per feature (extra ``x_NN`` columns too): none, negligible, small or large.
        new_categories: per categorical feature, ``(category, share)`` that appears only in current.
        missing_reference / missing_current: per feature, share of values removed (NaN / None).
        extra_numeric: add this many standard-normal columns ``x_00``, ``x_01``, ... (e.g. to reach
            20 columns for a benchmark).
        name: a label for the dataset.

    Raises:
        ValueError: an unknown feature or shift size.
    """
    shifts = dict(shifts or {})
    extra = [f"x_{i:02d}" for i in range(extra_numeric)]
    columns = [*FEATURES, *extra]
    for feature, size in shifts.items():
        if feature not in columns:
            raise ValueError(f"unknown feature {feature!r}. Hint: use one of {', '.join(columns)}.")
        if size not in SHIFT_SIZES:
            raise ValueError(
                f"unknown shift {size!r} for {feature}. Hint: use one of {', '.join(SHIFT_SIZES)}."
            )
    for feature in new_categories or {}:
        if feature not in CATEGORICAL_FEATURES:
            raise ValueError(
                f"{feature!r} is not categorical. "
                f"Hint: use one of {', '.join(CATEGORICAL_FEATURES)}."
            )
    rng = np.random.default_rng(seed)
    k = {f: SHIFT_SIZES[s][0] for f, s in shifts.items() if f not in CATEGORICAL_FEATURES}
    mass = {f: SHIFT_SIZES[s][1] for f, s in shifts.items() if f in CATEGORICAL_FEATURES}
    reference = sample_features(rng, n_reference)
    current = sample_features(rng, n_current, shifts=k, category_mass=mass)
    for col in extra:
        reference[col] = rng.normal(0.0, 1.0, n_reference)
        current[col] = rng.normal(k.get(col, 0.0), 1.0, n_current)
    for feature, (category, share) in (new_categories or {}).items():
        current[feature] = current[feature].astype(object)
        current.loc[rng.random(n_current) < share, feature] = category
    _mask_missing(reference, rng, missing_reference or {})
    _mask_missing(current, rng, missing_current or {})
    truth: dict[str, FeatureTruth] = {}
    for feature in columns:
        size = shifts.get(feature, "none")
        new = (new_categories or {}).get(feature)
        truth[feature] = FeatureTruth(
            feature=feature,
            kind="categorical" if feature in CATEGORICAL_FEATURES else "numeric",
            shift=size,
            drifted=size in ("small", "large") or (new is not None and new[1] > 0),
            new_category=new[0] if new else None,
            missing_reference=(missing_reference or {}).get(feature, 0.0),
            missing_current=(missing_current or {}).get(feature, 0.0),
        )
    return DriftDataset(name, seed, reference, current, truth)


def hard_cases(*, seed: int = 0, large_n: int = 200_000) -> dict[str, DriftDataset]:
    """Named datasets for the cases detectors get wrong, each with its known answer.

    * ``clean`` — nothing shifted;
    * ``negligible_large_sample`` — ``large_n`` rows each, negligible shifts on amount, distance and
      merchant category: significant p-values, no drift;
    * ``new_category`` — ``crypto_exchange`` only in the current merchant categories (15%);
    * ``missing_values`` — 10% missing in distance and channel in both frames (no drift), a small
      amount shift with 20% missing in current (drift);
    * ``mixed`` — numeric and categorical, small and large shifts at once (dataset drift).
    """
    return {
        "clean": reference_and_current(seed=seed, name="clean"),
        "negligible_large_sample": reference_and_current(
            seed=seed + 1,
            n_reference=large_n,
            n_current=large_n,
            shifts={
                "amount": "negligible",
                "distance_from_home_km": "negligible",
                "merchant_category": "negligible",
            },
            name="negligible_large_sample",
        ),
        "new_category": reference_and_current(
            seed=seed + 2,
            new_categories={"merchant_category": ("crypto_exchange", 0.15)},
            name="new_category",
        ),
        "missing_values": reference_and_current(
            seed=seed + 3,
            shifts={"amount": "small"},
            missing_reference={"distance_from_home_km": 0.1, "channel": 0.1},
            missing_current={"distance_from_home_km": 0.1, "channel": 0.1, "amount": 0.2},
            name="missing_values",
        ),
        "mixed": reference_and_current(
            seed=seed + 4,
            shifts={
                "amount": "large",
                "hour": "small",
                "device_age_days": "large",
                "account_age_days": "small",
                "avg_amount_30d": "large",
                "merchant_category": "large",
                "channel": "small",
            },
            name="mixed",
        ),
    }
