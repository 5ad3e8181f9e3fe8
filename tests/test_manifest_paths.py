"""The paths a manifest (or an ONNX file's external data) names (issue 11, item 4).

On the command line the manifest is the user's own: ``~`` expands, absolute paths work. For
an upload the same function computes the path, with the upload as its bounds: it refuses on
the text whatever could leave the upload (``~``, absolute, drive letters, backslashes,
``..``), then resolves links and checks the resolved path, which is the one it returns, so
what is checked is what gets opened.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from greenrunner.errors import DataError
from greenrunner.repositories.manifest import load_manifest, manifest_path

RULE = "must be a relative path inside the zip"
HOSTILE = [
    "~/secret.onnx",
    "~root/x.onnx",
    "~",
    "~+/x.onnx",
    "sub/~/x.onnx",
    "/etc/passwd",
    "//server/share/x.onnx",
    "../x.onnx",
    "sub/../../x.onnx",
    "sub/..",
    "C:/x.onnx",
    "C:x.onnx",
    "c:\\windows\\x.onnx",
    "\\\\server\\share\\x.onnx",
    "sub\\..\\..\\x.onnx",
    "x\0.onnx",
]


@pytest.fixture
def upload(tmp_path: Path) -> Path:
    root = tmp_path / "upload"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "m.onnx").write_bytes(b"x")
    return root


@pytest.mark.parametrize("text", HOSTILE, ids=repr)
def test_upload_paths_that_could_leave_the_upload_are_refused_on_their_text(
    upload: Path, text: str
) -> None:
    with pytest.raises(DataError, match=RULE) as refused:
        manifest_path(upload, text, "manifest.toml: model 'm': path", within=upload)
    assert str(refused.value).startswith("manifest.toml: model 'm': path: ")
    assert str(upload) not in str(refused.value)


@pytest.mark.parametrize("value", ["", 5, ["a"], None])
def test_a_path_must_be_a_string(upload: Path, value: object) -> None:
    for within in (upload, None):
        with pytest.raises(DataError, match="must be a path"):
            manifest_path(upload, value, "p", within=within)


def test_a_link_out_of_the_upload_is_refused_after_resolving(upload: Path, tmp_path: Path) -> None:
    (tmp_path / "server-secret.onnx").write_bytes(b"secret")
    (upload / "link.onnx").symlink_to(tmp_path / "server-secret.onnx")
    (upload / "dir").symlink_to(tmp_path)
    for text in ("link.onnx", "dir/server-secret.onnx"):
        with pytest.raises(DataError, match="leads outside it"):
            manifest_path(upload, text, "p", within=upload)
    # A link that stays inside is followed; the resolved path is what the loader opens.
    (upload / "inner.onnx").symlink_to(upload / "sub" / "m.onnx")
    got = manifest_path(upload, "inner.onnx", "p", within=upload)
    assert got == (upload / "sub" / "m.onnx").resolve()
    assert manifest_path(upload, "sub/./m.onnx", "p", within=upload) == got


def test_the_command_line_keeps_home_folders_and_absolute_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert manifest_path(tmp_path, "~/m.onnx", "p") == tmp_path / "home" / "m.onnx"
    assert manifest_path(tmp_path, "/opt/m.onnx", "p") == Path("/opt/m.onnx")
    assert manifest_path(tmp_path, "sub/m.onnx", "p") == tmp_path / "sub" / "m.onnx"


def _manifest(folder: Path, model: str, repository: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "m.onnx").write_bytes(b"x")
    path = folder / "manifest.toml"
    path.write_text(
        f'[repository]\nname = "r"\n{repository}\n'
        f'[[models]]\nname = "m"\nformat = "onnx"\n{model}\n'
        "[models.preprocessing]\nsize = 8\nchannels = 1\n"
    )
    return path


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home folder holding files an upload must not reach."""
    folder = tmp_path / "home"
    folder.mkdir()
    (folder / "secret.onnx").write_bytes(b"x")
    (folder / "classes.txt").write_text("cat\ndog\n")
    monkeypatch.setenv("HOME", str(folder))
    return folder


