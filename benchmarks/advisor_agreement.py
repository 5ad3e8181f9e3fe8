"""Do the advisor's weights agree with what a sensible person expects for each use case?

    python benchmarks/advisor_agreement.py
    python benchmarks/advisor_agreement.py --provider openai --base-url URL --model NAME
        [--samples N]

Runs an advisor (the offline one by default) on every use case of
benchmarks/advisor_cases.toml: groups of paraphrases of one situation, each group with
expected properties of the weights, such as ``size + complexity >= 0.3`` or
``accuracy is max``. Reports, per case, the weights and which properties pass; per group,
the agreement; overall, the share of properties that pass and the share of cases that pass
all of theirs. The cases were written without looking at any advisor's vocabulary, so the
figures measure generalisation. Writes benchmarks/results/advisor_agreement.{json,md}
(``advisor_agreement_<provider>.*`` for other providers).

Property language (parsed by hand, never evaluated): ``EXPR OP EXPR`` where EXPR is metric
names and/or numbers joined by ``+`` and OP is one of ``>= <= > <``; or ``METRIC is max``
(the metric's weight is at least every other weight; ties allowed). A metric the advisor did
not weigh counts as 0.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _common as common
from greenrunner.errors import GreenRunnerError
from greenrunner.reasoning.base import Advisor, advise
from greenrunner.reasoning.providers import PROVIDERS, ProviderSettings, make_advisor
from greenrunner.reward import METRICS

CASES = common.HERE / "advisor_cases.toml"
STEM = "advisor_agreement"
# Weights come rounded to 3 decimals; sums of them carry float noise far below that.
TOLERANCE = 1e-9
OPERATORS = (">=", "<=", ">", "<")
EXAMPLE = "write e.g. 'size + complexity >= 0.3' or 'accuracy is max'"

_TOKEN = re.compile(
    r"\s*(?:(?P<number>\d+(?:\.\d*)?|\.\d+)|(?P<name>[A-Za-z_]\w*)|(?P<op>>=|<=|>|<)"
    r"|(?P<plus>\+)|(?P<bad>\S))"
)
_IS = re.compile(r"\s*(?P<metric>\S+)\s+is\s+(?P<what>\S+)\s*")


class PropertyError(ValueError):
    """A property that does not parse; the message quotes it and says how to write one."""


class CasesError(ValueError):
    """A malformed cases file; the message names the file and the entry."""


# ----------------------------------------------------------------------------- properties


@dataclass(frozen=True)
class Sum:
    """Metric names and a constant added together, e.g. ``size + complexity + 0.1``."""

    metrics: tuple[str, ...]
    constant: float = 0.0

    def value(self, weights: Mapping[str, float]) -> float:
        return sum(weights.get(m, 0.0) for m in self.metrics) + self.constant


@dataclass(frozen=True)
class Comparison:
    """``left OP right`` over the weights."""

    text: str
    left: Sum
    op: str
    right: Sum

    def holds(self, weights: Mapping[str, float]) -> bool:
        diff = self.left.value(weights) - self.right.value(weights)
        if self.op == ">=":
            return diff >= -TOLERANCE
        if self.op == "<=":
            return diff <= TOLERANCE
        if self.op == ">":
            return diff > TOLERANCE
        return diff < -TOLERANCE


@dataclass(frozen=True)
class IsMax:
    """``metric is max``: no other weight is larger (ties allowed)."""

    text: str
    metric: str

    def holds(self, weights: Mapping[str, float]) -> bool:
        own = weights.get(self.metric, 0.0)
        return all(own >= w - TOLERANCE for w in weights.values())


Property = Comparison | IsMax


def _fail(text: str, problem: str) -> PropertyError:
    return PropertyError(f"property {text!r}: {problem}; {EXAMPLE}")


def _metric(text: str, name: str) -> str:
    if name not in METRICS:
        raise _fail(text, f"unknown metric {name!r} (known: {', '.join(METRICS)})")
    return name


def _tokens(text: str) -> list[tuple[str, str]]:
    """``(kind, value)`` pairs: number, name, op or plus."""
    out: list[tuple[str, str]] = []
    for match in _TOKEN.finditer(text.rstrip()):
        kind = match.lastgroup or "bad"
        value = match.group(kind)
        if kind == "bad":
            raise _fail(text, f"unexpected character {value!r}")
        out.append((kind, value))
    return out


def _sum(text: str, tokens: Sequence[tuple[str, str]], side: str) -> Sum:
    """A side of a comparison: terms joined by ``+``."""
    if not tokens:
        raise _fail(text, f"nothing on the {side} of the comparison")
    metrics: list[str] = []
    constant = 0.0
    for position, (kind, value) in enumerate(tokens):
        want_term = position % 2 == 0
        if want_term and kind == "name":
            metrics.append(_metric(text, value))
        elif want_term and kind == "number":
            constant += float(value)
        elif not want_term and kind == "plus":
            continue
        else:
            expected = "a metric or a number" if want_term else "'+'"
            raise _fail(text, f"expected {expected} on the {side}, got {value!r}")
    if tokens[-1][0] == "plus":
        raise _fail(text, f"'+' with nothing after it on the {side}")
    return Sum(tuple(metrics), constant)


def parse_property(text: object) -> Property:
    """A property from its text; :class:`PropertyError` naming it when it does not parse."""
    if not isinstance(text, str) or not text.strip():
        raise _fail(str(text), "empty or not text")
    is_form = _IS.fullmatch(text)
    if is_form:
        if is_form["what"] != "max":
            raise _fail(text, f"only 'METRIC is max' is supported, not 'is {is_form['what']}'")
        return IsMax(text, _metric(text, is_form["metric"]))
    tokens = _tokens(text)
    ops = [i for i, (kind, _) in enumerate(tokens) if kind == "op"]
    if len(ops) != 1:
        found = "no comparison operator" if not ops else f"{len(ops)} comparison operators"
        raise _fail(text, f"{found}; use exactly one of {' '.join(OPERATORS)}")
    at = ops[0]
    left = _sum(text, tokens[:at], "left")
    right = _sum(text, tokens[at + 1 :], "right")
    return Comparison(text, left, tokens[at][1], right)


# ----------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class Group:
    """Paraphrases of one situation and what their weights should satisfy."""

    name: str
    why: str
    properties: tuple[Property, ...]
    cases: tuple[str, ...]


def _strings(raw: object, where: str, field: str) -> tuple[str, ...]:
    if not isinstance(raw, list) or not raw:
        raise CasesError(f"{where}: '{field}' must be a non-empty list of strings")
    if not all(isinstance(item, str) and item.strip() for item in raw):
        raise CasesError(f"{where}: every entry of '{field}' must be non-empty text")
    return tuple(" ".join(item.split()) for item in raw)


def _group(raw: object, where: str) -> Group:
    if not isinstance(raw, dict):
        raise CasesError(f"{where}: expected a table with name, why, properties and cases")
    name, why = raw.get("name"), raw.get("why")
    if not isinstance(name, str) or not name.strip():
        raise CasesError(f"{where}: 'name' must be non-empty text")
    where = f"{where} ({name})"
    if not isinstance(why, str) or not why.strip():
        raise CasesError(f"{where}: 'why' must say why the properties are expected")
    try:
        props = tuple(
            parse_property(p) for p in _strings(raw.get("properties"), where, "properties")
        )
    except PropertyError as exc:
        raise CasesError(f"{where}: {exc}") from None
    return Group(name, " ".join(why.split()), props, _strings(raw.get("cases"), where, "cases"))


def load_groups(path: Path = CASES) -> list[Group]:
    """The groups of ``path``; :class:`CasesError` naming the file and entry if malformed."""
    with path.open("rb") as fh:
        data = tomllib.load(fh)
    raw = data.get("group")
    if not isinstance(raw, list) or not raw:
        raise CasesError(f"{path}: no [[group]] tables")
    groups = [_group(g, f"{path}: group {i + 1}") for i, g in enumerate(raw)]
    names = [g.name for g in groups]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise CasesError(f"{path}: group name(s) used twice: {', '.join(twice)}")
    return groups


# ----------------------------------------------------------------------------- running


@dataclass(frozen=True)
class CaseResult:
    """One use case: the advisor's weights and whether each property held."""

    group: str
    index: int
    use_case: str
    weights: Mapping[str, float]
    checks: tuple[tuple[str, bool], ...]
    provider: str = ""
    model: str = ""
    error: str | None = None

    @property
    def case_id(self) -> str:
        return f"{self.group}-{self.index}"

    @property
    def passed(self) -> bool:
        return self.error is None and all(ok for _, ok in self.checks)

    @property
    def failed(self) -> list[str]:
        return [text for text, ok in self.checks if not ok]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.case_id,
            "group": self.group,
            "use_case": self.use_case,
            "weights": dict(self.weights),
            "properties": [{"property": t, "passed": ok} for t, ok in self.checks],
            "passed": self.passed,
            "error": self.error,
        }


