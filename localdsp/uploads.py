"""The object store behind the upload handlers, and the upload's non-atomic steps.

The real server's `CreatePipeline` / `CreatePipelineVersion` are three steps, not one
transaction: insert the pipeline (and version) row with status CREATING, store the file in the
object store (minio), then set the row READY. Get and list show READY rows only, so between the
steps the name is taken (a second upload gets "already exist") yet nothing can be seen; if
storing fails the handler answers 500 and the row stays CREATING for good, where neither get,
list nor delete reaches it.

`ObjectStore` is that storage step. It stores at once by default; tests `hold()` it to keep
just-inserted uploads (all, or only the next few) CREATING until `release()`, or `fail()` it to
leave uploads CREATING for good. A held upload waits off the event loop, so the server keeps
answering other requests.
"""

from __future__ import annotations

import threading

import anyio.to_thread

from localdsp.errors import ApiError, Internal

OPEN, HELD, FAILING = "open", "held", "failing"
DEFAULT_CAUSE = "dial tcp minio-service:9000: connect: connection refused"


class ObjectStore:
    """Where uploaded files go: open, held (uploads wait in CREATING) or failing."""

    def __init__(self) -> None:
        self._state = OPEN
        self._cause = DEFAULT_CAUSE
        self._to_hold: int | None = None  # how many more uploads a hold catches (None: all)
        self._waiting = 0
        self._changed = threading.Condition()

    @property
    def held(self) -> bool:
        return self._state == HELD

    def hold(self, uploads: int | None = None) -> None:
        """The next `uploads` uploads (every one if None) stay CREATING until `release()` (or
        `fail()`); others are stored at once."""
        with self._changed:
            self._to_hold = uploads
        self._set(HELD)

    def release(self) -> None:
        """Store every held upload and every later one at once."""
        self._set(OPEN)

    def fail(self, cause: str = DEFAULT_CAUSE) -> None:
        """Storing fails (held uploads too): their rows stay CREATING for good."""
        self._cause = cause
        self._set(FAILING)

    def wait_for_held(self, count: int = 1, timeout: float = 10.0) -> bool:
        """Block until `count` uploads are waiting to be stored (for tests to sequence on)."""
        with self._changed:
            return self._changed.wait_for(lambda: self._waiting >= count, timeout)

    async def store(self, key: str) -> None:
        """Store the file at `key`, as `AddFile` does; raises the server's error if it fails."""
        await anyio.to_thread.run_sync(self._store, key)

    def _store(self, key: str) -> None:
        with self._changed:
            if self._catches():
                self._waiting += 1
                self._changed.notify_all()
                try:
                    self._changed.wait_for(lambda: self._state != HELD)
                finally:
                    self._waiting -= 1
            if self._state == FAILING:
                raise storage_error(key, self._cause)

    def _catches(self) -> bool:
        """Whether a hold catches this upload (called with the lock held)."""
        if self._state != HELD or self._to_hold == 0:
            return False
        if self._to_hold is not None:
            self._to_hold -= 1
        return True

    def _set(self, state: str) -> None:
        with self._changed:
            self._state = state
            self._changed.notify_all()


def storage_error(key: str, cause: str) -> ApiError:
    """`util.NewInternalServerError(err, "Failed to store %v", filePath)`."""
    return Internal.server_error(f"Failed to store {key}", cause)


def pipeline_key(version_id: str) -> str:
    """The object store key of a version's file (`GetPipelineKey`)."""
    return f"pipelines/{version_id}"
