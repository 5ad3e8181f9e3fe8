"""Builder references: which function or class a manifest may name to build a network.

A builder is ``package.module:name``: a module path of plain identifiers, a colon, and ONE
plain identifier. Naming a builder is choosing code to run, so a reference is held to rules
that are checked before anything is called:

- the text matches :data:`REFERENCE` exactly (ASCII identifiers; no spaces, no dots after
  the colon, no ``_private`` or ``__dunder__`` name, no ``_private`` module such as
  ``setuptools._distutils``), so no attribute walk such as
  ``torchvision.models:resnet.torch.serialization.os.system`` can be written;
- the module is not part of the standard library, nor GreenRunner itself (other than the
  demo zoo): none of those builds a network, and many run commands or load files;
- the object is a plain Python function or a class (not a builtin, a bound method, a
  ``functools.partial``, a module or a callable instance), it is defined under the name it
  is reached by (no lambdas, no aliases) and in the named module or a submodule of it (its
  ``__module__``), so a foreign object re-exported through an allowed module is refused;
- a class must be a ``torch.nn.Module``, and a function must not come from torch or numpy
  (``torch.load``, ``torch.hub.load``, ``numpy.load`` load files or run code; they build
  no network).

Where a builder may come from is an allow-list everywhere, decided before its module is
imported (importing a module runs its code). On the command line and in
:func:`greenrunner.api.open_real` (:class:`BuilderPolicy`): torchvision's classification
builders and the demo zoo's by exact name, the user's own code (a module whose file lies
outside the standard library and every site-packages folder, found with
``importlib.util.find_spec``), what the user allows (``--allow-builder module:name`` or
``module:*``), and any builder for a model with trust (``--trust`` or ``trust = true``),
since trust already lets its files run any code. An upload (:class:`AllowList`) may name
only the lists and the operator's additions, checked on the text alone.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
import site
import sys
import sysconfig
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from greenrunner.errors import GreenRunnerError

if TYPE_CHECKING:
    from greenrunner.adapters.base import ModelSpec

_PART = r"[A-Za-z_][A-Za-z0-9_]*"
_NAME = r"[A-Za-z][A-Za-z0-9_]*"
# re.ASCII is implied by the explicit classes; fullmatch (not match + $) so a trailing
# newline cannot slip through.
REFERENCE = re.compile(rf"(?P<module>{_PART}(?:\.{_PART})*):(?P<name>{_NAME})")
_ALLOW_ENTRY = re.compile(rf"(?P<module>{_PART}(?:\.{_PART})*):(?P<name>{_NAME}|\*)")
FORM = "package.module:function (a module path, a colon, one plain function or class name)"
# The demo zoo's own builder: the one part of GreenRunner that builds networks.
ZOO_MODULE = "greenrunner.demo.zoo"
# Libraries GreenRunner runs on whose functions load files or compile code (torch.load,
# torch.hub.load, torch.utils.cpp_extension.load_inline, numpy.load) and build no network.
_NO_FUNCTIONS = ("torch", "numpy")


class BuilderError(GreenRunnerError):
    """A builder reference that breaks a rule; the message names the reference and the rule."""


@dataclass(frozen=True)
class BuilderRef:
    """A parsed, well-formed reference; nothing has been imported yet."""

    module: str
    name: str

    def __str__(self) -> str:
        return f"{self.module}:{self.name}"


def parse_builder(ref: object) -> BuilderRef:
    """The reference's module and name, or BuilderError saying which rule it breaks."""
    parsed = _parse_form(ref)
    _check_module_kind(parsed)
    return parsed


def _parse_form(ref: object) -> BuilderRef:
    """The reference's form alone: module path, colon, one plain name."""
    if not isinstance(ref, str):
        raise BuilderError(f"builder must be a string, {FORM}; got {ref!r}")
    match = REFERENCE.fullmatch(ref)
    if match is None:
        raise BuilderError(f"builder {ref!r} is not {FORM}; {_why_malformed(ref)}")
    module, name = match["module"], match["name"]
    _check_module_parts(module, ref)
    return BuilderRef(module, name)


