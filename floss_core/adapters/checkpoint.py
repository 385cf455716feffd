"""A user's checkpoint, read safely: ``load_checkpoint`` builds a module of the declared architecture
(``build_module``, by a name of ``TORCH_MODULES``) and loads a saved ``state_dict`` into it with
``torch.load(weights_only=True)`` (no code from the file runs), at most ``MAX_CHECKPOINT_BYTES``;
anything else is refused with a one-line ValueError. ``save_state_dict`` writes the bytes back.
"""
from __future__ import annotations

import io
import os
import re

import torch
from torch import nn

# a checkpoint's architecture name -> the torch module class it is loaded into (models.ARCHS, by contrast,
# holds the lab's own ensemble architectures)
TORCH_MODULES = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM,
                 "rnn_cell": nn.RNNCell, "gru_cell": nn.GRUCell, "lstm_cell": nn.LSTMCell}
GATES = {"rnn": 1, "gru": 3, "lstm": 4}    # rows of weight_ih per hidden unit
MAX_CHECKPOINT_BYTES = 50_000_000


def build_module(arch: str, *, hidden: int, input_size: int, num_layers: int = 1, bias: bool = True,
                 nonlinearity: str = "tanh", batch_first: bool = False) -> nn.Module:
    """A fresh torch module by name (``TORCH_MODULES``: rnn, gru, lstm, rnn_cell, gru_cell, lstm_cell)."""
    if arch not in TORCH_MODULES:
        raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(TORCH_MODULES)}")
    for name, value, hi in (("hidden", hidden, 4096), ("input_size", input_size, 4096), ("num_layers", num_layers, 16)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= hi:
            raise ValueError(f"{name} must be an integer in 1..{hi}, got {value!r}")
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"unknown nonlinearity {nonlinearity!r}; choose one of tanh, relu")
    if nonlinearity != "tanh" and not arch.startswith("rnn"):
        raise ValueError(f"nonlinearity applies to rnn and rnn_cell only, not {arch}")
    cls = TORCH_MODULES[arch]
    extra = {"nonlinearity": nonlinearity} if arch.startswith("rnn") else {}
    if arch.endswith("_cell"):
        if num_layers != 1:
            raise ValueError(f"a {arch} has one layer, got num_layers={num_layers}")
        return cls(input_size, hidden, bias=bias, **extra)
    return cls(input_size, hidden, num_layers=num_layers, bias=bias, batch_first=batch_first, **extra)


def _read_bytes(file_or_bytes, max_bytes: int) -> bytes:
    if isinstance(file_or_bytes, (bytes, bytearray, memoryview)):
        data = bytes(file_or_bytes)
    elif isinstance(file_or_bytes, (str, os.PathLike)):
        try:
            size = os.path.getsize(file_or_bytes)
        except OSError:
            raise ValueError(f"checkpoint file not found: {file_or_bytes}") from None
        if size > max_bytes:
            raise ValueError(f"checkpoint is too big: {size:,} bytes, the limit is {max_bytes:,}")
        with open(file_or_bytes, "rb") as f:
            data = f.read(max_bytes + 1)
    elif hasattr(file_or_bytes, "read"):
        data = file_or_bytes.read(max_bytes + 1)
    else:
        raise ValueError(f"expected bytes, a path or a file object, got {type(file_or_bytes).__name__}")
    if len(data) > max_bytes:
        raise ValueError(f"checkpoint is too big: {len(data):,} bytes or more, the limit is {max_bytes:,}")
    if not data:
        raise ValueError("checkpoint is empty")
    return data


# torch's refusal wraps the unpickler's reason in advice to load the file with weights_only=False, i.e.
# to run its code; none of that text is shown, only what the file holds (the named global, if any)
_REFUSED = "checkpoint refused: the file holds code or objects other than tensors"


def _unreadable(text: str, kind: str) -> str:
    """One line for a file ``torch.load(weights_only=True)`` would not read; never torch's advice."""
    found = re.search(r"GLOBAL (\S+?)\.?(?:\s|$)", text)   # "Unsupported global: GLOBAL x.y was ..." or
    if found:                                              # "... unsupported GLOBAL x.y whose module x is blocked"
        name = found.group(1)
        return f"{_REFUSED} ({name})" + ("; save the module's state_dict() instead" if name.startswith("torch.") else "")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    reasons = [line for line in lines if not any(w in line.lower() for w in _TORCH_ADVICE)]
    if any(w in r for r in reasons for w in _OBJECTS):   # an object built or called: refused, as a global is
        return _REFUSED
    if reasons:   # e.g. "Unsupported operand 110" (not a pickle at all), "Invalid magic number"
        return f"could not read the checkpoint as a torch.save file: {reasons[0][:200]}"
    return _REFUSED if lines else f"could not read the checkpoint as a torch.save file: {kind}"


