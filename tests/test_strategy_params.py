"""Strategy parameters are declared with a type and a range in one place and checked there
for every entry point: the registry, the strategy classes, the Python API, the CLI's
``--param`` and the web API. The contract tests run over every registered strategy, so a
new strategy is covered the day it is registered."""

from __future__ import annotations

import json
import math
import types
import typing
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from greenrunner.api import select
from greenrunner.errors import ConfigError
from greenrunner.reward import Weights
from greenrunner.strategies import Param, Strategy, check_params, create, names, strategy_class
from greenrunner.strategies._params import MAX_BATCH
from tests._helpers import Replay
from tests.cli_helpers import greenrunner

ALL = names()
# (strategy name, parameter name) for every declared parameter of every strategy.
DECLARED = [(n, p) for n in ALL for p in strategy_class(n).parameters]


def _bad_values(p: Param) -> list[object]:
    """Values of the wrong type, not finite, or just outside the declared range."""
    out: list[object] = [True, False, "x", "0.5", "", [], [0.5], {}, {"v": 1}, b"1", object()]
    out += [math.nan, math.inf, -math.inf, 10**30, -(10**30), 10**400, -(10**400)]
    out += [np.nan, np.float64("inf"), np.bool_(True), complex(0.5, 0)]
    if not p.optional:
        out.append(None)
    if p.kind == "integer":
        out += [p.low - 1, p.high + 1, p.low + 0.5, float(p.low), np.float64(p.low)]
    else:
        span = p.high - p.low
        out += [p.low - span / 10, p.high + span / 10, 1e308, -1e308]
        if p.low_open:
            out += [p.low, np.float32(p.low)]
        if p.high_open:
            out.append(p.high)
    return out


