"""A builder names code to run (issue 11, item 1). Only a function or nn.Module class,
reached by ONE plain name and defined in the module it is named by, is ever a builder; an
upload may only name builders on the server's explicit list, checked on the text before its
module is imported. Every hostile reference below must run nothing: each one that could
run something calls a function that would leave a marker file, and the marker must not exist.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from greenrunner.adapters import ModelSpec, load_adapter  # noqa: E402
from greenrunner.adapters.builders import (  # noqa: E402
    AllowList,
    BuilderError,
    parse_builder,
    resolve_builder,
)
from greenrunner.adapters.torch import import_builder  # noqa: E402
from greenrunner.adapters.torchvision import get_weights  # noqa: E402
from greenrunner.errors import ConfigError  # noqa: E402
from greenrunner.evaluation.base import EvaluationError  # noqa: E402
from greenrunner.preprocessing import Preprocessing  # noqa: E402
from tests import torch_models  # noqa: E402

REPO_ROOT = Path(__file__).parents[1]
EXPLOIT = "torchvision.models:resnet.torch.serialization.os.system"  # the issue's own
GREY8 = Preprocessing(size=(8, 8), channels=1)
Plant = Callable[[str], str]


@pytest.fixture
def plant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Plant]:
    """``plant(source)`` -> the name of a fresh importable module holding ``source``
    (``{marker}`` in it is this test's marker file, which hostile code would create)."""
    folder = tmp_path / "planted"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    names: list[str] = []

    def make(source: str) -> str:
        name = f"gr_planted_{uuid.uuid4().hex[:10]}"
        text = textwrap.dedent(source).replace("{marker}", str(tmp_path / "marker"))
        (folder / f"{name}.py").write_text(text)
        names.append(name)
        return name

    yield make
    for name in names:
        sys.modules.pop(name, None)


def _weights(tmp_path: Path) -> Path:
    path = tmp_path / "w.pt"
    torch.save(torch_models.mlp(16).state_dict(), path)
    return path


def _spec(tmp_path: Path, builder: str, **args: Any) -> ModelSpec:
    return ModelSpec(
        "m",
        "torch_state_dict",
        path=_weights(tmp_path),
        builder=builder,
        builder_args=args,
        preprocessing=GREY8,
    )


# --- the rules, on references that need no planted module ---------------------------------
REFUSED = [
    (EXPLOIT, "attribute of an attribute"),
    ("torchvision.models:resnet.os.system", "attribute of an attribute"),
    ("tests.torch_models:torch.hub.load", "attribute of an attribute"),
    ("tests.torch_models:nn.Linear", "attribute of an attribute"),
    ("tests.torch_models:__class__", "private and dunder names"),
    ("tests.torch_models:__builtins__", "private and dunder names"),
    ("tests.torch_models:__loader__", "private and dunder names"),
    ("tests.torch_models:_secret", "private and dunder names"),
    ("builtins:eval", "standard library"),
    ("builtins:exec", "standard library"),
    ("os:system", "standard library"),
    ("os.path:join", "standard library"),
    ("subprocess:run", "standard library"),
    ("subprocess:Popen", "standard library"),
    ("functools:partial", "standard library"),
    ("importlib:import_module", "standard library"),
    ("shutil:rmtree", "standard library"),
    ("pickle:loads", "standard library"),
    ("torch:load", "torch function"),
    ("torch.hub:load", "torch function"),
    ("torch.utils.cpp_extension:load_inline", "torch function"),
    ("numpy:load", "numpy function"),
    ("greenrunner.web.archive:remove", "GreenRunner's own modules"),
    ("greenrunner.adapters.torch:load_state_dict", "GreenRunner's own modules"),
    ("__main__:build", "dunder module"),
    ("tests.torch_models:torch", "is a module"),
    ("torchvision.models:resnet", "is a module"),
    (" tests.torch_models:mlp", "spaces"),
    ("tests.torch_models:mlp ", "spaces"),
    ("tests.torch_models:mlp\n", "spaces"),
    ("tests.torch_models :mlp", "spaces"),
    ("tests.torch_models:mlp\u200b", "ASCII"),  # a zero-width space
    ("tests.torch_models:\uff4dlp", "ASCII"),  # fullwidth m: NFKC would make it "mlp"
    ("tests.torch_\u217codels:mlp", "ASCII"),  # small roman numeral fifty looks like l
    ("tests.torch_models", "a module path, a colon and a name"),
    ("tests.torch_models:", "a module path, a colon and a name"),
    (":mlp", "a module path, a colon and a name"),
    ("tests..torch_models:mlp", "plain identifier"),
    ("tests.torch_models:mlp:x", "plain identifier"),
    ("tests/torch_models:mlp", "plain identifier"),
]


@pytest.mark.parametrize(("builder", "rule"), REFUSED, ids=[repr(b) for b, _ in REFUSED])
def test_hostile_references_are_refused_with_the_rule_they_break(
    tmp_path: Path, builder: str, rule: str
) -> None:
    marker = tmp_path / "marker"
    # Arguments each dangerous callable would act on, were it ever called.
    spec = _spec(tmp_path, builder, command=f"touch {marker}", args=["touch", str(marker)])
    with pytest.raises(EvaluationError, match="model 'm': builder") as refused:
        load_adapter(spec)
    assert rule in str(refused.value)
    assert repr(builder) in str(refused.value) or builder.strip() in str(refused.value)
    assert "\n" not in str(refused.value).strip()  # one line
    assert not marker.exists()


def test_the_issues_exploit_runs_no_command(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    with pytest.raises(EvaluationError, match="attribute of an attribute"):
        load_adapter(_spec(tmp_path, EXPLOIT, command=f"touch {marker}"))
    assert not marker.exists()


@pytest.mark.parametrize(
    "builder",
    [
        "tests.torch_models:mlp",
        "tests.torch_models:Constant",  # an nn.Module class
        "torch.nn:Linear",  # defined in a submodule of the module named
        "torchvision.models:resnet18",  # defined in torchvision.models.resnet
        "greenrunner.demo.zoo:build",
    ],
)
def test_real_builders_still_resolve(builder: str) -> None:
    assert callable(import_builder(builder, "m"))


def test_the_demo_zoos_external_builders_resolve() -> None:
    pytest.importorskip("ccexam")
    from greenrunner.demo.external import EXTERNAL

    for ext in EXTERNAL:
        assert issubclass(import_builder(ext.builder, ext.name), torch.nn.Module)


def test_a_state_dict_still_loads_through_its_builder(tmp_path: Path) -> None:
    adapter = load_adapter(_spec(tmp_path, "tests.torch_models:mlp", width=16))
    assert adapter.predict(torch.zeros(2, 1, 8, 8).numpy()).shape == (2, 3)


def test_a_builder_that_is_not_a_string_is_refused() -> None:
    with pytest.raises(EvaluationError, match="builder must be a string"):
        import_builder(["os", "system"], "m")


# --- the object rules, on planted modules --------------------------------------------------
HOSTILE_MODULE = """
    from pathlib import Path
    import functools
    from subprocess import run
    from os import system
    from tests.torch_models import mlp, Constant
    from torch.nn import Linear

    def _mark(*args, **kwargs):
        Path("{marker}").touch()

    class Maker:
        def __call__(self, **kw):
            _mark()
        def method(self, **kw):
            _mark()

    class NotAModule:
        def __init__(self, **kw):
            _mark()

    def outer():
        def inner(**kw):
            _mark()
        return inner

    def make(**kw):
        _mark()

    callable_variable = Maker()
    bound_method = Maker().method
    partial = functools.partial(_mark, 1)
    lam = lambda **kw: _mark()
    alias = make
    nested = outer()
    builtin = print
    exec_ = exec
"""
OBJECT_REFUSALS = [
    ("callable_variable", "is a Maker, not a function or class"),
    ("bound_method", "is a method, not a function or class"),
    ("partial", "is a partial, not a function or class"),
    ("builtin", "is a builtin_function_or_method"),
    ("exec_", "is a builtin_function_or_method"),
    ("lam", "'<lambda>' under another name"),
    ("alias", "'make' under another name"),
    ("nested", "'outer.<locals>.inner' under another name"),
    ("NotAModule", "is a class but not a torch.nn.Module"),
    ("run", "is defined in subprocess, not in"),  # a foreign function re-exported
    ("mlp", "is defined in tests.torch_models, not in"),
    ("Constant", "is defined in tests.torch_models, not in"),  # a foreign class re-exported
    ("Linear", "is defined in torch.nn.modules.linear, not in"),
    ("system", "is a builtin_function_or_method"),
]


@pytest.mark.parametrize(("name", "rule"), OBJECT_REFUSALS, ids=[n for n, _ in OBJECT_REFUSALS])
def test_objects_that_are_not_builders_defined_here_are_refused_uncalled(
    tmp_path: Path, plant: Plant, name: str, rule: str
) -> None:
    module = plant(HOSTILE_MODULE)
    marker = tmp_path / "marker"
    with pytest.raises(EvaluationError) as refused:
        load_adapter(_spec(tmp_path, f"{module}:{name}", args=["touch", str(marker)]))
    assert rule in str(refused.value)
    assert f"{module}:{name}" in str(refused.value) and "model 'm'" in str(refused.value)
    assert not marker.exists()


def test_a_function_re_exported_from_another_module_is_refused(plant: Plant) -> None:
    impl = plant(
        "from tests.torch_models import mlp as _mlp\ndef build(width=16):\n    return _mlp(width)\n"
    )
    other = plant(f"from {impl} import build\n")
    with pytest.raises(BuilderError, match=f"is defined in {impl}, not in {other}"):
        resolve_builder(parse_builder(f"{other}:build"))
    assert callable(resolve_builder(parse_builder(f"{impl}:build")))


def test_a_package_may_define_its_builder_in_a_submodule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = f"gr_package_{uuid.uuid4().hex[:10]}"
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text("from .nets import build\n")
    (tmp_path / package / "nets.py").write_text(
        "from tests.torch_models import mlp\ndef build(width=16):\n    return mlp(width)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert callable(import_builder(f"{package}:build", "m"))  # like torchvision.models
    finally:
        for name in (package, f"{package}.nets"):
            sys.modules.pop(name, None)


# --- the command line, in a real subprocess -------------------------------------------------
def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """The installed console script, as a user runs it (tests/ importable for the weights)."""
    exe = Path(sys.executable).parent / "greenrunner"
    path = os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), str(REPO_ROOT)) if p)
    env = {**os.environ, "GREENRUNNER_CACHE": str(cwd / "cache"), "PYTHONPATH": path}
    return subprocess.run(
        [str(exe), *args], capture_output=True, text=True, timeout=300, cwd=cwd, env=env,
        check=False,
    )  # fmt: skip


