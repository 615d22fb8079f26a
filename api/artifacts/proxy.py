"""MLflow's artifact proxy (``mlflow-artifacts``) over an ``ArtifactStore``.

Routes, bodies, statuses and error codes are MLflow's (``mlflow/server/handlers.py``), so
``HttpArtifactRepository`` and ``mlflow-artifacts://`` URIs work unchanged. Paths are
relative to the artifact root; the stores refuse any that could leave it. Uploads and
downloads are streamed: neither side buffers a whole artifact. The route table is
``api.artifacts.routes``.
"""

from __future__ import annotations

import logging
import mimetypes
import unicodedata
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import quote

from aiohttp import web

from runstream.api.artifacts.store import (
    ArtifactStore,
    FileInfo,
    UploadedPart,
    clean_path,
)
from runstream.schemas.errors import InvalidParameterValue, RequestTooLarge
from runstream.web import json_response, read_json_body, stalling_after

logger = logging.getLogger(__name__)

ARTIFACT_STORE = web.AppKey[ArtifactStore]("artifact_store")

TEXT_EXTENSIONS = frozenset(
    (
        *("txt", "log", "err", "cfg", "conf", "cnf", "cf", "ini", "properties", "prop"),
        *("hocon", "toml", "yaml", "yml", "xml", "json", "js", "py", "py3", "csv", "tsv"),
        *("md", "rst", "ipynb", "MLmodel", "MLproject"),
    )
)
"""Served as text/plain, as MLflow does (``MLmodel``/``MLproject`` are whole file names)."""
_TOKEN_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-.^_`|~"
)


def content_type(name: str) -> str:
    """MLflow's guess: text extensions → text/plain, else mimetypes, else octet-stream."""
    base = PurePosixPath(name).name
    extension = PurePosixPath(base).suffix.lstrip(".") or base
    if extension in TEXT_EXTENSIONS:
        return "text/plain"
    return mimetypes.guess_type(base)[0] or "application/octet-stream"


def attachment(name: str) -> str:
    """``Content-Disposition`` as MLflow sends it (RFC 6266, RFC 5987 for non-ASCII names)."""
    if name.isascii():
        return f"attachment; filename={_quote_header(name)}"
    fallback = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode() or "download"
    encoded = quote(name, safe="!#$&+-.^_`|~")
    return f"attachment; filename={_quote_header(fallback)}; filename*=UTF-8''{encoded}"


