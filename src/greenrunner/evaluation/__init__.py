"""Evaluators run one model on some target samples and say which it got right."""

from greenrunner.evaluation.base import EvaluationError, Evaluator
from greenrunner.evaluation.replay import ReplayEvaluator

__all__ = ["EvaluationError", "Evaluator", "ReplayEvaluator"]
