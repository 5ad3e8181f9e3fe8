"""GreenRunner: pick the right pre-trained model for your data while spending little compute.

The Python API in brief::

    from greenrunner import Weights, Budget, load_replay, select

    repo = load_replay("path/to/replay")
    result = select(repo.candidates, repo.evaluator, Weights.parse("accuracy=1"),
                    strategy="default", budget=Budget(0.1, "calls"), seed=0)
    print(result.top[0].name)
"""

from greenrunner.api import select
from greenrunner.budget import Budget
from greenrunner.candidates import Candidate
from greenrunner.errors import GreenRunnerError
from greenrunner.repositories.replay import ReplayRepository, load_replay
from greenrunner.result import SelectionResult
from greenrunner.reward import RewardModel, Weights

__all__ = [
    "Budget",
    "Candidate",
    "GreenRunnerError",
    "ReplayRepository",
    "RewardModel",
    "SelectionResult",
    "Weights",
    "load_replay",
    "select",
]
__version__ = "0.1.0"