@pytest.mark.parametrize(
    ("model", "repository", "key"),
    [
        ('path = "~/secret.onnx"\nclasses = ["a"]', "", "path"),
        ('path = "m.onnx"\nclasses_file = "~/classes.txt"', "", "classes_file"),
        ('path = "m.onnx"', 'classes_file = "~/classes.txt"', "classes_file"),
        ('path = "m.onnx"', 'classes_file = "/etc/hostname"', "classes_file"),
        ('path = "m.onnx"\nclasses_file = "../home/classes.txt"', "", "classes_file"),
    ],
    ids=["model path", "model classes_file", "repository classes_file", "absolute", "dot-dot"],
)
def test_an_upload_manifest_reaches_no_file_outside_it(
    tmp_path: Path, home: Path, model: str, repository: str, key: str
) -> None:
    manifest = _manifest(tmp_path / "upload", model, repository)
    with pytest.raises(DataError, match=RULE) as refused:
        load_manifest(manifest, within=manifest.parent)
    assert f": {key}: " in str(refused.value)
    # The command line reads the same manifest as the user's own (~ expands there).
    if "~" in model + repository:
        _, _, specs = load_manifest(manifest)
        assert specs[0].path is not None and specs[0].path.is_file()


def test_on_the_command_line_classes_file_expands_home_too(tmp_path: Path, home: Path) -> None:
    manifest = _manifest(
        tmp_path / "mine", 'path = "~/secret.onnx"', 'classes_file = "~/classes.txt"'
    )
    _, _, specs = load_manifest(manifest)
    assert specs[0].path == home / "secret.onnx" and specs[0].classes == ("cat", "dog")


def test_an_upload_manifests_paths_are_the_resolved_paths_checked(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path / "upload", 'path = "./m.onnx"\nclasses = ["a"]')
    _, _, specs = load_manifest(manifest, within=manifest.parent)
    assert specs[0].path == (manifest.parent / "m.onnx").resolve()


# --- ONNX external data ----------------------------------------------------------------------
def _onnx_with_external(path: Path, location: str, where: str) -> Path:
    """A 64 -> 3 linear model on 8x8 grey images whose weight tensor says its data is in
    the file ``location`` (relative to the model), held as an initializer, in a Constant
    node, or in a Constant inside an If node's branch."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    weight = helper.make_tensor("W", TensorProto.FLOAT, [64, 3], [0.0] * 192)
    weight.ClearField("float_data")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "768")):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])
    nodes = [helper.make_node("Flatten", ["x"], ["f"])]
    initializers = []
    if where == "initializer":
        initializers.append(weight)
    elif where == "constant":
        nodes.append(helper.make_node("Constant", [], ["W"], value=weight))
    else:
        w_out = helper.make_tensor_value_info("W", TensorProto.FLOAT, [64, 3])
        branch = helper.make_graph(
            [helper.make_node("Constant", [], ["W"], value=weight)], "b", [], [w_out]
        )
        cond = helper.make_tensor("c", TensorProto.BOOL, [], [True])
        nodes += [
            helper.make_node("Constant", [], ["cond"], value=cond),
            helper.make_node("If", ["cond"], ["W"], then_branch=branch, else_branch=branch),
        ]
    nodes.append(helper.make_node("MatMul", ["f", "W"], ["y"]))
    graph = helper.make_graph(nodes, "g", [x], [y], initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("where", ["initializer", "constant", "subgraph"])
@pytest.mark.parametrize("location", ["../outside.bin", "/etc/passwd", "~/w.bin"])
def test_onnx_external_data_outside_the_upload_is_refused(
    tmp_path: Path, where: str, location: str
) -> None:
    from greenrunner.web.modelcheck import _check_onnx_external

    root = tmp_path / "upload"
    model = _onnx_with_external(root / "m.onnx", location, where)
    with pytest.raises(DataError, match=f"m.onnx: external data: .*{RULE}"):
        _check_onnx_external(model, root)


def test_onnx_external_data_is_resolved_from_the_models_folder(tmp_path: Path) -> None:
    """ONNX Runtime reads external data beside the model, so that is where it is checked:
    ``sub/w.bin`` that links out must be refused even though ``upload/w.bin`` is harmless."""
    from greenrunner.web.modelcheck import _check_onnx_external

    root = tmp_path / "upload"
    model = _onnx_with_external(root / "sub" / "m.onnx", "w.bin", "initializer")
    (root / "w.bin").write_bytes(b"\0" * 768)
    (tmp_path / "secret.bin").write_bytes(b"\0" * 768)
    (root / "sub" / "w.bin").symlink_to(tmp_path / "secret.bin")
    with pytest.raises(DataError, match="leads outside it"):
        _check_onnx_external(model, root)
    (root / "sub" / "w.bin").unlink()
    (root / "sub" / "w.bin").write_bytes(b"\0" * 768)
    _check_onnx_external(model, root)  # inside: accepted
