"""Pictures inside Prefect markdown artifacts.

The UI's image artifact only takes a URL, and the files live on the machine
that ran the flow, so a (small) PNG is embedded as a data URI instead.
"""

from __future__ import annotations

import base64
from io import BytesIO
from pathlib import Path

from PIL import Image


def png_data_uri(path: Path, max_side: int | None = None) -> str:
    """`data:image/png;base64,...` of the PNG at `path`, shrunk to fit `max_side` pixels if given."""
    if max_side is None:
        data = Path(path).read_bytes()
    else:
        image = Image.open(path)
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        buffer = BytesIO()
        image.save(buffer, format="PNG", optimize=True)
        data = buffer.getvalue()
    return "data:image/png;base64," + base64.b64encode(data).decode()