def _good_values(p: Param) -> list[object]:
    if p.kind == "integer":
        out: list[object] = [int(p.low), int(p.high), np.int64(p.low), int((p.low + p.high) // 2)]
    else:
        mid = (p.low + p.high) / 2
        out = [mid, np.float64(mid), Fraction(mid).limit_denominator(1000)]
        if not p.low_open:
            out.append(p.low)
        if not p.high_open:
            out.append(p.high)
        if float(int(mid)) == int(mid) and (p.low < int(mid) < p.high):
            out.append(int(mid))  # an int is a number
    if p.optional:
        out.append(None)
    return out


@pytest.mark.parametrize("name", ALL)
def test_every_strategy_declares_its_parameters_and_has_no_constructor_of_its_own(
    name: str,
) -> None:
    cls = strategy_class(name)
    # Every class between the strategy and the base takes its settings from declarations:
    # a constructor of its own could accept values no declaration checks.
    for klass in cls.__mro__:
        if klass is Strategy:
            break
        assert "__init__" not in vars(klass), f"{klass.__name__} defines __init__"
    hints = typing.get_type_hints(cls)
    made = create(name)
    assert list(made.params()) == list(cls.parameters)
    for key, p in cls.parameters.items():
        assert p.name == key
        assert not hasattr(Strategy, key), f"{key} shadows a Strategy attribute"
        assert p.low < p.high and math.isfinite(p.low) and math.isfinite(p.high)
        expected: object = {"number": float, "integer": int}[p.kind]
        if p.optional:
            expected = expected | None  # type: ignore[operator]
        hint = hints[key]
        assert hint == expected or (
            isinstance(hint, types.UnionType)
            and set(typing.get_args(hint)) == set(typing.get_args(expected))
        ), f"{name}.{key}: annotated {hint}, declared {p.kind}"
        # The default obeys the declaration, and is what a fresh instance holds.
        assert p.check(name, p.default) == p.default
        assert made.params()[key] == p.default


@pytest.mark.parametrize(("name", "key"), DECLARED)
def test_each_parameter_refuses_wrong_types_and_values_out_of_range(name: str, key: str) -> None:
    cls = strategy_class(name)
    p = cls.parameters[key]
    for value in _bad_values(p):
        for make in (
            lambda v: create(name, **{key: v}),
            lambda v: cls(**{key: v}),
            lambda v: check_params(name, {key: v}),
        ):
            with pytest.raises(ConfigError) as info:
                make(value)
            message = str(info.value)
            assert cls.name in message and key in message, message
            assert "must be" in message and "\n" not in message, message
            assert len(message) < 400, message


@pytest.mark.parametrize(("name", "key"), DECLARED)
def test_each_parameter_accepts_its_range_and_records_the_converted_value(
    name: str, key: str
) -> None:
    p = strategy_class(name).parameters[key]
    for value in _good_values(p):
        made = create(name, **{key: value})
        stored = made.params()[key]
        if value is None:
            assert stored is None
            continue
        assert type(stored) is {"number": float, "integer": int}[p.kind]
        assert stored == pytest.approx(float(value))  # type: ignore[arg-type]
        json.dumps(made.params(), allow_nan=False)  # storable as it is


def test_the_red_team_values_are_refused_by_name() -> None:
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("epsilon_greedy", {"epsilon": "x"}, "epsilon must be a number in (0, 1); got 'x'"),
        ("racing", {"delta": "x"}, "delta must be a number in (0, 1); got 'x'"),
        ("racing", {"tolerance": 10**30}, "tolerance must be a number in [0, 1)"),
        ("racing", {"growth": 1e308}, "growth must be a number in (1, 100]"),
        ("top_two_thompson", {"beta": 10**30}, "beta must be a number in (0, 1)"),
        ("ucb", {"exploration": True}, "exploration must be a number"),
        ("ucb", {"batch": 10**30}, f"batch must be an integer from 1 to {MAX_BATCH:,}"),
        ("thompson", {"batch": 10**5000}, "an integer of 16,610 bits"),
    ]
    for name, params, words in cases:
        with pytest.raises(ConfigError) as info:
            create(name, **params)
        assert f"strategy {name}: " in str(info.value)
        assert words in str(info.value)


def test_the_python_api_checks_them_before_any_evaluation(small_replay: Replay) -> None:
    calls: list[object] = []

    class Counting:
        n_samples = small_replay.evaluator().n_samples

        def evaluate(self, candidate: object, ids: object) -> object:
            calls.append(candidate)
            return small_replay.evaluator().evaluate(candidate, ids)  # type: ignore[arg-type]

    for params in ({"delta": "0.1"}, {"growth": math.inf}, {"tolerance": True}):
        with pytest.raises(ConfigError, match="strategy racing: "):
            select(
                small_replay.candidates,
                Counting(),  # type: ignore[arg-type]
                Weights.parse("accuracy=1"),
                strategy="racing",
                **params,
            )
    assert calls == []
    # Good values are converted once and recorded as the run used them.
    result = select(
        small_replay.candidates,
        small_replay.evaluator(),
        Weights.parse("accuracy=1"),
        strategy="racing",
        growth=2,
        delta=np.float64(0.1),
    )
    assert result.strategy_params == {"delta": 0.1, "growth": 2.0, "tolerance": 0.0}
    assert type(result.strategy_params["growth"]) is float


def test_a_subclass_inherits_and_extends_the_declarations() -> None:
    from greenrunner.strategies._params import number
    from greenrunner.strategies.racing import Racing

    class Wider(Racing):
        name = "wider"
        slack: float = number(0.5, low=0, high=1)

    assert list(Wider.parameters) == ["delta", "growth", "tolerance", "slack"]
    assert Wider(slack=0.25, delta=0.1).params()["slack"] == 0.25
    with pytest.raises(ConfigError, match="strategy wider: slack must be a number in"):
        Wider(slack="a lot")
    with pytest.raises(ConfigError, match="strategy wider: delta"):
        Wider(delta=2)
    assert "slack" not in Racing.parameters


# --- the web API ---------------------------------------------------------------------------
pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402

from greenrunner.web.app import create_app  # noqa: E402
from greenrunner.web.settings import WebSettings  # noqa: E402

USE_CASE = "Recommend a model for detecting objects deployed on a drone"
# What the red team sent (500, a reset connection, or a run failing with OverflowError).
WEB_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("epsilon_greedy", {"epsilon": "x"}, "epsilon"),
    ("racing", {"delta": "x"}, "delta"),
    ("racing", {"tolerance": "x"}, "tolerance"),
    ("top_two_thompson", {"beta": "x"}, "beta"),
    ("racing", {"delta": 10**30}, "delta"),
    ("racing", {"tolerance": 10**30}, "tolerance"),
    ("top_two_thompson", {"beta": 10**30}, "beta"),
    ("ucb", {"exploration": True}, "exploration"),
    ("ucb", {"batch": 10**30}, "batch"),
    ("racing", {"growth": 1e308}, "growth"),
    ("epsilon_greedy", {"epsilon": "0.2"}, "epsilon"),
    ("epsilon_greedy", {"batch": 2.5}, "batch"),
    ("epsilon_greedy", {"batch": False}, "batch"),
    ("racing", {"delta": None}, "delta"),
]