def _check_module_parts(module: str, ref: str) -> None:
    """No dunder module (``__main__``) and no private one (``setuptools._distutils``)."""
    parts = module.split(".")
    if any(part.startswith("__") and part.endswith("__") for part in parts):
        raise BuilderError(f"builder {ref!r}: a dunder module (such as __main__) is no builder")
    private = [part for part in parts if part.startswith("_")]
    if private:
        raise BuilderError(
            f"builder {ref!r}: {private[0]} is a private module (its name starts with _), "
            "which is a package's internals, not a builder; name a public module's builder"
        )


def _why_malformed(ref: str) -> str:
    """The one-line reason a reference does not match, so the fix is obvious."""
    module, sep, name = ref.partition(":")
    if not sep or not module or not name:
        return "it needs a module path, a colon and a name"
    if ref != ref.strip() or any(c.isspace() for c in ref):
        return "it may not contain spaces"
    if not ref.isascii():
        return "only ASCII letters, digits and _ are allowed"
    if "." in name:
        return (
            "a dotted name after the colon reaches an attribute of an attribute, which "
            "builders may not; name a function or class defined in the module (for a "
            "classmethod such as Net.from_name, write a function in your own module that "
            "calls it)"
        )
    if name.startswith("_"):
        return "private and dunder names are not builders"
    return "each part must be a plain identifier (letters, digits, _)"


def _check_module_kind(ref: BuilderRef) -> None:
    """Modules that never hold a builder, refused on the text alone (nothing imported)."""
    top = ref.module.split(".")[0]
    if top in sys.stdlib_module_names:
        raise BuilderError(
            f"builder '{ref}': {top} is part of Python's standard library, which builds no "
            "networks (and can run commands); name a builder from a model package"
        )
    if top == "greenrunner" and ref.module != ZOO_MODULE:
        raise BuilderError(
            f"builder '{ref}': GreenRunner's own modules are not builders "
            f"(except {ZOO_MODULE}:build)"
        )


def resolve_builder(ref: BuilderRef) -> Callable[..., Any]:
    """Import the module and return the function or class, if it keeps every rule."""
    _check_module_kind(ref)  # again: a BuilderRef can be made without parse_builder
    try:
        module = importlib.import_module(ref.module)
    except Exception as exc:  # ImportError, or whatever the module's own code raises
        raise BuilderError(
            f"builder '{ref}': cannot import {ref.module}: {type(exc).__name__}: {exc}"
        ) from exc
    # One attribute of the module, never a walk; a module's lazy __getattr__ (PEP 562) is
    # its own code, already running since the import.
    try:
        obj = getattr(module, ref.name)
    except AttributeError:
        raise BuilderError(
            f"builder '{ref}': cannot import it: {ref.module} has no {ref.name!r}"
        ) from None
    check_builder_object(obj, ref)
    return obj  # type: ignore[no-any-return]  # checked: a function or an nn.Module class


def check_builder_object(obj: object, ref: BuilderRef) -> None:
    """The object rules: a function or nn.Module class, defined here, under this name."""
    kind = "class" if inspect.isclass(obj) else "function" if inspect.isfunction(obj) else None
    if kind is None:
        raise BuilderError(
            f"builder '{ref}' is a {type(obj).__name__}, not a function or class defined in "
            f"Python; a builder must be a plain function or an nn.Module class"
        )
    owner = getattr(obj, "__module__", None)
    if not isinstance(owner, str) or not (
        owner == ref.module or owner.startswith(ref.module + ".")
    ):
        raise BuilderError(
            f"builder '{ref}' is defined in {owner}, not in {ref.module}: a builder must be "
            f"defined in the module it is named by (try {owner}:{ref.name} if you trust it)"
        )
    if getattr(obj, "__qualname__", None) != ref.name:
        raise BuilderError(
            f"builder '{ref}' is {getattr(obj, '__qualname__', '?')!r} under another name (a "
            "lambda, an alias or a nested definition); name the function or class itself"
        )
    if kind == "class":
        torch = sys.modules.get("torch")  # a Module subclass exists only once torch is loaded
        if torch is None or not issubclass(obj, torch.nn.Module):  # type: ignore[arg-type]
            raise BuilderError(f"builder '{ref}' is a class but not a torch.nn.Module")
    elif owner.split(".")[0] in _NO_FUNCTIONS:
        raise BuilderError(
            f"builder '{ref}' is a {owner.split('.')[0]} function: those load files or compile "
            "code and build no network; name an nn.Module class or a model package's builder"
        )