def run_case(advisor: Advisor, group: Group, index: int, samples: int = 1) -> CaseResult:
    """The advisor on ``group.cases[index - 1]``; an advisor error fails every property."""
    text = group.cases[index - 1]
    try:
        suggestion = advise(advisor, text, samples=samples)
    except GreenRunnerError as exc:
        checks = tuple((p.text, False) for p in group.properties)
        return CaseResult(group.name, index, text, {}, checks, error=str(exc))
    weights = suggestion.weights.as_dict()
    checks = tuple((p.text, p.holds(weights)) for p in group.properties)
    return CaseResult(
        group.name, index, text, weights, checks, suggestion.provider, suggestion.model
    )


def evaluate(advisor: Advisor, groups: Sequence[Group], samples: int = 1) -> list[CaseResult]:
    """Every case of every group, in file order."""
    return [
        run_case(advisor, group, index, samples)
        for group in groups
        for index in range(1, len(group.cases) + 1)
    ]


def summarise(results: Sequence[CaseResult]) -> dict[str, Any]:
    """Properties passed / all properties and cases fully passing / all cases."""
    props = [ok for r in results for _, ok in r.checks]
    cases = [r.passed for r in results]
    return {
        "properties_passed": sum(props),
        "properties_total": len(props),
        "property_agreement": round(sum(props) / len(props), 4) if props else None,
        "cases_passed": sum(cases),
        "cases_total": len(cases),
        "case_agreement": round(sum(cases) / len(cases), 4) if cases else None,
    }


