"""What a pipeline upload carries, read as both API generations' upload handlers read it.

The DSP 1.x and 2.x servers share these steps (`ReadPipelineFile`, `GetPipelineName`): the
multipart `uploadfile` part, the pipeline inside it (by file name, else a zip or tar.gz sniffed
by its magic bytes, `pipeline.yaml` preferred), the 32 MiB limit, and the name taken from the
`name` query value (URL-decoded a second time) or the file name, up to 100 characters. Only the
contexts the handlers wrap these errors in differ, so they are the caller's. Which template a
file holds is each generation's business (`templates_v1`, `templates_v2`).
"""

from __future__ import annotations

import io
import os
import re
import tarfile
import zipfile
from collections.abc import Callable
from typing import TypeVar

from starlette.requests import Request

from localdsp.errors import ApiError, InvalidInput
from localdsp.filters import go_query_unescape

T = TypeVar("T")
MAX_NAME_LENGTH = 100
MAX_FILE_SIZE = 32 << 20


class UploadFailed(Exception):
    """An upload handler's early answer: a status and the error to write."""

    def __init__(self, status: int, error: ApiError):
        super().__init__(error.internal)
        self.status = status
        self.error = error


async def read_upload(request: Request, reading: str, parsing: str) -> tuple[str, bytes]:
    """The `uploadfile` part's file name and the pipeline in it; a missing part (wrapped in
    `reading`) or an unreadable file (wrapped in `parsing`) raises UploadFailed with 400."""
    found = form_file(request.headers.get("content-type", ""), await request.body(), "uploadfile")
    if found is None:
        raise UploadFailed(400, ApiError("http: no such file").wrap(reading))
    filename, data = found
    try:
        return filename, read_pipeline_file(filename, data)
    except ApiError as err:
        raise UploadFailed(400, err.wrap(parsing)) from err


def upload_check(step: Callable[[], T], context: str) -> T:
    """One of the checks the upload handlers answer with 400: `step`'s error wrapped in
    `context`."""
    try:
        return step()
    except ApiError as err:
        raise UploadFailed(400, err.wrap(context)) from err


def upload_pipeline_id(
    pipeline_id: str, missing: str, lookup: Callable[[str], object], context: str
) -> str:
    """A version upload's `pipelineid`: required (else 400 `missing`), and the pipeline must
    exist (else 400, `lookup`'s error wrapped in `context`)."""
    if not pipeline_id:
        raise UploadFailed(400, ApiError(missing))
    upload_check(lambda: lookup(pipeline_id), context)
    return pipeline_id


def form_file(content_type: str, body: bytes, field: str) -> tuple[str, bytes] | None:
    """The (file name, content) of a multipart form field sent as a file, if there is one."""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not content_type.startswith("multipart/form-data") or match is None:
        return None
    for part in body.split(b"--" + match.group(1).encode("latin-1"))[1:]:
        if part.startswith(b"--"):
            break
        head, separator, content = part.partition(b"\r\n\r\n")
        disposition = re.search(rb"content-disposition:[^\r\n]*", head, flags=re.IGNORECASE)
        if not separator or disposition is None:
            continue
        line = disposition.group(0).decode("utf-8", errors="replace")
        name = re.search(r'\bname="([^"]*)"', line)
        filename = re.search(r'\bfilename="([^"]*)"', line)
        if name and name.group(1) == field and filename and filename.group(1):
            return os.path.basename(filename.group(1)), content.removesuffix(b"\r\n")
    return None


def read_pipeline_file(filename: str, data: bytes) -> bytes:
    """The pipeline inside an upload: chosen by file name, else sniffed as zip or tar.gz.

    Mirrors the server's ReadPipelineFile, size limit and messages included.
    """
    if len(data) > MAX_FILE_SIZE:
        raise InvalidInput(f"File size too large. Maximum supported size: {MAX_FILE_SIZE}").wrap(
            "Error read pipeline file."
        )
    if filename.endswith((".yaml", ".yml", ".json")):
        return data
    if len(data) > 2 and data[:2] == b"PK":
        return _from_archive(_zip_members, data, "zip")
    if len(data) > 2 and data[:2] == b"\x1f\x8b":
        return _from_archive(_tarball_members, data, "tarball")
    raise InvalidInput("Unexpected pipeline file format. Support .zip, .tar.gz, .json or YAML.")


def _zip_members(data: bytes) -> list[tuple[str, Callable[[], bytes]]]:
    archive = zipfile.ZipFile(io.BytesIO(data))
    return [(info.filename, lambda info=info: archive.read(info)) for info in archive.infolist()]


def _tarball_members(data: bytes) -> list[tuple[str, Callable[[], bytes]]]:
    archive = tarfile.open(fileobj=io.BytesIO(data), mode="r:gz")
    members = [m for m in archive.getmembers() if m.isfile()]
    return [(m.name, lambda m=m: archive.extractfile(m).read()) for m in members]


def _from_archive(
    members_of: Callable[[bytes], list[tuple[str, Callable[[], bytes]]]], data: bytes, kind: str
) -> bytes:
    """`pipeline.yaml` if the archive has one, else its first entry, which must be YAML."""
    try:
        members = members_of(data)
    except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError) as err:
        raise InvalidInput(
            f"Error extracting pipeline from the {kind} file. Not a valid {kind} file."
        ).wrap("Error decompress the pipeline file") from err
    if not members:
        raise InvalidInput(
            f"Error extracting pipeline from the {kind} file. Empty {kind} file."
        ).wrap("Error decompress the pipeline file")
    name, read = next(((n, r) for n, r in members if n == "pipeline.yaml"), members[0])
    if not name.endswith((".yaml", ".yml")):
        raise InvalidInput(
            f"Error extracting pipeline from the {kind} file. Expecting a pipeline.yaml file "
            f"inside the {kind}. Got: {name}"
        ).wrap("Error decompress the pipeline file")
    return read()


def upload_name(query_value: str, filename: str) -> str:
    """The name of an upload: the `name` query value decoded once more, else the file name."""
    try:
        name = go_query_unescape(query_value)
    except ValueError as err:
        raise InvalidInput("Pipeline name in the query string has invalid format.") from err
    name = name or filename
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidInput(f"Pipeline name too long. Support maximum length of {MAX_NAME_LENGTH}")
    return name


def upload_description(query_value: str) -> str:
    """A pipeline upload's description, decoded once more (version uploads skip this)."""
    try:
        return go_query_unescape(query_value)
    except ValueError as err:
        raise InvalidInput("Error read pipeline description.") from err
