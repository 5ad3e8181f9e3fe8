"""Where a builder may come from, on the command line too, is an allow-list (red team,
finding 9): torchvision's classification builders, the demo zoo's, the user's own code
(outside the standard library and every site-packages folder), what the user allows with
``--allow-builder``, and any builder with ``--trust``. Everything else installed is
refused before its module is imported: a hostile module below leaves a marker when it is
imported and another when its builder is called, and neither may appear.
"""

from __future__ import annotations

import os
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from greenrunner.adapters.builders import (  # noqa: E402
    BuilderError,
    BuilderPolicy,
    installed_module,
    parse_allow_entry,
    parse_builder,
)
from tests import torch_models  # noqa: E402
from tests.cli_helpers import greenrunner  # noqa: E402

EXIT_USER_ERROR = 2
# A builder that builds the network the weights fit, after leaving a marker: if the marker
# exists, the builder ran; if the import marker exists, the module's code ran.
PACKAGE = """
    from pathlib import Path
    Path({imported!r}).touch()

    def build(width=16, **kwargs):
        Path({called!r}).touch()
        from tests.torch_models import mlp
        return mlp(width)
"""


class Installed:
    """A package in a folder named site-packages (so: installed code, not the user's)."""

    def __init__(self, root: Path) -> None:
        self.folder = root / "venv" / "lib" / "site-packages"
        self.name = f"gr_installed_{uuid.uuid4().hex[:8]}"
        self.imported = root / "imported"
        self.called = root / "called"
        package = self.folder / self.name
        package.mkdir(parents=True)
        source = PACKAGE.format(imported=str(self.imported), called=str(self.called))
        (package / "__init__.py").write_text(textwrap.dedent(source))

    @property
    def builder(self) -> str:
        return f"{self.name}:build"

    def ran_nothing(self) -> bool:
        return not self.imported.exists() and not self.called.exists()


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Installed]:
    pkg = Installed(tmp_path)
    monkeypatch.syspath_prepend(str(pkg.folder))
    yield pkg
    sys.modules.pop(pkg.name, None)


def _manifest(folder: Path, builder: str, *, trust: bool = False) -> Path:
    torch.save(torch_models.mlp(16).state_dict(), folder / "w.pt")
    manifest = folder / "manifest.toml"
    manifest.write_text(
        '[repository]\nname = "r"\nclasses = ["a", "b", "c"]\n'
        '[[models]]\nname = "m"\nformat = "torch_state_dict"\npath = "w.pt"\n'
        f"builder = {builder!r}\n"
        + ("trust = true\n" if trust else "")
        + "builder_args = { width = 16 }\n"
        "[models.preprocessing]\nsize = [8, 8]\nchannels = 1\n"
    )
    return manifest


def _cli(installed: Installed, *args: str) -> tuple[int, str]:
    """`greenrunner ARGS` in a real subprocess, the installed package importable."""
    env_path = os.pathsep.join((str(installed.folder), os.environ.get("PYTHONPATH", "")))
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = env_path
    try:
        proc = greenrunner(*args)
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old
    return proc.returncode, proc.stdout + proc.stderr


def _inspect(manifest: Path, installed: Installed, *extra: str) -> tuple[int, str]:
    return _cli(installed, "inspect", "--models", str(manifest), "--no-cache", *extra)


# --- the command line, in a real subprocess ---------------------------------------------------
def test_an_installed_packages_builder_is_refused_unimported(
    tmp_path: Path, installed: Installed
) -> None:
    code, out = _inspect(_manifest(tmp_path, installed.builder), installed)
    assert code == EXIT_USER_ERROR, out
    assert "Traceback" not in out
    assert f"builder '{installed.builder}' is not allowed" in out
    assert "site-packages" in out and f"--allow-builder {installed.builder}" in out
    assert "--trust" in out
    assert installed.ran_nothing()


@pytest.mark.parametrize(
    "allow",
    [
        lambda pkg: ["--allow-builder", pkg.builder],
        lambda pkg: ["--allow-builder", f"{pkg.name}:*"],
        lambda pkg: ["--trust"],
    ],
    ids=["exact", "module-star", "trust"],
)
def test_what_the_user_allows_is_used(tmp_path: Path, installed: Installed, allow: object) -> None:
    code, out = _inspect(_manifest(tmp_path, installed.builder), installed, *allow(installed))  # type: ignore[operator]
    assert code == 0, out
    assert installed.called.exists()  # allowed: the builder was called


