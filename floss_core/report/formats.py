"""One format of a report (html, pdf or zip) as bytes or a file, under a sanitised file name."""
from __future__ import annotations

import os
from pathlib import Path

from ..files import safe_filename
from ..store import Store
from .bundle import zip_from_data
from .data import id_list, load
from .html import html_from_data
from .pdf import html_to_pdf

FORMATS = ("html", "pdf", "zip")


def safe_name(text: str, *, fallback: str = "experiment", max_len: int = 80) -> str:
    """A file-name part from user text (``files.safe_filename``): "../../etc/passwd" -> "etc_passwd"."""
    return safe_filename(text, fallback=fallback, max_len=max_len)


def report_filename(name: str, experiment_ids, fmt: str) -> str:
    """E.g. ``quick-sweep-3.html``: the experiment's name (sanitised) and id(s), then the format."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    ids = "_".join(str(i) for i in id_list(experiment_ids))
    return f"{safe_name(name)}-{ids}.{fmt}"


def export(store: Store, experiment_ids, fmt: str) -> tuple[str, bytes]:
    """(file name, contents) of one format of the report; the dashboard's download buttons use this."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    data = load(store, experiment_ids)
    name = report_filename("+".join(x["name"] for x in data.experiments), data.ids, fmt)
    if fmt == "zip":
        return name, zip_from_data(data)
    html = html_from_data(data)
    return name, (html.encode("utf-8") if fmt == "html" else html_to_pdf(html))


def write_report(store: Store, experiment_ids, fmt: str, out: str | os.PathLike | None = None) -> Path:
    """Write one format of the report. ``out``: a file path, an existing directory (the derived file
    name goes inside), or None (the derived name in the current directory). Returns the path."""
    return write_export(*export(store, experiment_ids, fmt), out)


def write_export(name: str, blob: bytes, out: str | os.PathLike | None = None) -> Path:
    """Write an exported ``blob`` to ``out``: a file path, an existing directory (``name``, already sanitised,
    goes inside), or None (``name`` in the current directory). Returns the path."""
    path = Path(out) if out is not None else Path(name)
    if path.is_dir():
        path = path / name
    path.write_bytes(blob)
    return path
