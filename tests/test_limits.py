"""Limits checked before work, and text read one strict way (issue #23, item 6).

Typos that used to eat the machine (a huge --times range, a YAML alias bomb), typos read as
something else (`--times "1 0"` as 10, `1:00` as 60, `1e-3` refused) and checks that came
after the output was created. Cases that could exhaust memory on a regression run in a
subprocess under an address-space limit, so a failure is a failed test, not an OOM kill.
"""

from __future__ import annotations

import resource
import subprocess
import sys

import numpy as np
import pytest

from conftest import TESTS, random_tczyx, read_array, write_plate
from napari_process_position import RunConfig, TransformParameterError, get_transform
from napari_process_position.transforms.params import parse_text

CLI = [sys.executable, "-m", "napari_process_position.cli"]
SCALE = f"{TESTS / 'npp_test_transforms.py'}:scale_offset"
#: Address space of a CLI run here: enough for the package, far from what a blow-up takes.
LIMIT = 3 * 2**30


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT, LIMIT))


def cli(*args: object, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=_limited,
    )


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
    return lines[0]


@pytest.fixture(scope="module")
def plate(tmp_path_factory):
    path = tmp_path_factory.mktemp("limits") / "in.zarr"
    data = random_tczyx((2, 2, 2, 16, 16), "float32", seed=1, empty=(), nan=())
    return write_plate(path, {"A/1/0": data}), data


def test_a_huge_time_range_is_refused_at_once(plate, tmp_path):
    src, _ = plate
    out = tmp_path / "out.zarr"
    line = one_error_line(cli("run", src, out, "-t", "gaussian_blur", "--times", "0-999999999"))
    assert "'0-999999999' select 1000000000" in line
    assert not out.exists()
    # Within the cap, the input's sizes decide, still before any output exists.
    line = one_error_line(cli("run", src, out, "-t", "gaussian_blur", "--channels", "0-999"))
    assert "channel 2 does not exist" in line
    assert not out.exists()


@pytest.mark.parametrize("text", ["1 0", "1, 0", "1 ,0", "1-1 0"])
def test_lists_take_spaces_and_commas_never_concatenate(plate, tmp_path, text):
    src, data = plate
    out = tmp_path / "out.zarr"
    proc = cli("run", src, out, "-t", SCALE, "--times", text, "--no-progress")
    assert proc.returncode == 0, proc.stderr[-2000:]
    np.testing.assert_array_equal(read_array(out / "A/1/0"), data[[1, 0]] * 2 + 1)


def test_a_time_list_that_cannot_be_read_is_refused(plate, tmp_path):
    src, _ = plate
    line = one_error_line(cli("run", src, tmp_path / "o.zarr", "-t", SCALE, "--times", "0 1x"))
    assert "commas or spaces" in line


@pytest.mark.parametrize(
    ("transform", "param", "expected"),
    [
        ("richardson_lucy", "iterations=1:00", "parameter 'iterations' expects int, not '1:00'"),
        ("binning", "bin_y=2:30", "parameter 'bin_y' expects int, not '2:30'"),
    ],
)
def test_sexagesimal_text_is_text(plate, tmp_path, transform, param, expected):
    src, _ = plate
    out = tmp_path / "out.zarr"
    line = one_error_line(cli("run", src, out, "-t", transform, "-p", param))
    assert expected in line
    assert not out.exists()


def test_exponent_without_a_dot_is_a_float_everywhere(plate, tmp_path):
    src, _ = plate
    spec = get_transform("gaussian_blur")
    hint = spec.type_hints()["sigma_y"]
    assert parse_text("1e-3", hint, transform="gaussian_blur", name="sigma_y") == 0.001
    config = tmp_path / "run.yaml"
    config.write_text(
        f"input: {src}\noutput: {tmp_path / 'out.zarr'}\ntransform: gaussian_blur\n"
        "params: {sigma_y: 1e-3, sigma_x: 2.5e+0}\n",
        encoding="utf-8",
    )
    loaded = RunConfig.load(config)
    assert loaded.params == {"sigma_y": 0.001, "sigma_x": 2.5}
    # Text that YAML 1.2 would read as a number is saved quoted, and read back as text.
    odd = loaded.model_copy(update={"params": {"label": "1e3", "at": "2:30", "flag": "yes"}})
    assert RunConfig.from_yaml(odd.to_yaml()).params == odd.params
    proc = cli("run", src, tmp_path / "out.zarr", "-t", "gaussian_blur", "-p", "sigma_y=1e-3")
    assert proc.returncode == 0, proc.stderr[-2000:]


def _alias_bomb(levels: int = 9) -> str:
    lines = ['  a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        refs = ", ".join([f"*a{i - 1}"] * 9)
        lines.append(f"  a{i}: &a{i} [{refs}]")
    return "\n".join(lines) + "\n"


def test_a_yaml_alias_bomb_is_refused_in_one_line(plate, tmp_path):
    src, _ = plate
    config = tmp_path / "bomb.yaml"
    config.write_text(
        f"input: {src}\noutput: {tmp_path / 'out.zarr'}\ntransform: gaussian_blur\nparams:\n"
        + _alias_bomb(),
        encoding="utf-8",
    )
    assert config.stat().st_size < 1000
    line = one_error_line(cli("run", "--config", config, timeout=60))
    assert "expands to more than 1000000 values through its aliases" in line
    assert not (tmp_path / "out.zarr").exists()
    # The same bomb as command-line text.
    line = one_error_line(
        cli(
            "run",
            src,
            tmp_path / "out.zarr",
            "-t",
            "gaussian_blur",
            "-p",
            "sigma_y=" + "{" + _alias_bomb().replace("\n", ", ").rstrip(", ") + "}",
            timeout=60,
        )
    )
    assert "parameter 'sigma_y'" in line


def test_a_config_file_is_bounded_in_size(plate, tmp_path):
    src, _ = plate
    config = tmp_path / "huge.yaml"
    config.write_text(
        f"input: {src}\ntransform: gaussian_blur\nnote: {'x' * (17 * 2**20)}\n", encoding="utf-8"
    )
    line = one_error_line(cli("run", "--config", config))
    assert "is larger than 16777216 bytes" in line


def test_parameters_checked_together_before_the_output_exists(plate, tmp_path):
    src, _ = plate
    out = tmp_path / "out.zarr"
    proc = cli(
        "run",
        src,
        out,
        "-t",
        "rescale_intensity",
        "-p",
        "low_percentile=60",
        "-p",
        "high_percentile=40",
    )
    line = one_error_line(proc)
    assert "transform 'rescale_intensity': percentiles must satisfy 0 <= low < high" in line
    assert not out.exists()
    with pytest.raises(TransformParameterError, match=r"low=60\.0, high=40\.0"):
        get_transform("rescale_intensity").check_params(
            {"low_percentile": 60.0, "high_percentile": 40.0}
        )


def test_demo_data_checks_its_shape_before_writing(tmp_path):
    out = tmp_path / "demo.zarr"
    line = one_error_line(cli("demo-data", "--shape", "5,2,16,128000,128000", out))
    assert "too large" in line
    assert not out.exists()
    # A small image is a whole plate (it used to be half a plate, then a traceback).
    proc = cli("demo-data", "--shape", "1,1,2,15,15", out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for key in ("A/1/0", "A/2/0", "B/1/0"):
        assert read_array(out / key).shape == (1, 1, 2, 15, 15)
