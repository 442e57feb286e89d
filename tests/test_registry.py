"""The transform registry: entry points, ``module:function``, ``.py`` files, decorator metadata.

Entry-point discovery is tested for real: ``tests/plugin_pkg`` is installed
with pip into a temporary directory (or its ``*.dist-info`` is written by
hand), and a fresh interpreter with that directory on ``PYTHONPATH`` lists
and runs its transforms, so nothing leaks into this test process.
"""

from __future__ import annotations

import inspect
import os
import shutil
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import pytest

from conftest import random_tczyx, read_array, write_plate
from napari_process_position import TransformNotFoundError, stream_position
from napari_process_position.core.errors import TransformParameterError
from napari_process_position.store.create import write_empty_plate
from napari_process_position.store.layout import OutputLayout
from napari_process_position.transforms import (
    ENTRY_POINT_GROUP,
    get_transform,
    list_transforms,
    transform,
)

TESTS = Path(__file__).parent
PLUGIN = TESTS / "plugin_pkg"
CLI = [sys.executable, "-m", "napari_process_position.cli"]


# -- module:function and names -------------------------------------------------------------------


def test_module_function_string():
    spec = get_transform("npp_test_transforms:scale_offset")
    assert spec.source == "module" and spec.ref == "npp_test_transforms:scale_offset"
    assert spec.defaults() == {"factor": 2.0, "offset": 1.0}
    assert spec.summary.startswith("A transform with parameters")


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(TransformNotFoundError) as info:
        get_transform("gausian_blur")
    message = str(info.value)
    assert "'gausian_blur'" in message and "gaussian_blur" in message and "binning" in message


@pytest.mark.parametrize(
    "name, fragment",
    [
        ("no_such_module_xyz:func", "ModuleNotFoundError"),
        ("npp_test_transforms:no_such_function", "AttributeError"),
        ("", "non-empty"),
    ],
)
def test_bad_module_references_are_explained(name, fragment):
    with pytest.raises(TransformNotFoundError, match=fragment):
        get_transform(name)


def test_builtins_come_first_and_refs_resolve():
    specs = list_transforms()
    builtins = [s for s in specs if s.source == "built-in"]
    assert specs[: len(builtins)] == builtins
    for spec in builtins:
        assert get_transform(spec.ref).func is spec.func
        assert get_transform(spec.name) == spec


# -- .py files ---------------------------------------------------------------------------------

FILE_TRANSFORMS = '''
import os
from typing import Annotated, Literal

import numpy as np

from napari_process_position.transforms import transform


def double(czyx, gain: float = 2.0):
    """Multiply by gain, as float32, and remember which process did it."""
    return czyx.astype(np.float32) * np.float32(gain)


def worker_pid(czyx):
    """Fill the volume with the pid of the process that ran the transform."""
    return np.full(czyx.shape, os.getpid(), dtype=np.float64)


@transform(display_name="Crop Y", output_zyx_shape=lambda zyx, rows=4, **_: (zyx[0], rows, zyx[2]))
def crop_y(czyx, rows: Annotated[int, {"min": 1, "max": 64}] = 4,
           where: Literal["top", "bottom"] = "top"):
    """Keep some rows."""
    return czyx[..., :rows, :] if where == "top" else czyx[..., -rows:, :]


def shift_by_time(czyx, input_time_index: int, step: float = 100.0):
    """Add step x the time index (uses the engine-injected input_time_index)."""
    return czyx.astype(np.float32) + np.float32(step * input_time_index)
'''


@pytest.fixture
def transform_file(tmp_path) -> Path:
    path = tmp_path / "user code" / "my_transforms.py"
    path.parent.mkdir()
    path.write_text(FILE_TRANSFORMS)
    return path


@pytest.fixture
def small_plate(tmp_path):
    data = random_tczyx((3, 2, 4, 16, 24), "uint16", seed=3)
    return data, write_plate(tmp_path / "in.zarr", {"A/1/0": data}) / "A/1/0"


def _output(tmp_path, shape, dtype="float32"):
    layout = OutputLayout(
        shape=shape, dtype=np.dtype(dtype).str, scale=(1, 1, 2, 0.5, 0.5), channel_names=("a", "b")
    )
    write_empty_plate(tmp_path / "out.zarr", {"A/1/0": layout})
    return tmp_path / "out.zarr/A/1/0"


