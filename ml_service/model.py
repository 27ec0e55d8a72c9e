"""The fraud-detection model: trained deterministically in about a second, cached with a manifest.

The model is a scikit-learn pipeline (median imputation, ``log1p`` and scaling for numeric
features, one-hot encoding that ignores unseen categories, logistic regression). It is trained on
:func:`ml_service.data.generate_transactions` with a fixed seed, so the same seed gives the same
coefficients on every machine with the same scikit-learn.

The cache is a joblib file plus a JSON manifest (model name, version, seed, scikit-learn version,
feature list, sha256 of the joblib file). A cache whose manifest is missing, unreadable, or
disagrees with the file or with this process is retrained and rewritten, never loaded.

Example:
    >>> model = load_model()                                  # doctest: +SKIP
    >>> model.predict_one({"amount": 12.5, ...}).probability  # doctest: +SKIP
    0.031
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import sklearn
import structlog
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from ml_service.data import (
    CATEGORICAL_FEATURES,
    FEATURES,
    LABEL,
    NUMERIC_FEATURES,
    generate_transactions,
)

__all__ = [
    "MODEL_NAME",
    "MODEL_VERSION",
    "FraudModel",
    "Prediction",
    "default_cache_dir",
    "holdout_set",
    "load_model",
    "train_model",
]

MODEL_NAME = "fraud-detector"
MODEL_VERSION = "1.0.0"
#: Rows the model is trained on (about a second on one core).
N_TRAIN = 20_000
#: Fraud probability at or above which a transaction is called fraud.
THRESHOLD = 0.5

_log = structlog.get_logger(__name__)
_cache_lock = threading.Lock()
_loaded: dict[tuple[str, int, str], FraudModel] = {}


def _log1p_nonneg(x: np.ndarray) -> np.ndarray:
    """``log1p`` of the non-negative part (module-level so the pipeline pickles)."""
    return np.asarray(np.log1p(np.clip(x, 0.0, None)))


@dataclass(frozen=True)
class Prediction:
    """One scored transaction: the label, the fraud probability and the model that produced it."""

    is_fraud: bool
    probability: float
    model_name: str
    model_version: str

    @property
    def confidence(self) -> float:
        """Probability of the predicted class (``max(p, 1 - p)``)."""
        return max(self.probability, 1.0 - self.probability)


@dataclass
class FraudModel:
    """A fitted pipeline with its name and version; score one row fast with :meth:`predict_one`."""

    pipeline: Pipeline
    name: str = MODEL_NAME
    version: str = MODEL_VERSION
    seed: int = 0
    _fast: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._fast = _fast_parameters(self.pipeline)

    @property
    def features(self) -> tuple[str, ...]:
        """The input columns, in order."""
        return FEATURES

    def coefficients(self) -> np.ndarray:
        """The logistic regression's coefficients (one per encoded column), then its intercept."""
        lr: LogisticRegression = self.pipeline.named_steps["classifier"]
        return np.concatenate([lr.coef_.ravel(), lr.intercept_.ravel()])

    def predict_proba(self, rows: pd.DataFrame) -> np.ndarray:
        """Fraud probability for each row of ``rows`` (the scikit-learn path)."""
        return np.asarray(self.pipeline.predict_proba(rows[list(FEATURES)])[:, 1])

    def predict_one(self, features: Mapping[str, Any]) -> Prediction:
        """Score one transaction given as a mapping; ``None``/NaN values are imputed.

        Same result as :meth:`predict_proba` on a one-row frame, in microseconds rather than
        milliseconds (no DataFrame is built).
        """
        f = self._fast
        x = np.empty(len(NUMERIC_FEATURES))
        for i, name in enumerate(NUMERIC_FEATURES):
            value = features.get(name)
            x[i] = (
                f["medians"][i]
                if value is None or (isinstance(value, float) and value != value)
                else float(value)
            )
        z = float(
            f["intercept"]
            + ((np.log1p(np.clip(x, 0.0, None)) - f["mean"]) / f["scale"]) @ f["w_num"]
        )
        for name, weights in zip(CATEGORICAL_FEATURES, f["w_cat"], strict=True):
            value = features.get(name)
            key = "missing" if value is None else str(value)
            z += weights.get(key, 0.0)
        p = 1.0 / (1.0 + float(np.exp(-z)))
        return Prediction(p >= THRESHOLD, p, self.name, self.version)

    def accuracy(self, rows: pd.DataFrame) -> float:
        """Share of rows of a labelled frame whose predicted label equals ``is_fraud``."""
        predicted = self.predict_proba(rows) >= THRESHOLD
        return float(np.mean(predicted == rows[LABEL].to_numpy().astype(bool)))