_TORCH_ADVICE = ("weights_only", "weights only", "torch.load", "trusted source", "file an issue")
_OBJECTS = ("call reduce", "new object", "Can only build", "but got")


def _shape(t) -> str:
    return "(" + ", ".join(str(s) for s in t.shape) + ")"


def load_checkpoint(file_or_bytes, *, arch: str, hidden: int, input_size: int, num_layers: int = 1,
                    bias: bool = True, nonlinearity: str = "tanh", batch_first: bool = False, prefix: str = "",
                    max_bytes: int = MAX_CHECKPOINT_BYTES) -> nn.Module:
    """A module of the declared architecture with the weights of a saved ``state_dict``.

    Loaded with ``torch.load(weights_only=True)`` (no code from the file runs), at most ``max_bytes``.
    Keys under ``prefix`` (e.g. 'lstm.' for a submodule of a bigger model) are used and the others
    ignored; with no prefix the dict must hold exactly the module's keys. Refused with a one-line
    ValueError naming the missing or unexpected key or the mismatched shape.
    """
    module = build_module(arch, hidden=hidden, input_size=input_size, num_layers=num_layers, bias=bias,
                          nonlinearity=nonlinearity, batch_first=batch_first)
    data = _read_bytes(file_or_bytes, max_bytes)
    try:
        sd = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure to unpickle is the file's fault
        raise ValueError(_unreadable(str(e), type(e).__name__)) from None
    if not isinstance(sd, dict):
        raise ValueError(f"not a state_dict: the file holds a {type(sd).__name__}, expected a dict of tensors "
                         "(save module.state_dict())")
    if prefix:
        sd = {key[len(prefix):]: v for key, v in sd.items() if isinstance(key, str) and key.startswith(prefix)}
    for key, value in sd.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            what = type(value).__name__
            raise ValueError(f"not a state_dict: key {key!r} holds a {what}, expected a tensor"
                             + (" (a training checkpoint? pass its model's state_dict)" if isinstance(value, dict) else ""))
    name = (f"{arch}(hidden={hidden}, input_size={input_size}"
            + (f", num_layers={num_layers}" if not arch.endswith("_cell") else "") + f", bias={bias})")
    expected = module.state_dict()
    missing = [key for key in expected if key not in sd]
    unexpected = [key for key in sd if key not in expected]
    if missing:
        hint = ""
        under = {key[: -len(missing[0])] for key in sd if key.endswith("." + missing[0])}
        if len(under) == 1 and not prefix:
            hint = f"; the keys sit under {next(iter(under))!r}: pass prefix={next(iter(under))!r}"
        raise ValueError(f"checkpoint does not match {name}: missing key {missing[0]!r}{hint}")
    if unexpected:
        raise ValueError(f"checkpoint does not match {name}: unexpected key {unexpected[0]!r}")
    for key, want in expected.items():
        got = sd[key]
        if got.shape != want.shape:
            hint, hh = "", sd.get("weight_hh_l0", sd.get("weight_hh"))
            if hh is not None and hh.dim() == 2 and hh.shape[1] and hh.shape[0] % hh.shape[1] == 0:
                guess = {v: k for k, v in GATES.items()}.get(hh.shape[0] // hh.shape[1])
                if guess:  # gate rows per hidden unit: 1 rnn, 3 gru, 4 lstm
                    hint = f" (it looks like a {guess} with hidden={hh.shape[1]})"
            raise ValueError(f"checkpoint does not match {name}: {key!r} has shape {_shape(got)}, "
                             f"expected {_shape(want)}{hint}")
        if not got.is_floating_point():
            raise ValueError(f"checkpoint key {key!r} holds {got.dtype} values, expected floating point")
        if not bool(torch.isfinite(got).all()):
            raise ValueError(f"checkpoint key {key!r} holds NaN or infinite values")
    module.to(next(iter(sd.values())).dtype)
    module.load_state_dict(sd)
    return module


def save_state_dict(module: nn.Module) -> bytes:
    """The module's ``state_dict`` as the bytes of a ``torch.save`` file (loadable with weights_only=True)."""
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu().clone() for k, v in module.state_dict().items()}, buf)
    return buf.getvalue()