def test_py_file_transform_spec(transform_file, monkeypatch):
    spec = get_transform(f"{transform_file}:crop_y")
    assert spec.source == "file"
    assert spec.ref == f"{transform_file.resolve()}:crop_y"
    assert spec.display_name == "Crop Y"
    assert spec.meta.output_zyx_shape((4, 16, 24), **spec.check_params({"rows": 6})) == (4, 6, 24)
    hints = spec.type_hints()
    assert hints["where"] == Literal["top", "bottom"]
    with pytest.raises(TransformParameterError, match="one of 'top', 'bottom'"):
        spec.check_params({"where": "middle"})
    # A relative path is made absolute, so a worker in another directory finds it too.
    monkeypatch.chdir(transform_file.parent)
    relative = get_transform("my_transforms.py:double")
    assert relative.ref == f"{transform_file.resolve()}:double"


@pytest.mark.slow
def test_py_file_transform_runs_in_spawned_workers(transform_file, small_plate, tmp_path):
    data, src = small_plate
    dst = _output(tmp_path, (3, 2, 4, 16, 24), "float64")
    spec = get_transform(f"{transform_file}:worker_pid")
    results = list(stream_position(spec.ref, src, dst, num_workers=2, use_threads=False))
    written = [r for r in results if r.status == "written"]
    assert len(written) == 5  # six volumes, one all zeros (skipped)
    out = read_array(dst)
    pids = {int(out[r.output_time_index][r.output_channels[0]].flat[0]) for r in written}
    assert os.getpid() not in pids and pids  # computed in other processes
    assert all(f"pid {os.getpid()} " not in r.worker for r in written)

    dst2 = _output(tmp_path / "second", (3, 2, 4, 16, 24))
    spec = get_transform(f"{transform_file}:double")
    list(stream_position(spec.ref, src, dst2, num_workers=2, gain=3.0))
    expected = data.astype(np.float32) * np.float32(3.0)
    expected[1, 0] = 0  # the empty volume stays at the fill value
    np.testing.assert_array_equal(read_array(dst2), expected)


@pytest.mark.slow
def test_py_file_with_time_index_and_shape_change_through_the_runner(
    transform_file, small_plate, tmp_path
):
    from napari_process_position import RunConfig, open_store, prepare_run, read_position

    data, src = small_plate
    plate = src.parent.parent.parent
    cfg = RunConfig(
        input=str(plate),
        output=str(tmp_path / "crop.zarr"),
        transform=f"{transform_file}:crop_y",
        params={"rows": 5, "where": "bottom"},
        num_workers=2,
        use_threads=False,
    )
    batch = prepare_run(cfg)
    assert batch.layouts["A/1/0"].shape == (3, 2, 4, 5, 24)  # from the decorator, no probe
    assert all(r.status in ("written", "skipped") for _, r in batch)
    out = read_array(tmp_path / "crop.zarr/A/1/0")
    np.testing.assert_array_equal(out[0], data[0, :, :, -5:, :])

    cfg = cfg.model_copy(
        update={
            "output": str(tmp_path / "time.zarr"),
            "transform": f"{transform_file}:shift_by_time",
            "params": {},
        }
    )
    batch = prepare_run(cfg)
    list(batch)
    assert not batch.failed, batch.errors
    info = read_position(open_store(tmp_path / "time.zarr").position_path("A/1/0"))
    assert info.shape == (3, 2, 4, 16, 24) and np.dtype(info.dtype) == np.float32  # probed
    out = read_array(tmp_path / "time.zarr/A/1/0")
    np.testing.assert_array_equal(out[2, 0], data[2, 0].astype(np.float32) + 200)


@pytest.mark.parametrize(
    "content, fragment",
    [
        ("def f(x:\n", "SyntaxError"),
        ("raise RuntimeError('no GPU here')\n", "no GPU here"),
        ("x = 1\n", "AttributeError"),
    ],
)
def test_broken_py_files_are_explained(tmp_path, content, fragment):
    path = tmp_path / f"bad_{abs(hash(content))}.py"
    path.write_text(content)
    with pytest.raises(TransformNotFoundError, match=fragment):
        get_transform(f"{path}:f")


def test_missing_py_file(tmp_path):
    with pytest.raises(TransformNotFoundError, match="does not exist"):
        get_transform(f"{tmp_path}/nope.py:f")


# -- the decorator and the contract ------------------------------------------------------------


