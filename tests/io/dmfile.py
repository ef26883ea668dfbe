"""A small DigitalMicrograph (DM3 / DM4) file writer for tests.

Writes the documented tag-tree layout: a big-endian header (version, size,
byte order), then nested tag groups; data tags carry the ``%%%%`` delimiter,
an info array describing the type and the value in little-endian order.
DM4 widens every length field to 8 bytes and adds a size field to each tag.
Only what the tests need: numbers, UTF-16 strings (arrays of uint16) and the
image array.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

# DM simple-type codes.
_CODES = {np.dtype("int16"): 2, np.dtype("int32"): 3, np.dtype("uint16"): 4,
          np.dtype("uint32"): 5, np.dtype("float32"): 6, np.dtype("float64"): 7,
          np.dtype("int8"): 10}
# ImageData.DataType codes.
_IMAGE_TYPES = {np.dtype("int16"): 1, np.dtype("float32"): 2, np.dtype("uint8"): 6,
                np.dtype("int32"): 7, np.dtype("int8"): 9, np.dtype("uint16"): 10,
                np.dtype("uint32"): 11, np.dtype("float64"): 12}


class _Writer:
    def __init__(self, version: int):
        self.v = version
        self.q = ">Q" if version == 4 else ">I"  # lengths

    def n(self, value: int) -> bytes:
        return struct.pack(self.q, value)

    def data_tag(self, name: str, value: Any) -> bytes:
        if isinstance(value, str):
            arr = np.frombuffer(value.encode("utf-16-le"), dtype="<u2")
            info = [20, 4, arr.size]
            payload = arr.tobytes()
        elif isinstance(value, np.ndarray):
            info = [20, _CODES[value.dtype], value.size]
            payload = value.astype(value.dtype.newbyteorder("<")).tobytes()
        elif isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            info = [5]
            payload = struct.pack("<I", int(value))
        else:
            info = [7]
            payload = struct.pack("<d", float(value))
        body = b"%%%%" + self.n(len(info)) + b"".join(self.n(i) for i in info) + payload
        return self._header(21, name, body) + body

    def group_tag(self, name: str, content: dict[str, Any] | list[Any]) -> bytes:
        body = self.group_body(content)
        return self._header(20, name, body) + body

    def group_body(self, content: dict[str, Any] | list[Any]) -> bytes:
        items = content.items() if isinstance(content, dict) else [("", v) for v in content]
        tags = b"".join(
            self.group_tag(k, v) if isinstance(v, (dict, list)) else self.data_tag(k, v)
            for k, v in items
        )
        return b"\x00\x01" + self.n(len(items)) + tags

    def _header(self, kind: int, name: str, body: bytes) -> bytes:
        label = name.encode("latin-1")
        head = struct.pack(">BH", kind, len(label)) + label
        return head + (struct.pack(">Q", len(body)) if self.v == 4 else b"")


def write_dm(path, image: np.ndarray, *, version: int = 4, scale: float = 1.0, units: str = "",
             image_tags: dict[str, Any] | None = None, title: str = "HAADF") -> None:
    """Write ``image`` (2-D, or 3-D as a stack of frames) as a DM3/DM4 file.

    ``scale``/``units`` calibrate the two spatial axes; ``image_tags`` becomes the
    ``ImageTags`` group (e.g. ``{"Microscope Info": {"Voltage": 80000.0}}``).
    """
    image = np.ascontiguousarray(image)
    w = _Writer(version)
    dims = list(image.shape[::-1])  # DM lists x, y, (z)
    calibrations = [{"Origin": 0.0, "Scale": float(scale), "Units": units}] * 2
    if image.ndim == 3:
        calibrations.append({"Origin": 0.0, "Scale": 1.0, "Units": ""})
    image_entry = {
        "ImageData": {
            "Calibrations": {
                "Brightness": {"Origin": 0.0, "Scale": 1.0, "Units": "counts"},
                "Dimension": calibrations,
            },
            "Data": image.ravel(),
            "DataType": _IMAGE_TYPES[image.dtype],
            "Dimensions": [int(d) for d in dims],
            "PixelDepth": int(image.dtype.itemsize),
        },
        "ImageTags": image_tags or {},
        "Name": title,
    }
    root = w.group_body({"ImageList": [image_entry]})
    tail = b"\x00" * (8 if version == 4 else 8)
    size = len(root) + len(tail)
    header = struct.pack(">I", version) + (struct.pack(">Q", size) if version == 4
                                           else struct.pack(">I", size)) + struct.pack(">I", 1)
    with open(path, "wb") as f:
        f.write(header + root + tail)
