"""Inference back-ends: each loads one model format, predicts batches, measures the model."""

from greenrunner.adapters.base import Adapter, Measurements, ModelSpec, load_adapter

__all__ = ["Adapter", "Measurements", "ModelSpec", "load_adapter"]
