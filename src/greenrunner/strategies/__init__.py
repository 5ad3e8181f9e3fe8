"""Selection strategies (bandit policies) and their registry."""

from greenrunner.strategies._base import Decision, Strategy
from greenrunner.strategies._params import Param
from greenrunner.strategies.registry import (
    DEFAULT,
    check_params,
    create,
    describe,
    names,
    strategy_class,
)

__all__ = [
    "DEFAULT",
    "Decision",
    "Param",
    "Strategy",
    "check_params",
    "create",
    "describe",
    "names",
    "strategy_class",
]