def _fast_parameters(pipeline: Pipeline) -> dict[str, Any]:
    pre: ColumnTransformer = pipeline.named_steps["features"]
    num: Pipeline = pre.named_transformers_["numeric"]
    cat: Pipeline = pre.named_transformers_["categorical"]
    lr: LogisticRegression = pipeline.named_steps["classifier"]
    coef = lr.coef_.ravel()
    n_num = len(NUMERIC_FEATURES)
    encoder: OneHotEncoder = cat.named_steps["onehot"]
    w_cat: list[dict[str, float]] = []
    offset = n_num
    for cats in encoder.categories_:
        w_cat.append({str(c): float(coef[offset + j]) for j, c in enumerate(cats)})
        offset += len(cats)
    scaler: StandardScaler = num.named_steps["scale"]
    return {
        "medians": num.named_steps["impute"].statistics_.astype(float),
        "mean": scaler.mean_,
        "scale": scaler.scale_,
        "w_num": coef[:n_num],
        "w_cat": w_cat,
        "intercept": float(lr.intercept_[0]),
    }


def _pipeline(seed: int) -> Pipeline:
    numeric = Pipeline(
        [
            ("impute", SimpleImputer(strategy="median")),
            ("log", FunctionTransformer(_log1p_nonneg)),
            ("scale", StandardScaler()),
        ]
    )
    categorical = Pipeline(
        [
            ("impute", SimpleImputer(strategy="constant", fill_value="missing")),
            ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
        ]
    )
    features = ColumnTransformer(
        [
            ("numeric", numeric, list(NUMERIC_FEATURES)),
            ("categorical", categorical, list(CATEGORICAL_FEATURES)),
        ]
    )
    classifier = LogisticRegression(C=1.0, max_iter=2000, random_state=seed)
    return Pipeline([("features", features), ("classifier", classifier)])


def train_model(
    *, seed: int = 0, n_rows: int = N_TRAIN, version: str = MODEL_VERSION
) -> FraudModel:
    """Train the fraud model on ``n_rows`` generated transactions; same seed, same coefficients."""
    rows = generate_transactions(n_rows, seed=seed)
    pipeline = _pipeline(seed)
    pipeline.fit(rows[list(FEATURES)], rows[LABEL])
    return FraudModel(pipeline, version=version, seed=seed)


def holdout_set(n: int = 5_000, *, seed: int = 0) -> pd.DataFrame:
    """A labelled held-out set, independent of the training rows of the model with ``seed``."""
    return generate_transactions(n, seed=1_000_003 + seed)


def default_cache_dir() -> Path:
    """``<lab data dir>/ml_service`` (``LAB_HOME``/data/ml_service)."""
    from lab_stack.settings import get_settings

    return get_settings().data_dir / "ml_service"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _manifest_problem(manifest_path: Path, model_path: Path, seed: int, version: str) -> str | None:
    """Why the cache cannot be trusted, or ``None`` when it can."""
    if not manifest_path.exists() or not model_path.exists():
        return "no cached model"
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as exc:
        return f"manifest unreadable: {exc}"
    expected = {
        "model_name": MODEL_NAME,
        "version": version,
        "seed": seed,
        "sklearn_version": sklearn.__version__,
        "features": list(FEATURES),
    }
    for key, value in expected.items():
        if manifest.get(key) != value:
            return f"manifest {key}={manifest.get(key)!r}, expected {value!r}"
    if manifest.get("sha256") != _sha256(model_path):
        return "sha256 of the model file does not match the manifest"
    return None


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_model(
    *,
    seed: int = 0,
    cache_dir: Path | str | None = None,
    version: str = MODEL_VERSION,
    retrain: bool = False,
) -> FraudModel:
    """The model for ``seed``: from this process's memory, else a verified cache, else trained.

    Args:
        seed: training seed.
        cache_dir: folder of the cache (default :func:`default_cache_dir`).
        version: model version recorded in the manifest and in every prediction.
        retrain: ignore any cache and train afresh.
    """
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = (str(folder.resolve()), seed, version)
    with _cache_lock:
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"{MODEL_NAME}-{version}-seed{seed}"
        model_path, manifest_path = folder / f"{stem}.joblib", folder / f"{stem}.json"
        # verified on every call (a small file): a cache corrupted since the last load is not trusted
        problem = (
            "retrain requested"
            if retrain
            else _manifest_problem(manifest_path, model_path, seed, version)
        )
        if problem is None and key in _loaded:
            return _loaded[key]
        model: FraudModel | None = None
        if problem is None:
            try:
                pipeline = joblib.load(model_path)
                model = FraudModel(pipeline, version=version, seed=seed)
            except Exception as exc:  # a verified file that still fails to load: retrain
                problem = f"cached model failed to load: {exc!r}"
        if model is None:
            _log.info("training model", reason=problem, path=str(model_path), seed=seed)
            model = train_model(seed=seed, version=version)
            tmp = folder / f".{stem}.joblib.tmp"
            joblib.dump(model.pipeline, tmp)
            os.replace(tmp, model_path)
            manifest = {
                "model_name": MODEL_NAME,
                "version": version,
                "seed": seed,
                "sklearn_version": sklearn.__version__,
                "features": list(FEATURES),
                "n_train": N_TRAIN,
                "sha256": _sha256(model_path),
            }
            _atomic_write(manifest_path, json.dumps(manifest, indent=2).encode())
        _loaded[key] = model
        return model
