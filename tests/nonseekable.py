"""A pipe stand-in for tests: readable, not seekable (like stdin)."""

from __future__ import annotations

import io


class NoSeek(io.RawIOBase):
    """A pipe: readable, not seekable."""

    def __init__(self, data: bytes) -> None:
        self._b = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, m) -> int:
        d = self._b.read(len(m))
        m[: len(d)] = d
        return len(d)