def test_trust_in_the_users_manifest_allows_its_builder(
    tmp_path: Path, installed: Installed
) -> None:
    code, out = _inspect(_manifest(tmp_path, installed.builder, trust=True), installed)
    assert code == 0, out
    assert installed.called.exists()


def test_resume_needs_the_allowed_builder_again(tmp_path: Path, installed: Installed) -> None:
    import sqlite3

    from tests.web_helpers import image_folder_files

    manifest = _manifest(tmp_path, installed.builder)
    data = tmp_path / "target"
    for rel, blob in image_folder_files(n=6, prefix="").items():
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        (data / rel).write_bytes(blob)
    db = tmp_path / "s.db"
    allow = ("--allow-builder", installed.builder)
    select = ("select", "--models", str(manifest), "--data", str(data), "--no-cache")
    code, out = _cli(installed, *select, "--store", str(db), *allow)
    assert code == 0, out
    con = sqlite3.connect(db)
    with con:
        con.execute("UPDATE experiments SET status='running', result=NULL")
    con.close()
    installed.called.unlink()
    installed.imported.unlink()
    code, out = _cli(installed, "resume", "1", "--store", str(db))
    assert code == EXIT_USER_ERROR and "Traceback" not in out, out
    assert "cannot resume experiment 1" in out and "is not allowed" in out
    assert installed.ran_nothing()
    code, out = _cli(installed, "resume", "1", "--store", str(db), *allow)
    assert code == 0, out


def test_allowing_another_builder_does_not_allow_this_one(
    tmp_path: Path, installed: Installed
) -> None:
    manifest = _manifest(tmp_path, installed.builder)
    code, out = _inspect(manifest, installed, "--allow-builder", f"{installed.name}:other")
    assert code == EXIT_USER_ERROR and "is not allowed" in out, out
    assert installed.ran_nothing()


@pytest.mark.parametrize(
    ("builder", "words"),
    [
        ("setuptools._distutils.spawn:spawn", "_distutils is a private module"),
        ("pip._internal.utils.subprocess:call_subprocess", "_internal is a private module"),
        ("yaml:unsafe_load", "is not allowed"),
        ("pandas:read_pickle", "is not allowed"),
        ("torchvision.io:write_png", "is not allowed"),
        ("torchvision.datasets.utils:download_url", "is not allowed"),
    ],
)
def test_the_red_teams_builders_are_refused(tmp_path: Path, builder: str, words: str) -> None:
    manifest = _manifest(tmp_path, builder)
    proc = greenrunner("inspect", "--models", str(manifest), "--no-cache")
    assert proc.returncode == EXIT_USER_ERROR, proc.stdout + proc.stderr
    assert words in proc.stderr and "Traceback" not in proc.stderr


def test_inspect_fails_when_no_model_could_be_measured(tmp_path: Path) -> None:
    torch.save(torch_models.mlp(8).state_dict(), tmp_path / "w.pt")  # does not fit width 16
    text = (
        '[repository]\nname = "r"\nclasses = ["a", "b", "c"]\n'
        '[[models]]\nname = "m"\nformat = "torch_state_dict"\npath = "w.pt"\n'
        'builder = "tests.torch_models:mlp"\nbuilder_args = { width = 16 }\n'
        "[models.preprocessing]\nsize = [8, 8]\nchannels = 1\n"
    )
    (tmp_path / "manifest.toml").write_text(text)
    proc = greenrunner("inspect", "--models", str(tmp_path / "manifest.toml"), "--no-cache")
    assert proc.returncode == EXIT_USER_ERROR, proc.stdout + proc.stderr
    assert "none of the 1 model(s)" in proc.stderr and "Traceback" not in proc.stderr


# --- the rules, in this process ---------------------------------------------------------------
def test_the_check_imports_nothing_it_refuses(installed: Installed) -> None:
    with pytest.raises(BuilderError, match="is not allowed"):
        BuilderPolicy().check(installed.builder)
    assert installed.name not in sys.modules
    assert installed.ran_nothing()


def test_the_lists_and_the_users_own_code_pass() -> None:
    policy = BuilderPolicy()
    for ref in (
        "torchvision.models:resnet18",
        "greenrunner.demo.zoo:build",
        "tests.torch_models:mlp",  # the user's own code: this repository, not site-packages
        "tests.store_helpers:counting",
    ):
        assert str(policy.check(ref)) == ref
    for ref in ("torch.nn:Linear", "torchvision.models:get_weight", "numpy.random:default_rng"):
        with pytest.raises(BuilderError, match="is not allowed"):
            policy.check(ref)
    assert str(policy.check("torch.nn:Linear", trust=True)) == "torch.nn:Linear"


