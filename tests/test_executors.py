"""Executors: in-process and Ray give the same result for the same seed.

The Ray tests share one local Ray instance per test session (it takes seconds to start);
they are marked slow and still run in CI, where the ``ray`` extra is installed.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from greenrunner.api import open_real, select
from greenrunner.budget import Budget
from greenrunner.errors import ConfigError
from greenrunner.evaluation import executors
from greenrunner.evaluation.executors import (
    Executor,
    InProcessExecutor,
    RayOptions,
    create_executor,
)
from greenrunner.reward import Weights
from tests._helpers import FailingEvaluator, Replay, make_replay

HAS_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(not HAS_RAY, reason="needs the ray extra")
WEIGHTS = Weights.parse("accuracy=0.63,size=0.25,complexity=0.21")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """One local Ray instance for the whole session, shut down at the end."""
    import ray

    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        # Workers import the tests' model builders (tests.torch_models) by module path.
        runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")])}},
    )
    yield
    ray.shutdown()


@pytest.fixture
def ray_executor(ray_session: None) -> Iterator[Executor]:
    executor = create_executor("ray", RayOptions())
    yield executor
    executor.close()


def _comparable(result: Any) -> dict[str, Any]:
    """The result JSON without the energy figures, which measure this machine's meter."""
    data: dict[str, Any] = result.to_dict()
    data.pop("energy", None)
    data.pop("energy_note", None)
    return data


def _replay() -> Replay:
    return make_replay(
        [0.80, 0.74, 0.70, 0.62, 0.55, 0.40],
        200,
        seed=1,
        sizes_mb=[20.0, 5.0, 100.0, 44.0, 3.0, 250.0],
        mmacs=[400.0, 90.0, 4000.0, 1200.0, 60.0, 9000.0],
    )


def test_in_process_executor_is_the_default_loop() -> None:
    replay = _replay()
    default = select(replay.candidates, replay.evaluator(), WEIGHTS, seed=4)
    explicit = select(
        replay.candidates, replay.evaluator(), WEIGHTS, seed=4, executor=InProcessExecutor()
    )
    assert _comparable(default) == _comparable(explicit)


def test_a_missing_ray_extra_names_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executors, "ray_available", lambda: False)
    with pytest.raises(ConfigError, match=r"pip install 'greenrunner\[ray\]'"):
        create_executor("ray")


def test_a_missing_ray_extra_is_one_line_on_the_command_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from greenrunner.cli import EXIT_USER_ERROR, main

    monkeypatch.setattr(executors, "ray_available", lambda: False)
    code = main(["select", "--replay", "objectnet-sim", "--executor", "ray"])
    err = capsys.readouterr().err
    assert code == EXIT_USER_ERROR
    assert "pip install 'greenrunner[ray]'" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"num_cpus": -1}, "num_cpus per model must be a number >= 0"),
        ({"num_cpus": 0, "num_gpus": 0}, "must request some resource"),
        ({"max_workers": 0}, "max_workers must be a positive integer"),
        ({"address": "nowhere"}, "auto, ray://HOST:PORT or HOST:PORT"),
        ({"per_model": {"m0": {"memory": 1.0}}}, "may set num_cpus and num_gpus"),
    ],
)
def test_ray_options_are_checked_when_built(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        RayOptions(**options)


def test_unknown_executor_and_address_without_ray_are_refused() -> None:
    with pytest.raises(ConfigError, match="executor must be one of inprocess, ray; got 'dask'"):
        create_executor("dask")
    with pytest.raises(ConfigError, match="--address auto is for the Ray executor"):
        create_executor("inprocess", RayOptions(address="auto"))


@pytest.mark.slow
@needs_ray
@pytest.mark.parametrize("strategy", ["default", "thompson", "racing", "sequential_halving"])
@pytest.mark.parametrize("unit", ["calls", "macs"])
def test_ray_equals_in_process_on_a_replay(
    strategy: str, unit: str, ray_executor: Executor
) -> None:
    replay = _replay()
    budget = Budget(0.3, unit)  # type: ignore[arg-type]
    here = select(
        replay.candidates, replay.evaluator(), WEIGHTS, strategy=strategy, budget=budget, seed=7
    )
    there = select(
        replay.candidates,
        replay.evaluator(),
        WEIGHTS,
        strategy=strategy,
        budget=budget,
        seed=7,
        executor=ray_executor,
    )
    assert _comparable(there) == _comparable(here)


@pytest.mark.slow
@needs_ray
def test_failures_on_ray_fail_the_same_models(ray_executor: Executor) -> None:
    replay = _replay()
    results = []
    for executor in (None, ray_executor):
        evaluator = FailingEvaluator(replay.evaluator(), frozenset({"m1", "m3"}))
        results.append(
            _comparable(select(replay.candidates, evaluator, WEIGHTS, seed=2, executor=executor))
        )
    assert results[0] == results[1]
    failed = {m["name"] for m in results[1]["models"] if m["status"] == "failed"}
    assert failed == {"m1", "m3"}


def _zoo(tmp_path: Path) -> tuple[Path, Path]:
    from tests.test_cli_models import _repo

    return _repo(tmp_path)


def _real_result(models: Path, data: Path, cache: Path, executor: Executor | None) -> Any:
    os.environ["GREENRUNNER_CACHE"] = str(cache)  # a fresh cache: both runs compute alike
    _, _, prepared = open_real(models, data)
    return select(
        prepared.candidates,
        prepared.evaluator,
        WEIGHTS,
        budget=Budget(0.5),
        seed=5,
        executor=executor,
    )


@pytest.mark.slow
@needs_ray
@pytest.mark.parametrize("max_workers", [None, 2])
def test_ray_equals_in_process_on_real_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ray_session: None, max_workers: int | None
) -> None:
    pytest.importorskip("torch")
    monkeypatch.setenv("GREENRUNNER_CACHE", str(tmp_path / "unused"))
    models, data = _zoo(tmp_path)
    here = _real_result(models, data, tmp_path / "cache-a", None)
    # Half a CPU each: the four model workers fit the two-CPU instance at once. With
    # max_workers=2 a model's worker is retired whenever another model needs the slot.
    executor = create_executor("ray", RayOptions(num_cpus=0.5, max_workers=max_workers))
    try:
        there = _real_result(models, data, tmp_path / "cache-b", executor)
    finally:
        executor.close()
    assert _comparable(there) == _comparable(here)
    assert there.cache is not None and there.cache["computed"] > 0


@pytest.mark.slow
@needs_ray
def test_select_on_ray_from_the_command_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, ray_session: None
) -> None:
    import json

    from greenrunner.cli import main

    outs: list[dict[str, Any]] = []
    for extra in ([], ["--executor", "ray"]):
        out = tmp_path / f"r{len(outs)}.json"
        args = ["select", "--replay", "objectnet-sim", "--seed", "3", "--json", str(out)]
        assert main([*args, *extra]) == 0, capsys.readouterr().err
        data = json.loads(out.read_text())
        data.pop("energy", None)
        data.pop("energy_note", None)
        outs.append(data)
    assert outs[0] == outs[1]
    assert np.sum([m["pulls"] for m in outs[1]["models"]]) > 0
