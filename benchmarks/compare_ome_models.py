"""yaozarrs vs ome-zarr-models for our OME-Zarr metadata: reading, writing, errors, import time.

Needs this package, yaozarrs[io], ome-zarr-models and ome-zarr in one venv (the project's .venv
has them all: ``PYTHONPATH=src .venv/bin/python benchmarks/compare_ome_models.py``; the results
file says how it was last run); the stores are built in a temporary folder; writes
results/ome_models.txt.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from napari_process_position.store.create import write_empty_plate
from napari_process_position.store.layout import OutputLayout
from napari_process_position.store.metadata import open_store, read_position
from napari_process_position.store.nodes import image_attrs, plate_attrs, well_attrs

RESULTS = Path(__file__).resolve().parent / "results" / "ome_models.txt"
FIXTURES = Path(os.environ.get("NPP_FIXTURES", "/work/shared/fixtures"))
LIBS = ("yaozarrs", "ome-zarr-models")
TYPES = ("time", "channel", "space", "space", "space")
KEYS = ("A/1/0", "A/1/1", "B/3/0", "B/3/1")  # the plates we write: rows A, B; columns 1, 3
WELLS = [("A/1", 0, 0), ("B/3", 1, 1)]
OUT: list[str] = []


def say(line: str = "") -> None:
    print(line, flush=True)
    OUT.append(line)


def one_line(exc: BaseException | None, width: int = 700) -> str:
    if exc is None:
        return "accepted (no error)"
    text = f"{type(exc).__name__}: {exc}".strip()
    flat = " \u23ce ".join(part.strip() for part in text.splitlines() if part.strip())
    return f"[{text.count(chr(10)) + 1} lines] {flat[:width]}{' ...' * (len(flat) > width)}"


def first_error(exc: BaseException | None) -> str:
    """What we would print: the first pydantic error as 'field.path: message'."""
    from pydantic import ValidationError

    if not isinstance(exc, ValidationError):
        return ""
    errors = exc.errors(include_url=False)
    loc, msg = ".".join(str(p) for p in errors[0]["loc"]), errors[0]["msg"].replace("\n", " ")
    return f"{loc}: {msg}" + (f" (+{len(errors) - 1} more)" if errors[1:] else "")


def attempt(fn: Any, *args: Any) -> tuple[Any, BaseException | None]:
    try:
        return fn(*args), None
    except Exception as exc:
        return None, exc


class NotReached(Exception):
    """The JSON could not be read, so no library model was asked."""


def group_attrs(path: Path) -> tuple[str, dict[str, Any]]:
    """OME version and OME attributes (v0.5: zarr.json attributes.ome; v0.4: .zattrs)."""
    for name, version in (("zarr.json", "0.5"), (".zattrs", "0.4")):
        if (path / name).exists():
            try:
                doc = json.loads((path / name).read_text())
            except json.JSONDecodeError as exc:
                raise NotReached(f"{path / name}: bad JSON ({exc.msg})") from None
            return version, doc.get("attributes", {}).get("ome", {}) if version == "0.5" else doc
    raise NotReached(f"{path}: no zarr.json or .zattrs")


def models(lib: str, version: str) -> dict[str, Any]:
    """The model classes of plate, well and image attributes."""
    if lib == "yaozarrs":
        m = importlib.import_module(f"yaozarrs.v0{version[-1]}")
        return {"plate": m.Plate, "well": m.Well, "image": m.Image}
    mods = {"plate": ("hcs", "HCSAttrs"), "well": ("well", "WellAttrs"), "image": ("image", "ImageAttrs")}  # fmt: skip
    pkg = f"ome_zarr_models.v0{version[-1]}"
    return {k: getattr(importlib.import_module(f"{pkg}.{m}"), c) for k, (m, c) in mods.items()}


def walk(lib: str, root: Path) -> dict[str, Any]:
    """Validate a plate, its wells and images (or a single image) from JSON we read."""
    version, attrs = group_attrs(root)
    found: dict[str, Any] = {"version": version, "wells": 0, "images": {}, "warnings": set()}

    def check(kind: str, path: Path) -> Any:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            obj = models(lib, version)[kind].model_validate(group_attrs(path)[1])
        found["warnings"] |= {str(w.message).splitlines()[0] for w in caught}
        return obj

    keys = [""]
    if "plate" in attrs:
        keys = [
            f"{w.path}/{im.path}"
            for w in check("plate", root).plate.wells
            for im in check("well", root / w.path).well.images
        ]
        found["wells"] = len({k.rsplit("/", 1)[0] for k in keys})
    for key in keys:
        ms, omero = (obj := check("image", root / key)).multiscales[0], getattr(obj, "omero", None)
        scale = tuple(float(v) for v in ms.datasets[0].coordinateTransformations[0].scale)
        names = tuple(str(a.name).lower() for a in ms.axes)
        fields = [names, tuple(a.unit for a in ms.axes), scale, None, None]
        if omero is not None:  # ome-zarr-models v05 keeps omero as an unvalidated dict extra
            raw = isinstance(omero, dict)
            fields[3:] = [tuple(c["label"] if raw else c.label for c in (omero["channels"] if raw else omero.channels)), not raw]  # fmt: skip
        found["images"][key or root.name] = fields
    return found


def store_level(lib: str, root: Path) -> Any:
    """The library's own validation of the store (it reads the files)."""
    with warnings.catch_warnings(record=True):
        if lib == "yaozarrs":
            return importlib.import_module("yaozarrs").validate_zarr_store(str(root))
        import zarr
        from ome_zarr_models import open_ome_zarr

        group = zarr.open_group(str(root), mode="r")
        attrs, v = group.attrs.get("ome", group.attrs), group.metadata.zarr_format + 2
        kind = "hcs.HCS" if "plate" in attrs else "image.Image" if "multiscales" in attrs else ""
        if not kind:
            return open_ome_zarr(group)
        mod = importlib.import_module(f"ome_zarr_models.v0{v}.{kind.split('.')[0]}")
        return getattr(mod, kind.split(".")[1]).from_zarr(group)  # the class we would use