def test_plain_function_needs_no_decorator():
    def plain(
        czyx, sigma: float = 1.0, *, mode: str = "reflect", input_time_index: int = 0, **extra
    ):
        """Do nothing.

        Parameters
        ----------
        sigma : float
            How much nothing,
            over two lines.
        mode
            Edge mode.
        """
        return czyx

    spec = get_transform(plain)
    assert spec.meta.output_zyx_shape is None and not spec.meta.same_shape
    assert spec.display_name == spec.name
    assert [p.name for p in spec.parameters()] == ["sigma", "mode"]  # injected and **extra hidden
    assert spec.signature_text() == "sigma=1.0, mode='reflect'"
    assert spec.parameter_help() == {
        "sigma": "How much nothing, over two lines.",
        "mode": "Edge mode.",
    }
    assert spec.margin({}) == (None, None, None)
    # **extra accepts unknown parameters; declared ones are still checked.
    assert spec.check_params({"other": 1})["other"] == 1
    with pytest.raises(TransformParameterError, match="expects float"):
        spec.check_params({"sigma": "x"})


def test_decorator_records_metadata():
    @transform
    def bare(czyx):
        """Bare decorator."""
        return czyx

    @transform(
        name="halve",
        display_name="Halve",
        output_dtype=np.float32,
        margin=(1, 2, None),
        output_zyx_shape=lambda zyx, **_: (zyx[0], zyx[1] // 2, zyx[2]),
        output_scale=lambda scale, **_: (scale[0], scale[1] * 2, scale[2]),
        output_channel_names=lambda names, **_: [n + " half" for n in names],
    )
    def halve(czyx, level: Annotated[float, {"min": 0, "max": 1}] = 0.5):
        """Keep every other row."""
        return czyx[..., ::2, :].astype(np.float32)

    @transform(output_dtype="uint8", margin=lambda size=3, **_: (0, size, size))
    def sized(czyx, size: int = 3):
        return czyx

    assert get_transform(bare).meta.display_name is None
    meta = get_transform(halve).meta
    assert meta.name == "halve" and get_transform(halve).display_name == "Halve"
    assert meta.output_dtype(np.dtype("uint16"), level=0.5) == np.float32
    assert meta.output_zyx_shape((4, 10, 6)) == (4, 5, 6)
    assert meta.output_scale((1.0, 0.5, 0.5)) == (1.0, 1.0, 0.5)
    assert meta.output_channel_names(["a"]) == ["a half"]
    assert get_transform(halve).margin() == (1, 2, None)
    assert get_transform(sized).meta.output_dtype(np.dtype("float64")) == np.uint8
    assert get_transform(sized).margin({"size": 7}) == (0, 7, 7)
    with pytest.raises(TransformParameterError, match="at most 1"):
        get_transform(halve).check_params({"level": 2})
    with pytest.raises(ValueError, match="three values"):
        transform(margin=(1, 2))(lambda x: x)
    with pytest.raises(ValueError, match=">= 0"):
        transform(margin=-1)(lambda x: x)


def test_missing_required_parameter():
    def needs(czyx, threshold: float):
        return czyx > threshold

    with pytest.raises(TransformParameterError, match="needs a value for threshold"):
        get_transform(needs).check_params({})


def test_builtin_annotations_are_magicgui_options():
    # Ranges are magicgui option dicts, choices are Literal: what the widget builds from.
    hints = get_transform("binning").type_hints()
    assert hints["method"] == Literal["mean", "sum"]
    base, options = hints["bin_y"].__origin__, hints["bin_y"].__metadata__[0]
    assert base is int and options == {"min": 1, "max": 16}
    for spec in list_transforms():
        if spec.source != "built-in":
            continue
        for p in spec.parameters():
            assert p.default is not inspect.Parameter.empty, f"{spec.name}.{p.name} has no default"
            assert p.name in spec.type_hints(), f"{spec.name}.{p.name} has no annotation"


# -- entry points ----------------------------------------------------------------------------


def _write_dist_info(site: Path) -> None:
    """What an installer leaves behind, written by hand from plugin_pkg/pyproject.toml."""
    project = tomllib.loads((PLUGIN / "pyproject.toml").read_text())["project"]
    shutil.copytree(PLUGIN / "src" / "npp_plugin_example", site / "npp_plugin_example")
    dist = site / f"npp_plugin_example-{project['version']}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n"
    )
    lines = [f"[{ENTRY_POINT_GROUP}]"]
    lines += [f"{k} = {v}" for k, v in project["entry-points"][ENTRY_POINT_GROUP].items()]
    (dist / "entry_points.txt").write_text("\n".join(lines) + "\n")


