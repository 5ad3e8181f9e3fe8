"""The energy of a selection run, measured with CodeCarbon's offline tracker.

Only ``codecarbon.OfflineEmissionsTracker`` is used: the online tracker looks the location up
over the network. The tracker is configured to write nothing (no emissions.csv, no API, no
logger output) and the country and region come from the user, so a run never leaves the
machine. Whether the figure was *measured* (hardware energy counters: RAPL, Apple
powermetrics, NVML) or *estimated* (CodeCarbon's TDP x CPU-load model or a constant) is read
from the hardware the tracker actually used, never assumed.

Only real inference is measured. A replay answers every call from a recorded table, so the
energy of its bookkeeping says nothing about the models and would make a meaningless
brute-force extrapolation; replays get ``energy = None`` with a note saying so.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from greenrunner.candidates import Candidate
from greenrunner.engine import mac_charge
from greenrunner.errors import ConfigError
from greenrunner.evaluation.base import CachingEvaluator, Evaluator

log = logging.getLogger(__name__)

MODES = ("auto", "on", "off")
INSTALL_HINT = "pip install 'greenrunner[energy]'"

# CodeCarbon's CPU modes that read a hardware energy counter; every other mode (cpu_load,
# constant) is its TDP-based model.
_MEASURED_CPU_MODES = {
    "intel_rapl": "measured (RAPL)",
    "intel_power_gadget": "measured (Intel Power Gadget)",
    "windows_emi": "measured (Windows EMI)",
}
_ESTIMATED_CPU_MODES = {
    "cpu_load": "estimated (TDP x CPU load)",
    "constant": "estimated (constant TDP share)",
}


@dataclass(frozen=True)
class EnergySettings:
    """Whether and where to measure. ``mode``: ``auto`` measures when CodeCarbon is
    installed (and says why not otherwise), ``on`` requires it, ``off`` skips it.
    ``country`` is an ISO 3166-1 alpha-3 code (its grid's carbon intensity); ``None`` uses
    CodeCarbon's world average. ``region`` refines it where CodeCarbon has regional data
    (US states, Canadian provinces)."""

    mode: str = "auto"
    country: str | None = None
    region: str | None = None
    # Background samples are cheap, but one every few seconds is plenty: the CPU-load model
    # averages the load since the previous sample, so a longer interval loses no accuracy.
    measure_power_secs: float = 5.0
    # "process" attributes only this process's CPU load to the run in the estimated mode,
    # not other jobs on a shared machine. Hardware counters (RAPL, NVML) see the machine.
    tracking_mode: str = "process"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"energy must be one of {', '.join(MODES)}; got {self.mode!r}")
        if self.country is not None:
            code = self.country.strip().upper()
            if len(code) != 3 or not code.isalpha():
                raise ConfigError(
                    "country must be a three-letter ISO 3166-1 code such as FRA, USA or DEU; "
                    f"got {self.country!r}"
                )
            object.__setattr__(self, "country", code)
        if self.region is not None:
            object.__setattr__(self, "region", self.region.strip().lower() or None)
        if self.tracking_mode not in ("process", "machine"):
            raise ConfigError(
                f"tracking mode must be process or machine; got {self.tracking_mode!r}"
            )
        if not (self.measure_power_secs > 0):
            raise ConfigError(
                f"measure_power_secs must be positive; got {self.measure_power_secs!r}"
            )

    @property
    def requested(self) -> bool:
        """The user asked for energy explicitly, so a missing extra is an error."""
        return self.mode == "on" or self.country is not None or self.region is not None


@dataclass(frozen=True)
class EnergyReport:
    """The energy of one selection run, in the result JSON as ``energy``."""

    kwh: float
    co2_kg: float
    source: str  # "measured" (hardware counters) or "estimated" (CodeCarbon's power model)
    country: str | None  # ISO alpha-3; None: CodeCarbon's world average
    region: str | None
    # Measured kWh per MAC of inference actually run (cache hits excluded) x brute-force
    # MACs; None when MACs are unknown or no inference ran.
    brute_force_kwh_estimate: float | None
    duration_s: float
    macs_measured: float | None = None  # the MACs of inference the measured energy covers
    components: dict[str, str] = field(default_factory=dict)  # e.g. {"cpu": "measured (RAPL)"}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EnergyReport:
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in known})


class Tracker(Protocol):
    """The part of CodeCarbon's tracker used here (fakes implement it in tests)."""

    def start(self) -> None: ...

    def stop(self) -> float | None: ...


TrackerFactory = Callable[[EnergySettings], Tracker]


def codecarbon_available() -> bool:
    try:
        import codecarbon  # noqa: F401
    except ImportError:
        return False
    return True


def offline_tracker(settings: EnergySettings) -> Tracker:
    """CodeCarbon's offline tracker, silent and writing nothing."""
    from codecarbon import OfflineEmissionsTracker

    # CodeCarbon logs "offline tracker init" before it applies log_level; library code must
    # not print, so its logger is quietened first. Failures surface in the energy note.
    logging.getLogger("codecarbon").setLevel(logging.CRITICAL)
    tracker: Tracker = OfflineEmissionsTracker(
        country_iso_code=settings.country,
        region=settings.region,
        # No output at all: an empty list (not the deprecated save_to_* flags) and no
        # endpoint; output_dir only matters if a user config forces a file, and then it
        # lands in the temp dir, never in the working directory.
        output_methods=[],
        emissions_endpoint=None,
        output_dir=tempfile.gettempdir(),
        log_level="critical",
        measure_power_secs=settings.measure_power_secs,
        tracking_mode=settings.tracking_mode,
        allow_multiple_runs=True,  # no lock file; concurrent web runs each get a tracker
    )
    return tracker


def check_country(country: str | None) -> None:
    """Fail early on a country CodeCarbon has no energy mix for (it would silently fall
    back to the world average)."""
    if country is None or not codecarbon_available():
        return
    from codecarbon.input import DataSource

    mix: Mapping[str, Any] = DataSource().get_global_energy_mix_data()
    if country not in mix:
        raise ConfigError(
            f"CodeCarbon has no energy mix for country {country!r}; give an ISO 3166-1 "
            "alpha-3 code such as FRA, USA or DEU"
        )


def classify(hardware: Iterable[object]) -> tuple[str, dict[str, str]]:
    """``("measured" | "estimated", per-component how)`` from the tracker's hardware.

    "measured" needs every processor (CPU or SoC, GPUs) read from an energy counter. RAM is
    always CodeCarbon's per-GB model, so it is listed but does not decide the source.
    """
    components: dict[str, str] = {}
    processors_measured: list[bool] = []
    for hw in hardware:
        kind = type(hw).__name__
        if kind == "RAM":
            components["ram"] = "estimated (power per GB of memory)"
        elif kind == "CPU":
            mode = str(getattr(hw, "_mode", ""))
            how = _MEASURED_CPU_MODES.get(mode)
            processors_measured.append(how is not None)
            components["cpu"] = how or _ESTIMATED_CPU_MODES.get(mode, f"estimated ({mode})")
        elif kind == "AppleSiliconChip":
            part = str(getattr(hw, "chip_part", "chip")).lower()
            processors_measured.append(True)
            components[part] = "measured (powermetrics)"
        elif kind == "GPU":
            processors_measured.append(True)
            components["gpu"] = "measured (NVML)"
        else:  # Raspberry Pi model or anything newer: not a counter we know of
            processors_measured.append(False)
            components[kind.lower()] = "estimated"
    measured = bool(processors_measured) and all(processors_measured)
    return ("measured" if measured else "estimated"), components


@dataclass
class _MacCounter:
    """Wraps the evaluator to count the MACs of inference actually run in this process:
    calls answered from the prediction cache cost (almost) no energy, so they must not
    dilute the energy per MAC."""

    inner: Evaluator
    macs: float = 0.0
    seen: int = 0

    @property
    def n_samples(self) -> int:
        return self.inner.n_samples

    def evaluate(self, candidate: Candidate, sample_ids: np.ndarray) -> np.ndarray:
        before = _computed(self.inner, len(sample_ids), before=True)
        out = self.inner.evaluate(candidate, sample_ids)
        after = _computed(self.inner, len(sample_ids), before=False)
        self.macs += (after - before) * mac_charge(candidate)
        self.seen += 1
        return out

    def __getattr__(self, name: str) -> Any:
        # Anything else an executor may look for (cache_stats, dataset ...) is the inner one's.
        # Not ``inner`` itself or dunders: unpickling (a remote executor) looks them up
        # before ``inner`` exists, and forwarding them would recurse forever.
        if name == "inner" or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.inner, name)