def ours(root: Path) -> dict[str, list[Any]]:
    store = open_store(root)
    infos = {k: read_position(store.position_path(k), k) for k in store.position_keys}
    return {k: [i.axes, i.units, i.scale, i.channel_names] for k, i in infos.items()}


def describe(lib: str, root: Path) -> str:
    """One line: what the library makes of a store, from our JSON read and on its own."""
    if lib == "ome-zarr-py":
        return ome_zarr_py_reads(root)
    ref = ours(root)
    if lib == "ours":
        return f"{len(ref)} positions, fields {'; '.join({str(v) for v in ref.values()})}"
    t0 = time.perf_counter()
    got, exc = attempt(walk, lib, root)
    if exc:
        return f"dict: {one_line(exc, 300)}"
    ms = (time.perf_counter() - t0) * 1e3
    same = all(got["images"][k][:3] == v[:3] and got["images"][k][3] in (None, v[3]) for k, v in ref.items())  # fmt: skip
    omero = {f[4] for f in got["images"].values()}
    omero_is = "typed" if omero == {True} else "unvalidated dict" if False in omero else "absent"
    t0 = time.perf_counter()
    obj, exc = attempt(store_level, lib, root)
    store = f"{type(obj).__name__} in {(time.perf_counter() - t0) * 1e3:.0f} ms"
    return (
        f"dict: v{got['version']}, {got['wells']} wells, {len(got['images'])} images, fields"
        f" {'==' if same else '!='} ours, omero {omero_is}, {ms:.1f} ms, warnings:"
        f" {'; '.join(sorted(got['warnings'])) or 'none'} | store: {one_line(exc) if exc else store}"
    )


