"""A sample of the user's own inputs, read safely and validated once against the module it will drive.

``load_inputs(data, filename, module)`` reads a ``.pt`` / ``.pth`` file (``torch.load(weights_only=True)``:
a tensor, or a dict / list / tuple holding exactly one), a ``.npy`` file (``numpy.load(allow_pickle=False)``)
or a ``.csv`` (rows = time steps, columns = channels, one sequence, a header row allowed; read by pandas), at
most ``MAX_INPUT_BYTES``, and returns a ``Sample``: the tensor in the module's own layout, always 3-D, and a
description of it. Anything else is refused whole with a one-line ValueError naming the problem and the fix.

Layouts accepted, C = the module's ``input_size``: (T, C), one sequence; (T, B, C) for a sequence-first
module (the default, and every Cell); (B, T, C) for a ``batch_first`` one. A channels axis in the wrong
place ((C, T), or C not last) is refused as such; T and B cannot be told apart from the shape, so a
sequence too short for the report mentions batch_first when the other axis would have been long enough.
Why a sample at all: on random bits the trained LSTM of issue 17 has λ1 = −0.076, on its real inputs −0.223,
which flips the forecast's verdict at delay 35.
"""
from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import PurePath

import numpy as np
import torch

from ..files import safe_filename
from .resolve import resolve_module
from .stepper import _kind

MAX_INPUT_BYTES = 20_000_000
SUFFIXES = (".pt", ".pth", ".npy", ".csv")


@dataclass(frozen=True)
class Sample:
    """A validated sample of a module's inputs."""
    tensor: torch.Tensor   # (T, B, C), or (B, T, C) when batch_first; the module's dtype (>= float32), finite
    name: str              # the file's name, sanitised (no folders), as the reports show it
    batch_first: bool      # the layout of ``tensor`` (the module's)

    @property
    def steps(self) -> int:          # T, per sequence
        return self.tensor.shape[1 if self.batch_first else 0]

    @property
    def sequences(self) -> int:      # B
        return self.tensor.shape[0 if self.batch_first else 1]

    @property
    def channels(self) -> int:       # C
        return self.tensor.shape[-1]

    def describe(self) -> str:
        """'your sample (inputs.npy): 3 sequences × 400 steps × 64 channels'."""
        def n(x, what):
            return f"{x:,} {what}" + ("" if x == 1 else "s")
        return (f"your sample ({self.name}): {n(self.sequences, 'sequence')} × {n(self.steps, 'step')} × "
                f"{n(self.channels, 'channel')}")

    def part(self, start: int, stop: int, *, sequences: slice | None = None) -> torch.Tensor:
        """Steps start..stop-1 (zero-based) of the chosen sequences (default all), in the module's layout."""
        time_dim, batch_dim = (1, 0) if self.batch_first else (0, 1)
        x = self.tensor.narrow(time_dim, start, stop - start)
        if sequences is not None:
            idx = torch.arange(self.sequences)[sequences]
            x = x.index_select(batch_dim, idx)
        return x


