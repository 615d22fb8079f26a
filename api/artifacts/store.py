"""Where artifacts live behind the ``mlflow-artifacts`` proxy: a local directory or S3.

Both stores take paths relative to the artifact root as the client sent them and check them
here (``clean_path``), so no caller can forget to. Bodies move chunk by chunk in both
directions; nothing holds a whole artifact in memory. An S3 upload of unknown length is cut
into multipart parts as it arrives (no temp-file spooling: that would double the disk I/O on
the server and need scratch space as large as the biggest artifact); memory per upload is
bounded by ``part_size * (max_inflight + 1)``. See docs/artifacts.md.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import os
import shutil
import tempfile
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PureWindowsPath
from typing import IO, Any, Protocol
from urllib.parse import unquote, urlsplit

from botocore.exceptions import ClientError

from runstream.schemas.errors import (
    ConfigurationError,
    FeatureNotImplemented,
    InvalidParameterValue,
    ResourceDoesNotExist,
)
from runstream.schemas.validation import text_problem
from runstream.settings import Settings

CHUNK_BYTES = 1 << 20
"""Bytes per read/write on the local disk and per downloaded chunk."""
PART_BYTES = 8 << 20
"""Smallest S3 part of an internal multipart upload (S3's own minimum is 5 MiB)."""
MAX_PARTS = 10_000
"""S3's limit on the parts of one multipart upload."""
PARTIAL_PREFIX = ".runstream-partial-"
"""Name prefix of local uploads in progress; hidden from listings."""
MULTIPART_UNSUPPORTED = "Multipart upload is not supported for the current artifact repository"
"""MLflow's exact message: its client falls back to a plain PUT when it sees this prefix."""


MAX_NAME_BYTES = 255
"""Bytes in one name of an artifact path (the usual file-system limit, NAME_MAX)."""
MAX_PATH_BYTES = 1024
"""Bytes in an artifact path below its root (S3's limit on a whole object key)."""


def invalid_path() -> InvalidParameterValue:
    return InvalidParameterValue("Invalid path")


def clean_path(raw: str) -> str:
    """The canonical ``a/b/c`` form of a client's artifact path ("" is the root).

    Refuses (INVALID_PARAMETER_VALUE "Invalid path", as MLflow) what could leave the root or
    mean something else on another OS: ``..`` segments, absolute POSIX or Windows paths,
    backslashes, control characters (NUL), ``#``, ``file:`` URIs. Like MLflow, the path is
    percent-decoded until it stops changing, so ``%2e%2e`` and ``%252e%252e`` are ``..`` too.
    Idempotent: ``clean_path(clean_path(p)) == clean_path(p)``.
    """
    path = raw
    for _ in range(10):
        decoded = unquote(path)
        if decoded == path:
            break
        path = decoded
    else:
        raise invalid_path()
    if (
        any(ord(ch) < 32 or ord(ch) == 127 for ch in path)
        or "\\" in path
        or "#" in path
        or path.startswith(("/", "file:"))
        or PureWindowsPath(path).drive
    ):
        raise invalid_path()
    segments = [s for s in path.split("/") if s not in ("", ".")]
    if ".." in segments:
        raise invalid_path()
    # Past the file system's or S3's limits the store would fail with a 500: refuse here.
    if text_problem(path) is not None:
        raise invalid_path()
    if any(len(s.encode()) > MAX_NAME_BYTES for s in segments):
        raise InvalidParameterValue(f"Invalid path: a name in it exceeds {MAX_NAME_BYTES} bytes")
    if len(path.encode()) > MAX_PATH_BYTES:
        raise InvalidParameterValue(f"Invalid path: it exceeds {MAX_PATH_BYTES} bytes")
    return "/".join(segments)


def file_path(raw: str) -> str:
    """``clean_path`` for something that must name a file (not the root)."""
    path = clean_path(raw)
    if not path:
        raise invalid_path()
    return path


def not_found(path: str) -> ResourceDoesNotExist:
    return ResourceDoesNotExist(f"No such artifact: '{path}'")


def is_a_directory(path: str) -> InvalidParameterValue:
    return InvalidParameterValue(f"Artifact path refers to a directory, not a file: '{path}'")


@dataclass(frozen=True, slots=True)
class FileInfo:
    """One listing entry; ``path`` is relative to the store root, as MLflow's repositories."""

    path: str
    is_dir: bool
    file_size: int | None = None


@dataclass(frozen=True, slots=True)
class PartCredential:
    """Where the client PUTs one part of a proxied multipart upload (MLflow's credential)."""

    url: str
    part_number: int
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MultipartUpload:
    upload_id: str
    credentials: list[PartCredential]


@dataclass(frozen=True, slots=True)
class UploadedPart:
    part_number: int
    etag: str | None
    url: str | None = None


class ArtifactStream(Protocol):
    """An open artifact: iterate for its chunks, then ``aclose`` (also when abandoned)."""

    size: int

    def __aiter__(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


class ArtifactStore(Protocol):
    async def put(
        self, path: str, body: AsyncIterator[bytes], size_hint: int | None = None
    ) -> None: ...

    async def get(self, path: str) -> ArtifactStream: ...

    async def list(self, path: str) -> Sequence[FileInfo]:
        """Entries directly under ``path``; empty when it is a file or does not exist."""
        ...

    async def delete(self, path: str) -> None:
        """Remove a file or a whole folder; a missing path is not an error (MLflow)."""
        ...

    async def create_multipart(self, path: str, num_parts: int) -> MultipartUpload: ...

    async def complete_multipart(
        self, path: str, upload_id: str, parts: Sequence[UploadedPart]
    ) -> None: ...

    async def abort_multipart(self, path: str, upload_id: str) -> None: ...


async def coalesce(body: AsyncIterator[bytes], size: int) -> AsyncIterator[bytes]:
    """Re-chunk a stream into blocks of ``size`` bytes (the last may be shorter)."""
    pending: list[bytes] = []
    buffered = 0
    async for chunk in body:
        pending.append(chunk)
        buffered += len(chunk)
        while buffered >= size:
            data = b"".join(pending)
            yield data[:size]
            rest = data[size:]
            pending = [rest] if rest else []
            buffered = len(rest)
    if buffered:
        yield b"".join(pending)


# --- local directory ---------------------------------------------------------------------


class _FileStream:
    def __init__(self, file: IO[bytes], size: int) -> None:
        self.size = size
        self._file = file

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while chunk := await asyncio.to_thread(self._file.read, CHUNK_BYTES):
            yield chunk

    async def aclose(self) -> None:
        self._file.close()


class LocalArtifactStore:
    """Artifacts as plain files under ``root`` (the embedded default: ``data_dir/artifacts``).

    Every path is resolved (symlinks included) and must stay under the resolved root.
    Uploads go to a hidden temp file next to the target and are renamed into place, so a
    reader never sees half a file and a failed upload leaves nothing behind.
    """

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self._real_root = root.resolve()

    def _locate(self, raw: str) -> tuple[str, Path]:
        rel = clean_path(raw)
        target = self.root.joinpath(*rel.split("/")) if rel else self.root
        if not target.resolve().is_relative_to(self._real_root):
            raise invalid_path()
        return rel, target

    async def put(
        self, path: str, body: AsyncIterator[bytes], size_hint: int | None = None
    ) -> None:
        fd, tmp, target = await asyncio.to_thread(self._start_put, path)
        try:
            with os.fdopen(fd, "wb") as out:
                async for block in coalesce(body, CHUNK_BYTES):
                    await asyncio.to_thread(out.write, block)
            await asyncio.to_thread(os.replace, tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def _start_put(self, path: str) -> tuple[int, str, Path]:
        rel, target = self._locate(path)
        if not rel or target.is_dir():
            raise invalid_path() if not rel else is_a_directory(rel)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as exc:
            raise InvalidParameterValue(f"A parent of '{rel}' is a file") from exc
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=PARTIAL_PREFIX)
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide artifacts from other local readers
        return fd, tmp, target

    async def get(self, path: str) -> ArtifactStream:
        return await asyncio.to_thread(self._open, path)

    def _open(self, path: str) -> _FileStream:
        rel, target = self._locate(path)
        if target.is_dir():
            raise is_a_directory(rel)
        try:
            file = target.open("rb")
        except FileNotFoundError as exc:
            raise not_found(rel) from exc
        return _FileStream(file, os.fstat(file.fileno()).st_size)

    async def list(self, path: str) -> Sequence[FileInfo]:
        return await asyncio.to_thread(self._list, path)

    def _list(self, path: str) -> builtins.list[FileInfo]:
        rel, target = self._locate(path)
        if not target.is_dir():
            return []
        infos = []
        with os.scandir(target) as entries:
            for entry in entries:
                if entry.name.startswith(PARTIAL_PREFIX):
                    continue
                if entry.is_symlink() and not (
                    Path(entry.path).resolve().is_relative_to(self._real_root)
                ):
                    continue  # a link out of the root is neither listed nor served
                child = f"{rel}/{entry.name}" if rel else entry.name
                if entry.is_dir():
                    infos.append(FileInfo(child, True))
                elif entry.is_file():
                    infos.append(FileInfo(child, False, entry.stat().st_size))
        return sorted(infos, key=lambda info: info.path)

    async def delete(self, path: str) -> None:
        await asyncio.to_thread(self._delete, path)

    def _delete(self, path: str) -> None:
        rel, target = self._locate(path)
        if not rel:
            raise invalid_path()  # the whole root is not deleted through the API
        if target.is_symlink() or target.is_file():
            target.unlink(missing_ok=True)
        elif target.is_dir():
            shutil.rmtree(target)

    async def create_multipart(self, path: str, num_parts: int) -> MultipartUpload:
        raise FeatureNotImplemented(MULTIPART_UNSUPPORTED)

    async def complete_multipart(
        self, path: str, upload_id: str, parts: Sequence[UploadedPart]
    ) -> None:
        raise FeatureNotImplemented(MULTIPART_UNSUPPORTED)

    async def abort_multipart(self, path: str, upload_id: str) -> None:
        raise FeatureNotImplemented(MULTIPART_UNSUPPORTED)


# --- S3 ----------------------------------------------------------------------------------


def part_size(size_hint: int | None, minimum: int, part_number: int) -> int:
    """Size of part ``part_number`` (1-based) of an internal multipart upload.

    With a known length the parts are equal and fit S3's 10,000-part limit; with an unknown
    one they double every 1,000 parts, which reaches S3's 5 TB object limit within 10,000.
    """
    if size_hint is not None:
        return max(minimum, -(-size_hint // MAX_PARTS))
    return minimum << ((part_number - 1) // 1_000)


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class _S3Stream:
    def __init__(self, body: Any, size: int) -> None:
        self.size = size
        self._body = body

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while chunk := await self._body.read(CHUNK_BYTES):
            yield chunk

    async def aclose(self) -> None:
        self._body.close()


class S3ArtifactStore:
    """Artifacts as objects under ``s3://bucket/prefix`` through an aiobotocore client."""

    def __init__(
        self,
        client: Any,
        bucket: str,
        prefix: str = "",
        *,
        part_bytes: int = PART_BYTES,
        max_inflight: int = 2,
        presign_expiry_s: int = 3600,
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.part_bytes = part_bytes
        self.max_inflight = max_inflight
        self.presign_expiry_s = presign_expiry_s
        self._batch_delete = True

    def _key(self, rel: str) -> str:
        return "/".join(p for p in (self.prefix, rel) if p)

    def _file_key(self, path: str) -> tuple[str, str]:
        rel = file_path(path)
        return rel, self._key(rel)

    async def put(
        self, path: str, body: AsyncIterator[bytes], size_hint: int | None = None
    ) -> None:
        _, key = self._file_key(path)
        first = part_size(size_hint, self.part_bytes, 1)
        blocks = aiter(coalesce(body, first))
        head = await anext(blocks, b"")
        if len(head) < first:  # the whole body fits one part: a single PUT
            await self.client.put_object(Bucket=self.bucket, Key=key, Body=head)
            return
        created = await self.client.create_multipart_upload(Bucket=self.bucket, Key=key)
        upload_id = created["UploadId"]
        try:
            parts = await self._upload_parts(key, upload_id, head, blocks, size_hint)
            await self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            with contextlib.suppress(Exception):
                await self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=key, UploadId=upload_id
                )
            raise

    async def _upload_parts(
        self,
        key: str,
        upload_id: str,
        head: bytes,
        blocks: AsyncIterator[bytes],
        size_hint: int | None,
    ) -> list[dict[str, Any]]:
        """Upload parts while the next one is read: ``max_inflight`` parts overlap the body."""

        async def upload(number: int, data: bytes) -> dict[str, Any]:
            resp = await self.client.upload_part(
                Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data
            )
            return {"PartNumber": number, "ETag": resp["ETag"]}

        inflight: deque[asyncio.Task[dict[str, Any]]] = deque()
        done: list[dict[str, Any]] = []
        number = 0
        pending = head
        try:
            while pending:
                number += 1
                if number > MAX_PARTS:
                    raise InvalidParameterValue("Artifact exceeds S3's 10,000-part limit")
                if len(inflight) >= self.max_inflight:
                    done.append(await inflight.popleft())
                inflight.append(asyncio.create_task(upload(number, pending)))
                pending = await self._next_part(blocks, size_hint, number + 1)
            while inflight:
                done.append(await inflight.popleft())
        finally:
            for task in inflight:
                task.cancel()
            await asyncio.gather(*inflight, return_exceptions=True)
        return done

    async def _next_part(
        self, blocks: AsyncIterator[bytes], size_hint: int | None, number: int
    ) -> bytes:
        """The next part: blocks are cut at the first part's size and joined when parts grow."""
        wanted = part_size(size_hint, self.part_bytes, number)
        pieces: list[bytes] = []
        have = 0
        while have < wanted:
            block = await anext(blocks, b"")
            if not block:
                break
            pieces.append(block)
            have += len(block)
        return b"".join(pieces)

    async def get(self, path: str) -> ArtifactStream:
        rel, key = self._file_key(path)
        try:
            resp = await self.client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _error_code(exc) not in ("NoSuchKey", "404"):
                raise
            if await self._has_children(key):
                raise is_a_directory(rel) from exc
            raise not_found(rel) from exc
        return _S3Stream(resp["Body"], int(resp["ContentLength"]))

    async def _has_children(self, key: str) -> bool:
        resp = await self.client.list_objects_v2(Bucket=self.bucket, Prefix=key + "/", MaxKeys=1)
        return bool(resp.get("KeyCount") or resp.get("Contents"))

    async def list(self, path: str) -> Sequence[FileInfo]:
        rel = clean_path(path)
        key = self._key(rel)
        prefix = key + "/" if key else ""
        infos = []
        paginator = self.client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/"):
            for common in page.get("CommonPrefixes", []):
                name = common["Prefix"][len(prefix) :].rstrip("/")
                infos.append(FileInfo(f"{rel}/{name}" if rel else name, True))
            for obj in page.get("Contents", []):
                name = obj["Key"][len(prefix) :]
                if name:  # "folder/" marker objects made by other tools
                    infos.append(FileInfo(f"{rel}/{name}" if rel else name, False, obj["Size"]))
        return sorted(infos, key=lambda info: info.path)

    async def delete(self, path: str) -> None:
        _, key = self._file_key(path)
        await self.client.delete_object(Bucket=self.bucket, Key=key)
        # A "folder" is every key under key/ (and not key* — "run1" must not take "run10").
        batch: builtins.list[dict[str, str]] = []
        paginator = self.client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=key + "/"):
            batch.extend({"Key": obj["Key"]} for obj in page.get("Contents", []))
            while len(batch) >= 1000:
                await self._delete_keys(batch[:1000])
                batch = batch[1000:]
        if batch:
            await self._delete_keys(batch)

    async def _delete_keys(self, keys: builtins.list[dict[str, str]]) -> None:
        if self._batch_delete:
            try:
                await self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True}
                )
                return
            except ClientError as exc:
                if _error_code(exc) != "NotImplemented":
                    raise
                # Some S3 stand-ins (localbucket) have no DeleteObjects: one by one from now.
                self._batch_delete = False
        for key in keys:
            await self.client.delete_object(Bucket=self.bucket, Key=key["Key"])

    async def create_multipart(self, path: str, num_parts: int) -> MultipartUpload:
        _, key = self._file_key(path)
        created = await self.client.create_multipart_upload(Bucket=self.bucket, Key=key)
        upload_id = str(created["UploadId"])
        credentials = []
        for number in range(1, num_parts + 1):
            url = await self.client.generate_presigned_url(
                "upload_part",
                Params={
                    "Bucket": self.bucket,
                    "Key": key,
                    "UploadId": upload_id,
                    "PartNumber": number,
                },
                ExpiresIn=self.presign_expiry_s,
            )
            credentials.append(PartCredential(url=url, part_number=number))
        return MultipartUpload(upload_id, credentials)

    async def complete_multipart(
        self, path: str, upload_id: str, parts: Sequence[UploadedPart]
    ) -> None:
        rel, key = self._file_key(path)
        listed = [{"PartNumber": p.part_number, "ETag": p.etag or ""} for p in parts]
        try:
            await self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": listed}
            )
        except ClientError as exc:
            raise _multipart_error(exc, rel, upload_id) from exc

    async def abort_multipart(self, path: str, upload_id: str) -> None:
        rel, key = self._file_key(path)
        try:
            await self.client.abort_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id
            )
        except ClientError as exc:
            raise _multipart_error(exc, rel, upload_id) from exc


