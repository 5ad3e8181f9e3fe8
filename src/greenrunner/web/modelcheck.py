"""What an uploaded model repository may contain, and proof that its models run.

An upload's manifest is held to more than one on the command line: its paths must be plain
relative paths that resolve inside the upload (no ``~``, no absolute path, no ``..``, no
link out), checked by the manifest loader itself on the paths it then opens; ``trust`` is
refused; TorchScript and torch.export files are refused (loading them can run code from the
file); and a builder must be on the server's explicit allow-list
(:class:`greenrunner.adapters.builders.AllowList`), checked on its text before its module is
imported, since importing or calling a builder is running code. Every model is then loaded,
run on one blank image and measured.

All of that reads untrusted files with parsers and runs untrusted graphs, so
:func:`check_repository` does it in a child process (multiprocessing's ``forkserver``, never
a fork of the threaded server) with a memory limit (``RLIMIT_DATA`` above what the
libraries take once imported: on Linux it counts the heap and every private anonymous
mapping, which is where numpy, torch and onnxruntime allocate) and a wall-clock limit; the
child has no network (torchvision weights load only from the torch cache) and none of the
server's secrets in its environment. A model that needs more memory, or a child that dies,
is a refusal with the model's name; the server process never allocates what it asked for.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import re
import signal
import threading
import time
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from greenrunner.adapters.base import ModelSpec
from greenrunner.adapters.builders import AllowList, BuilderError, torchvision_builders
from greenrunner.errors import ConfigError, DataError, GreenRunnerError
from greenrunner.preprocessing import UPLOAD_INPUT_LIMITS, InputLimits
from greenrunner.repositories.manifest import load_manifest, manifest_path
from greenrunner.web.archive import UploadTooLarge, mb

log = logging.getLogger(__name__)

UPLOAD_FORMATS = ("onnx", "torch_state_dict", "torchvision")
MB = 1 << 20
# Text the server parses again at every run, in its own process (the manifest, sidecars,
# class lists), by suffix: bounded, so that parsing it stays cheap; and classes per model.
MAX_TEXT_BYTES = {".toml": 16 * MB, ".txt": 16 * MB, ".json": 1 * MB}
MAX_CLASSES = 1_000_000
# Upload checks running at once; more wait (up to their time limit) rather than each
# taking its memory limit.
MAX_CHECKS = 2
_CHECKS = threading.BoundedSemaphore(MAX_CHECKS)
# Environment variables the check process does not get (the server's token, API keys).
_SECRET = re.compile(r"TOKEN|KEY|SECRET|PASSW|CREDENTIAL|AUTH", re.IGNORECASE)
# How libraries word a failed allocation (numpy raises MemoryError; torch, onnxruntime and
# C++ code raise RuntimeError or their own types with these words).
_NO_MEMORY = re.compile(
    r"can't allocate memory|cannot allocate memory|failed to allocate|unable to allocate|"
    r"bad_alloc|out of memory|memoryerror",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class CheckLimits:
    """What checking one upload's models may take: ``memory_bytes`` of data beyond what the
    libraries themselves take once imported, and ``seconds`` of wall-clock time in all."""

    memory_bytes: int = 2048 * MB
    seconds: float = 300.0


@dataclass(frozen=True)
class RepositoryCheck:
    """What the check process found: the repository's name and description, its model
    count, and the most memory (RSS) it used above its start."""

    name: str
    description: str
    n_models: int
    peak_bytes: int


def inside(root: Path, value: object, where: str) -> Path:
    """``value`` as a path relative to ``root`` that stays inside it once resolved (the
    resolved path is returned: open that one, not ``root / value``)."""
    return manifest_path(root, value, where, within=root)


def check_manifest(manifest: Path, root: Path, builders: Iterable[str] = ()) -> None:
    """What an uploaded manifest may not do, checked before any of its models is loaded;
    ``builders`` are the operator's additions to the allow-list (``--allow-builder``)."""
    allowed = AllowList(builders)
    try:
        doc = tomllib.loads(manifest.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"manifest.toml: not valid TOML: {exc}") from None
    models = doc.get("models")
    for i, entry in enumerate(models if isinstance(models, list) else []):
        if isinstance(entry, dict):  # anything else: load_manifest names the problem
            _check_entry(entry, entry.get("name", f"models[{i}]"), allowed)
    # The paths, by the loader itself with the upload as its bounds: the same function
    # computes the path that is checked and the path that is opened.
    load_manifest(manifest, within=root)


