"""Run iohub 0.3.11's process_single_position, for comparison with ours.

Runs under an interpreter that has iohub (Python >= 3.12), not under the test
environment. Usage: python iohub_reference.py '<json>' where the JSON holds
``func`` ("module:function", the module importable from this folder),
``input``, ``output``, and optional ``kwargs`` for process_single_position.
Slices are encoded as {"slice": [start, stop]}. With ``create`` set, an
empty output plate is first made with iohub's create_empty_plate. With
``pyramid`` ({"position": path, "levels": N}) the position's pyramid levels
are deleted and computed again by ``Position.compute_pyramid(levels=N, method="mean")``.
"""

import importlib
import json
import sys
from pathlib import Path


def _decode(value):
    if isinstance(value, dict) and "slice" in value:
        return slice(*value["slice"])
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def main() -> None:
    spec = json.loads(sys.argv[1])
    sys.path.insert(0, str(Path(__file__).parent))
    from iohub.ngff.utils import create_empty_plate, process_single_position

    if "create" in spec:
        c = spec["create"]
        create_empty_plate(
            store_path=Path(c["store"]),
            position_keys=[tuple(k.split("/")) for k in c["keys"]],
            channel_names=c["channel_names"],
            shape=tuple(c["shape"]),
            version=c.get("version", "0.5"),
            dtype=c["dtype"],
            scale=tuple(c.get("scale", (1, 1, 1, 1, 1))),
        )
    if "func" in spec:
        module, _, name = spec["func"].partition(":")
        func = getattr(importlib.import_module(module), name)
        kwargs = {k: _decode(v) for k, v in spec.get("kwargs", {}).items()}
        process_single_position(func, Path(spec["input"]), Path(spec["output"]), **kwargs)
    if "pyramid" in spec:
        from iohub import open_ome_zarr

        p = spec["pyramid"]
        with open_ome_zarr(p["position"], mode="r+") as position:
            position.delete_pyramid()
            position.compute_pyramid(levels=p["levels"], method="mean")


if __name__ == "__main__":
    main()