# The fields our writer (store/nodes.py image_attrs) writes, spelled out so that a change in
# what we write shows up below as a difference: lower-case axis names (t, c, z, y, x; upper
# case until the store/ split) and store/colors.py's colours for 2 channels (green, magenta).
AXES = "tczyx"
CHANNELS = [("Nuclei", "00FF00"), ("Membrane", "FF00FF")]
WINDOW = {"start": 0.0, "end": 65535.0, "min": 0.0, "max": 65535.0}
RDEFS = {"defaultT": 0, "defaultZ": 2, "model": "color", "projection": "normal"}
EXTRA = {"active": True, "coefficient": 1.0, "family": "linear", "inverted": False}
UNITS = ("second", None, "micrometer", "micrometer", "micrometer")
SCALE = [1.0, 1.0, 2.0, 0.5, 0.5]


def layout(shape: tuple[int, ...] = (2, 2, 4, 16, 16)) -> OutputLayout:
    names = tuple(n for n, _ in CHANNELS)[: shape[1]]
    return OutputLayout(shape, "uint16", tuple(SCALE), names, UNITS)


def build_yaozarrs(version: str) -> dict[str, Any]:
    m = importlib.import_module(f"yaozarrs.v0{version[-1]}")
    axis = {"time": m.TimeAxis, "channel": m.ChannelAxis, "space": m.SpaceAxis}
    axes = [axis[t](name=n, unit=u) for n, t, u in zip(AXES, TYPES, UNITS, strict=True)]
    dataset = m.Dataset(path="0", coordinateTransformations=[m.ScaleTransformation(scale=SCALE)])
    window = m.OmeroWindow(**WINDOW)
    chans = [m.OmeroChannel(label=n, color=c, window=window, **EXTRA) for n, c in CHANNELS]
    plate = m.PlateDef(
        rows=[m.Row(name="A"), m.Row(name="B")],
        columns=[m.Column(name="1"), m.Column(name="3")],
        wells=[m.PlateWell(path=p, rowIndex=r, columnIndex=c) for p, r, c in WELLS],
        acquisitions=[m.Acquisition(id=0)],
        field_count=2 if version == "0.4" else None,
    )
    omero = m.Omero(version=version, id=0, name="0", channels=chans, rdefs=m.OmeroRenderingDefs(**RDEFS))  # fmt: skip
    built = {
        "image": m.Image(
            multiscales=[m.Multiscale(name="0", axes=axes, datasets=[dataset])], omero=omero
        ),
        "plate": m.Plate(plate=plate),
        "well": m.Well(well=m.WellDef(images=[m.FieldOfView(path=f, acquisition=0) for f in "01"])),
    }
    return {k: v.model_dump(mode="json", exclude_none=True) for k, v in built.items()}


def build_ome_zarr_models(version: str) -> dict[str, Any]:
    from ome_zarr_models.common.omero import Channel, Omero, Window

    def mod(name: str) -> Any:
        return importlib.import_module(f"ome_zarr_models.v0{version[-1]}.{name}")

    ax, mss, pl, wt = mod("axes"), mod("multiscales"), mod("plate"), mod("well_types")
    top = {"version": version} if version == "0.5" else {}  # v0.5: at the "ome" level
    inner = {} if top else {"version": "0.4"}  # v0.4: inside multiscales and well
    axes = [ax.Axis(name=n, type=t, unit=u) for n, t, u in zip(AXES, TYPES, UNITS, strict=True)]
    dataset = mss.Dataset.build(path="0", scale=SCALE, translation=None)
    chans = [Channel(label=n, color=c, window=Window(**WINDOW), **EXTRA) for n, c in CHANNELS]
    omero = Omero(version=version, id=0, name="0", channels=chans, rdefs=RDEFS)
    plate = pl.Plate(
        rows=[pl.Row(name="A"), pl.Row(name="B")],
        columns=[pl.Column(name="1"), pl.Column(name="3")],
        wells=[pl.WellInPlate(path=p, rowIndex=r, columnIndex=c) for p, r, c in WELLS],
        acquisitions=[pl.Acquisition(id=0)],
        version=version,
        **({} if top else {"field_count": 2}),
    )
    images = [wt.WellImage(path=f, acquisition=0) for f in "01"]
    built = {
        "image": mod("image").ImageAttrs(
            multiscales=[mss.Multiscale(axes=axes, datasets=(dataset,), name="0", **inner)],
            # v0.5 ImageAttrs has no omero field: an unvalidated extra, so it must be a dict
            omero=omero.model_dump(exclude_none=True) if top else omero,
            **top,
        ),
        "plate": mod("hcs").HCSAttrs(plate=plate, **top),
        "well": mod("well").WellAttrs(well=wt.WellMeta(images=images, **inner), **top),
    }
    return {k: v.model_dump(mode="json", exclude_none=True) for k, v in built.items()}


