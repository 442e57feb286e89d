"""The transform the drop-in benchmark passes to every implementation (numpy only).

Three element-wise passes, as the built-in ``soft_magnitude``. It lives in a
module of its own so that spawned workers of any implementation (ours, a git
ref of ours, iohub 0.3.11 in its own venv) import it by name.
"""

from __future__ import annotations

from typing import Any


def soft_magnitude(czyx: Any, offset: float = 0.5) -> Any:
    """``sqrt(x*x + 1) - offset``, computed in place on one new array."""
    import numpy as np

    out = np.multiply(czyx, czyx, dtype=np.float32 if czyx.dtype.kind != "f" else czyx.dtype)
    out += 1
    np.sqrt(out, out=out)
    out -= offset
    return out