# --- what uploads may name ---------------------------------------------------------------
def parse_allow_entry(text: str) -> tuple[str, str]:
    """An operator's ``--allow-builder``: ``module:name`` or ``module:*`` -> (module, name)."""
    match = _ALLOW_ENTRY.fullmatch(text)
    if match is None:
        raise BuilderError(
            f"--allow-builder {text!r}: give module:function (one exact builder) or "
            "module:* (every function and nn.Module class that module defines); "
            "a bare prefix such as mypackage.models: is no longer accepted"
        )
    module, name = match["module"], match["name"]
    try:  # the standard library and GreenRunner's internals stay refused, even by name
        if name != "*":
            parse_builder(text)
        else:
            _check_module_parts(module, text)
            _check_module_kind(BuilderRef(module, "*"))
    except BuilderError as exc:
        raise BuilderError(f"--allow-builder {text!r}: {exc}") from None
    return module, name


@cache
def torchvision_builders() -> frozenset[str]:
    """``torchvision.models:<name>`` for torchvision's classification builders (empty
    without torchvision): the exact names torchvision itself lists, nothing else."""
    if importlib.util.find_spec("torchvision") is None:
        return frozenset()
    import torchvision

    names = torchvision.models.list_models(module=torchvision.models)
    return frozenset(f"torchvision.models:{n}" for n in names)


def demo_builders() -> frozenset[str]:
    """The demo zoo's builders: its own architectures and the ccexam digit networks."""
    from greenrunner.demo.external import EXTERNAL
    from greenrunner.demo.manifest import BUILDER

    return frozenset({BUILDER, *(e.builder for e in EXTERNAL)})


class AllowList:
    """The builders an upload may name: torchvision's classification builders, the demo
    zoo's, and what the operator adds (``module:name`` exactly, or ``module:*``).

    :meth:`check` looks at the reference's text only; the module is imported later, by
    the adapter, and only for a reference that passed.
    """

    def __init__(self, extra: Iterable[str] = ()) -> None:
        entries = [parse_allow_entry(e) for e in extra]
        self._exact = frozenset(f"{m}:{n}" for m, n in entries if n != "*")
        self._modules = frozenset(m for m, n in entries if n == "*")
        self.extra = tuple(extra)

    def allows(self, ref: BuilderRef) -> bool:
        text = str(ref)
        if text in self._exact or ref.module in self._modules or text in demo_builders():
            return True
        # torchvision is imported (to list its builders) only for a torchvision reference.
        return ref.module == "torchvision.models" and text in torchvision_builders()

    def check(self, ref: object) -> BuilderRef:
        """The parsed reference if allowed, else BuilderError with what is allowed."""
        # The form, then the list: the operator's entries were held to every text rule
        # when the server started, so what is on the list needs no further text check.
        parsed = _parse_form(ref)
        if not self.allows(parsed):
            added = f"; added by the operator: {', '.join(self.extra)}" if self.extra else ""
            raise BuilderError(
                f"builder '{parsed}' is not on this server's list of allowed builders "
                f"(torchvision.models:<classification builder>, the demo zoo's{added}); export "
                "the model to ONNX, or ask the operator to allow it with greenrunner serve "
                f"--allow-builder {parsed}"
            )
        return parsed


# --- where a builder may come from on the command line and in open_real -------------------
# An allow-list too, not a deny-list: of everything importable, only these may be named.
# Importing a module runs its code, so each rule is decided before the module is imported:
# on the text (the lists), or from where the module's file is (importlib.util.find_spec).
ALLOW_HINT = (
    "--allow-builder {ref} (that builder) or --allow-builder {module}:* (that module's), "
    "or --trust, which allows any builder and means the manifest may run any code; in "
    "Python, open_real(..., allow_builders=[{ref!r}]) or trust=True"
)


@cache
def library_folders() -> tuple[Path, ...]:
    """Where installed code lives: the standard library and every site-packages folder
    (the interpreter's, the virtual environment's, the user's), resolved."""
    paths = sysconfig.get_paths()
    found = [paths.get(key) for key in ("stdlib", "platstdlib", "purelib", "platlib")]
    found += list(getattr(site, "getsitepackages", list)())
    user = getattr(site, "getusersitepackages", None)
    if user is not None:
        found.append(user())
    out: list[Path] = []
    for text in found:
        if text:
            path = Path(text).resolve()
            if path not in out:
                out.append(path)
    # The deepest first, so a message names site-packages, not the folder above it.
    return tuple(sorted(out, key=lambda p: len(p.parts), reverse=True))