def by_group(groups: Sequence[Group], results: Sequence[CaseResult]) -> list[dict[str, Any]]:
    """The summary of each group's cases, with its properties and why."""
    out = []
    for group in groups:
        mine = [r for r in results if r.group == group.name]
        out.append(
            {
                "group": group.name,
                "why": group.why,
                "properties": [p.text for p in group.properties],
                **summarise(mine),
            }
        )
    return out


# ----------------------------------------------------------------------------- reports


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _weight_cells(weights: Mapping[str, float]) -> list[str]:
    core = [
        f"{weights[m]:.3f}" if m in weights else "-" for m in ("accuracy", "size", "complexity")
    ]
    other = ", ".join(
        f"{k}={v:.3f}" for k, v in weights.items() if k not in {"accuracy", "size", "complexity"}
    )
    return [*core, other or "-"]


def _group_section(group: dict[str, Any], results: Sequence[CaseResult]) -> list[str]:
    rows = [
        [
            str(r.index),
            _cell(r.use_case),
            *_weight_cells(r.weights),
            "yes" if r.passed else _cell("; ".join(r.failed) or str(r.error)),
        ]
        for r in results
        if r.group == group["group"]
    ]
    header = ["#", "use case", "accuracy", "size", "complexity", "other", "all pass / failed"]
    return [
        f"### {group['group']}: {group['cases_passed']}/{group['cases_total']} cases, "
        f"{group['properties_passed']}/{group['properties_total']} properties",
        "",
        f"Expected: {', '.join(f'`{p}`' for p in group['properties'])}. {group['why']}",
        "",
        common.table(header, rows, align="llrrrll"),
        "",
    ]


def _failures(results: Sequence[CaseResult]) -> list[str]:
    failing = [r for r in results if not r.passed]
    if not failing:
        return ["Every case passed all its properties."]
    lines = []
    for r in failing:
        weights = ", ".join(f"{k}={v:.3f}" for k, v in r.weights.items()) or "none"
        problem = (
            f"error: {r.error}" if r.error else "failed " + "; ".join(f"`{p}`" for p in r.failed)
        )
        lines.append(f'- **{r.case_id}** "{r.use_case}": {weights}; {problem}')
    return lines


