"""Training the learned model: diabetes disease progression, reproducibly, into a JSON artifact.

The data: the diabetes data set shipped inside scikit-learn,
`load_diabetes(scaled=False)` (Efron, Hastie, Johnstone, Tibshirani. Least
Angle Regression. Annals of Statistics 2004;32:407-499): 442 patients, ten
baseline variables and a quantitative measure of disease progression one year
later. The model: ridge regression with a fixed alpha on standardized features,
so a prediction is exactly the training mean plus one additive term per
feature, coef x (x - mean) / scale: the per-feature contributions.

Reproducible: no randomness but the fold shuffle, whose seed is fixed; every
number is written with 12 significant digits so the last bits of one BLAS or
another cannot change the bytes; the JSON is canonical (sorted keys). The same
pinned libraries give the same bytes and so the same sha256, which versions the
artifact. scikit-learn is imported only here, by the training command and its
test: predicting needs nothing but the artifact and plain arithmetic.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

MODEL_ID = "diabetes-progression"
ARTIFACT_NAME = "diabetes-progression.json"
ARTIFACT_FORMAT = 1
ALPHA = 1.0
SEED = 0
FOLDS = 5
SIGNIFICANT_DIGITS = 12
REFERENCE = "Efron B, Hastie T, Johnstone I, Tibshirani R. Least Angle Regression. Ann Stat 2004;32:407-499"

# Data set column -> (input name, unit as the model reads it, FHIR source).
FEATURES: tuple[tuple[str, str, str, str], ...] = (
    ("age", "age", "years", "Patient.birthDate, age at the score date"),
    ("sex", "sex", "1 = female, 2 = male", "Patient.gender"),
    ("bmi", "bmi", "kg/m2", "LOINC 39156-5"),
    (
        "bp",
        "mean_arterial_pressure",
        "mm Hg",
        "(systolic 8480-6 + 2 x diastolic 8462-4) / 3 of one panel 85354-9/55284-4",
    ),
    ("s1", "total_cholesterol", "mg/dL", "LOINC 2093-3"),
    ("s2", "ldl", "mg/dL", "LOINC 18262-6 (direct) or 13457-7 (calculated)"),
    ("s3", "hdl", "mg/dL", "LOINC 2085-9"),
    ("s4", "tc_hdl_ratio", "ratio", "total cholesterol / HDL, of the values above"),
    ("s5", "log_triglycerides", "ln(mg/dL)", "natural log of LOINC 2571-8 in mg/dL"),
    ("s6", "glucose", "mg/dL", "LOINC 2339-0 or 2345-7"),
)


def _round(value: float) -> float:
    return float(f"{float(value):.{SIGNIFICANT_DIGITS}g}")


def diabetes_artifact_build(*, alpha: float = ALPHA, seed: int = SEED, folds: int = FOLDS) -> dict[str, Any]:
    """Train the ridge model on the whole data set and cross-validate it; return the artifact as a dict."""
    import numpy as np
    import sklearn
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import KFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = load_diabetes(scaled=False)
    x, y = np.asarray(data.data, dtype=float), np.asarray(data.target, dtype=float)
    columns = list(data.feature_names)
    if columns != [column for column, *_ in FEATURES]:
        raise ValueError(f"the data set's columns changed: {columns}")
    pipeline = make_pipeline(StandardScaler(), Ridge(alpha=alpha))
    scores = cross_val_score(pipeline, x, y, cv=KFold(n_splits=folds, shuffle=True, random_state=seed), scoring="r2")
    pipeline.fit(x, y)
    scaler, ridge = pipeline[0], pipeline[1]
    return {
        "model": MODEL_ID,
        "format": ARTIFACT_FORMAT,
        "dataset": {
            "source": "sklearn.datasets.load_diabetes(scaled=False)",
            "reference": REFERENCE,
            "rows": int(x.shape[0]),
            "target": "quantitative measure of disease progression one year after baseline",
            "target_min": _round(y.min()),
            "target_max": _round(y.max()),
            "target_mean": _round(y.mean()),
        },
        "estimator": {
            "kind": "ridge regression on standardized features",
            "alpha": alpha,
            "library": f"scikit-learn {sklearn.__version__}",
        },
        "cross_validation": {
            "folds": folds,
            "shuffle_seed": seed,
            "scoring": "r2",
            "r2_per_fold": [_round(s) for s in scores],
            "r2_mean": _round(scores.mean()),
            "r2_std": _round(scores.std()),
        },
        "intercept": _round(ridge.intercept_),
        "features": [
            {
                "column": column,
                "name": name,
                "unit": unit,
                "fhir": source,
                "mean": _round(mean),
                "scale": _round(scale),
                "coef": _round(coef),
                "min": _round(low),
                "max": _round(high),
            }
            for (column, name, unit, source), mean, scale, coef, low, high in zip(
                FEATURES, scaler.mean_, scaler.scale_, ridge.coef_, x.min(axis=0), x.max(axis=0), strict=True
            )
        ],
    }


def artifact_bytes(artifact: dict[str, Any]) -> bytes:
    """The canonical bytes of an artifact: sorted keys, two-space indent, one trailing newline."""
    return (json.dumps(artifact, sort_keys=True, indent=2, ensure_ascii=True) + "\n").encode()


def artifact_sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()