def _body(strategy: str, params: dict[str, Any]) -> dict[str, Any]:
    return {
        "repository": "objectnet-sim",
        "use_case": USE_CASE,
        "budget": 0.05,
        "strategy": strategy,
        "params": params,
    }


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = WebSettings(data_dir=tmp_path_factory.mktemp("web"), progress_interval=0.0)
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as c:
        yield c


@pytest.mark.parametrize(("strategy", "params", "key"), WEB_CASES)
def test_the_web_api_refuses_bad_parameters_with_a_400_naming_them(
    client: TestClient, strategy: str, params: dict[str, Any], key: str
) -> None:
    r = client.post("/api/experiments", json=_body(strategy, params))
    assert r.status_code == 400, r.text
    detail = r.json()["detail"]
    assert detail.startswith(f"strategy {strategy}: {key} must be "), detail
    assert client.get("/api/experiments").json()["total"] == 0  # nothing was stored


def test_the_web_api_stores_the_checked_values(client: TestClient) -> None:
    r = client.post("/api/experiments", json=_body("racing", {"growth": 2, "delta": 0.1}))
    assert r.status_code == 201, r.text
    assert r.json()["params"] == {"growth": 2.0, "delta": 0.1}
    r = client.post("/api/experiments", json=_body("ucb", {"batch": None, "exploration": 1}))
    assert r.status_code == 201, r.text
    assert r.json()["params"] == {"batch": None, "exploration": 1.0}


def test_a_real_server_answers_bad_parameters_with_a_400(tmp_path: Path) -> None:
    from tests.live_server import LiveServer

    server = LiveServer(tmp_path)
    try:
        for strategy, params, key in WEB_CASES[:10]:
            # Raw JSON, as the red team sent it: 10**30 is an integer literal on the wire.
            body = json.dumps(_body(strategy, params)).encode()
            reply = server.request(
                "POST", "/api/experiments", body, {"Content-Type": "application/json"}
            )
            assert reply.status == 400, reply.text
            assert json.loads(reply.text)["detail"].startswith(f"strategy {strategy}: {key} ")
        # The server is still up and stored none of them.
        listed = server.request("GET", "/api/experiments")
        assert listed.status == 200 and json.loads(listed.text)["total"] == 0
    finally:
        server.stop()


# --- the CLI ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("strategy", "pair", "words"),
    [
        ("racing", "delta=x", "strategy racing: delta must be a number in (0, 1); got 'x'"),
        ("racing", "growth=1e308", "strategy racing: growth must be a number in (1, 100]"),
        ("racing", "delta=nan", "got nan"),
        ("ucb", "exploration=inf", "strategy ucb: exploration must be"),
        ("ucb", "batch=1e30", "strategy ucb: batch must be an integer"),
        ("ucb", "batch=100000000000000000000000000000", "batch must be an integer from 1"),
        ("epsilon_greedy", "epsilon=true", "got 'true'"),
    ],
)
def test_the_cli_refuses_bad_parameters_in_one_line(strategy: str, pair: str, words: str) -> None:
    done = greenrunner(
        "select", "--replay", "objectnet-sim", "--strategy", strategy, "--param", pair
    )
    assert done.returncode == 2, done.stderr
    assert words in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_the_cli_records_good_parameters(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    done = greenrunner(
        "select", "--replay", "objectnet-sim", "--strategy", "racing",
        "--param", "growth=2", "--param", "delta=0.1", "--json", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text())["strategy_params"] == {
        "delta": 0.1,
        "growth": 2.0,
        "tolerance": 0.0,
    }