def markdown(report: Mapping[str, Any], results: Sequence[CaseResult]) -> str:
    s = report["summary"]
    group_rows = [
        [
            g["group"],
            f"{g['cases_passed']}/{g['cases_total']}",
            f"{g['properties_passed']}/{g['properties_total']}",
            ", ".join(g["properties"]),
        ]
        for g in report["groups"]
    ]
    lines = [
        "# Advisor agreement with expected weight properties",
        "",
        f"Reproduce: `{report['command']}` (code {report['code']}); provider "
        f"`{report['provider']}`, model `{report['model']}`, {report['samples']} sample(s) per "
        f"case, {report['seconds']:.1f} s.",
        "",
        f"Cases from `{report['cases_file']}`: {s['cases_total']} use cases in "
        f"{len(report['groups'])} groups of paraphrases, written without looking at the "
        "advisor's vocabulary. A case passes when its weights satisfy every property of its "
        "group.",
        "",
        f"- **cases fully passing: {s['cases_passed']}/{s['cases_total']} "
        f"({s['case_agreement']:.1%})**",
        f"- properties passing: {s['properties_passed']}/{s['properties_total']} "
        f"({s['property_agreement']:.1%})",
        "",
        "## Per group",
        "",
        common.table(["group", "cases", "properties", "expected"], group_rows, align="lrrl"),
        "",
        "## Failing cases",
        "",
        *_failures(results),
        "",
        "## Per case",
        "",
    ]
    for group in report["groups"]:
        lines += _group_section(group, results)
    return "\n".join(lines)


def _shown(path: Path) -> str:
    """The path relative to the repository when it is inside it."""
    try:
        return str(path.resolve().relative_to(common.HERE.parent))
    except ValueError:
        return str(path)


def build_report(
    groups: Sequence[Group],
    results: Sequence[CaseResult],
    *,
    samples: int,
    seconds: float,
    provider: str,
    cases_file: Path = CASES,
) -> dict[str, Any]:
    first = next((r for r in results if r.error is None), None)
    return {
        "cases_file": _shown(cases_file),
        "command": common.command_line(),
        "code": common.code_version(),
        "provider": first.provider if first else provider,
        "model": first.model if first else "",
        "samples": samples,
        "seconds": round(seconds, 2),
        "summary": summarise(results),
        "groups": by_group(groups, results),
        "cases": [r.to_dict() for r in results],
    }


def write(
    report: Mapping[str, Any],
    results: Sequence[CaseResult],
    stem: str,
    folder: Path = common.RESULTS,
) -> Path:
    """``<folder>/<stem>.json`` and ``.md``; returns the Markdown path."""
    folder.mkdir(exist_ok=True)
    (folder / f"{stem}.json").write_text(json.dumps(report, indent=1) + "\n")
    out = folder / f"{stem}.md"
    out.write_text(markdown(report, results))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--provider", choices=PROVIDERS, default="offline")
    parser.add_argument("--base-url", help="OpenAI-compatible endpoint (--provider openai)")
    parser.add_argument("--model", help="model name (openai) or GGUF path (local)")
    parser.add_argument("--samples", type=int, default=1, help="draws per case (mean weights)")
    parser.add_argument("--cases", type=Path, default=CASES, help="the cases file")
    args = parser.parse_args(argv)
    groups = load_groups(args.cases)
    advisor = make_advisor(
        ProviderSettings(provider=args.provider, base_url=args.base_url, model=args.model)
    )
    t0 = time.perf_counter()
    results = evaluate(advisor, groups, args.samples)
    report = build_report(
        groups,
        results,
        samples=args.samples,
        seconds=time.perf_counter() - t0,
        provider=args.provider,
        cases_file=args.cases,
    )
    # One results file per provider and cases file, so no run overwrites another's.
    stem = STEM if args.provider == "offline" else f"{STEM}_{args.provider}"
    if args.cases.resolve() != CASES.resolve():
        stem += "_" + args.cases.stem.removeprefix("advisor_cases_")
    out = write(report, results, stem)
    s = report["summary"]
    print(
        f"cases fully passing {s['cases_passed']}/{s['cases_total']} ({s['case_agreement']:.1%}), "
        f"properties {s['properties_passed']}/{s['properties_total']} "
        f"({s['property_agreement']:.1%})"
    )
    print("\n".join(_failures(results)))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
