"""Generated card transactions with named features, and the rules that label them as fraud.

Everything is vectorised NumPy driven by an explicit ``numpy.random.Generator`` (or a seed), so the
same seed always gives the same rows. Two kinds of columns:

* **transaction** fields, sent by the client in ``POST /predict``: ``amount``,
  ``merchant_category``, ``channel``, ``hour``, ``distance_from_home_km``, ``device_age_days``;
* **profile** fields, served per user by the feature service: ``account_age_days``,
  ``txn_count_24h``, ``avg_amount_30d`` (see :func:`user_profile`).

Distribution shifts are expressed in the feature's own spread (``k`` standard deviations of its
generating distribution, or a share of probability mass moved to one category), so that
``"small"`` and ``"large"`` mean the same thing for every feature.

Example:
    >>> import numpy as np
    >>> rows = sample_features(np.random.default_rng(0), 3)
    >>> sorted(rows.columns) == sorted(FEATURES)
    True
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd

__all__ = [
    "CATEGORICAL_FEATURES",
    "CATEGORIES",
    "FEATURES",
    "LABEL",
    "NUMERIC_FEATURES",
    "PROFILE_FEATURES",
    "SHIFT_SIZES",
    "TRANSACTION_FEATURES",
    "Concept",
    "fraud_probability",
    "generate_transactions",
    "label_fraud",
    "sample_features",
    "user_id",
    "user_profile",
]

#: Fields the client sends with each transaction.
TRANSACTION_FEATURES: tuple[str, ...] = (
    "amount",
    "merchant_category",
    "channel",
    "hour",
    "distance_from_home_km",
    "device_age_days",
)
#: Fields the feature service holds per user.
PROFILE_FEATURES: tuple[str, ...] = ("account_age_days", "txn_count_24h", "avg_amount_30d")
#: Every model input, in the model's column order.
FEATURES: tuple[str, ...] = TRANSACTION_FEATURES + PROFILE_FEATURES
CATEGORICAL_FEATURES: tuple[str, ...] = ("merchant_category", "channel")
NUMERIC_FEATURES: tuple[str, ...] = tuple(f for f in FEATURES if f not in CATEGORICAL_FEATURES)
#: Name of the label column (1 = fraud).
LABEL = "is_fraud"

#: Known categories and their reference probabilities.
CATEGORIES: dict[str, dict[str, float]] = {
    "merchant_category": {
        "grocery": 0.25,
        "restaurants": 0.18,
        "online_retail": 0.17,
        "gas": 0.12,
        "electronics": 0.10,
        "travel": 0.08,
        "gaming": 0.06,
        "jewelry": 0.04,
    },
    "channel": {"in_store": 0.55, "online": 0.38, "atm": 0.07},
}
#: The category that gains probability mass when a categorical feature is shifted.
_SHIFT_TARGET = {"merchant_category": "gaming", "channel": "atm"}

#: Shift sizes: standard deviations for numeric features, share of mass moved for categorical.
SHIFT_SIZES: dict[str, tuple[float, float]] = {
    # name: (numeric k in sd units, categorical mass moved)
    "none": (0.0, 0.0),
    "negligible": (0.02, 0.004),
    "small": (0.3, 0.15),
    "large": (1.0, 0.35),
}

# distance from home: mostly local, a few purchases far away
_NEAR_KM, _FAR_KM, _FAR_SHARE = 8.0, 150.0, 0.03
_D_MEAN = (1 - _FAR_SHARE) * _NEAR_KM + _FAR_SHARE * _FAR_KM
_D_SD = float(
    np.sqrt((1 - _FAR_SHARE) * 2 * _NEAR_KM**2 + _FAR_SHARE * 2 * _FAR_KM**2 - _D_MEAN**2)
)
_DISTANCE_CV = _D_SD / _D_MEAN

Concept = Literal["original", "shifted"]


def _categorical(rng: np.random.Generator, n: int, feature: str, mass: float) -> np.ndarray:
    cats = list(CATEGORIES[feature])
    p = np.array([CATEGORIES[feature][c] for c in cats])
    if mass:
        target = np.array([c == _SHIFT_TARGET[feature] for c in cats], dtype=float)
        p = (1 - mass) * p + mass * target
    return np.asarray(rng.choice(np.array(cats, dtype=object), size=n, p=p / p.sum()))


def _profile_columns(
    rng: np.random.Generator, n: int, k: Mapping[str, float]
) -> dict[str, np.ndarray]:
    return {
        # gamma(2, 400): log-sd about 0.8
        "account_age_days": np.round(
            rng.gamma(2.0, 400.0 * np.exp(0.8 * k.get("account_age_days", 0.0)), n), 1
        ),
        "txn_count_24h": rng.poisson(3.0 + k.get("txn_count_24h", 0.0) * np.sqrt(3.0), n).astype(
            float
        ),
        "avg_amount_30d": np.round(
            rng.lognormal(3.6 + 0.6 * k.get("avg_amount_30d", 0.0), 0.6, n), 2
        ),
    }


def sample_features(
    rng: np.random.Generator,
    n: int,
    *,
    shifts: Mapping[str, float] | None = None,
    category_mass: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Draw ``n`` transactions with every feature; ``shifts`` moves numeric features by k sd.

    Args:
        rng: the random generator (same state, same rows).
        n: number of rows.
        shifts: per numeric feature, how many of its standard deviations to move it.
        category_mass: per categorical feature, the share of probability moved to one category.
    """
    k = dict(shifts or {})
    mass = dict(category_mass or {})
    hour_centre = 14.0 + 4.0 * k.get("hour", 0.0)
    day = rng.normal(hour_centre, 4.0, n)
    night = rng.uniform(0, 24, n)
    hour = np.where(rng.random(n) < 0.85, day, night)
    far = rng.random(n) < _FAR_SHARE
    distance = np.where(far, rng.exponential(_FAR_KM, n), rng.exponential(_NEAR_KM, n))
    cols: dict[str, Any] = {
        "amount": np.clip(
            np.round(rng.lognormal(3.6 + 1.0 * k.get("amount", 0.0), 1.0, n), 2), 0.5, 50_000.0
        ),
        "merchant_category": _categorical(
            rng, n, "merchant_category", mass.get("merchant_category", 0.0)
        ),
        "channel": _categorical(rng, n, "channel", mass.get("channel", 0.0)),
        "hour": np.mod(np.floor(hour), 24).astype(float),
        # scaled so that the mean moves by k standard deviations (the mixture is heavy-tailed)
        "distance_from_home_km": np.round(
            distance * max(1.0 + _DISTANCE_CV * k.get("distance_from_home_km", 0.0), 0.05), 3
        ),
        "device_age_days": np.round(
            rng.gamma(2.0, 150.0 * np.exp(0.8 * k.get("device_age_days", 0.0)), n), 1
        ),
    }
    cols.update(_profile_columns(rng, n, k))
    return pd.DataFrame({f: cols[f] for f in FEATURES})


