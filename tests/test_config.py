"""RunConfig: YAML round trip, safe loading, errors that name the field, what loading imports."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from napari_process_position.batch.config import (
    CONFIG_FORMAT_VERSION,
    RunConfig,
    SlurmSettings,
    command_line,
)
from napari_process_position.core.errors import ConfigError

CLI = [sys.executable, "-m", "napari_process_position.cli"]


def full_config(tmp_path: Path) -> RunConfig:
    return RunConfig(
        input=str(tmp_path / "in.zarr"),
        output=str(tmp_path / "out.zarr"),
        positions=["A/*/0", "B/1/0"],
        transform="gaussian_blur",
        params={"sigma_y": 1.25, "sigma_z": 0.5},
        channels=[1, 0],
        times=[0, 2, 3],
        num_workers=3,
        use_threads=True,
        ome_version="0.4",
        slurm=SlurmSettings(
            cores=8,
            processes=4,
            memory="32GB",
            walltime="02:30:00",
            partition="cpu",
            account="lab",
            jobs=5,
            job_extra=["--qos=high"],
            interface="ib0",
        ),
    )


def test_save_load_round_trip_keeps_every_field(tmp_path):
    config = full_config(tmp_path)
    path = config.save(tmp_path / "sub" / "run.yaml")
    loaded = RunConfig.load(path)
    assert loaded == config
    assert loaded.model_dump() == config.model_dump()
    data = yaml.safe_load(path.read_text())
    assert data["format_version"] == CONFIG_FORMAT_VERSION
    assert data["written_by"] == config.written_by and data["written_by"]
    assert data["slurm"]["job_extra"] == ["--qos=high"]
    # The header says how to run it, with the file's absolute path.
    header = [line for line in path.read_text().splitlines() if line.startswith("#")]
    assert any(command_line(path) in line for line in header)


def test_command_line_is_the_exact_shell_command(tmp_path):
    path = tmp_path / "my runs" / "plate 1.yaml"
    text = command_line(path, "--position", "A/1/0")
    assert shlex.split(text) == [
        "process-position",
        "run",
        "--config",
        str(path.resolve()),
        "--position",
        "A/1/0",
    ]


def test_as_batch_keeps_settings_and_opens_every_position(tmp_path):
    preview = RunConfig(
        input=str(tmp_path / "in.zarr"),
        positions=["B/2/0"],
        transform="binning",
        params={"bin_y": 2},
        channels=[1],
        times=[0, 1],
        num_workers=2,
        resume=True,
    )
    batch = preview.as_batch(tmp_path / "out.zarr", dask_local=2)
    assert batch.positions is None and batch.output == str(tmp_path / "out.zarr")
    assert batch.resume is False and batch.dask_local == 2
    same = {"input", "transform", "params", "channels", "times", "num_workers", "use_threads"}
    assert {k: getattr(batch, k) for k in same} == {k: getattr(preview, k) for k in same}


def test_configs_without_format_version_still_load(tmp_path):
    config = RunConfig.from_yaml("input: a.zarr\ntransform: gaussian_blur\n")
    assert config.format_version == CONFIG_FORMAT_VERSION


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("input: a\ntransform: t\nformat_version: 99\n", "'format_version'"),
        ("input: a\ntransform: t\nnum_wokers: 2\n", "unknown field 'num_wokers'"),
        ("input: a\ntransform: t\nnum_workers: many\n", "'num_workers'"),
        ("input: a\ntransform: t\nchannels: [0, 0]\n", "'channels'"),
        ("input: a\ntransform: t\nome_version: '0.6'\n", "'ome_version'"),
        ("transform: t\n", "'input' is required"),
        ("input: a\ntransform: t\nslurm: {memory: lots}\n", "'slurm.memory'"),
        ("input: a\ntransform: t\nslurm: {walltime: 'two hours'}\n", "'slurm.walltime'"),
        ("input: a\ntransform: t\nslurm: {cores: 2, processes: 4}\n", "slurm.processes"),
        ("input: a\ntransform: t\nslurm: {partiton: gpu}\n", "unknown field 'slurm.partiton'"),
        (
            "input: a\ntransform: t\ndask_local: 2\ndask_scheduler: tcp://h:8786\n",
            "dask_scheduler and dask_local",
        ),
        ("- input\n- transform\n", "mapping"),
        ("input: [unclosed\n", "not valid YAML"),
    ],
)
def test_errors_name_the_field(text, expected):
    with pytest.raises(ConfigError) as info:
        RunConfig.from_yaml(text, "run.yaml")
    assert expected in str(info.value)
    assert str(info.value).startswith("run.yaml")


@pytest.mark.parametrize(
    "tag",
    [
        "!!python/object/apply:os.system ['touch {marker}']",
        "!!python/object/new:subprocess.check_call [['touch', '{marker}']]",
        "!!python/name:os.system",
    ],
)
def test_yaml_python_tags_are_refused_and_not_run(tmp_path, tag):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.yaml"
    path.write_text(f"input: {tag.format(marker=marker)}\ntransform: gaussian_blur\n")
    with pytest.raises(ConfigError, match="safe loading refuses"):
        RunConfig.load(path)
    assert not marker.exists()
    # The command line says so in one line.
    proc = subprocess.run(
        [*CLI, "run", "--config", str(path)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "safe loading refuses" in proc.stderr
    assert not marker.exists()


def test_cli_bad_config_field_is_one_line(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("input: a.zarr\ntransform: gaussian_blur\nnum_workers: 0\n")
    proc = subprocess.run(
        [*CLI, "run", "--config", str(path)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "num_workers" in lines[0] and str(path) in lines[0]


def test_show_schema_describes_new_fields():
    proc = subprocess.run(
        [*CLI, "run", "--show-schema"], capture_output=True, text=True, timeout=120
    )
    schema = json.loads(proc.stdout)
    props = schema["properties"]
    for name in ("format_version", "written_by", "dask_scheduler", "dask_local", "slurm"):
        assert (name in props and props[name].get("description")) or name == "slurm"
    slurm = schema["$defs"]["SlurmSettings"]["properties"]
    assert {"cores", "memory", "walltime", "partition", "jobs"} <= set(slurm)


def _plugin_env(tmp_path: Path) -> Path:
    """A folder with two fake transform plug-ins (entry points) and a plain transform module."""
    root = tmp_path / "site"
    dist = root / "npp_fake_plugins-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: npp-fake-plugins\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[napari_process_position.transforms]\n"
        "plug_a = npp_plug_a:invert\nplug_b = npp_plug_b:invert\n"
    )
    for name in ("npp_plug_a", "npp_plug_b", "npp_cfg_transform"):
        (root / f"{name}.py").write_text(
            textwrap.dedent("""
            def invert(czyx, offset: float = 1.0):
                return offset - czyx
        """)
        )
    return root


PROBE = textwrap.dedent("""
    import json, sys
    import napari_process_position.cli.main
    import napari_process_position.batch.batch_run
    import napari_process_position.transforms
    before = set(sys.modules)
    from napari_process_position.batch.config import RunConfig
    from napari_process_position.transforms import get_transform
    config = RunConfig.load(sys.argv[1])
    loaded = set(sys.modules) - before
    spec = get_transform(config.transform)
    assert spec.func(1.0) == 0.0
    print(json.dumps({"load": sorted(loaded), "resolve": sorted(set(sys.modules) - before)}))
