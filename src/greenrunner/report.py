"""A readable Markdown report of a selection result (the JSON has the same facts)."""

from __future__ import annotations

from typing import Any

from greenrunner.energy import summary as energy_summary
from greenrunner.result import ModelReport, SelectionResult


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def significant(x: float | None) -> str:
    """Three significant digits: model sizes and MACs span many orders of magnitude."""
    if x is None:
        return "-"
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"


def _accuracy(r: ModelReport) -> str:
    if r.accuracy is None:
        return "-"
    if r.exact:
        return f"{r.accuracy:.3f} (exact)"
    return f"{r.accuracy:.3f} [{_num(r.ci_low, '{:.3f}')}, {_num(r.ci_high, '{:.3f}')}]"


def markdown_report(result: SelectionResult, *, source: str, note: str = "") -> str:
    weights = ", ".join(f"{k} {v:g}" for k, v in result.weights.items())
    budget = result.budget
    lines = [
        "# GreenRunner selection report",
        "",
        f"- Source: {source}",
        f"- Weights: {weights}",
        f"- Strategy: `{result.strategy}`, seed {result.seed}, budget {budget['value']:g} "
        f"({budget['unit']})",
        f"- Recommended: **{result.recommended}**",
    ]
    if note:
        lines.append(f"- Note: {note}")
    if result.staging is not None:
        lines += _staging_section(result.staging)
    lines += [
        "",
        "## Top models",
        "",
        "| # | model | accuracy, 95% interval | reward | size MB | MMACs | samples |",
        "| ---: | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in result.top:
        lines.append(
            f"| {r.rank} | {r.name} | {_accuracy(r)} | {_num(r.reward, '{:.4f}')} | "
            f"{significant(r.size_mb)} | {significant(r.mmacs)} | {r.pulls:,} |"
        )
    if result.tied_with_top:
        lines += ["", f"Statistically tied with the top: {', '.join(result.tied_with_top)}."]
    share = result.calls / result.brute_force_calls
    lines += [
        "",
        "## Compute",
        "",
        f"- Evaluation calls: {result.calls:,} of brute force's {result.brute_force_calls:,} "
        f"({share:.1%})",
    ]
    if result.macs is not None and result.brute_force_macs:
        saved = result.savings
        lines.append(
            f"- MACs: {result.macs / 1e6:,.1f} of {result.brute_force_macs / 1e6:,.1f} MMACs; "
            f"saved {saved['macs_fraction']:.1%} ({saved['mmacs']:,.1f} MMACs)"
        )
    if result.energy is not None or result.energy_note:
        lines.append(f"- Energy: {energy_summary(result.energy, result.energy_note)}")
    if result.cache is not None:
        lines.append(
            f"- Inference: {result.cache['computed']:,} calls computed, "
            f"{result.cache['served']:,} served from the cache"
        )
    lines.append(f"- Stopped: {result.stop_reason}")
    lines += [
        "",
        "## Every model",
        "",
        "| # | model | status | accuracy | samples | note |",
        "| ---: | --- | --- | --- | ---: | --- |",
    ]
    for r in result.models:
        lines.append(
            f"| {r.rank} | {r.name} | {r.status} | {_accuracy(r)} | {r.pulls:,} | {r.note} |"
        )
    return "\n".join(lines) + "\n"


def _staging_section(staging: dict[str, Any]) -> list[str]:
    """The use case, the advisor's suggestion and what the user decided."""
    suggestion = staging.get("suggestion")
    used = ", ".join(f"{k} {v:g}" for k, v in staging["weights"].items())
    lines = ["", "## Use case and weights", ""]
    if suggestion:
        shown = ", ".join(f"{k} {v:g}" for k, v in suggestion["weights"].items())
        lines += [
            f"> {suggestion['use_case']}",
            "",
            f"- Suggested by {suggestion['provider']} ({suggestion['model']}): {shown}",
            f"- Justification: {suggestion['justification']}",
        ]
        lines += [f"- Trade-off, {k}: {v}" for k, v in suggestion["tradeoffs"].items()]
        lines += [f"- Advisor note: {n}" for n in suggestion["notes"]]
    lines.append(f"- Weights used ({staging['decision']} at staging): {used}")
    lines += [f"- Staging note: {n}" for n in staging["notes"]]
    return lines
