"""How much evaluation a selection may spend: calls or MACs, absolute or a fraction."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Literal

import numpy as np

from greenrunner.errors import ConfigError

BudgetUnit = Literal["calls", "macs"]
UNITS: tuple[BudgetUnit, ...] = ("calls", "macs")


@dataclass(frozen=True)
class Budget:
    """A value in (0, 1] is a fraction of brute force; a larger one is absolute.

    In ``calls`` one call is one model on one sample (the paper's unit); in ``macs`` each
    call costs the model's MACs per sample, so cheap models are cheap to evaluate.
    """

    value: float
    unit: BudgetUnit = "calls"

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise ConfigError(f"budget unit must be one of {', '.join(UNITS)}; got {self.unit!r}")
        v = self.value
        rule = (
            "budget must be in (0, 1] as a fraction of brute force, or an integer number of calls"
            if self.unit == "calls"
            else "budget must be in (0, 1] as a fraction of brute force, or a MAC count above 1"
        )
        if isinstance(v, str):
            raise ConfigError(f"{rule}; got the text {v!r} (Budget.parse reads text)")
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v <= 0:
            raise ConfigError(f"{rule}; got {v!r}")
        if self.unit == "calls" and v > 1 and v != int(v):
            raise ConfigError(f"{rule}; got {v!r}")

    @classmethod
    def parse(cls, text: str, unit: str = "calls") -> Budget:
        """Read ``0.2``, ``20%``, ``5000`` or ``1e12``."""
        raw = text.strip()
        try:
            value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
            if raw.endswith("%") and not 0 < value <= 1:
                raise ConfigError(f"a budget in percent must be in (0%, 100%]; got {text!r}")
        except ValueError:
            raise ConfigError(
                f"budget must be a number such as 0.2 (a fraction of brute force), 20% or 5000; "
                f"got {text!r}"
            ) from None
        if unit not in UNITS:
            raise ConfigError(f"budget unit must be one of {', '.join(UNITS)}; got {unit!r}")
        return cls(value, unit)  # checked above

    @classmethod
    def coerce(cls, value: Budget | float | str) -> Budget:
        """What the Python API accepts as a budget: a Budget; a number, as ``Budget(value)``
        (calls); or text, as :meth:`parse` reads it (``"0.2"``, ``"20%"``, ``"5000"``).
        Anything else is a ConfigError saying these three forms."""
        if isinstance(value, Budget):
            return value
        if isinstance(value, str):
            return cls.parse(value)
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            return cls(float(value) if isinstance(value, float | np.floating) else int(value))
        raise ConfigError(
            "budget must be a Budget (e.g. Budget(0.1, 'macs')), a number (0.1: a tenth of "
            f"brute force's calls; 5000: calls) or text such as '20%'; got {value!r}"
        )

    @property
    def is_fraction(self) -> bool:
        return self.value <= 1

    def limit(self, brute_force_calls: int, brute_force_macs: float) -> float:
        """The budget in its unit: calls, or MACs."""
        total = brute_force_calls if self.unit == "calls" else brute_force_macs
        return self.value * total if self.is_fraction else self.value

    def as_dict(self) -> dict[str, float | str]:
        return {"value": self.value, "unit": self.unit}
