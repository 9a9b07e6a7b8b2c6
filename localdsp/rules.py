"""Rule patterns both API generations' backends share, over one `store.Store` and a clock.

The 1.5 and 2.5 servers read an object or answer 404 ("<Kind> <id> not found", with a final
period on 1.5), insert a row or answer 409 when its unique index refuses the name, and list with
the same paging, sort and filter machinery; they differ in wording and filter dialect, which
each backend sets (`end`, `dialect`, `list_context`). Archiving an experiment archives its runs
and disables its schedules on both. `Backend` (v1) and `rules_v2.BackendV2` build on this.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any, TypeVar

from localdsp.errors import AlreadyExists, ApiError, NotFound
from localdsp.filters import V1, Dialect, Fields, ListOptions, list_options, paginate
from localdsp.models import ListRequest, Page
from localdsp.store import DuplicateName, Store

M = TypeVar("M")


class StoreRules:
    """A backend's store and clock, and the rules every resource follows alike."""

    end = "."  # how the generation's not-found messages end
    dialect: Dialect = V1  # the generation's filter JSON
    list_context = ""  # what list-option errors are wrapped in ("": not wrapped)

    def __init__(self, store: Store, clock: Callable[[], float] = time.time):
        self.store = store
        self._clock = clock

    def close(self) -> None:
        self.store.close()

    def _now(self) -> int:
        return int(self._clock())

    def _visible(self, found: Any) -> bool:
        """Whether get and list may show a stored object (v1 hides uploads still CREATING)."""
        return True

    def _found(self, kind: type[M], label: str, object_id: str, context: str = "") -> M:
        """The object, or the server's 404 ("<label> <id> not found"), wrapped in `context`."""
        found = self.store.get(kind, object_id)
        if found is None or not self._visible(found):
            error = NotFound(f"{label} {object_id} not found{self.end}")
            raise error.wrap(context) if context else error
        return found

    def _insert_unique(self, obj: M, taken: str, context: str, **columns: str) -> M:
        """Insert `obj`; when its unique index refuses the name, the server's 409: the message
        `taken` wrapped in `context`."""
        try:
            return self.store.insert(obj, **columns)
        except DuplicateName as err:
            raise AlreadyExists(taken).wrap(context) from err

    def _by_name(self, kind: type[M], name: str) -> M | None:
        """The first stored object named exactly `name`."""
        return next((item for item in self.store.all(kind) if item.name == name), None)

    def _list_options(self, request: ListRequest, kind: str, fields: Fields) -> ListOptions:
        """The request's paging, sort and filter, checked first as every List call does."""
        try:
            return list_options(
                kind=kind,
                fields=fields,
                page_token=request.page_token,
                page_size=request.page_size,
                sort_by=request.sort_by,
                filter_json=request.filter,
                dialect=self.dialect,
            )
        except ApiError as err:
            if not self.list_context:
                raise
            raise err.wrap(self.list_context) from err

    def _page(self, items: list, request: ListRequest, kind: str, fields: Fields) -> Page:
        """One page of `items` as the request asks for it."""
        options = self._list_options(request, kind, fields)
        return Page(*paginate(items, options, fields))

    def _archive_contents(self, runs: Iterable, schedules: Iterable, archived: str) -> None:
        """What archiving an experiment does to what is in it: its runs are archived
        (`archived` is the generation's enum name) and its schedules disabled."""
        for run in runs:
            self.store.save(replace(run, storage_state=archived))
        for schedule in schedules:
            self.store.save(replace(schedule, enabled=False, updated_at=self._now()))


def newest(items: Iterable[M]) -> M | None:
    """The most recently created of `items` (insertion order breaks ties within a second)."""
    return max(items, key=lambda item: (item.created_at, item.seq), default=None)
