"""Reasoning: a plain-text use case becomes suggested weights for Equation 1.

``advise(make_advisor(ProviderSettings(...)), "use case")`` returns a
:class:`WeightSuggestion`; the offline advisor is the default and needs nothing installed.
"""

from greenrunner.reasoning.base import Advisor, advise
from greenrunner.reasoning.providers import ProviderSettings, make_advisor
from greenrunner.reasoning.suggestion import WeightSuggestion

__all__ = ["Advisor", "ProviderSettings", "WeightSuggestion", "advise", "make_advisor"]
