"""Strategies by name: a new policy is one module plus one line in ``_MODULES``."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from greenrunner.errors import ConfigError
from greenrunner.strategies._base import Strategy
from greenrunner.strategies._params import check, shown

# name -> "module:Class"; imported lazily so listing strategies stays cheap.
_MODULES: dict[str, str] = {
    "epsilon_greedy": "greenrunner.strategies.epsilon_greedy:EpsilonGreedy",
    "ucb": "greenrunner.strategies.ucb:UCB",
    "thompson": "greenrunner.strategies.thompson:Thompson",
    "sequential_halving": "greenrunner.strategies.sequential_halving:SequentialHalving",
    "racing": "greenrunner.strategies.racing:Racing",
    "top_two_thompson": "greenrunner.strategies.top_two_thompson:TopTwoThompson",
    "prior_top_two": "greenrunner.strategies.prior_top_two:PriorTopTwo",
    "prior_halving": "greenrunner.strategies.prior_halving:PriorHalving",
    "uniform": "greenrunner.strategies.uniform:Uniform",
    "brute_force": "greenrunner.strategies.baselines:BruteForce",
    "benchmark": "greenrunner.strategies.baselines:Benchmark",
}

# The strategy our study (benchmarks/study_realistic.py) found best across budgets and data
# sets; see README "Which strategy is the default, and why".
DEFAULT = "prior_halving"


def names() -> list[str]:
    """Every registered strategy name, ``default`` first."""
    return ["default", *_MODULES]


def strategy_class(name: str) -> type[Strategy]:
    key = DEFAULT if name == "default" else name
    if key not in _MODULES:
        raise ConfigError(
            f"unknown strategy {name!r}; choose one of: {', '.join(names())} "
            "(`greenrunner strategies` describes them)"
        )
    module, _, cls = _MODULES[key].partition(":")
    found: type[Strategy] = getattr(importlib.import_module(module), cls)
    return found


def check_params(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The given parameters of strategy ``name``, each converted to its declared type and
    checked against its range (see ``_params``); ConfigError for an unknown strategy, an
    unknown parameter or a bad value. Every entry point checks through here or through
    the constructor, which runs the same check."""
    cls = strategy_class(name)
    if not isinstance(params, Mapping):
        raise ConfigError(f"strategy parameters must be name: value pairs; got {shown(params)}")
    return check(cls.name, cls.parameters, params)


def create(name: str, **params: Any) -> Strategy:
    """A fresh strategy instance; unknown parameters are refused with the accepted ones,
    bad values with the rule they break."""
    return strategy_class(name)(**check_params(name, params))


def describe() -> list[tuple[str, str]]:
    """(name, one-line summary) for every strategy."""
    rows = [("default", f"the study's best strategy, currently {DEFAULT}")]
    rows += [(n, strategy_class(n).summary) for n in _MODULES]
    return rows
