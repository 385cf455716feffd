"""How Python values become column values and back: strict JSON for configs, NULL for NaN.

NaN in REAL columns becomes NULL (SQLite has no NaN) and reads back as NaN in DataFrames. JSON columns
are strict JSON: non-finite floats are written as the strings "NaN", "Infinity", "-Infinity" and decoded
back to floats on read (so those three strings are reserved inside configs). Dataclasses (a comparison
spec) are stored as their dicts, numpy and torch scalars and arrays as lists of numbers.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any


def _real(value: Any) -> float | None:
    """A REAL column value: None stays NULL, anything else must pass float() (NaN is stored as NULL)."""
    return None if value is None else float(value)


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


# Strict JSON has no NaN/Infinity; these strings stand in for them and are decoded back on read.
_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _encode(obj: Any) -> Any:
    if isinstance(obj, float):
        if math.isnan(obj):
            return "NaN"
        if math.isinf(obj):
            return "Infinity" if obj > 0 else "-Infinity"
        return obj
    if isinstance(obj, dict):
        return {str(k): _encode(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_encode(v) for v in obj]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _encode(dataclasses.asdict(obj))
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):  # numpy / torch scalars and arrays
        return _encode(obj.tolist())
    return obj


def _decode(obj: Any) -> Any:
    if isinstance(obj, str):
        return _NONFINITE.get(obj, obj)
    if isinstance(obj, dict):
        return {k: _decode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v) for v in obj]
    return obj


def _dumps(obj: Any) -> str:
    return json.dumps(_encode(obj), allow_nan=False)


def _loads(text: str) -> Any:
    return _decode(json.loads(text))
