"""`advise` and the staging step of `run`: a use case becomes weights the user accepts or edits."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from rich.console import Console

from greenrunner.errors import ConfigError
from greenrunner.reward import Weights

if TYPE_CHECKING:
    from greenrunner.reasoning.suggestion import WeightSuggestion


from greenrunner.commands._common import StagingCancelledError, write_json


def suggest(args: argparse.Namespace, console: Console) -> WeightSuggestion:
    from greenrunner.reasoning import ProviderSettings, advise, make_advisor
    from greenrunner.render import print_suggestion

    settings = ProviderSettings(
        provider=args.provider,
        base_url=args.base_url,
        model=args.model,
        api_key_env=args.api_key_env,
        timeout=args.timeout,
    )
    advisor = make_advisor(settings)
    with console.status(f"Asking the {settings.provider} advisor..."):
        suggestion = advise(advisor, args.use_case, samples=args.samples)
    print_suggestion(console, suggestion)
    return suggestion


def cmd_advise(args: argparse.Namespace, console: Console) -> None:
    suggestion = suggest(args, console)
    if args.json:
        write_json(args.json, suggestion.to_dict())
        console.print(f"Suggestion written to {args.json}")


def stage_weights(args: argparse.Namespace, console: Console, suggestion: WeightSuggestion) -> Any:
    """The staging step: --weights or --yes decide at once; otherwise the user accepts the
    suggested weights or edits them at a prompt."""
    from greenrunner.reasoning.staging import StagingRecord, apply_edit

    if args.weights:
        return StagingRecord(
            suggestion,
            Weights.parse(args.weights),
            "given",
            ("--weights replaced the suggested weights",),
        )
    if args.yes:
        return StagingRecord(suggestion, suggestion.weights, "accepted")
    current = suggestion.weights
    console.print(
        "Review the weights. Press Enter to accept them; type changes as metric=value "
        "(e.g. size=0.4 or accuracy=0.7,complexity=0.1; the rest keep their values and all "
        "are scaled to sum 1); q cancels."
    )
    while True:
        try:
            answer = console.input(f"weights [bold]{current}[/] > ").strip()
        except EOFError:
            raise ConfigError(
                "staging needs an answer on standard input; pass --yes to accept the "
                "suggested weights or --weights to set them"
            ) from None
        if answer.lower() in ("", "y", "yes"):
            if current == suggestion.weights:
                return StagingRecord(suggestion, current, "accepted")
            return StagingRecord(suggestion, current, "edited")
        if answer.lower() in ("q", "quit", "n", "no"):
            raise StagingCancelledError("cancelled at staging; nothing was run")
        try:
            current = apply_edit(current, answer)
        except ConfigError as exc:
            console.print(f"[red]{exc}[/]", highlight=False)
