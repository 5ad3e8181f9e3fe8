"""Terminal rendering of results, studies and strategy lists (rich)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
)
from rich.table import Table

from greenrunner.energy import summary as energy_summary
from greenrunner.report import significant
from greenrunner.result import ModelReport, SelectionResult
from greenrunner.strategies import describe
from greenrunner.study import StudyRow

if TYPE_CHECKING:
    from greenrunner.evaluation.inference import ProgressFn
    from greenrunner.reasoning.suggestion import WeightSuggestion

STOP_REASONS = {
    "budget": "the budget was spent",
    "confident": "the winner is certain at the chosen confidence",
    "converged": "the strategy had nothing left worth evaluating",
    "decided": "only one model can still win",
    "exhausted": "every remaining contender was evaluated on the whole target set",
    "strategy_done": "the strategy finished its schedule",
    "no_target_evaluation": "this baseline evaluates nothing on the target",
}


def _num(x: float | None, fmt: str = "{:.3f}") -> str:
    return "-" if x is None else fmt.format(x)


def _acc(r: ModelReport) -> str:
    if r.accuracy is None:
        return "-"
    if r.exact:
        return f"{r.accuracy:.3f} (exact)"
    return f"{r.accuracy:.3f} [{_num(r.ci_low)}, {_num(r.ci_high)}]"


def print_result(console: Console, result: SelectionResult, *, source: str, note: str = "") -> None:
    if "simulat" in note.lower():
        console.print(f"[yellow]Note:[/] {note}")
    table = Table(title=f"Top models ({result.strategy}, {source}, seed {result.seed})")
    table.add_column("#", justify="right")
    table.add_column("model", no_wrap=True)
    label = "card accuracy" if result.accuracy_source == "model card" else "accuracy, 95% CI"
    table.add_column(label)
    table.add_column("reward", justify="right")
    table.add_column("size MB", justify="right")
    table.add_column("MMACs", justify="right")
    table.add_column("samples", justify="right")
    for r in result.top:
        table.add_row(
            str(r.rank),
            r.name,
            _acc(r),
            _num(r.reward, "{:.4f}"),
            significant(r.size_mb),
            significant(r.mmacs),
            f"{r.pulls:,}",
        )
    console.print(table)
    weights = ", ".join(f"{k}={v:g}" for k, v in result.weights.items())
    console.print(f"Weights: {weights}. Recommended: [bold]{result.recommended}[/]")
    if result.tied_with_top:
        console.print(
            f"Statistically tied with the top (overlapping 95% intervals): "
            f"{', '.join(result.tied_with_top)}"
        )
    share = result.calls / result.brute_force_calls
    line = (
        f"Spent {result.calls:,} of {result.brute_force_calls:,} brute-force evaluation "
        f"calls ({share:.1%})"
    )
    saved = result.savings
    if result.macs is not None and result.brute_force_macs:
        line += (
            f" and {result.macs / 1e6:,.0f} of {result.brute_force_macs / 1e6:,.0f} MMACs; "
            f"saved {saved['macs_fraction']:.1%} of the compute ({saved['mmacs']:,.0f} MMACs)"
        )
    console.print(line + ".")
    if result.energy is not None or result.energy_note:
        console.print(
            f"Energy: {energy_summary(result.energy, result.energy_note)}.", highlight=False
        )
    console.print(f"Stopped because {STOP_REASONS.get(result.stop_reason, result.stop_reason)}.")
    if result.cache is not None:
        console.print(
            f"Inference: {result.cache['computed']:,} calls computed, "
            f"{result.cache['served']:,} served from the cache."
        )
    for r in result.models:
        if r.status == "failed":
            console.print(f"[red]Failed:[/] {r.name}: {r.note}", highlight=False)


def print_study(console: Console, rows: Sequence[StudyRow], *, source: str, note: str = "") -> None:
    if "simulat" in note.lower():
        console.print(f"[yellow]Note:[/] {note}")
    table = Table(title=f"Study on {source}: share of runs matching brute force")
    for col in ("strategy", "budget", "p_best", "p_eps", "mean regret", "calls", "MACs"):
        table.add_column(col, justify="left" if col == "strategy" else "right")
    for r in rows:
        table.add_row(
            r.strategy,
            f"{r.budget:g} {r.budget_unit}",
            f"{r.p_best:.2f}",
            f"{r.p_eps:.2f}",
            f"{r.mean_regret:.4f}",
            f"{r.mean_calls_fraction:.1%}",
            "-" if r.mean_macs_fraction is None else f"{r.mean_macs_fraction:.1%}",
        )
    console.print(table)
    if rows:
        console.print(f"{rows[0].repeats} runs each; p_eps = share with regret <= {rows[0].eps:g}.")


def print_strategies(console: Console) -> None:
    table = Table(title="Strategies")
    table.add_column("name")
    table.add_column("what it does")
    for name, summary in describe():
        table.add_row(name, summary)
    console.print(table)


def print_inspection(console: Console, repo: str, rows: Sequence[dict[str, object]]) -> None:
    table = Table(title=f"Models in {repo}")
    for col in ("model", "format", "size MB", "MMACs", "params M", "card acc", "licence"):
        table.add_column(col, justify="left" if col in ("model", "format", "licence") else "right")

    def num(value: object, fmt: str) -> str:
        return fmt.format(value) if isinstance(value, int | float) else "-"

    for r in rows:
        table.add_row(
            str(r["name"]),
            str(r["format"]),
            num(r.get("size_mb"), "{:,.2f}"),
            num(r.get("mmacs"), "{:,.2f}"),
            num(r.get("params_m"), "{:,.3f}"),
            num(r.get("card_accuracy"), "{:.3f}"),
            str(r.get("license") or "-"),
        )
    console.print(table)
    for r in rows:
        if r["status"] == "failed":
            console.print(f"[red]Failed:[/] {r['name']}: {r['note']}", highlight=False)


@contextmanager
def progress_bar(console: Console) -> Iterator[ProgressFn]:
    """A rich progress display fed by the library's progress callback."""
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        tasks: dict[str, TaskID] = {}

        def update(stage: str, done: int, total: int, detail: str) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total or None, detail="")
            progress.update(tasks[stage], completed=done, total=total or None, detail=detail)

        yield update


def print_suggestion(console: Console, suggestion: WeightSuggestion) -> None:
    """The suggested weights (with their spread over samples), justification, trade-offs."""
    table = Table(title=f"Suggested weights ({suggestion.provider}: {suggestion.model})")
    table.add_column("metric")
    table.add_column("weight", justify="right")
    if suggestion.samples > 1:
        table.add_column(f"std over {suggestion.samples} samples", justify="right")
    table.add_column("trade-off")
    for metric, weight in suggestion.weights.as_dict().items():
        row = [metric, f"{weight:.3f}"]
        if suggestion.samples > 1:
            row.append(f"{suggestion.spread.get(metric, 0.0):.3f}")
        row.append(suggestion.tradeoffs.get(metric, ""))
        table.add_row(*row)
    console.print(table)
    console.print(f"[bold]Why:[/] {suggestion.justification}", highlight=False)
    for note in suggestion.notes:
        console.print(f"[yellow]Note:[/] {note}", highlight=False)
