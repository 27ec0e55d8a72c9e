"""Specification of the drift datasets: reproducible, and their known answers agree with a
two-sample test paired with an effect size, including the hard cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from ml_service.data import FEATURES
from ml_service.drift_data import DriftDataset, hard_cases, reference_and_current


def _test(ref: pd.Series, cur: pd.Series, categorical: bool) -> tuple[float, float]:
    """(p-value, effect size): KS + normalised Wasserstein, or chi-squared + Jensen-Shannon."""
    ref, cur = ref.dropna(), cur.dropna()
    if not categorical:
        return stats.ks_2samp(ref, cur).pvalue, stats.wasserstein_distance(ref, cur) / float(
            np.std(ref)
        )
    cats = sorted(set(ref) | set(cur))
    r = ref.value_counts().reindex(cats, fill_value=0)
    c = cur.value_counts().reindex(cats, fill_value=0)
    return stats.chi2_contingency(np.vstack([r, c]))[1], float(
        jensenshannon(r / r.sum(), c / c.sum())
    )


def _decisions(ds: DriftDataset) -> dict[str, bool]:
    out = {}
    for feature, truth in ds.truth.items():
        p, effect = _test(ds.reference[feature], ds.current[feature], truth.kind == "categorical")
        out[feature] = p < 0.01 and effect > 0.1
    return out


@pytest.fixture(scope="module")
def cases() -> dict[str, DriftDataset]:
    return hard_cases(seed=123)


def test_same_seed_same_frames() -> None:
    """The same seed and shifts give identical frames; another seed gives different ones."""
    a = reference_and_current(seed=8, shifts={"amount": "small"}, n_reference=300, n_current=300)
    b = reference_and_current(seed=8, shifts={"amount": "small"}, n_reference=300, n_current=300)
    c = reference_and_current(seed=9, shifts={"amount": "small"}, n_reference=300, n_current=300)
    assert a.reference.equals(b.reference) and a.current.equals(b.current)
    assert not a.current.equals(c.current)


@pytest.mark.parametrize("seed", [0, 77, 4242])
@pytest.mark.parametrize("size", ["small", "large"])
def test_every_feature_small_and_large_shift_is_detected(seed: int, size: str) -> None:
    """Small and large shifts of every numeric and categorical feature are drift by test + effect."""
    ds = reference_and_current(
        seed=seed, shifts={f: size for f in FEATURES}, n_reference=3000, n_current=3000
    )
    assert ds.drifted_features == sorted(FEATURES)
    assert all(_decisions(ds).values()), _decisions(ds)


def test_hard_cases_answers_agree_with_test_plus_effect_size(
    cases: dict[str, DriftDataset],
) -> None:
    """Each hard case's known answer equals a p-value + effect-size decision, feature by feature."""
    for name, ds in cases.items():
        truth = {f: t.drifted for f, t in ds.truth.items()}
        assert _decisions(ds) == truth, name


def test_negligible_shift_on_large_sample_is_significant_but_not_drift(
    cases: dict[str, DriftDataset],
) -> None:
    """The negligible case fools a p-value-only rule: significant p, tiny effect, no drift."""
    ds = cases["negligible_large_sample"]
    assert len(ds.reference) == 200_000 and ds.drifted_features == []
    p, effect = _test(
        ds.reference["distance_from_home_km"], ds.current["distance_from_home_km"], False
    )
    assert p < 0.01 and effect < 0.05
    assert not ds.dataset_drifted()


def test_new_category_only_in_current(cases: dict[str, DriftDataset]) -> None:
    """crypto_exchange appears in current only, and merchant_category is the one drifted feature."""
    ds = cases["new_category"]
    assert "crypto_exchange" not in set(ds.reference["merchant_category"])
    share = (ds.current["merchant_category"] == "crypto_exchange").mean()
    assert 0.12 < share < 0.18
    assert ds.drifted_features == ["merchant_category"]
    assert ds.truth["merchant_category"].new_category == "crypto_exchange"


def test_missing_values_present_and_not_drift_by_themselves(cases: dict[str, DriftDataset]) -> None:
    """Missing values appear at the chosen rates; only the shifted feature is drift."""
    ds = cases["missing_values"]
    assert 0.07 < ds.reference["distance_from_home_km"].isna().mean() < 0.13
    assert 0.07 < ds.current["channel"].isna().mean() < 0.13
    assert 0.16 < ds.current["amount"].isna().mean() < 0.24
    assert ds.drifted_features == ["amount"]


def test_dataset_level_answer() -> None:
    """The dataset drifts when at least half of the features did (mixed: yes, clean: no)."""
    cases = hard_cases(seed=1, large_n=2000)
    assert cases["mixed"].dataset_drifted() and not cases["clean"].dataset_drifted()


def test_extra_columns_and_bad_arguments() -> None:
    """extra_numeric adds x_NN columns (20 in all); unknown features or sizes raise with a hint."""
    ds = reference_and_current(
        seed=0, extra_numeric=11, n_reference=100, n_current=100, shifts={"x_03": "large"}
    )
    assert len(ds.features) == 20 and ds.drifted_features == ["x_03"]
    with pytest.raises(ValueError, match=r"unknown feature 'salary'.*Hint"):
        reference_and_current(shifts={"salary": "large"})
    with pytest.raises(ValueError, match="unknown shift 'huge'"):
        reference_and_current(shifts={"amount": "huge"})
