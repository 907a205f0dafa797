"""Attachment content, stored by SHA-256 under the storage directory.

The path comes from the hash alone: a sender's filename never touches the file system. Writes go to a
temporary file first and are renamed into place, so a crash leaves no half-written content.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from mailer.ledger.crypto import Sealer


class ContentStore:
    """Addressed by the SHA-256 of the plain content; what is on disk is sealed when encryption is on."""

    def __init__(self, root: Path, sealer: Sealer | None = None) -> None:
        self.root = root
        self.sealer = sealer or Sealer([])

    def path_for(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a SHA-256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def put(self, content: bytes) -> str:
        sha256 = hashlib.sha256(content).hexdigest()
        path = self.path_for(sha256)
        try:
            # Touched, not rewritten: retention keeps a file that a mail has just referenced again.
            os.utime(path)
            return sha256
        except FileNotFoundError:
            pass
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(self.sealer.seal(content))
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return sha256

    def get(self, sha256: str) -> bytes:
        return self.sealer.open(self.path_for(sha256).read_bytes())

    def paths(self) -> list[Path]:
        return [p for p in self.root.rglob("*") if p.is_file() and not p.name.startswith(".")]
