"""A small on-disk key-value cache (sqlite) for values that cost a model call to compute:
embeddings, teacher-forced losses.

Each :meth:`KVCache.put_many` is one committed transaction, so a run that is interrupted keeps
everything it stored before; WAL mode lets several processes share one file. Keys are usually
sha256 hex digests of what was computed (see :func:`sha_key`); values are opaque bytes.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from pathlib import Path
from typing import Iterable, Sequence

_CHUNK = 500  # sqlite's default limit on host parameters is 999


def sha_key(*parts: str) -> str:
    """sha256 over the parts, separated so that ("ab", "c") and ("a", "bc") differ."""
    h = hashlib.sha256()
    for p in parts:
        data = p.encode("utf-8")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


class KVCache:
    """``key TEXT -> value BLOB`` in one sqlite file (created with its parent folders)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(self.path), timeout=60, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL)")
        self._conn.commit()

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        """The stored values of those ``keys`` that are present."""
        unique = list(dict.fromkeys(keys))
        out: dict[str, bytes] = {}
        with self._lock:
            for i in range(0, len(unique), _CHUNK):
                chunk = unique[i : i + _CHUNK]
                q = "SELECT key, value FROM kv WHERE key IN (%s)" % ",".join("?" * len(chunk))
                out.update((k, bytes(v)) for k, v in self._conn.execute(q, chunk))
        return out

    def put_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        """Store (key, value) pairs in one transaction (replacing existing keys)."""
        with self._lock, self._conn:
            self._conn.executemany("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", list(items))

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM kv").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()