def _multipart_error(exc: ClientError, rel: str, upload_id: str) -> Exception:
    code = _error_code(exc)
    if code in ("NoSuchUpload", "404"):
        return ResourceDoesNotExist(f"No multipart upload {upload_id!r} for '{rel}'")
    if code in ("InvalidPart", "InvalidPartOrder", "EntityTooSmall", "InvalidArgument"):
        return InvalidParameterValue(f"Multipart upload of '{rel}' refused by S3: {code}")
    return RuntimeError(f"S3 refused the multipart upload of '{rel}': {code or exc}")


# --- choosing a store --------------------------------------------------------------------


@contextlib.asynccontextmanager
async def open_artifact_store(settings: Settings) -> AsyncIterator[ArtifactStore]:
    """The store ``settings.artifacts_url`` names, open for the life of the context.

    ``s3://bucket/prefix`` → S3 (credentials and region from the usual AWS variables and
    files; path-style addressing when ``s3_endpoint_url`` points at MinIO or the like);
    a local path or ``file://`` URL → that directory; unset → ``data_dir/artifacts``.
    """
    url = settings.artifacts_url
    if not url:
        yield LocalArtifactStore(settings.data_dir / "artifacts")
        return
    parts = urlsplit(url)
    if parts.scheme == "s3":
        if not parts.netloc:
            raise ConfigurationError(f"RUNSTREAM_ARTIFACTS_URL={url!r}: no bucket")
        from aiobotocore.config import AioConfig
        from aiobotocore.session import get_session

        config = AioConfig(
            signature_version="s3v4",
            s3={"addressing_style": "path" if settings.s3_endpoint_url else "auto"},
            retries={"max_attempts": 5, "mode": "standard"},
        )
        async with get_session().create_client(
            "s3", endpoint_url=settings.s3_endpoint_url, config=config
        ) as client:
            yield S3ArtifactStore(client, parts.netloc, parts.path)
        return
    if parts.scheme == "file":
        yield LocalArtifactStore(Path(unquote(parts.path)))
        return
    if parts.scheme and len(parts.scheme) > 1:
        raise ConfigurationError(
            f"RUNSTREAM_ARTIFACTS_URL={url!r}: expected s3://bucket/prefix or a local path"
        )
    yield LocalArtifactStore(Path(url))
