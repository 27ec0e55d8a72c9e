"""Specification of the fraud model: deterministic training, a trustworthy cache, useful accuracy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from structlog.testing import capture_logs

from ml_service.data import FEATURES, generate_transactions, user_profile
from ml_service.model import (
    MODEL_NAME,
    MODEL_VERSION,
    FraudModel,
    holdout_set,
    load_model,
    train_model,
)


def test_same_seed_gives_same_coefficients() -> None:
    """Training twice with the same seed gives identical coefficients; another seed does not."""
    a, b, c = train_model(seed=3), train_model(seed=3), train_model(seed=4)
    np.testing.assert_array_equal(a.coefficients(), b.coefficients())
    assert not np.allclose(a.coefficients(), c.coefficients())


def test_generated_data_is_deterministic() -> None:
    """Transactions and user profiles are pure functions of their seed."""
    assert generate_transactions(50, seed=9).equals(generate_transactions(50, seed=9))
    assert user_profile("user-00001", seed=2) == user_profile("user-00001", seed=2)
    assert user_profile("user-00001", seed=2) != user_profile("user-00002", seed=2)


def test_fast_path_matches_sklearn(model: FraudModel) -> None:
    """predict_one gives the pipeline's own predict_proba, including for missing and unseen values."""
    rows = holdout_set(200)
    records = rows[list(FEATURES)].to_dict("records")
    records[0]["avg_amount_30d"] = None
    records[1]["merchant_category"] = "never_seen_before"
    frame = rows[list(FEATURES)].copy()
    frame.loc[frame.index[0], "avg_amount_30d"] = np.nan
    frame.loc[frame.index[1], "merchant_category"] = "never_seen_before"
    expected = model.predict_proba(frame)
    got = np.array([model.predict_one(r).probability for r in records])
    np.testing.assert_allclose(got, expected, atol=1e-12)


def test_model_is_useful_and_concept_shift_hurts_it(model: FraudModel) -> None:
    """Held-out accuracy beats always-legit; under the shifted concept it drops by over 0.3."""
    holdout = holdout_set(4000)
    accuracy = model.accuracy(holdout)
    assert accuracy > 1 - holdout["is_fraud"].mean() + 0.02
    shifted = generate_transactions(4000, seed=5, concept="shifted")
    assert accuracy - model.accuracy(shifted) > 0.3


def test_prediction_carries_name_version_confidence(model: FraudModel) -> None:
    """A prediction has a probability in [0, 1], confidence max(p, 1-p), model name and version."""
    p = model.predict_one(holdout_set(1).iloc[0].to_dict())
    assert 0.0 <= p.probability <= 1.0
    assert p.confidence == max(p.probability, 1 - p.probability)
    assert (p.model_name, p.model_version) == (MODEL_NAME, MODEL_VERSION)


def _files(folder: Path) -> tuple[Path, Path]:
    stem = f"{MODEL_NAME}-{MODEL_VERSION}-seed7"
    return folder / f"{stem}.joblib", folder / f"{stem}.json"


def test_cache_is_written_with_manifest_and_reused(tmp_path: Path) -> None:
    """The first load trains and writes joblib + manifest; the next load reuses them."""
    with capture_logs() as logs:
        first = load_model(seed=7, cache_dir=tmp_path)
        second = load_model(seed=7, cache_dir=tmp_path)
    assert [e["event"] for e in logs] == ["training model"]
    model_path, manifest_path = _files(tmp_path)
    manifest = json.loads(manifest_path.read_text())
    assert manifest["seed"] == 7 and manifest["features"] == list(FEATURES)
    assert len(manifest["sha256"]) == 64 and model_path.exists()
    np.testing.assert_array_equal(first.coefficients(), second.coefficients())


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        ("model_bytes", "sha256"),
        ("manifest_json", "unreadable"),
        ("sklearn_version", "sklearn_version"),
        ("manifest_missing", "no cached model"),
    ],
)
def test_damaged_cache_is_retrained_not_trusted(tmp_path: Path, damage: str, reason: str) -> None:
    """A corrupted model file or a wrong/unreadable/missing manifest makes the model retrain."""
    reference = load_model(seed=7, cache_dir=tmp_path)
    model_path, manifest_path = _files(tmp_path)
    if damage == "model_bytes":
        model_path.write_bytes(b"not a pickle" + model_path.read_bytes()[12:])
    elif damage == "manifest_json":
        manifest_path.write_text("{broken")
    elif damage == "sklearn_version":
        manifest = json.loads(manifest_path.read_text())
        manifest["sklearn_version"] = "0.0.1"
        manifest_path.write_text(json.dumps(manifest))
    else:
        manifest_path.unlink()
    with capture_logs() as logs:
        again = load_model(seed=7, cache_dir=tmp_path)
    assert logs and logs[0]["event"] == "training model" and reason in logs[0]["reason"]
    np.testing.assert_array_equal(again.coefficients(), reference.coefficients())
    with capture_logs() as logs:
        load_model(seed=7, cache_dir=tmp_path)
    assert logs == []  # the rewritten cache is trusted again
