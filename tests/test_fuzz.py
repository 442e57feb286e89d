"""Fuzzing: random config fields and random command lines never end in a traceback.

Only a ``ProcessPositionError`` (a ``ConfigError`` for configs), one ``error:`` line
(click's own ``Error:`` for a malformed command line), or success. The command
lines run for real, on a small real plate; Dask and SLURM options are left out
(they start clusters; tests/test_dask.py covers their errors).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from conftest import random_tczyx, tree_digest, write_plate
from napari_process_position import ProcessPositionError, RunConfig
from napari_process_position.cli import main
from napari_process_position.core.errors import ConfigError

FIELDS = list(RunConfig.model_fields)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.sampled_from(
        [
            "",
            " ",
            "0.4",
            "0.5",
            "A/1/0",
            "gaussian_blur",
            "tcp://127.0.0.1:1",
            "all",
            "-1",
            "1e9",
            "~",
        ]
    ),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
configs = st.dictionaries(
    st.one_of(st.sampled_from(FIELDS), st.text(max_size=8)), values, max_size=8
)


@settings(max_examples=150, deadline=None)
@given(data=configs, base=st.booleans())
def test_random_config_fields_give_a_config_or_a_config_error(data, base):
    if base:  # the required fields present, so other fields' errors are reached
        data = {"input": "in.zarr", "transform": "gaussian_blur", **data}
    try:
        config = RunConfig.from_dict(data)
    except ConfigError as exc:
        assert isinstance(exc, ProcessPositionError) and str(exc).strip()
        assert "Traceback" not in str(exc)
        return
    again = RunConfig.from_yaml(config.to_yaml())
    assert again == config


# -- the command line -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def plate(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fuzz")
    data = random_tczyx((2, 2, 2, 8, 8), "uint16", seed=1, empty=((1, 1),), nan=())
    return write_plate(root / "in.zarr", {"A/1/0": data})


# Each part of a command line: (valid choices, invalid choices). A drawn command line is
# valid everywhere except in the few parts picked to be broken, so half the examples run
# the transform for real and the rest each fail in one or two specific ways.
PARTS = {
    "input": (["plate", "position"], ["missing", "file", "text"]),
    "output": (["new"], ["existing", "input", "inside", "text", "none"]),
    "transform": (
        ["gaussian_blur", "max_projection", "binning", "convert_dtype"],
        ["deblurify", "os:path", "nomodule_x:f", "/no/such/file.py:f", "", "none"],
    ),
    "params": (
        [[], ["sigma_z=1"], ["sigma_y=0.5", "sigma_x=2"]],
        [
            ["sigma_x=big"],
            ["sigma=1"],
            ["=1"],
            ["sigma_y"],
            ["sigma_y=-1"],
            ["sigma_y=nan"],
            ["sigma_y=1e300"],
            ["method=max"],
        ],
    ),
    "positions": ([[], ["A/1/0"], ["A/*"], ["*", "A/1/0"]], [["Z/9/9"], [""], ["A/1"]]),
    "channels": ([None, "0", "1", "0,1", "0-1", "all", ""], ["1-0", "7", "-1", "0,0", "a", "0-"]),
    "times": ([None, "0", "1", "0,1", "0-1", "all"], ["5", "1,2-3", "x", "-"]),
    "workers": ([None, "1", "2"], ["0", "-3", "x", "99999"]),
    "mode": ([[], ["--threads"], ["--processes"]], []),
    "existing": ([[], ["--resume"], ["--overwrite"]], [["--resume", "--overwrite"]]),
    "version": ([[], ["--ome-version", "0.4"]], [["--ome-version", "0.6"]]),
    "extra": (
        [[], ["--no-dask"], ["--save-config", "SAVE"], ["--no-progress"]],
        [["--config", "CFG"], ["--bogus-flag"], ["--save-config", "/proc/x/y.yaml"]],
    ),
}
BREAKABLE = sorted(k for k, (_, bad) in PARTS.items() if bad)


@st.composite
def command_lines(draw):
    broken = draw(
        st.one_of(
            st.just(frozenset()), st.frozensets(st.sampled_from(BREAKABLE), min_size=1, max_size=2)
        )
    )
    pick = {}
    for name, (good, bad) in PARTS.items():
        pick[name] = draw(st.sampled_from(bad if name in broken else good))
    if "params" not in broken and pick["transform"] == "binning" and pick["params"]:
        pick["params"] = ["bin_y=2"]
    elif "params" not in broken and pick["transform"] in ("max_projection", "convert_dtype"):
        pick["params"] = []
    free_text = draw(st.one_of(st.none(), st.text(alphabet="0123456789,-a ", max_size=6)))
    for name in ("channels", "times"):
        if free_text and name in broken:
            pick[name] = free_text  # any mix of digits, commas, dashes, letters, blanks
    flags: list[str] = []
    if pick["transform"] != "none":
        flags += ["-t", pick["transform"]]
    for p in pick["params"]:
        flags += ["-p", p]
    for pos in pick["positions"]:
        flags += ["--position", pos]
    for name in ("channels", "times"):
        if pick[name] is not None:
            flags += [f"--{name}", pick[name]]
    if pick["workers"] is not None:
        flags += ["-w", pick["workers"]]
    flags += pick["mode"] + pick["existing"] + pick["version"] + pick["extra"]
    config_text = draw(
        st.one_of(
            st.just("input: in.zarr\ntransform: gaussian_blur\n"),
            st.just("format_version: 99\n"),
            st.just("- a\n- b\n"),
            st.just("!!python/object:os.system ['true']\n"),
            st.text(max_size=30),
        )
    )
    return pick["input"], pick["output"], flags, config_text


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=command_lines())
def test_random_command_lines_never_give_a_traceback(plate, case):
    inputs, output, flags, config_text = case
    before = tree_digest(plate)
    work = Path(tempfile.mkdtemp(prefix="npp-fuzz-"))
    try:
        (work / "file.txt").write_text("not a store")
        existing = work / "existing.zarr"
        shutil.copytree(plate, existing)
        cfg = work / "run.yaml"
        cfg.write_text(config_text)
        args = ["run"]
        args.append(
            {
                "plate": str(plate),
                "position": str(plate / "A/1/0"),
                "missing": str(work / "missing.zarr"),
                "file": str(work / "file.txt"),
                "text": "some text",
            }[inputs]
        )
        if output != "none":
            args.append(
                {
                    "new": str(work / "out.zarr"),
                    "existing": str(existing),
                    "input": str(plate),
                    "inside": str(plate / "A" / "out.zarr"),
                    "text": "out text.zarr",
                }[output]
            )
        args += [
            str(cfg) if f == "CFG" else str(work / "saved.yaml") if f == "SAVE" else f
            for f in flags
        ]
        result = CliRunner().invoke(main, args)
        event(f"exit code {result.exit_code}")
        shown = f"{args}\n{result.output}"
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise AssertionError(
                f"uncaught {type(result.exception).__name__}: {result.exception}\n{shown}"
            ) from result.exception
        assert "Traceback" not in result.output, shown
        if result.exit_code == 2:  # click refused the command line itself
            assert "Error:" in result.stderr, shown
        elif result.exit_code != 0:
            assert result.exit_code == 1, shown
            errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
            assert errors, shown
            if "Summary" not in result.stderr:  # refused before running: exactly one line
                lines = [line for line in result.stderr.splitlines() if line.strip()]
                assert len(lines) == 1, shown
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert tree_digest(plate) == before, "the input store was modified"


def test_fuzz_checks_can_fail():
    """The property above really sees an uncaught exception (a guard against a vacuous test)."""
    import click

    @click.command()
    def boom():
        raise KeyError("x")

    result = CliRunner().invoke(boom, [])
    assert isinstance(result.exception, KeyError)
    assert issubclass(ConfigError, ProcessPositionError)