def _check_entry(entry: dict[str, Any], name: object, allowed: AllowList) -> None:
    where = f"manifest.toml: model {name!r}"
    if entry.get("trust"):
        raise DataError(
            f"{where} sets trust = true; uploads cannot: unpickling can run code on the "
            "server. Save a plain state_dict or export to ONNX"
        )
    fmt = entry.get("format")
    if fmt in ("torchscript", "torch_export"):
        raise DataError(
            f"{where} has format {fmt}, which uploads cannot use (loading it can run code "
            f"from the file); use one of {', '.join(UPLOAD_FORMATS)}"
        )
    if "builder" not in entry:
        return
    builder = entry["builder"]
    if fmt == "torchvision":
        _check_torchvision(builder, where)
    elif fmt == "torch_state_dict":
        _check_builder(builder, where, allowed)
        _check_download_args(builder, entry.get("builder_args"), where)
    elif fmt in UPLOAD_FORMATS:
        raise DataError(f"{where}: format {fmt} takes no builder; remove builder = {builder!r}")


def _check_builder(builder: object, where: str, allowed: AllowList) -> None:
    try:
        allowed.check(builder)  # the text only: nothing is imported here
    except BuilderError as exc:
        raise DataError(f"{where}: {exc}") from None


def _check_download_args(builder: object, args: object, where: str) -> None:
    """Builders download pretrained weights when asked to: torchvision's with ``weights``,
    ``weights_backbone`` or the legacy ``pretrained`` (still honoured), others (timm, an
    operator's own) with ``pretrained``. Wasted, since the upload's state_dict replaces
    them, and traffic to the outside that an upload need not cause: any argument named
    ``weights*`` or ``pretrained*`` is refused, for every builder."""
    names = args if isinstance(args, dict) else {}
    keys = sorted(k for k in names if k.lower().startswith(("weights", "pretrained")))
    if not keys:
        return
    tv = isinstance(builder, str) and builder.startswith("torchvision.models:")
    raise DataError(
        f"{where}: builder_args {', '.join(keys)} would make "
        f"{'torchvision' if tv else 'the builder'} download weights on the server; an "
        "upload brings its own state_dict, so leave them out"
    )


def _check_torchvision(builder: object, where: str) -> None:
    """A torchvision model is built by torchvision's registry, by exact name."""
    if not isinstance(builder, str) or f"torchvision.models:{builder}" not in (
        torchvision_builders()
    ):
        raise DataError(
            f"{where} names torchvision builder {builder!r}, which is not one of torchvision's "
            "classification builders (torchvision.models.list_models(module=torchvision.models))"
        )


def load_each(
    specs: Iterable[ModelSpec],
    root: Path,
    *,
    limits: InputLimits = UPLOAD_INPUT_LIMITS,
    memory_bytes: int | None = None,
    started: Callable[[str], None] | None = None,
) -> None:
    """Load every model, run it on one blank image and measure it: a corrupt file, an input
    over ``limits``, or a class list that does not match the model's outputs is refused now,
    with the model's name. torchvision weights load only from the torch cache. A failed
    allocation is :class:`UploadTooLarge` (``memory_bytes``, the check's limit, for its
    message). ``started(name)`` is told each model's name before it is loaded."""
    from greenrunner.adapters.torchvision import cached_only

    for spec in specs:
        if started is not None:
            started(spec.name)
        try:
            with cached_only():
                _load_one(spec, root, limits)
        except MemoryError:
            raise _needs_more(spec.name, memory_bytes) from None
        except GreenRunnerError as exc:
            if _NO_MEMORY.search(str(exc)):
                raise _needs_more(spec.name, memory_bytes) from None
            raise


def _load_one(spec: ModelSpec, root: Path, limits: InputLimits) -> None:
    from greenrunner.adapters.base import load_adapter
    from greenrunner.preprocessing import prepare

    if spec.preprocessing is not None:
        _within(spec.name, spec.preprocessing, limits)
    if spec.format == "onnx" and spec.path is not None:
        _check_onnx_external(spec.path, root)
    try:
        adapter = load_adapter(spec)
    except ConfigError:
        raise  # a missing back-end: its message names the extra to install
    except GreenRunnerError as exc:
        raise DataError(f"model {spec.name!r} cannot be loaded: {exc}") from None
    prep = adapter.preprocessing  # read from the model where the upload gives none
    _within(spec.name, prep, limits)
    try:
        blank = prepare([np.zeros((*prep.size, 3), dtype=np.uint8)], prep)
        scores = np.asarray(adapter.predict(blank))
    except MemoryError:
        raise
    except Exception as exc:  # each back-end fails in its own way
        raise DataError(f"model {spec.name!r} fails on a blank image: {exc}") from None
    classes = spec.classes or adapter.classes
    if classes is not None and scores.shape != (1, len(classes)):
        raise DataError(
            f"model {spec.name!r} gives {scores.shape[-1]} scores per image, but "
            f"{len(classes)} classes are listed; list one class per output, in order"
        )
    try:
        adapter.measure()  # what a run does first, under the same limits
    except GreenRunnerError as exc:
        raise DataError(f"model {spec.name!r} cannot be measured: {exc}") from None


