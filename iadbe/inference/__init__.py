"""Loading stored models and predicting: ``load_model(ref).predict(images)``."""

from iadbe.inference.loading import CACHE, load_model, resolve_model_dir
from iadbe.inference.predictor import LoadedModel, Prediction

__all__ = ["CACHE", "LoadedModel", "Prediction", "load_model", "resolve_model_dir"]