def load_inputs(data: bytes, filename: str, module, *, min_steps: int = 1,
                max_bytes: int = MAX_INPUT_BYTES) -> Sample:
    """A sample of ``module``'s inputs from the bytes of an uploaded file, validated (see the module docstring).

    Args:
      data: the file's bytes, at most ``max_bytes``.
      filename: its name; the suffix picks the reader (.pt / .pth, .npy, .csv), the sanitised name is shown.
      module: the torch.nn.RNN / GRU / LSTM or Cell the sample will drive (its input_size, batch_first, dtype).
      min_steps: refuse sequences shorter than this.
    Returns a ``Sample`` (its ``tensor`` in the module's layout, 3-D). ValueError, one line, otherwise.
    """
    path = PurePath(str(filename).replace("\\", "/"))
    suffix = path.suffix.lower()
    # sanitised, and always ending in its suffix: the background job reads the kept copy by this name
    name = safe_filename(path.stem, basename=True, fallback="sample", max_len=100 - len(suffix)) + suffix
    if suffix not in SUFFIXES:
        raise ValueError((f"unsupported file type {suffix!r} ({name})" if suffix else
                          f"the sample {name} has no file type suffix") + "; upload a sample of your inputs as "
                         ".pt / .pth (torch.save of a tensor), .npy (numpy.save) or .csv")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ValueError(f"expected the file's bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > max_bytes:
        raise ValueError(f"the sample {name} is too big: {len(data):,} bytes, the limit is {max_bytes:,} "
                         f"({max_bytes / 1e6:g} MB); upload fewer or shorter sequences")
    if not data:
        raise ValueError(f"the sample {name} is empty")
    reader = {".pt": _read_torch, ".pth": _read_torch, ".npy": _read_npy, ".csv": _read_csv}[suffix]
    return as_sample(reader(data, name), module, name=name, min_steps=min_steps)


def as_sample(inputs, module, *, name: str = "inputs", min_steps: int = 1) -> Sample:
    """``inputs`` (a ``Sample``, a tensor or an array, in the layouts of the module docstring) validated
    against ``module`` as a ``Sample``; a Sample keeps its name."""
    if isinstance(inputs, Sample):
        name, inputs = inputs.name, inputs.tensor
    module = resolve_module(module)
    if _kind(module) is None:
        raise ValueError(f"a sample drives a torch.nn.RNN / GRU / LSTM or one of their Cells, got "
                         f"{type(module).__name__}")
    batch_first = bool(getattr(module, "batch_first", False))
    t = _as_tensor(inputs, name)
    x = _in_layout(t, module.input_size, batch_first, name=name)   # the module's own field: no stepper built here
    # the module's dtype, at least float32: a float16 / bfloat16 module is measured in float32 (the stepper's rule)
    x = x.to(dtype=torch.promote_types(next(iter(module.parameters())).dtype, torch.float32))
    bad = ~torch.isfinite(x)
    if bool(bad.any()):
        where = bad.nonzero()[0].tolist()           # (t, b, c) or (b, t, c)
        step, seq = (where[1], where[0]) if batch_first else (where[0], where[1])
        raise ValueError(f"the sample {name} holds missing, NaN or infinite values (the first at step {step + 1} of "
                         f"sequence {seq + 1}, channel {where[2] + 1}); fill or cut out the gaps before uploading")
    sample = Sample(x, name, batch_first)
    check_steps(sample, min_steps, "this")
    return sample


def check_steps(sample: Sample, need: int, what: str, why: str = "") -> None:
    """ValueError unless every sequence of ``sample`` has at least ``need`` steps: '{what} needs at least
    {need}{why}', with a hint at batch_first where the other axis would have been long enough."""
    if sample.steps >= need:
        return
    hint = ""
    if sample.sequences >= need:     # not provable, but likely: the time and batch axes swapped
        hint = ("; is it (T, B, C)? then the module is not batch_first" if sample.batch_first else
                "; is it (B, T, C)? then declare the module batch_first")
    raise ValueError(f"the sample {sample.name} has {sample.steps:,} steps per sequence; {what} needs at least "
                     f"{need:,}{why}: upload longer sequences{hint}")


# ------------------------------------------------------------------------------------ readers
def _read_torch(data: bytes, name: str):
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure to unpickle is the file's fault
        raise ValueError(_torch_refusal(str(e), type(e).__name__, name)) from None
    if isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, (dict, list, tuple)):
        values = list(obj.values()) if isinstance(obj, dict) else list(obj)
        tensors = [v for v in values if isinstance(v, torch.Tensor)]
        if len(tensors) == 1 and len(values) == 1:
            return tensors[0]
        keys = (" (keys " + ", ".join(repr(k) for k in list(obj)[:5]) + (", ..." if len(obj) > 5 else "") + ")"
                if isinstance(obj, dict) and obj else "")
        raise ValueError(f"the sample {name} holds a {type(obj).__name__} of {len(values)} item"
                         f"{'' if len(values) == 1 else 's'}, {len(tensors)} of them tensors{keys}; save just the "
                         f"inputs: torch.save(x, '{name}')")
    raise ValueError(f"the sample {name} holds a value of type {type(obj).__name__}, not a tensor; save the inputs as one: "
                     f"torch.save(x, '{name}')")


def _torch_refusal(text: str, kind: str, name: str) -> str:
    """One line for a file ``torch.load(weights_only=True)`` would not read; never torch's advice to
    turn weights_only off."""
    found = re.search(r"GLOBAL (\S+?)\.?(?:\s|$)", text)
    if found or "weights only" in text.lower():
        return (f"sample refused: {name} holds code or objects other than tensors"
                + (f" ({found.group(1)})" if found else "") + "; save a plain tensor: torch.save(x, path)")
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), kind)
    return f"could not read {name} as a torch.save file ({first[:200]}); save a tensor with torch.save(x, path)"


def _read_npy(data: bytes, name: str):
    try:
        a = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as e:
        if "object" in str(e).lower() or "pickle" in str(e).lower():
            if not data.startswith(b"\x93NUMPY"):
                raise ValueError(f"could not read {name} as a .npy file (no NumPy header); save the array "
                                 f"with numpy.save(path, x)") from None
            raise ValueError(f"sample refused: {name} holds Python objects, not numbers; save a numeric array "
                             f"(e.g. x.astype('float32'))") from None
        raise ValueError(f"could not read {name} as a .npy file ({str(e).splitlines()[0][:200]}); save the array "
                         f"with numpy.save(path, x)") from None
    except Exception as e:  # noqa: BLE001 - a truncated or corrupt file
        raise ValueError(f"could not read {name} as a .npy file ({type(e).__name__}: {str(e)[:200]}); save the "
                         f"array with numpy.save(path, x)") from None
    if not isinstance(a, np.ndarray):   # np.load of a .npz: an archive, not one array
        raise ValueError(f"{name} is an archive of arrays, not one .npy array; save the inputs with numpy.save")
    return a


