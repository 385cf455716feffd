"""What the user passed -> the recurrent module to measure (``resolve_module``).

Users pass what they hold in their training script: the whole model instead of ``model.rnn``, a subclass
of nn.LSTM, ``torch.compile(rnn)``, ``nn.DataParallel(rnn)`` or ``DistributedDataParallel(rnn)``. Each is
turned here, once, into the supported torch module whose weights are stepped (``stepper.module_step``);
a module with no recurrent submodule stays what it was (a custom step map).
"""
from __future__ import annotations

import sys

from torch import nn
from torch.nn.parallel import DistributedDataParallel

# the module types stepped with their own weights (subclasses too)
SUPPORTED = (nn.RNN, nn.GRU, nn.LSTM, nn.RNNCell, nn.GRUCell, nn.LSTMCell)


def _optimized_module_type():
    """torch.compile's wrapper class, or None while torch._dynamo is not loaded (then no object of it
    can exist): importing it here would cost seconds on every call."""
    eval_frame = sys.modules.get("torch._dynamo.eval_frame")
    return getattr(eval_frame, "OptimizedModule", None)


def unwrap(obj):
    """``obj`` without torch.compile / DataParallel / DistributedDataParallel wrappers (any nesting)."""
    while True:
        compiled = _optimized_module_type()
        if compiled is not None and isinstance(obj, compiled):
            obj = obj._orig_mod
        elif isinstance(obj, (nn.DataParallel, DistributedDataParallel)):
            obj = obj.module
        else:
            return obj


def supported_type(obj):
    """The supported torch class ``obj`` is an instance of (nn.LSTM for a subclass of it), or None."""
    for cls in SUPPORTED:
        if isinstance(obj, cls):
            return cls
    return None


def _python_path(path: str) -> str:
    """'layers.0.rnn' -> 'layers[0].rnn': how the user reaches a submodule in Python."""
    out = ""
    for part in path.split("."):
        if part.isidentifier():
            out += "." + part
        elif part.isdigit():
            out += f"[{part}]"
        else:
            out += f"[{part!r}]"
    return out.lstrip(".")


def recurrent_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The supported recurrent modules inside ``model`` as (Python attribute path, module), in
    registration order, each once; wrappers inside the model are seen through."""
    found, seen = [], set()

    def walk(module, prefix):
        for name, child in module.named_children():
            path = f"{prefix}.{name}" if prefix else name
            inner = unwrap(child)
            if supported_type(inner) is not None:
                if id(inner) not in seen:
                    seen.add(id(inner))
                    found.append((_python_path(path), inner))
            else:
                walk(child, path)

    walk(model, "")
    return found


def resolve_module(obj):
    """The torch module to measure for what the user passed.

    - torch.compile's OptimizedModule, nn.DataParallel and nn.parallel.DistributedDataParallel are
      unwrapped (``_orig_mod``, ``.module``), at any nesting.
    - nn.RNN / GRU / LSTM / RNNCell / GRUCell / LSTMCell and their subclasses are returned as they are:
      they are stepped with their own weights by the cell equations of the PyTorch docs, so a
      subclass's overridden ``forward`` is NOT used (the dynamics measured are the base class's).
    - any other nn.Module holding exactly one of them (a whole model: embedding, LSTM, decoder) ->
      that one; several -> ValueError listing them by attribute path, e.g. "the Seq2Seq holds 2
      recurrent modules: encoder (LSTM), decoder (GRU); pass one of them, e.g. model.encoder".
    - an nn.Module holding none, or any other callable, is returned as it is (a custom step map
      ``step(state, x) -> state``). A custom step map that itself holds a recurrent submodule is read
      as a whole model: to measure such a map, pass it as a function, ``lambda s, x: mymap(s, x)``,
      with ``params=list(mymap.parameters())`` to floss it.
    """
    obj = unwrap(obj)
    if not isinstance(obj, nn.Module) or supported_type(obj) is not None:
        return obj
    found = recurrent_modules(obj)
    if len(found) == 1:
        return found[0][1]
    if len(found) > 1:
        listed = ", ".join(f"{path} ({supported_type(m).__name__})" for path, m in found)
        raise ValueError(f"the {type(obj).__name__} holds {len(found)} recurrent modules: {listed}; "
                         f"pass one of them, e.g. model.{found[0][0]}")
    return obj
