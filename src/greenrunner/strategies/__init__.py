"""Selection strategies (bandit policies) and their registry."""

from greenrunner.strategies._base import Decision, Strategy
from greenrunner.strategies.registry import DEFAULT, create, describe, names, strategy_class

__all__ = ["DEFAULT", "Decision", "Strategy", "create", "describe", "names", "strategy_class"]