def diff(a: Any, b: Any, where: str) -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{where}.{k}: only in {'lib' if k in a else 'ours'}" for k in a.keys() ^ b.keys()]
        return out + [d for k in a.keys() & b.keys() for d in diff(a[k], b[k], f"{where}.{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [
            d for i, xy in enumerate(zip(a, b, strict=True)) for d in diff(*xy, f"{where}[{i}]")
        ]
    return [] if a == b else [f"{where}: lib {a!r}, ours {b!r}"]


def ome_zarr_py_reads(root: Path) -> str:
    from ome_zarr.format import FormatV04, FormatV05
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Plate, Reader

    fmt = FormatV05() if (root / "zarr.json").exists() else FormatV04()
    node = next(iter(Reader(parse_url(str(root / KEYS[0]), fmt=fmt))()))
    axes = "".join(a["name"].lower() for a in node.metadata["axes"])
    plate = next(iter(Reader(parse_url(str(root), fmt=fmt))()))
    is_plate = any(isinstance(s, Plate) for s in plate.specs)
    return f"axes {axes}, channels {node.metadata.get('channel_names')}, plate node {is_plate}"


def compare_write(tmp: Path) -> None:
    say("\n## Writing: plate, well and image attributes built with each library (our fields)")
    for version in ("0.4", "0.5"):
        top = {"version": version} if version == "0.5" else {}
        ref = {
            "image": {**top, **image_attrs(layout(), version, "0")},
            "plate": {**top, **plate_attrs(list(KEYS), version)},
            "well": {**top, **well_attrs(["0", "1"], version)},
        }
        for lib, build in (
            ("yaozarrs", build_yaozarrs),
            ("ome-zarr-models", build_ome_zarr_models),
        ):
            attrs, exc = attempt(build, version)
            say(f"\nv{version} {lib}: " + (f"cannot build: {one_line(exc)}" if exc else "built"))
            if exc:
                continue
            for d in [d for p in attrs for d in diff(attrs[p], ref[p], p)] or ["identical"]:
                say(f"    its JSON vs ours: {d}")
            # our writer makes the groups and arrays; the library's attributes replace ours
            root = tmp / f"written-{lib}-{version}.zarr"
            write_empty_plate(root, dict.fromkeys(KEYS, layout()), version=version)
            parts = [("plate", root)] + [("well", root / w) for w, _, _ in WELLS]
            for part, path in parts + [("image", root / k) for k in KEYS]:
                if version == "0.5":
                    doc = json.loads((path / "zarr.json").read_text())
                    doc["attributes"] = {"ome": attrs[part]}
                    (path / "zarr.json").write_text(json.dumps(doc))
                else:
                    (path / ".zattrs").write_text(json.dumps(attrs[part]))
            for reader in ("ours", *LIBS, "ome-zarr-py"):
                got, exc = attempt(describe, reader, root)
                say(f"    read back by {reader}: {got or 'FAILED ' + one_line(exc, 300)}")


def _ms(d: dict) -> dict:
    return d["attributes"]["ome"]["multiscales"][0]


def _swap_t_c(d: dict) -> None:
    axes = _ms(d)["axes"]
    axes[0], axes[1] = axes[1], axes[0]


_SCALE = [{"type": "scale", "scale": ["a", 1, 1, 1, 1]}]
_B3 = {"path": "B/3", "rowIndex": 0, "columnIndex": 0}
# name, OME version, damaged file or folder, damage (None: delete it; str: its new text)
DAMAGE: list[tuple[str, str, str, Any]] = [
    ("plate zarr.json missing", "0.5", "zarr.json", None),
    ("plate zarr.json malformed", "0.5", "zarr.json", '{"zarr_format": 3,'),
    ("position zarr.json malformed", "0.5", "A/1/0/zarr.json", "{not json"),
    ("array zarr.json without shape", "0.5", "A/1/0/0/zarr.json", lambda d: d.pop("shape")),
    ("array data type unknown", "0.5", "A/1/0/0/zarr.json", lambda d: d.update(data_type="uint17")),
    ("v0.4 .zattrs malformed", "0.4", "A/1/0/.zattrs", "[1, 2"),
    ("v0.4 position .zattrs missing", "0.4", "A/1/0/.zattrs", None),
    ("v0.4 plate .zattrs malformed", "0.4", ".zattrs", "{'plate': 1}"),
    ("axes in the wrong order", "0.5", "A/1/0/zarr.json", _swap_t_c),
    ("axis of the wrong type", "0.5", "A/1/0/zarr.json", lambda d: _ms(d)["axes"][2].update(type="time")),
    ("no axes", "0.5", "A/1/0/zarr.json", lambda d: _ms(d).pop("axes")),
    ("array 0 missing", "0.5", "A/1/0/0", None),
    ("array 4-D under 5 axes", "0.5", "A/1/0/0/zarr.json", lambda d: d.update(shape=[2, 1, 8, 8])),
    ("scale not numbers", "0.5", "A/1/0/zarr.json", lambda d: _ms(d)["datasets"][0].update(coordinateTransformations=_SCALE)),
    ("well lists a missing position", "0.5", "A/1/1", None),
    ("plate lists a missing well", "0.5", "zarr.json", lambda d: d["attributes"]["ome"]["plate"]["wells"].append(_B3)),
    ("image entry without a path", "0.5", "A/1/zarr.json", lambda d: d["attributes"]["ome"]["well"]["images"][0].pop("path")),
    ("empty plate", "0.5", "zarr.json", lambda d: d["attributes"]["ome"]["plate"].update(wells=[])),
    ("empty well", "0.4", "A/1/.zattrs", lambda d: d["well"].update(images=[])),
    ("(extra) omero channel without window", "0.4", "A/1/0/.zattrs", lambda d: d["omero"]["channels"][0].pop("window")),
    ("(extra) omero color 'red'", "0.5", "A/1/0/zarr.json", lambda d: d["attributes"]["ome"]["omero"]["channels"][0].update(color="red")),
    ("(extra) scale of 4 numbers", "0.5", "A/1/0/zarr.json", lambda d: _ms(d)["datasets"][0]["coordinateTransformations"][0].update(scale=[1, 2, 1, 1])),
]  # fmt: skip


def compare_damage(tmp: Path) -> None:
    say("\n## Damaged stores: each message ([N lines] of it, \u23ce = newline)")
    say("dict = we read the JSON, the library validates the attributes; 'first error' = how we")
    say("would print it: exc.errors()[0] as 'loc: msg'. store = yaozarrs.validate_zarr_store(path)")
    say("/ ome_zarr_models.v0X.hcs.HCS.from_zarr(zarr.open_group(path))")
    summary = []
    for i, (name, version, rel, damage) in enumerate(DAMAGE):
        root = tmp / f"damaged{i}" / "plate.zarr"
        lay = layout((2, 1, 2, 8, 8))
        write_empty_plate(root, {"A/1/0": lay, "A/1/1": lay}, version=version)
        target = root / rel
        if damage is None:
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        elif isinstance(damage, str):
            target.write_text(damage)
        else:
            doc = json.loads(target.read_text())
            damage(doc)
            target.write_text(json.dumps(doc))
        say(f"\n### {name} (v{version}, {rel})")
        found = {"ours": attempt(ours, root)[1]}
        for lib in LIBS:
            found[f"{lib} dict"] = attempt(walk, lib, root)[1]
            found[f"{lib} store"] = attempt(store_level, lib, root)[1]
        summary.append([name])
        for who, exc in found.items():
            reached = not isinstance(exc, NotReached)
            say(f"  {who:22} {one_line(exc) if reached else f'(not validated: {exc})'}")
            if first_error(exc) and who.endswith("dict"):
                say(f"  {'':22} first error: {first_error(exc)}")
            summary[-1].append("-" if not reached else "REJECT" if exc else "accept")
    say("\n### Summary (REJECT: an error; accept: no error; -: JSON unreadable, not validated)")
    table(summary, ["case", *found])


def table(rows: list[list[str]], head: list[str]) -> None:
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, ["-" * w for w in widths], *rows]:
        say("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


PROBE = "import sys, {m}; print(*sorted({{n.split('.')[0] for n in sys.modules}}))"


def run_python(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, check=True)


def import_times(repeats: int = 5) -> None:
    say(f"\n## Import time (median of {repeats} fresh interpreters, minus `python -c pass`)\n")

    def wall(code: str) -> float:
        t0 = time.perf_counter()
        run_python("-c", code)
        return time.perf_counter() - t0

    def self_us(code: str) -> float:  # -X importtime: the sum of every module's own time
        err = run_python("-X", "importtime", "-c", code).stderr.splitlines()
        cells = [ln.split("|")[0].split(":")[1] for ln in err if ln.startswith("import time:")]
        return sum(float(c) for c in cells if "us" not in c)

    mods = ["pydantic", "zarr", "yaozarrs", "ome_zarr_models", "ome_zarr_models.v05.image"]
    base_mods = set(run_python("-c", PROBE.format(m="os")).stdout.split())
    base_wall = statistics.median(wall("pass") for _ in range(repeats))
    base_us = statistics.median(self_us("pass") for _ in range(repeats))
    rows = []
    for mod in [*mods, open_store.__module__]:
        run_python("-c", f"import {mod}")  # warm the .pyc and file caches
        w = statistics.median(wall(f"import {mod}") for _ in range(repeats)) - base_wall
        us = statistics.median(self_us(f"import {mod}") for _ in range(repeats)) - base_us
        loaded = set(run_python("-c", PROBE.format(m=mod)).stdout.split()) - base_mods
        third = [m for m in sorted(loaded - set(sys.stdlib_module_names)) if m[0] != "_"]
        rows.append([mod, f"{w * 1e3:.0f} ms", f"{us / 1e3:.0f} ms", " ".join(third)])
    table(rows, ["import", "wall", "-X importtime", "third-party packages it loads"])


def health() -> None:
    say("\n## Packages\n")
    for dist in LIBS:
        meta = md.metadata(dist)
        classifiers = meta.get_all("Classifier") or []
        lic = [c.split(" :: ")[-1] for c in classifiers if c.startswith("License")]
        reqs = [r for r in meta.get_all("Requires-Dist") or [] if "extra ==" not in r]
        pkg = Path(str(md.distribution(dist).locate_file(dist.replace("-", "_"))))
        covers = sorted(p.name for p in pkg.iterdir() if p.name.lstrip("_")[:2] == "v0")
        say(f"{dist} {meta['Version']}: {', '.join(lic)}; Python {meta['Requires-Python']};")
        say(f"    {classifiers[0].split(' :: ')[-1]}; requires {'; '.join(reqs)}")
        say(f"    extras: {', '.join(meta.get_all('Provides-Extra') or [])}")
        say(f"    OME-Zarr version packages: {', '.join(covers)} (leading _ = private)")


def ome_zarr_py_store(path: Path, version: str, plate: bool) -> Path:
    import numpy as np
    import zarr
    from ome_zarr.format import FormatV04, FormatV05
    from ome_zarr.writer import write_image, write_plate_metadata, write_well_metadata

    fmt = FormatV04() if version == "0.4" else FormatV05()
    group = zarr.open_group(str(path), mode="w", zarr_format=2 if version == "0.4" else 3)
    if plate:
        write_plate_metadata(group, ["B"], ["3"], ["B/3"], fmt=fmt)
        well = group.require_group("B").require_group("3")
        write_well_metadata(well, [{"path": "0"}], fmt=fmt)
        group = well.require_group("0")
    scale = dict(zip("tczyx", (1.0, 1.0, 3.0, 0.5, 0.5), strict=True))
    units = dict.fromkeys("zyx", "micrometer")
    image = np.zeros((2, 2, 4, 16, 16), "float32")
    write_image(
        image, group, scale_factors=[], axes="tczyx", fmt=fmt, scale=scale, axes_units=units
    )
    return path


def build_stores(tmp: Path) -> dict[str, Path]:
    stores = {}
    for name in ("iohub_v04_uint16.zarr", "iohub_v05_float32.zarr"):
        if (FIXTURES / name).is_dir():
            stores[name] = Path(shutil.copytree(FIXTURES / name, tmp / name))
    cli = ["-m", "napari_process_position.cli"]
    for v in ("0.4", "0.5"):
        out = tmp / f"ours_v{v}.zarr"
        run_python(*cli, "demo-data", str(out), "--shape", "2,2,4,32,32", "--ome-version", v)
        stores[out.name] = out
    out = tmp / "ours_run_output_v0.5.zarr"
    run_python(*cli, "run", str(tmp / "ours_v0.5.zarr"), str(out), "-t", "gaussian_blur")
    stores[out.name] = out
    for v in ("0.4", "0.5"):
        for plate in (True, False):
            out = tmp / f"ome-zarr-py_{'plate' if plate else 'image'}_v{v}.zarr"
            stores[out.name] = ome_zarr_py_store(out, v, plate)
    return stores


def main() -> None:
    import pydantic

    versions = ", ".join(f"{d} {md.version(d)}" for d in (*LIBS, "ome-zarr", "zarr"))
    say("# OME-Zarr model libraries for napari-process-position (benchmarks/compare_ome_models.py)")
    say(f"Python {sys.version.split()[0]}, pydantic {pydantic.VERSION}, {versions}")
    path = f"PYTHONPATH={os.environ['PYTHONPATH']} " if os.environ.get("PYTHONPATH") else ""
    say(f"run as: {path}{sys.executable} benchmarks/compare_ome_models.py (yaozarrs[io] installed)")
    tmp = Path(tempfile.mkdtemp(prefix="npp-ome-models-"))
    try:
        stores = build_stores(tmp)
        for lib in LIBS:  # import both and warm their validators before anything is timed
            walk(lib, tmp / "ours_v0.5.zarr")
            walk(lib, tmp / "ours_v0.4.zarr")
        say("\n## Reading: plate + every well + every image, vs our open_store/read_position")
        say("dict = we read zarr.json/.zattrs, the library validates the attributes (fields ==")
        say("ours: axes, units, level-0 scale, omero labels); store = the library reads the store")
        for name, root in stores.items():
            say(f"\n{name}: ours reads {len(ours(root))} positions")
            for lib in LIBS:
                say(f"  {lib}: {describe(lib, root)}")
        compare_write(tmp)
        compare_damage(tmp)
        import_times()
        health()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text("\n".join(OUT) + "\n")
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