def _computed(evaluator: Evaluator, n: int, *, before: bool) -> int:
    if isinstance(evaluator, CachingEvaluator):
        return evaluator.cache_stats()["computed"]
    return 0 if before else n


class EnergyRun:
    """Measures one selection run: ``wrap`` the evaluator, ``start``, ``stop``, ``report``.

    Never raises during the run: a tracker that fails leaves ``energy`` null and says why
    in ``note``, because losing a finished selection to an energy meter would be worse.
    """

    def __init__(
        self,
        settings: EnergySettings,
        evaluator: Evaluator,
        factory: TrackerFactory | None = None,
    ) -> None:
        self.settings = settings
        self.note = ""
        self._tracker: Tracker | None = None
        self._counter: _MacCounter | None = None
        self._started = 0.0
        self._duration = 0.0
        self.active = False
        if settings.mode == "off":
            self.note = "not measured (turned off)"
        elif not isinstance(evaluator, CachingEvaluator):
            self.note = (
                "not measured: a replay runs no inference, so there is no model "
                "energy to measure or extrapolate"
            )
        elif factory is None and not codecarbon_available():
            if settings.requested:
                raise ConfigError(f"measuring energy needs CodeCarbon: {INSTALL_HINT}")
            self.note = f"not measured: CodeCarbon is not installed ({INSTALL_HINT})"
        else:
            self.active = True
            if factory is None:
                check_country(settings.country)
        self._factory: TrackerFactory = factory or offline_tracker

    def wrap(self, evaluator: Evaluator) -> Evaluator:
        if not self.active:
            return evaluator
        self._counter = _MacCounter(evaluator)
        return self._counter

    def start(self) -> None:
        if not self.active:
            return
        try:
            self._tracker = self._factory(self.settings)
            self._tracker.start()
        except Exception as exc:  # a meter must never cost the user the selection
            log.warning("energy tracker failed to start: %s", exc)
            self._fail(f"the energy tracker failed to start ({exc})")
            return
        self._started = time.perf_counter()

    def stop(self) -> None:
        if not self.active or self._tracker is None:
            return
        self._duration = time.perf_counter() - self._started
        try:
            self._tracker.stop()
        except Exception as exc:
            log.warning("energy tracker failed to stop: %s", exc)
            self._fail(f"the energy tracker failed ({exc})")

    def _fail(self, why: str) -> None:
        self.active = False
        self.note = f"not measured: {why}"

    def report(
        self,
        *,
        calls: int,
        macs: float | None,
        brute_force_macs: float | None,
        cache: Mapping[str, int] | None = None,
    ) -> EnergyReport | None:
        """The report, or None (with ``note`` set) when nothing was measured."""
        if not self.active or self._tracker is None:
            return None
        data = getattr(self._tracker, "final_emissions_data", None)
        kwh = _finite(getattr(data, "energy_consumed", None))
        co2 = _finite(getattr(data, "emissions", None))
        if data is None or kwh is None or co2 is None:
            # CodeCarbon swallows its own exceptions in start/stop; no data is the symptom.
            self._fail("CodeCarbon returned no measurement")
            return None
        source, components = classify(getattr(self._tracker, "_hardware", []))
        measured_macs = self._measured_macs(calls, macs, cache)
        per_mac = kwh / measured_macs if measured_macs else None
        if brute_force_macs is None or per_mac is None:
            estimate = None
            if brute_force_macs is not None and measured_macs == 0:
                self.note = "no inference ran (every call came from the cache), so no kWh per MAC"
        else:
            estimate = per_mac * brute_force_macs
        duration = _finite(getattr(data, "duration", None)) or self._duration
        return EnergyReport(
            kwh=kwh,
            co2_kg=co2,
            source=source,
            country=self.settings.country,
            region=self.settings.region,
            brute_force_kwh_estimate=estimate,
            duration_s=duration,
            macs_measured=measured_macs if macs is not None else None,
            components=components,
        )

    def _measured_macs(
        self, calls: int, macs: float | None, cache: Mapping[str, int] | None
    ) -> float | None:
        if macs is None:
            return None
        counter = self._counter
        if counter is not None and counter.seen:
            return counter.macs
        # The evaluations ran elsewhere (an executor with its own copy of the evaluator), so
        # there is no per-call count here: take the computed share of the calls pro rata.
        if not calls:
            return 0.0
        if cache is None:
            return macs
        total = cache.get("computed", 0) + cache.get("served", 0)
        return macs * cache.get("computed", 0) / total if total else macs


def _finite(value: object) -> float | None:
    if isinstance(value, int | float) and math.isfinite(float(value)):
        return float(value)
    return None


def format_kwh(kwh: float) -> str:
    """Energy in Wh below 1 kWh: a selection run is often a fraction of a watt-hour."""
    return f"{kwh:.3g} kWh" if kwh >= 1 else f"{kwh * 1000:.3g} Wh"


def summary(energy: EnergyReport | None, note: str = "") -> str:
    """One line for the terminal, the report and the web page, always with its source."""
    if energy is None:
        return note or "not measured"
    where = energy.country or "world average"
    if energy.region:
        where += f", {energy.region}"
    how = "; ".join(f"{k} {v}" for k, v in energy.components.items())
    line = (
        f"{format_kwh(energy.kwh)} ({energy.source}"
        + (f": {how}" if how else "")
        + f"), {energy.co2_kg * 1000:.3g} g CO2e ({where}) in {energy.duration_s:.1f} s"
    )
    if energy.brute_force_kwh_estimate is not None:
        line += f"; brute force would take about {format_kwh(energy.brute_force_kwh_estimate)}"
    return line