def _pip_install(site: Path) -> None:
    try:
        import hatchling  # noqa: F401  (the plug-in's build backend, needed offline)
    except ImportError:
        pytest.skip("hatchling is not installed, so pip cannot build tests/plugin_pkg offline")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(site),
            str(PLUGIN),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    build = PLUGIN / "build"
    if build.exists():  # pragma: no cover - depends on the pip version
        shutil.rmtree(build)


@pytest.fixture(scope="module", params=["pip install --target", "hand-written dist-info"])
def plugin_site(request, tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("site")
    if request.param.startswith("pip"):
        _pip_install(site)
    else:
        _write_dist_info(site)
    assert (next(site.glob("*.dist-info")) / "entry_points.txt").exists()
    return site


def _with_plugin(site: Path, args: list[str], cwd: Path | None = None):
    path = os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    return subprocess.run(args, capture_output=True, text=True, timeout=600, env=env, cwd=cwd)


def test_entry_points_are_listed_and_a_broken_one_is_skipped(plugin_site):
    proc = _with_plugin(plugin_site, [*CLI, "transforms"])
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    by_name = {line.split("(")[0]: line for line in lines}
    assert by_name["invert"] == (
        "invert(maximum=4095.0)  Compute maximum - x: bright becomes dark, as float32.  "
        "[entry point (npp-plugin-example)]"
    )
    assert by_name["add_offset"].startswith("add_offset(offset=10.0)  Add a constant")
    assert by_name["gaussian_blur"].endswith("[built-in]")  # the clashing plug-in lost
    assert "broken" not in by_name
    names = list(by_name)
    assert names.index("add_offset") > names.index("soft_magnitude")  # plug-ins after built-ins
    assert "cannot load transform 'broken'" in proc.stderr
    assert "ModuleNotFoundError" in proc.stderr
    assert "ignoring transform 'gaussian_blur'" in proc.stderr
    assert proc.stderr.count("cannot load transform 'broken'") == 1


def test_entry_point_metadata_in_a_fresh_interpreter(plugin_site):
    code = textwrap.dedent("""
        import json
        from napari_process_position.transforms import get_transform, list_transforms
        spec = get_transform("invert")
        plain = get_transform("add_offset")
        print(json.dumps({
            "source": spec.source, "ref": spec.ref, "display": spec.display_name,
            "margin": spec.margin(), "plain_display": plain.display_name,
            "names": [s.name for s in list_transforms()],
        }))
    """)
    proc = _with_plugin(plugin_site, [sys.executable, "-c", code])
    assert proc.returncode == 0, proc.stderr
    import json

    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["source"] == "entry point (npp-plugin-example)"
    assert got["ref"] == "npp_plugin_example:invert"
    assert got["display"] == "Invert (plug-in)" and got["plain_display"] == "add_offset"
    assert got["margin"] == [0, 0, 0]
    assert got["names"][-2:] == ["add_offset", "invert"]


@pytest.mark.slow
def test_entry_point_transform_runs_through_the_cli_in_worker_processes(plugin_site, tmp_path):
    data = random_tczyx((2, 2, 3, 8, 10), "uint16", seed=5, empty=())
    plate = write_plate(tmp_path / "in.zarr", {"A/1/0": data})
    out = tmp_path / "out.zarr"
    proc = _with_plugin(
        plugin_site,
        [
            *CLI,
            "run",
            str(plate),
            str(out),
            "-t",
            "invert",
            "-p",
            "maximum=5000",
            "--workers",
            "2",
            "--processes",
            "--no-progress",
        ],
    )
    assert proc.returncode == 0, proc.stderr
    got = read_array(out / "A/1/0")
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, np.float32(5000) - data.astype(np.float32))
    proc = _with_plugin(
        plugin_site,
        [
            *CLI,
            "run",
            str(plate),
            str(tmp_path / "bad.zarr"),
            "-t",
            "invert",
            "-p",
            "maximum=-1",
            "--no-progress",
        ],
    )
    assert proc.returncode != 0 and "at least 0.0" in proc.stderr + proc.stdout