def _library_folder(location: str) -> str | None:
    """The library folder ``location`` (a module's file or package folder) lies in, or
    None if it is outside all of them (the user's own code)."""
    path = Path(location).resolve()
    for folder in library_folders():
        if path.is_relative_to(folder):
            return str(folder)
    # Any other interpreter's or environment's packages (on PYTHONPATH, say) count too.
    for part in path.parts:
        if part in ("site-packages", "dist-packages"):
            return str(Path(*path.parts[: path.parts.index(part) + 1]))
    return None


def installed_module(module: str) -> str | None:
    """Why ``module`` is not the user's own code (``"pandas is installed in /.../site-
    packages"``), or None when it is: when the file of it and of every package above it
    lies outside the standard library and every site-packages folder.

    Found with importlib.util.find_spec, level by level, before anything of it is
    imported: looking up ``a.b`` imports ``a`` (runs its ``__init__``), so ``a`` is
    checked first and ``a.b`` looked up only if ``a`` is the user's own. A module that
    cannot be found is None here: nothing of it can run, and loading it fails later with
    its own message.
    """
    parts = module.split(".")
    for depth in range(1, len(parts) + 1):
        name = ".".join(parts[:depth])
        try:
            spec = importlib.util.find_spec(name)
        except ModuleNotFoundError:
            return None
        except ValueError:  # in sys.modules without a spec: made at run time, not a file
            return f"{name} is made at run time, not read from a file of yours"
        except Exception:  # the parent package's code (the user's own) failed: the
            return None  # import fails the same way when the model loads, with its message
        if spec is None:
            return None
        locations = list(spec.submodule_search_locations or [])
        if spec.has_location and spec.origin:
            locations.insert(0, spec.origin)
        if not locations:
            return f"{name} is built into Python"
        for location in locations:
            folder = _library_folder(location)
            if folder is not None:
                return f"{name} is installed in {folder}"
    return None


class BuilderPolicy:
    """The builders a manifest on the command line (or a repository opened with
    :func:`greenrunner.api.open_real`) may name, beyond the text rules of
    :func:`parse_builder`:

    - torchvision's classification builders and the demo zoo's, by exact name;
    - the user's own code: a module whose file (and its packages' files) lies outside the
      standard library and every site-packages folder (:func:`installed_module`);
    - what the user allows: ``module:name`` or ``module:*`` (``--allow-builder``);
    - any builder, for a model with trust (``--trust``, or ``trust = true`` for that model
      in the manifest): trust already means its files may run any code.

    The object rules of :func:`check_builder_object` hold for all of them.
    """

    def __init__(self, extra: Iterable[str] = ()) -> None:
        if isinstance(extra, str):
            raise BuilderError(f"allowed builders must be a list of module:name; got {extra!r}")
        self.allowed = AllowList(extra)

    def check(self, ref: object, *, trust: bool = False) -> BuilderRef:
        """The parsed reference if it may be used, else BuilderError naming the rule and
        how to allow it. Imports nothing but the user's own packages (to look a module up
        in them)."""
        parsed = parse_builder(ref)
        if trust or self.allowed.allows(parsed):
            return parsed
        why = installed_module(parsed.module)
        if why is None:
            return parsed
        added = f", and {', '.join(self.allowed.extra)}" if self.allowed.extra else ""
        raise BuilderError(
            f"builder '{parsed}' is not allowed: {why}, and a builder from installed code "
            "must be allowed by name (allowed: torchvision's classification builders, the "
            f"demo zoo's and your own code outside site-packages{added}). If you trust it, "
            "allow it with " + ALLOW_HINT.format(ref=str(parsed), module=parsed.module)
        )

    def check_specs(self, specs: Iterable[ModelSpec]) -> None:
        """Every builder the specs name, checked before any model is loaded; the first
        refused one fails with the model's name."""
        for spec in specs:
            if spec.format != "torch_state_dict" or spec.builder is None:
                continue  # torchvision-format names go through torchvision's registry
            try:
                self.check(spec.builder, trust=spec.trust)
            except BuilderError as exc:
                raise BuilderError(f"model {spec.name!r}: {exc}") from None