""")


@pytest.mark.parametrize(
    ("transform", "expected"),
    [
        ("npp_cfg_transform:invert", {"npp_cfg_transform"}),
        ("plug_b", {"npp_plug_b"}),
    ],
)
def test_loading_a_config_imports_only_the_transform_it_names(tmp_path, transform, expected):
    site = _plugin_env(tmp_path)
    config = RunConfig(input="in.zarr", output="out.zarr", transform=transform)
    path = config.save(tmp_path / "r.yaml")
    import os

    env = {**os.environ, "PYTHONPATH": str(site)}
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["load"] == [], "reading the YAML must import nothing"
    # Only the named transform's module (and the standard library, or this package's own
    # built-in set when a registry name is looked up) may load; no other plug-in.
    foreign = {
        m
        for m in got["resolve"]
        if m.split(".")[0] not in sys.stdlib_module_names
        and not m.startswith("napari_process_position.")
    }
    assert foreign == expected
    if ":" in transform:
        assert not [m for m in got["resolve"] if m.startswith("napari_process_position.")]


def test_one_grammar_of_amounts_for_memory_limit_and_slurm_memory():
    # core.sizes.parse_size is the one grammar: what memory_limit accepts, slurm.memory does too.
    from napari_process_position.batch.slurm_settings import SlurmSettings
    from napari_process_position.core.sizes import parse_size

    for text in (".5GB", "1.5 GiB", "16GB", "512MiB", "2G", "1000000"):
        parse_size(text)
        assert SlurmSettings(memory=text).memory == text.strip()
    for text in ("lots", "5 parsecs", "-1GB"):
        with pytest.raises(ValueError):
            SlurmSettings(memory=text)