def _read_csv(data: bytes, name: str):
    import pandas as pd

    try:
        raw = pd.read_csv(io.BytesIO(data), header=None, dtype=str, keep_default_na=False, skip_blank_lines=True)
    except Exception as e:  # noqa: BLE001 - pandas' parser errors: ragged rows, bad encoding
        first = (str(e).splitlines() or [type(e).__name__])[0]
        raise ValueError(f"could not read {name} as a CSV table ({first[:200]}); rows = time steps, "
                         f"columns = channels") from None
    if raw.empty:
        raise ValueError(f"the sample {name} has no rows")
    raw = raw.fillna("")                # a short row's missing fields: gaps, refused with their position
    values = raw.apply(lambda col: pd.to_numeric(col.str.strip(), errors="coerce"))
    blank = raw.apply(lambda col: col.str.strip() == "")
    wrong = values.isna() & ~blank & ~raw.apply(lambda col: col.str.strip().str.lower().isin(["nan", "inf", "-inf"]))
    header = None
    if bool(wrong.iloc[0].any()):       # a first row of words is a header
        header, raw, values, wrong, blank = (list(raw.iloc[0]), raw.iloc[1:], values.iloc[1:], wrong.iloc[1:],
                                             blank.iloc[1:])
    if raw.empty:
        raise ValueError(f"the sample {name} has a header and no rows of numbers")
    if bool(wrong.to_numpy().any()):
        row, col = (int(i) for i in np.argwhere(wrong.to_numpy())[0])
        column = f"column {col + 1}" + (f" ({header[col]!r})" if header else "")
        raise ValueError(f"the sample {name} is not all numbers: {column} holds {raw.iat[row, col]!r} at row "
                         f"{row + 1 + (header is not None)}; keep only the input channels, one number per cell "
                         "(drop a time or index column)")
    a = values.to_numpy(dtype=np.float64, copy=True)
    a[blank.to_numpy()] = np.nan        # a gap: refused as not finite, with its position
    return a


# ------------------------------------------------------------------------------------ validation
def _as_tensor(x, name: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        if x.dtype == np.bool_ or np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating):
            return torch.as_tensor(np.asarray(x, dtype=np.float64))   # exact for float32 / int up to 2^53
        raise ValueError(f"the sample {name} holds {x.dtype} values, not real numbers; save a float array")
    if isinstance(x, torch.Tensor):
        if x.is_complex():
            raise ValueError(f"the sample {name} holds {x.dtype} values, not real numbers; save a float tensor")
        x = x.detach().cpu()
        return x if x.is_floating_point() else x.to(torch.float64)    # bool and integer inputs count as numbers
    raise ValueError(f"a sample must be a tensor or an array, got {type(x).__name__}")


def _in_layout(t: torch.Tensor, c: int, batch_first: bool, *, name: str) -> torch.Tensor:
    """(T, C), (T, B, C) or (B, T, C) (batch_first) -> the module's 3-D layout; ValueError naming a channel
    count that does not fit, a wrong number of axes or a channels axis in the wrong place."""
    layout = "(B, T, C)" if batch_first else "(T, B, C)"
    shape = tuple(t.shape)
    if t.dim() not in (2, 3):
        fix = f"; for one channel save it as shape ({shape[0]}, 1)" if t.dim() == 1 and c == 1 else ""
        raise ValueError(f"the sample {name} has shape {shape} ({t.dim()} ax{'i' if t.dim() == 1 else 'e'}s); it "
                         f"must be (T, C) for one sequence or {layout} for several, with C = input_size = {c}{fix}")
    if 0 in shape:
        raise ValueError(f"the sample {name} is empty: shape {shape}")
    if shape[-1] != c:
        if c in shape[:-1]:
            axis = shape.index(c)
            fix = (f"save its transpose, shape ({shape[1]}, {shape[0]})" if t.dim() == 2 else
                   f"move them last (x.movedim({axis}, -1) in torch, np.moveaxis(x, {axis}, -1) in NumPy)")
            raise ValueError(f"the sample {name} has its {c} channels on axis {axis} of shape {shape}, not last; the "
                             f"module takes {'(T, C)' if t.dim() == 2 else layout} with channels last: {fix}")
        extra = "; an index or time column? keep only the input channels" if shape[-1] == c + 1 else ""
        raise ValueError(f"the sample {name} has {shape[-1]} channels (the last axis of shape {shape}), the module "
                         f"expects input_size={c}{extra}")
    if t.dim() == 2:
        t = t[None] if batch_first else t[:, None]
    return t