def _manifest(folder: Path, builder: str, args: str) -> Path:
    _weights(folder)
    (folder / "manifest.toml").write_text(
        '[repository]\nname = "evil"\nclasses = ["a", "b", "c"]\n'
        f'[[models]]\nname = "m"\nformat = "torch_state_dict"\npath = "w.pt"\n'
        f"builder = {builder!r}\nbuilder_args = {args}\n"
        "[models.preprocessing]\nsize = [8, 8]\nchannels = 1\n"
    )
    return folder / "manifest.toml"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("builder", "args", "rule"),
    [
        (EXPLOIT, '{{ command = "touch {marker}" }}', "attribute of an attribute"),
        ("subprocess:run", '{{ args = ["touch", "{marker}"] }}', "standard library"),
    ],
    ids=["issue-exploit", "subprocess.run"],
)
def test_the_cli_runs_no_command_from_a_manifest(
    tmp_path: Path, builder: str, args: str, rule: str
) -> None:
    marker = tmp_path / "pwned"
    manifest = _manifest(tmp_path, builder, args.format(marker=marker))
    proc = _cli(["inspect", "--models", str(manifest)], tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and rule in proc.stderr
    assert "model 'm'" in proc.stderr
    assert not marker.exists()


# --- what the torchvision format may name ---------------------------------------------------
@pytest.mark.parametrize(
    ("builder", "weights", "words"),
    [
        ("fasterrcnn_resnet50_fpn", None, "no classification builder"),  # a detector
        ("ResNet18", None, "no classification builder"),  # exact names only
        ("resnet18.__class__", None, "no classification builder"),
        ("get_weight", None, "no classification builder"),
        ("resnet18", "Wide_ResNet50_2_Weights.IMAGENET1K_V1", "are not resnet18's"),
        ("resnet18", "mro", "has no weights 'mro'"),
        ("resnet18", "__class__", "has no weights '__class__'"),
    ],
)
def test_torchvision_names_come_from_its_registry_by_exact_name(
    builder: str, weights: str | None, words: str
) -> None:
    with pytest.raises(EvaluationError, match="model 'm'") as refused:
        get_weights(builder, weights, "m")
    assert words in str(refused.value)


# --- the allow-list of uploads --------------------------------------------------------------
def test_the_allow_list_is_exact_names() -> None:
    allowed = AllowList(["tests.web_helpers:gated"])
    for ref in ("torchvision.models:resnet18", "greenrunner.demo.zoo:build"):
        assert str(allowed.check(ref)) == ref
    for ref in ("ccexam.models:MNISTNet", "tests.web_helpers:gated"):
        assert str(allowed.check(ref)) == ref
    for ref in (
        "tests.web_helpers:gated_evil",  # a prefix of an allowed name is not that name
        "tests.web_helpers:zip_bytes",
        "torchvision.models:get_weight",  # torchvision.models, but no classification builder
        "torchvision.models:fasterrcnn_resnet50_fpn",
        "greenrunner.demo.zoo:Recipe",
        "ccexam.models:helper",
    ):
        with pytest.raises(BuilderError, match="not on this server's list"):
            allowed.check(ref)


def test_a_module_star_allows_that_module_only() -> None:
    allowed = AllowList(["tests.torch_models:*"])
    assert str(allowed.check("tests.torch_models:mlp")) == "tests.torch_models:mlp"
    with pytest.raises(BuilderError, match="not on this server's list"):
        allowed.check("tests.torch_models_evil:mlp")
    with pytest.raises(BuilderError, match="not on this server's list"):
        allowed.check("tests:torch_models")


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ("tests.web_helpers:", "no longer accepted"),  # the old prefix form
        ("mypackage", "no longer accepted"),
        ("os:system", "standard library"),
        ("subprocess:*", "standard library"),
        ("greenrunner.store:*", "GreenRunner's own modules"),
        ("mypkg:a.b", "module:function"),
        ("mypkg:__call__", "module:function"),
        ("mypkg:*x", "module:function"),
    ],
)
def test_operator_entries_are_checked_when_the_server_starts(entry: str, words: str) -> None:
    from greenrunner.web.settings import WebSettings

    with pytest.raises(ConfigError, match="allow-builder") as refused:
        WebSettings(builders=(entry,))
    assert words in str(refused.value)


def test_the_check_imports_nothing(plant: Plant, tmp_path: Path) -> None:
    """A reference off the list is refused on its text: its module is never imported."""
    module = plant('from pathlib import Path\nPath("{marker}").touch()\ndef build(): pass\n')
    with pytest.raises(BuilderError, match="not on this server's list"):
        AllowList().check(f"{module}:build")
    assert module not in sys.modules and not (tmp_path / "marker").exists()
