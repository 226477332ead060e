"""`manage.py train_models`: retrain the learned model reproducibly and write its versioned artifact."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from diagnostics.inference import training

ARTIFACT_PATH = Path(__file__).resolve().parents[2] / "inference" / "artifacts" / training.ARTIFACT_NAME


class Command(BaseCommand):
    help = (
        "Train the diabetes progression model on scikit-learn's diabetes data set (fixed seed), report its "
        "5-fold cross-validated R2 and write diagnostics/inference/artifacts/diabetes-progression.json, "
        "versioned by its sha256. --check compares with the committed artifact instead of writing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--check", action="store_true", help="fail unless retraining reproduces the committed artifact"
        )
        parser.add_argument("--output", type=Path, default=ARTIFACT_PATH, help="where to write the artifact")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            artifact = training.diabetes_artifact_build()
        except ImportError as missing:
            raise CommandError(f"training needs scikit-learn (pip install -r requirements.txt): {missing}") from None
        content = training.artifact_bytes(artifact)
        digest = training.artifact_sha256(content)
        cv = artifact["cross_validation"]
        folds = ", ".join(f"{score:.3f}" for score in cv["r2_per_fold"])
        self.stdout.write(
            f"{artifact['model']}: ridge alpha={artifact['estimator']['alpha']} on {artifact['dataset']['rows']} rows; "
            f"{cv['folds']}-fold CV R2 {cv['r2_mean']:.3f} +/- {cv['r2_std']:.3f} (folds: {folds})"
        )
        path: Path = options["output"]
        if options["check"]:
            committed = path.read_bytes() if path.exists() else b""
            if committed != content:
                raise CommandError(
                    f"retraining gives sha256 {digest}, the artifact at {path} has "
                    f"{training.artifact_sha256(committed) if committed else 'none'}"
                )
            self.stdout.write(f"reproduced {path.name}: sha256 {digest}")
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(content)
        tmp.replace(path)  # never a half-written artifact
        self.stdout.write(f"wrote {path}: sha256 {digest}")
