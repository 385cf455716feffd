"""Writing files so that a reader never sees half of one."""
from __future__ import annotations

import os
import tempfile


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