def _quote_header(value: str) -> str:
    if value and _TOKEN_CHARS.issuperset(value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def files_json(infos: Iterable[FileInfo]) -> dict[str, Any]:
    """MLflow's ListArtifacts JSON: base names; ``file_size`` only when non-zero; ``{}`` if none."""
    files = []
    for info in infos:
        entry: dict[str, Any] = {"path": PurePosixPath(info.path).name, "is_dir": info.is_dir}
        if info.file_size:
            entry["file_size"] = info.file_size
        files.append(entry)
    return {"files": files} if files else {}


def part_destination(artifact_dir: str, local_file: str) -> str:
    """Where a proxied multipart upload lands: the base name of the client's local file."""
    name = local_file.replace("\\", "/").rsplit("/", 1)[-1]
    if not name or clean_path(name) != name:
        raise InvalidParameterValue("Invalid path")
    return f"{clean_path(artifact_dir)}/{name}".lstrip("/")


def _required(body: dict[str, Any], name: str, kind: type) -> Any:
    value = body.get(name)
    if value is None:
        raise InvalidParameterValue(
            f"Missing value for required parameter '{name}'. "
            "See the API docs for more information about request parameters."
        )
    if not isinstance(value, kind) or isinstance(value, bool):
        raise InvalidParameterValue(
            f"Invalid value {value!r} for parameter '{name}' supplied: "
            f"expected {kind.__name__}, got {type(value).__name__}"
        )
    return value


def _int_like(body: dict[str, Any], name: str, default: int) -> int:
    value = body.get(name, default)
    try:
        if isinstance(value, bool):
            raise ValueError
        return int(value)
    except (TypeError, ValueError) as exc:
        raise InvalidParameterValue(
            f"Invalid value {value!r} for parameter '{name}' supplied: expected an integer"
        ) from exc


def _parts(raw: Any) -> list[UploadedPart]:
    if not isinstance(raw, list) or not all(isinstance(p, dict) for p in raw):
        raise InvalidParameterValue("Invalid value for parameter 'parts': expected a list")
    return [
        UploadedPart(_int_like(p, "part_number", 0), p.get("etag") or None, p.get("url") or None)
        for p in raw
    ]


async def send_artifact(
    request: web.Request, store: ArtifactStore, path: str
) -> web.StreamResponse:
    """A stored file, streamed as MLflow sends artifacts: always an attachment."""
    stream = await store.get(path)
    name = PurePosixPath(path).name
    response = web.StreamResponse(
        headers={
            "Content-Type": content_type(name),
            "Content-Disposition": attachment(name),
            "X-Content-Type-Options": "nosniff",
        }
    )
    response.content_length = stream.size
    try:
        await response.prepare(request)
        async for chunk in stream:
            await response.write(chunk)
        await response.write_eof()
    except ConnectionError:
        logger.debug("client left during download of %s", path)
    except Exception:
        # Headers are sent: an error JSON now would corrupt the body. Cut the connection
        # so the client sees a short read, never a short file taken as whole.
        logger.exception("download of %s failed mid-stream", path)
        if request.transport is not None:
            request.transport.close()
    finally:
        await stream.aclose()
    return response


async def capped(body: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    """``body``, refused with 413 as soon as it passes ``limit`` bytes (the store then drops
    what it wrote: an upload is whole or absent)."""
    total = 0
    async for block in body:
        total += len(block)
        if total > limit:
            raise RequestTooLarge(f"Artifact upload exceeds the limit of {limit} bytes")
        yield block


@dataclass(frozen=True, slots=True)
class ArtifactHandlers:
    max_json_bytes: int
    max_upload_bytes: int = 5 * 1024**3
    max_json_items: int | None = None

    @staticmethod
    def store(request: web.Request) -> ArtifactStore:
        return request.app[ARTIFACT_STORE]

    async def upload(self, request: web.Request) -> web.StreamResponse:
        path = clean_path(request.match_info["path"])  # refused before the body is read
        length = request.content_length
        if length is not None and length > self.max_upload_bytes:
            raise RequestTooLarge(
                f"Artifact upload of {length} bytes exceeds the limit of {self.max_upload_bytes}"
            )
        body = capped(stalling_after(request, request.content.iter_any()), self.max_upload_bytes)
        await self.store(request).put(path, body, request.content_length)
        return json_response({})

    async def download(self, request: web.Request) -> web.StreamResponse:
        path = clean_path(request.match_info["path"])
        return await send_artifact(request, self.store(request), path)

    async def list(self, request: web.Request) -> web.StreamResponse:
        infos = await self.store(request).list(request.query.get("path", ""))
        return json_response(files_json(infos))

    async def delete(self, request: web.Request) -> web.StreamResponse:
        await self.store(request).delete(request.match_info["path"])
        return json_response({})

    async def create_multipart(self, request: web.Request) -> web.StreamResponse:
        body = await self._json(request)
        local_file = _required(body, "path", str)
        num_parts = _int_like(body, "num_parts", 0)
        if not 0 <= num_parts <= 10_000:
            raise InvalidParameterValue(f"num_parts must be 0..10000, got {num_parts}")
        destination = part_destination(request.match_info["path"], local_file)
        upload = await self.store(request).create_multipart(destination, num_parts)
        credentials = []
        for credential in upload.credentials:
            entry: dict[str, Any] = {"url": credential.url, "part_number": credential.part_number}
            if credential.headers:
                entry["headers"] = credential.headers
            credentials.append(entry)
        return json_response({"upload_id": upload.upload_id, "credentials": credentials})

    async def complete_multipart(self, request: web.Request) -> web.StreamResponse:
        body = await self._json(request)
        local_file = _required(body, "path", str)
        upload_id = _required(body, "upload_id", str)
        parts = _parts(_required(body, "parts", list))
        destination = part_destination(request.match_info["path"], local_file)
        await self.store(request).complete_multipart(destination, upload_id, parts)
        return json_response({})

    async def abort_multipart(self, request: web.Request) -> web.StreamResponse:
        body = await self._json(request)
        local_file = _required(body, "path", str)
        upload_id = _required(body, "upload_id", str)
        destination = part_destination(request.match_info["path"], local_file)
        await self.store(request).abort_multipart(destination, upload_id)
        return json_response({})

    async def _json(self, request: web.Request) -> dict[str, Any]:
        body = await read_json_body(request, self.max_json_bytes, self.max_json_items)
        if not isinstance(body, dict):
            raise InvalidParameterValue("Request body must be a JSON object")
        return body
