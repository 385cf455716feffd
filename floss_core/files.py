"""Files from user input: names that cannot leave their folder, and writes a reader never sees half of."""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import PurePath


def atomic_write(path, data: str | bytes) -> None:
    """Write ``data`` to a temporary file in ``path``'s folder, then rename it over ``path``: a reader (a
    polling page, a user's loader) sees the old file or the whole new one, never a part; on an error the
    temporary file is removed and ``path`` is untouched."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def safe_filename(text, *, fallback: str, max_len: int = 80, basename: bool = False) -> str:
    """A file name (or part of one) from user text that cannot leave its folder: only [A-Za-z0-9._-]
    (any other run of characters becomes "_"), no "..", no leading or trailing dot, dash or underscore,
    at most ``max_len`` characters; ``fallback`` when nothing is left.

    ``basename``: keep only the last path component, an uploaded file's own name ("../../etc/passwd"
    -> "passwd"); otherwise separators are replaced like any other character ("etc_passwd")."""
    text = str(text)
    if basename:
        text = PurePath(text.replace("\\", "/")).name
    s = re.sub(r"\.{2,}", ".", re.sub(r"[^A-Za-z0-9._-]+", "_", text))
    return s.lstrip("._-")[:max_len].rstrip("._-") or fallback