def user_id(index: int) -> str:
    """The id of user number ``index`` (``user-00042``)."""
    return f"user-{index:05d}"


def user_profile(uid: str, *, seed: int = 0) -> dict[str, float]:
    """The feature service's profile of ``uid``: a pure function of the id and the seed."""
    digest = hashlib.sha256(f"{seed}:{uid}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    return {name: float(col[0]) for name, col in _profile_columns(rng, 1, {}).items()}


def _logit_original(df: pd.DataFrame) -> np.ndarray:
    amount = df["amount"].to_numpy(float)
    avg = df["avg_amount_30d"].to_numpy(float)
    cat = df["merchant_category"].map(
        {
            "electronics": 0.9,
            "jewelry": 1.4,
            "gaming": 1.1,
            "online_retail": 0.5,
            "travel": 0.4,
            "grocery": -0.8,
            "gas": -0.4,
            "restaurants": -0.6,
        }
    )
    chan = df["channel"].map({"online": 0.6, "atm": 0.4, "in_store": -0.5})
    hour = df["hour"].to_numpy(float)
    return np.asarray(
        -2.6
        + 1.3 * np.log(amount / avg)
        + 0.9 * np.log1p(df["distance_from_home_km"].to_numpy(float) / 50.0)
        + 1.2 * (df["device_age_days"].to_numpy(float) < 14)
        + 0.8 * (df["account_age_days"].to_numpy(float) < 60)
        + 0.25 * (df["txn_count_24h"].to_numpy(float) - 3.0)
        + 0.9 * (hour < 6)
        + cat.fillna(0.0).to_numpy(float)
        + chan.fillna(0.0).to_numpy(float)
    )


def _logit_shifted(df: pd.DataFrame) -> np.ndarray:
    # The fraud ring changed tactics: small card-testing purchases at everyday merchants, in
    # daytime, from established devices. Same inputs, different relationship to the label.
    amount = df["amount"].to_numpy(float)
    avg = df["avg_amount_30d"].to_numpy(float)
    cat = df["merchant_category"].map(
        {"grocery": 1.3, "gas": 1.2, "restaurants": 0.8, "electronics": -1.0, "jewelry": -1.0}
    )
    hour = df["hour"].to_numpy(float)
    return np.asarray(
        -0.9
        - 1.2 * np.log(amount / avg)
        + 0.8 * ((hour >= 9) & (hour <= 17))
        - 0.8 * (df["device_age_days"].to_numpy(float) < 14)
        + cat.fillna(0.0).to_numpy(float)
    )


def fraud_probability(df: pd.DataFrame, *, concept: Concept = "original") -> np.ndarray:
    """The true probability that each row is fraud under ``concept``."""
    z = _logit_original(df) if concept == "original" else _logit_shifted(df)
    return np.asarray(1.0 / (1.0 + np.exp(-z)))


def label_fraud(
    df: pd.DataFrame, rng: np.random.Generator, *, concept: Concept = "original"
) -> np.ndarray:
    """Draw a 0/1 fraud label for each row from :func:`fraud_probability`."""
    return (rng.random(len(df)) < fraud_probability(df, concept=concept)).astype(int)


def generate_transactions(n: int, *, seed: int = 0, concept: Concept = "original") -> pd.DataFrame:
    """``n`` labelled transactions (features + ``is_fraud``), the same for the same seed."""
    rng = np.random.default_rng(seed)
    df = sample_features(rng, n)
    df[LABEL] = label_fraud(df, rng, concept=concept)
    return df
