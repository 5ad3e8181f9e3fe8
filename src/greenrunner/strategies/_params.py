"""Strategy parameters: declared once, with their type and range, checked in one place.

A strategy declares each parameter as a class attribute::

    class EpsilonGreedy(Strategy):
        epsilon: float = probability(0.1, help="...")
        batch: int | None = batch_param()

and takes no constructor of its own: :class:`~greenrunner.strategies._base.Strategy`
checks every keyword against these declarations (:func:`check`) and sets the checked
values on the instance. The registry, the CLI's ``--param``, the web API and the Python
API all reach the same check, so a value is refused the same way wherever it comes from:
a :class:`ConfigError` naming the strategy, the parameter, the rule and the value.

The rules are strict on purpose: bools are not numbers, text is not a number (the CLI
parses its ``name=value`` text into numbers before the check), NaN and infinities are
refused, integers are whole numbers (not 2.0), and every range is bounded, so no setting
can reach arithmetic that overflows mid-run.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from greenrunner.errors import ConfigError

# The largest round a strategy may ask for. Rounds are also capped by what the pool can
# absorb (``round_size``); this bound keeps the setting itself a sane number.
MAX_BATCH = 1_000_000


@dataclass(frozen=True)
class Param:
    """One parameter: ``kind`` (a real number or a whole number), its default and range.

    ``low``/``high`` bound the value, excluded when ``low_open``/``high_open``;
    ``optional`` lets None through (the strategy then chooses the value itself)."""

    kind: Literal["number", "integer"]
    default: float | int | None
    low: float
    high: float
    low_open: bool = False
    high_open: bool = False
    optional: bool = False
    help: str = ""
    name: str = ""  # set when the owning class is created

    def __set_name__(self, owner: type, name: str) -> None:
        object.__setattr__(self, "name", name)

    def rule(self) -> str:
        """The rule in words, e.g. ``a number in (0, 1)``."""
        if self.kind == "integer":
            text = f"an integer from {self.low:,.0f} to {self.high:,.0f}"
        else:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            text = f"a number in {left}{self.low:g}, {self.high:g}{right}"
        return text + (" (or None: chosen automatically)" if self.optional else "")

    def check(self, strategy: str, value: object) -> float | int | None:
        """``value`` converted to the parameter's type, or a ConfigError saying why not."""
        if value is None and self.optional:
            return None
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise self._refuse(strategy, value)
        if self.kind == "integer":
            if not isinstance(value, numbers.Integral):
                raise self._refuse(strategy, value)
            whole = int(value)
            if not self.low <= whole <= self.high:
                raise self._refuse(strategy, value)
            return whole
        try:
            x = float(value)
        except (OverflowError, ValueError, TypeError):  # an int past 1e308, an odd Real
            raise self._refuse(strategy, value) from None
        above = x > self.low if self.low_open else x >= self.low
        below = x < self.high if self.high_open else x <= self.high
        if not (math.isfinite(x) and above and below):
            raise self._refuse(strategy, value)
        return x

    def _refuse(self, strategy: str, value: object) -> ConfigError:
        return ConfigError(
            f"strategy {strategy}: {self.name} must be {self.rule()}; got {shown(value)}"
        )


def number(
    default: float,
    *,
    low: float,
    high: float,
    low_open: bool = False,
    high_open: bool = False,
    help: str = "",
) -> Any:
    """A real-number parameter (typed ``Any`` so ``x: float = number(...)`` type-checks,
    as ``dataclasses.field`` does)."""
    return Param("number", default, low, high, low_open, high_open, help=help)


def integer(
    default: int | None, *, low: int, high: int, optional: bool = False, help: str = ""
) -> Any:
    """A whole-number parameter; ``optional`` also accepts None."""
    return Param("integer", default, low, high, optional=optional, help=help)


def probability(default: float, *, help: str = "", low_open: bool = True) -> Any:
    """A number in (0, 1) (``low_open=False``: [0, 1))."""
    return number(default, low=0, high=1, low_open=low_open, high_open=True, help=help)


def batch_param() -> Any:
    """The pulls per round of the round-based bandits (None: about 100 rounds per run)."""
    return integer(
        None,
        low=1,
        high=MAX_BATCH,
        optional=True,
        help="pulls per round; by default a run takes about 100 rounds",
    )


def declared(cls: type) -> dict[str, Param]:
    """Every parameter a class declares, its bases' first, in declaration order."""
    found: dict[str, Param] = {}
    for klass in reversed(cls.__mro__):
        for key, value in vars(klass).items():
            if isinstance(value, Param):
                found[key] = value
    return found


def check(
    strategy: str, parameters: Mapping[str, Param], given: Mapping[str, object]
) -> dict[str, Any]:
    """The given parameters, each converted and range-checked; unknown names refused."""
    unknown = [key for key in given if key not in parameters]
    if unknown:
        named = ", ".join(shown(k) for k in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise ConfigError(
            f"strategy {strategy!r} has no parameter {named}; "
            f"it takes: {', '.join(parameters) or 'no parameters'}"
        )
    return {key: parameters[key].check(strategy, value) for key, value in given.items()}


def shown(value: object, limit: int = 80) -> str:
    """A value for a message: its repr, cut short; a huge integer by its size (Python
    refuses to print one of more than 4,300 digits)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        return f"an integer of {value.bit_length():,} bits"
    if isinstance(value, str | bytes) and len(value) > limit:
        return repr(value[:limit]) + f"... ({len(value):,} characters, cut short)"
    if isinstance(value, list | tuple | dict | set):
        return f"a {type(value).__name__} of {len(value):,} items"
    try:
        text = repr(value)
    except Exception:  # a hostile __repr__, or an object too large to print
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit] + "... (cut short)"
