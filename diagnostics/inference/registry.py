"""The models this project runs, by id."""

from __future__ import annotations

from functools import cache

from diagnostics.inference.albuminuria import AlbuminuriaKdigo2012
from diagnostics.inference.ascvd import AscvdPce2013
from diagnostics.inference.base import Model, ModelSpec
from diagnostics.inference.diabetes_progression import DiabetesProgression
from diagnostics.inference.egfr import EgfrCkdEpi2021
from diagnostics.inference.kfre import Kfre4Variable
from diagnostics.inference.news2 import WINDOW_MINUTES as NEWS2_WINDOW_MINUTES
from diagnostics.inference.news2 import News2
from diagnostics.inference.prevent import PreventBase2024

_settings: dict[str, int] = {"news2_window_minutes": NEWS2_WINDOW_MINUTES}


def configure(*, news2_window_minutes: int) -> None:
    """Set what a deployment may choose (the NEWS2 observation-set window); the models are built again."""
    _settings["news2_window_minutes"] = news2_window_minutes
    _models.cache_clear()


@cache
def _models() -> dict[str, Model]:
    # Built once per process: specs hash their sources, the learned model reads its artifact.
    models: list[Model] = [
        AscvdPce2013(),
        PreventBase2024(),
        EgfrCkdEpi2021(),
        AlbuminuriaKdigo2012(),
        Kfre4Variable(),
        News2(window_minutes=_settings["news2_window_minutes"]),
        DiabetesProgression(),
    ]
    return {model.spec.id: model for model in models}


def get_model(model_id: str) -> Model:
    """The model with this id; KeyError for an unknown one."""
    return _models()[model_id]


def list_models() -> list[ModelSpec]:
    """Every model's spec, in a stable order."""
    return [model.spec for model in _models().values()]