def _within(name: str, prep: Any, limits: InputLimits) -> None:
    try:
        limits.check(prep, f"model {name!r}")
    except ConfigError as exc:
        raise DataError(f"{exc} for uploaded models") from None


def _needs_more(name: str, memory_bytes: int | None) -> UploadTooLarge:
    limit = f"; the server's limit is {mb(memory_bytes)}" if memory_bytes else ""
    return UploadTooLarge(
        f"model {name!r} needs more memory than the server allows to load it and run it "
        f"on one image{limit} (greenrunner serve --check-memory-mb)"
    )


# --- the check process ------------------------------------------------------------------
def check_repository(
    root: Path, builders: Iterable[str] = (), limits: CheckLimits | None = None
) -> RepositoryCheck:
    """Check an unpacked upload in a child process: the manifest's rules
    (:func:`check_manifest`), then every model (:func:`load_each`), within ``limits``.
    Raises what the check raised (DataError, UploadTooLarge), or DataError/UploadTooLarge
    for a check that ran out of time or died."""
    limits = limits or CheckLimits()
    _check_text_sizes(root)
    deadline = time.monotonic() + limits.seconds
    if not _CHECKS.acquire(timeout=limits.seconds):
        raise DataError("the server is busy checking other uploads; try again in a minute")
    try:
        return _run_child(root, tuple(builders), limits, deadline)
    finally:
        _CHECKS.release()


def _check_text_sizes(root: Path) -> None:
    """The text files a run parses again in the server process are small."""
    for path in root.rglob("*"):
        limit = MAX_TEXT_BYTES.get(path.suffix.lower())
        if limit and path.is_file() and path.stat().st_size > limit:
            raise UploadTooLarge(
                f"{path.relative_to(root)} is {mb(path.stat().st_size)}; a {path.suffix} file "
                f"in a model repository may be at most {mb(limit)}"
            )


# What the fork server imports once (those not installed are skipped), so that a check
# process starts in a fraction of a second instead of importing them (3 to 5 s).
PRELOAD = [
    "greenrunner.web.modelcheck",
    "greenrunner.repositories.models",
    "greenrunner.adapters.onnx",
    "greenrunner.adapters.torchvision",
    "PIL.Image",
    "onnx",
    "onnxruntime",
    "torch",
    "torchvision",
]