def test_a_users_package_in_an_ordinary_folder_is_their_own_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"gr_mine_{uuid.uuid4().hex[:8]}"
    (tmp_path / name).mkdir()
    (tmp_path / name / "__init__.py").write_text("")
    (tmp_path / name / "nets.py").write_text("def build():\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert installed_module(f"{name}.nets") is None
        assert str(BuilderPolicy().check(f"{name}.nets:build")) == f"{name}.nets:build"
    finally:
        for mod in (name, f"{name}.nets"):
            sys.modules.pop(mod, None)


def test_a_users_package_that_reaches_into_site_packages_is_checked_level_by_level(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each level of the module path is looked up, and checked, on its own: a submodule
    found through a package's __path__ in site-packages is installed code."""
    name = f"gr_reach_{uuid.uuid4().hex[:8]}"
    lib = tmp_path / "site-packages" / "elsewhere"
    lib.mkdir(parents=True)
    marker = tmp_path / "evil-imported"
    (lib / "evil.py").write_text(f"open({str(marker)!r}, 'w').close()\ndef build(): pass\n")
    (tmp_path / "mine" / name).mkdir(parents=True)
    (tmp_path / "mine" / name / "__init__.py").write_text(f"__path__.append({str(lib)!r})\n")
    monkeypatch.syspath_prepend(str(tmp_path / "mine"))
    try:
        with pytest.raises(BuilderError, match=f"{name}.evil is installed in"):
            BuilderPolicy().check(f"{name}.evil:build")
        assert not marker.exists()
    finally:
        for mod in (name, f"{name}.evil"):
            sys.modules.pop(mod, None)


@pytest.mark.parametrize(
    "ref",
    ["setuptools._distutils.spawn:spawn", "tests._helpers:thing", "a._b.c:build", "_x:build"],
)
def test_private_module_parts_are_refused_on_the_text(ref: str) -> None:
    with pytest.raises(BuilderError, match="is a private module"):
        parse_builder(ref)


@pytest.mark.parametrize("entry", ["pkg._private:*", "pkg._private:build", "os:*"])
def test_allow_entries_keep_the_text_rules(entry: str) -> None:
    with pytest.raises(BuilderError):
        parse_allow_entry(entry)


def test_open_real_takes_allow_builders(
    tmp_path: Path, installed: Installed, monkeypatch: pytest.MonkeyPatch
) -> None:
    from greenrunner.api import open_real
    from greenrunner.errors import ConfigError
    from tests.web_helpers import image_folder_files

    manifest = _manifest(tmp_path, installed.builder)
    data = tmp_path / "target"
    for rel, blob in image_folder_files(n=6, prefix="").items():
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        (data / rel).write_bytes(blob)
    monkeypatch.setenv("GREENRUNNER_CACHE", str(tmp_path / "cache"))
    with pytest.raises(BuilderError, match="allow_builders"):
        open_real(manifest, data, use_cache=False)
    assert installed.ran_nothing()
    with pytest.raises(ConfigError, match="allow_builders must be a list"):
        open_real(manifest, data, use_cache=False, allow_builders=installed.builder)
    _, _, prepared = open_real(manifest, data, use_cache=False, allow_builders=[installed.builder])
    assert prepared.candidates and installed.called.exists()


def test_web_runs_admit_the_builders_the_operator_allowed(
    tmp_path: Path, installed: Installed, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An upload admitted by `serve --allow-builder` must also load when its run starts:
    the run's loader gets the same list (an installed package is not the user's own code)."""
    pytest.importorskip("fastapi")
    from greenrunner.web.pipeline import _open
    from greenrunner.web.settings import WebSettings
    from tests.web_helpers import image_folder_files

    manifest = _manifest(tmp_path, installed.builder)
    data = tmp_path / "target"
    for rel, blob in image_folder_files(n=6, prefix="").items():
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        (data / rel).write_bytes(blob)
    monkeypatch.setenv("GREENRUNNER_CACHE", str(tmp_path / "cache"))

    class Writer:
        def loading(self, *args: object, **kwargs: object) -> None:
            pass

    refused = WebSettings(data_dir=tmp_path / "web", use_cache=False)
    with pytest.raises(BuilderError, match="not allowed"):
        _open(str(manifest), str(data), refused, Writer())  # type: ignore[arg-type]
    allowed = WebSettings(data_dir=tmp_path / "web", use_cache=False, builders=(installed.builder,))
    _, _, prepared = _open(str(manifest), str(data), allowed, Writer())  # type: ignore[arg-type]
    assert prepared.candidates and installed.called.exists()
