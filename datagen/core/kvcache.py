"""On-disk caches in one sqlite file each, for what costs a model call to compute.

:class:`SqliteStore` is the plumbing both caches share: the file (created with its parent
folders), WAL mode so that several processes can share it, one lock per connection, chunked
``IN (...)`` lookups (sqlite's default limit on host parameters is 999), a count and ``close``.

* :class:`KVCache`: ``key TEXT -> value BLOB``: embeddings, teacher-forced losses. Each
  :meth:`KVCache.put_many` is one committed transaction, so a run that is interrupted keeps
  everything it stored before. Keys are usually sha256 hex digests of what was computed (see
  :func:`sha_key`); values are opaque bytes.
* :class:`datagen.llm.cache.RequestCache`: LLM completions by request.
"""

from __future__ import annotations

import os

import hashlib
import sqlite3
import threading
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

_CHUNK = 500  # sqlite's default limit on host parameters is 999


def sha_key(*parts: str) -> str:
    """sha256 over the parts, separated so that ("ab", "c") and ("a", "bc") differ."""
    h = hashlib.sha256()
    for p in parts:
        data = p.encode("utf-8")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


class SqliteStore:
    """One table keyed by ``key TEXT PRIMARY KEY`` in one sqlite file; ``schema`` is the table's
    ``CREATE TABLE IF NOT EXISTS`` statement."""

    table = ""
    schema = ""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(self.path), timeout=60, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute(self.schema)
        self._conn.commit()

    def rows(self, keys: Sequence[str], column: str = "value") -> Iterator[tuple[str, Any]]:
        """``(key, column)`` of the stored rows among ``keys`` (each key looked up once)."""
        unique = list(dict.fromkeys(keys))
        with self._lock:
            for i in range(0, len(unique), _CHUNK):
                chunk = unique[i : i + _CHUNK]
                q = f"SELECT key, {column} FROM {self.table} WHERE key IN (%s)" % ",".join("?" * len(chunk))
                yield from self._conn.execute(q, chunk).fetchall()

    def write(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """``sql`` over ``rows`` in one committed transaction."""
        with self._lock, self._conn:
            self._conn.executemany(sql, list(rows))

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute(f"SELECT COUNT(*) FROM {self.table}").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class KVCache(SqliteStore):
    """``key TEXT -> value BLOB`` in one sqlite file (created with its parent folders)."""

    table = "kv"
    schema = "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL)"

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        """The stored values of those ``keys`` that are present."""
        return {k: bytes(v) for k, v in self.rows(keys)}

    def put_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        """Store (key, value) pairs in one transaction (replacing existing keys)."""
        self.write("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", items)


def default_cache_dir() -> Path:
    """The folder of every on-disk cache (requests, embeddings, scores, converted models):
    ``$DATAGEN_CACHE_DIR``, else ``$XDG_CACHE_HOME/datagen``, else ``~/.cache/datagen``."""
    root = os.environ.get("DATAGEN_CACHE_DIR") or os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "datagen")
    return Path(root)