def _context() -> Any:
    """Check processes come from multiprocessing's fork server, started once (on the first
    upload) from a fresh interpreter that has imported :data:`PRELOAD`: never forks of the
    server, whose threads may hold locks; spawn where there is no fork server."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def _run_child(
    root: Path, builders: tuple[str, ...], limits: CheckLimits, deadline: float
) -> RepositoryCheck:
    ctx = _context()
    reader, writer = ctx.Pipe(duplex=False)
    env = {k: v for k, v in os.environ.items() if not _SECRET.search(k)}
    proc = ctx.Process(
        target=_child,
        args=(writer, str(root), builders, limits.memory_bytes, env),
        name="greenrunner-upload-check",
        daemon=True,
    )
    proc.start()
    writer.close()
    model: str | None = None
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DataError(
                    f"checking {_which(model)} took longer than the server's limit of "
                    f"{limits.seconds:g} s (greenrunner serve --check-seconds)"
                )
            if not reader.poll(min(left, 1.0)):
                continue
            try:
                message = reader.recv()
            except EOFError:
                break  # the child is gone without an answer
            if message[0] == "model":
                model = message[1]
            elif message[0] == "ok":
                result: RepositoryCheck = message[1]
                log.info(
                    "upload check: %d model(s), peak %.0f MB above the check's start",
                    result.n_models,
                    result.peak_bytes / MB,
                )
                return result
            else:
                _, kind, text = message
                raise _ERRORS.get(kind, DataError)(text)
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join(10)
        reader.close()
    return _died(proc.exitcode, model, limits)


def _which(model: str | None) -> str:
    return f"model {model!r}" if model else "the upload's models"


def _died(code: int | None, model: str | None, limits: CheckLimits) -> RepositoryCheck:
    if code is not None and code < 0:
        try:
            how = signal.Signals(-code).name
        except ValueError:
            how = f"signal {-code}"
    else:
        how = f"exit status {code}"
    if code == -signal.SIGKILL:  # what the kernel's out-of-memory killer sends
        raise UploadTooLarge(
            f"checking {_which(model)} was stopped ({how}), most likely for memory; the "
            f"server's limit is {mb(limits.memory_bytes)} (greenrunner serve --check-memory-mb)"
        )
    raise DataError(
        f"checking {_which(model)} crashed ({how}); a model that needs more memory than the "
        f"server's limit of {mb(limits.memory_bytes)} can end this way"
    )


_ERRORS: dict[str, type[GreenRunnerError]] = {
    "DataError": DataError,
    "ConfigError": ConfigError,
    "UploadTooLarge": UploadTooLarge,
}


def _child(
    conn: Any, root_text: str, builders: tuple[str, ...], memory: int, env: dict[str, str]
) -> None:
    """The check process: no secrets, no network, a memory limit, then the checks."""
    try:
        os.environ.clear()
        os.environ.update(env)
        _no_network()
        root = Path(root_text)
        _import_backends(root)
        base = _limit_data(memory)
        result = _check_here(root, builders, memory, lambda name: conn.send(("model", name)))
        peak = max(0, _status("VmHWM") - base) if base else 0
        conn.send(("ok", RepositoryCheck(*result, peak_bytes=peak)))
    except MemoryError:  # outside a model (a huge manifest, class list or sidecar)
        text = f"the upload needs more memory to check than the server's limit of {mb(memory)}"
        conn.send(("error", "UploadTooLarge", text))
    except GreenRunnerError as exc:
        conn.send(("error", type(exc).__name__, str(exc)))
    except Exception as exc:
        # Untrusted files reach parsers (TOML, ONNX, images, text) that fail in their own
        # ways; that is a bad upload, not a server error.
        text = f"{exc.__class__.__name__}: {exc}"
        kind = "UploadTooLarge" if _NO_MEMORY.search(text) else "DataError"
        conn.send(("error", kind, f"the upload could not be read ({text[:2000]})"))
    finally:
        conn.close()


def _check_here(
    root: Path, builders: tuple[str, ...], memory: int, started: Callable[[str], None]
) -> tuple[str, str, int]:
    from greenrunner.repositories.models import open_models

    manifest = root / "manifest.toml"
    if manifest.is_file():
        check_manifest(manifest, root, builders)
    repo = open_models(root)
    for spec in repo.specs:
        if spec.classes is not None and len(spec.classes) > MAX_CLASSES:
            raise DataError(
                f"model {spec.name!r} lists {len(spec.classes):,} classes; at most "
                f"{MAX_CLASSES:,} per model"
            )
    load_each(repo.specs, root, memory_bytes=memory, started=started)
    return repo.name, repo.description, len(repo.specs)


def _no_network() -> None:
    """Python code in the check process cannot open a network connection (a download
    that slipped past the other checks fails instead)."""
    import socket

    def refuse(*args: object, **kwargs: object) -> Any:
        raise OSError("an upload check may not use the network")

    socket.socket.connect = refuse  # type: ignore[method-assign]
    socket.socket.connect_ex = refuse  # type: ignore[method-assign]
    socket.create_connection = refuse
    socket.getaddrinfo = refuse


def _import_backends(root: Path) -> None:
    """Import the back-ends the upload will need before the memory limit is set, so that
    the limit is what its models may take, not the libraries' own size."""
    import importlib

    manifest = root / "manifest.toml"
    wanted = ["PIL.Image"]
    if any(root.glob("*.onnx")) or _contains(manifest, b"onnx"):
        wanted += ["onnxruntime", "onnx"]
    if _contains(manifest, b"torch"):
        wanted += ["torch", "torchvision"]
    for name in wanted:
        with contextlib.suppress(ImportError):  # loading says which extra to install
            importlib.import_module(name)
    if "torch" in wanted:
        try:
            from greenrunner.adapters.torch import _torch

            _torch()  # its thread pool, as a run sets it
        except ConfigError:
            pass


def _contains(path: Path, word: bytes) -> bool:
    if not path.is_file():
        return False
    tail = b""
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            if word in tail + chunk:
                return True
            tail = chunk[-len(word) :]
    return False


def _status(field: str) -> int:
    """A /proc/self/status size in bytes (0 where there is none)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _limit_data(extra: int) -> int:
    """Limit this process's data (heap and private mappings) to what it holds now plus
    ``extra``; returns its resident size now (0 where /proc is missing: no limit)."""
    try:
        import resource
    except ImportError:  # Windows
        return 0
    data = _status("VmData")
    if not data:
        log.warning("no /proc/self/status: the upload check runs without a memory limit")
        return 0
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    soft = data + extra
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))
    return _status("VmRSS")


def _check_onnx_external(path: Path, root: Path) -> None:
    """ONNX weights may live in external files, found relative to the model's folder; each
    one must resolve inside the upload, wherever the tensor sits (initializers, Constant
    nodes, subgraphs of If/Loop/Scan, local functions)."""
    from greenrunner.adapters.base import require

    require("onnx", "onnx")
    import onnx

    from greenrunner.adapters.onnx_tensors import external_locations

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise DataError(f"{path.name}: not a readable ONNX model ({exc})") from None
    for location in external_locations(model):
        manifest_path(path.parent, location, f"{path.name}: external data", within=root)
