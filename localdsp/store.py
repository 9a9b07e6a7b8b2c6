"""SQLite persistence for localdsp's models, shared by both API generations.

One JSON document per row, plus the columns a generation's tables declare: its unique indexes
become SQLite constraints, so "already exists" comes from the database as it does on MariaDB.
Each API generation passes its own `tables` (model class → table name and extra columns).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import typing
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

M = TypeVar("M")
Tables = Mapping[type, tuple[str, str]]


class DuplicateName(Exception):
    """A unique index refused the row: the name is taken."""


class StoreClosed(Exception):
    """The store was closed (its server stopped); nothing more can be recorded."""


class Store:
    """SQLite persistence, safe to share between threads (one connection behind one lock).

    Names are unique without regard to ASCII case, as MariaDB's default collation makes them on
    the real server *(inference)*. `seq` is the row's insertion order: every sort's tie-breaker.
    Every model has `id` and `name` attributes; `tables` maps each model class to its table name
    and further column declarations (never user input: the SQL is built from them).
    """

    def __init__(self, path: Path, tables: Tables):
        self._tables = dict(tables)
        self._lock = threading.RLock()
        self._depth = 0
        self._closed = False
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        with self._db:
            for kind, (_, columns) in self._tables.items():
                statement = (
                    "CREATE TABLE IF NOT EXISTS {table} (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                    f"id TEXT NOT NULL UNIQUE, doc TEXT NOT NULL, {columns})"
                )
                self._db.execute(self._sql(statement, kind))

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Everything inside commits together or not at all, and no other thread interleaves.

        Transactions nest: only the outermost one commits (or rolls back).
        """
        with self._lock:
            if self._closed:
                raise StoreClosed("the localdsp store is closed")
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            self._depth = 1
            try:
                with self._db:
                    yield
            finally:
                self._depth = 0

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._db.close()

    def insert(self, obj: M, **columns: str) -> M:
        values = {"id": obj.id, "name": obj.name, **columns, "doc": _encode(obj)}
        names = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        # Column names come from this package's callers, values are bound: no input in the SQL.
        statement = self._sql(f"INSERT INTO {{table}} ({names}) VALUES ({marks})", type(obj))  # noqa: S608
        with self.transaction():
            try:
                cursor = self._db.execute(statement, tuple(values.values()))
            except sqlite3.IntegrityError as err:
                raise DuplicateName(str(err)) from err
        return replace(obj, seq=cursor.lastrowid)

    def save(self, obj: Any) -> None:
        statement = self._sql("UPDATE {table} SET doc = ? WHERE id = ?", type(obj))
        with self.transaction():
            self._db.execute(statement, (_encode(obj), obj.id))

    def get(self, kind: type[M], object_id: str) -> M | None:
        statement = self._sql("SELECT seq, doc FROM {table} WHERE id = ?", kind)
        with self._lock:
            row = self._db.execute(statement, (object_id,)).fetchone()
        return _decode_row(kind, row) if row else None

    def all(self, kind: type[M]) -> list[M]:
        statement = self._sql("SELECT seq, doc FROM {table} ORDER BY seq", kind)
        with self._lock:
            rows = self._db.execute(statement).fetchall()
        return [_decode_row(kind, row) for row in rows]

    def versions_of(self, kind: type[M], pipeline_id: str) -> list[M]:
        """The rows of a versions table that belong to one pipeline, oldest first: read through
        the (pipeline_id, name) unique index, as the real server's query reads its index,
        instead of decoding every version of every pipeline."""
        statement = self._sql(
            "SELECT seq, doc FROM {table} WHERE pipeline_id = ? ORDER BY seq", kind
        )
        with self._lock:
            rows = self._db.execute(statement, (pipeline_id,)).fetchall()
        return [_decode_row(kind, row) for row in rows]

    def delete(self, kind: type, object_id: str) -> None:
        with self.transaction():
            self._db.execute(self._sql("DELETE FROM {table} WHERE id = ?", kind), (object_id,))

    def template(self, kind: type, object_id: str) -> str:
        """The `template` column of one row ("" if there is none): kept apart from the document
        because manifests are large and most reads do not need them."""
        statement = self._sql("SELECT template FROM {table} WHERE id = ?", kind)
        with self._lock:
            row = self._db.execute(statement, (object_id,)).fetchone()
        return row[0] if row else ""

    def clear(self) -> None:
        with self.transaction():
            for kind in self._tables:
                self._db.execute(self._sql("DELETE FROM {table}", kind))

    def _sql(self, statement: str, kind: type) -> str:
        """`statement` on the table of `kind` (table names come from `tables`, never input)."""
        return statement.replace("{table}", self._tables[kind][0])


def _encode(obj: Any) -> str:
    document = asdict(obj)
    document.pop("seq")
    return json.dumps(document)


def _decode_row(kind: type[M], row: tuple[int, str]) -> M:
    seq, doc = row
    return _decode(kind, {**json.loads(doc), "seq": seq})


def _decode(kind: type[M], data: dict) -> M:
    """Rebuild a dataclass (and its nested dataclasses and tuples) from `asdict` output."""
    hints = typing.get_type_hints(kind)
    present = [f.name for f in fields(kind) if f.name in data]  # a newer field keeps its default
    values = {name: _decode_value(hints[name], data[name]) for name in present}
    return kind(**values)


def _decode_value(hint: Any, value: Any) -> Any:
    if is_dataclass(hint):
        return _decode(hint, value)
    if typing.get_origin(hint) is tuple:
        item = typing.get_args(hint)[0]
        return tuple(_decode_value(item, v) for v in value)
    return value
