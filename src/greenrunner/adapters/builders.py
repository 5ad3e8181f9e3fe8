"""Builder references: which function or class a manifest may name to build a network.

A builder is ``package.module:name``: a module path of plain identifiers, a colon, and ONE
plain identifier. Naming a builder is choosing code to run, so a reference is held to rules
that are checked before anything is called:

- the text matches :data:`REFERENCE` exactly (ASCII identifiers; no spaces, no dots after
  the colon, no ``_private`` or ``__dunder__`` name), so no attribute walk such as
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

That is the whole rule on the command line, where the manifest is the user's own. An
upload is held to an explicit :class:`AllowList` on top, checked on the text of the
reference before its module is imported (importing a module runs its code).
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

from greenrunner.errors import GreenRunnerError

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
    if any(part.startswith("__") and part.endswith("__") for part in module.split(".")):
        raise BuilderError(f"builder {ref!r}: a dunder module (such as __main__) is no builder")
    return BuilderRef(module, name)


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
            _check_module_kind(BuilderRef(module, "*"))
    except BuilderError as exc:
        raise BuilderError(f"--allow-builder {text!r}: {exc}") from None
    return module, name


@cache
def torchvision_builders() -> frozenset[str]:
    """``torchvision.models:<name>`` for torchvision's classification builders (empty
    without torchvision): the exact names torchvision itself lists, nothing else."""
    import importlib.util

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
