"""Budgets: fractions of brute force or absolute, in calls or MACs."""

from __future__ import annotations

import math

import pytest

from greenrunner.budget import Budget
from greenrunner.errors import ConfigError


def test_fraction_of_calls() -> None:
    b = Budget(0.2)
    assert b.unit == "calls"
    assert b.is_fraction
    assert b.limit(500, 1e12) == pytest.approx(100.0)


def test_full_fraction_is_brute_force() -> None:
    assert Budget(1.0).limit(500, 1e12) == pytest.approx(500.0)
    assert Budget(1).limit(500, 1e12) == pytest.approx(500.0)  # 1 means 100 %, not one call


def test_fraction_of_macs() -> None:
    assert Budget(0.1, "macs").limit(500, 4e12) == pytest.approx(4e11)


def test_absolute_calls() -> None:
    b = Budget(50)
    assert not b.is_fraction
    assert b.limit(500, 1e12) == 50
    assert Budget(50.0).limit(500, 1e12) == 50


def test_absolute_macs() -> None:
    assert Budget(3e9, "macs").limit(500, 1e12) == 3e9
    assert Budget(1.7, "macs").limit(500, 1e12) == 1.7  # a MAC count need not be whole


def test_non_integer_call_count_is_refused_with_the_value() -> None:
    with pytest.raises(ConfigError) as info:
        Budget(1.7)
    message = str(info.value)
    assert "got 1.7" in message
    assert "(0, 1]" in message


@pytest.mark.parametrize("value", [0, 0.0, -0.1, -5, math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("unit", ["calls", "macs"])
def test_out_of_range_budgets_are_refused(value: float, unit: str) -> None:
    with pytest.raises(ConfigError) as info:
        Budget(value, unit)  # type: ignore[arg-type]
    assert f"got {value!r}" in str(info.value)


@pytest.mark.parametrize("value", [True, "0.2", None])
def test_non_numeric_budgets_are_refused(value: object) -> None:
    with pytest.raises(ConfigError):
        Budget(value)  # type: ignore[arg-type]


def test_bad_unit_is_refused() -> None:
    with pytest.raises(ConfigError, match="'seconds'"):
        Budget(0.2, "seconds")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="'joules'"):
        Budget.parse("0.2", "joules")


@pytest.mark.parametrize(
    ("text", "unit", "value"),
    [
        ("0.2", "calls", 0.2),
        ("20%", "calls", 0.2),
        (" 5% ", "calls", 0.05),
        ("100%", "calls", 1.0),
        ("5000", "calls", 5000.0),
        ("1e12", "macs", 1e12),
        ("0.1", "macs", 0.1),
    ],
)
def test_parse(text: str, unit: str, value: float) -> None:
    b = Budget.parse(text, unit)
    assert b.value == pytest.approx(value)
    assert b.unit == unit


def test_parse_percent_is_exactly_the_fraction() -> None:
    assert Budget.parse("20%").value == 0.2
    assert Budget.parse("20%") == Budget(0.2)


@pytest.mark.parametrize("text", ["", "abc", "%", "twenty", "0.2x", "1,5"])
def test_parse_garbage_is_refused_with_the_text(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        Budget.parse(text)
    assert repr(text) in str(info.value)


@pytest.mark.parametrize("text", ["1.7", "0", "-0.2", "nan", "inf"])
def test_parse_refuses_invalid_numbers(text: str) -> None:
    with pytest.raises(ConfigError, match="got"):
        Budget.parse(text)


def test_as_dict() -> None:
    assert Budget(0.2, "macs").as_dict() == {"value": 0.2, "unit": "macs"}


def test_budget_is_immutable() -> None:
    b = Budget(0.2)
    with pytest.raises(AttributeError):
        b.value = 0.5  # type: ignore[misc]


def test_percent_above_100_is_refused() -> None:
    with pytest.raises(ConfigError, match="200%"):
        Budget.parse("200%")
