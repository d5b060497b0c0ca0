"""Object store on S3 or any S3-compatible server (MinIO in compose, AWS in production).

The only module that imports boto3: every botocore and ClientError failure is turned into the project's
errors at this boundary. Create-if-absent is a conditional write (`If-None-Match: *`), which AWS and MinIO
decide atomically on the server. Large objects go up as multipart uploads, so memory stays at one part
and the object appears only when the upload completes; a failed upload is aborted.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC
from typing import Any

import boto3
import botocore.loaders
import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError, IncompleteReadError
from botocore.exceptions import ConnectionError as BotoConnectionError

from storage.core.errors import DeltahubError, InvalidInput, StoreError, TransientStoreError
from storage.objectstore.base import (
    DEFAULT_CHUNK_BYTES,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    check_range,
    validate_key,
    validate_prefix,
)

MIN_PART_SIZE = 5 << 20  # S3's floor for every part but the last
MAX_PART_SIZE = 5 << 30
# S3 caps an upload at 10,000 parts. Parts double in size every 1,000, so 8 MiB parts reach ~8 GB at
# constant memory and still cover a 250 GB file (GGUF) with 128 MiB parts.
_PARTS_PER_SIZE_STEP = 1000

# ConditionalRequestConflict: another conditional write to the key is in flight; repeating settles it.
_TRANSIENT_CODES = frozenset({
    "SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "RequestTimeout",
    "ServiceUnavailable", "InternalError", "OperationAborted", "ConditionalRequestConflict",
})  # fmt: skip
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_PRECONDITION_CODES = frozenset({"PreconditionFailed", "412"})
_CONFLICT_RETRIES = 5

# One loader for every store: it caches the parsed S3 service model, which otherwise costs each new
# client ~0.15 s of JSON parsing (measured; a worker or test run builds many stores).
_SHARED_LOADER = botocore.loaders.create_loader()


def _client_error(exc: ClientError, key: str) -> DeltahubError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
    if code in _NOT_FOUND_CODES:
        return ObjectNotFound(key=key)
    detail = f"{exc.operation_name} {key!r}: {code} (HTTP {status}) {error.get('Message', '')}".rstrip()
    if code in _TRANSIENT_CODES or status >= 500:
        return TransientStoreError(detail=detail)
    return StoreError(detail=detail)


@contextlib.contextmanager
def _vendor_errors(key: str) -> Iterator[None]:
    try:
        yield
    except ClientError as exc:
        raise _client_error(exc, key) from exc
    except (BotoConnectionError, HTTPClientError, IncompleteReadError) as exc:
        # Refused or dropped connections, timeouts, truncated bodies: worth a retry later.
        raise TransientStoreError(detail=f"{key!r}: {exc}") from exc
    except BotoCoreError as exc:
        raise StoreError(detail=f"{key!r}: {exc}") from exc


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3ObjectStore(ObjectStore):
    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        part_size: int = 8 << 20,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        max_attempts: int = 5,
        max_pool_connections: int = 32,
        path_style: bool | None = None,
        list_page_size: int = 1000,
        create_bucket: bool = False,
    ) -> None:
        if not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
            raise InvalidInput(detail=f"part_size {part_size} is outside [{MIN_PART_SIZE}, {MAX_PART_SIZE}]")
        if not 1 <= list_page_size <= 1000:
            raise InvalidInput(detail=f"list_page_size {list_page_size} is outside [1, 1000]")
        prefix = prefix.strip("/")
        if prefix:
            validate_prefix(prefix)
            prefix += "/"
        self.bucket = bucket
        self.prefix = prefix
        self.part_size = part_size
        self.list_page_size = list_page_size
        if path_style is None:
            # Custom endpoints (MinIO, compose service names) rarely resolve bucket subdomains.
            path_style = endpoint_url is not None
        config = Config(
            region_name=region,
            signature_version="s3v4",
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"mode": "standard", "total_max_attempts": max_attempts},
            max_pool_connections=max_pool_connections,
            s3={"addressing_style": "path" if path_style else "auto"},
        )
        core_session = botocore.session.Session()
        core_session.register_component("data_loader", _SHARED_LOADER)
        session = boto3.session.Session(
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            region_name=region,
            botocore_session=core_session,
        )
        self._client: Any = session.client("s3", endpoint_url=endpoint_url, config=config)
        if create_bucket:
            self.create_bucket()

    def __repr__(self) -> str:
        return f"S3ObjectStore(bucket={self.bucket!r}, prefix={self.prefix!r})"

    def create_bucket(self) -> None:
        """Create the bucket unless it exists (tests and compose; production buckets are provisioned)."""
        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        region = self._client.meta.region_name
        if region and region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        with _vendor_errors(self.bucket):
            try:
                self._client.create_bucket(**kwargs)
            except ClientError as exc:
                if _error_code(exc) != "BucketAlreadyOwnedByYou":
                    raise

    def put_if_absent(self, key: str, data: bytes) -> bool:
        return self._put_object(self._key(key), key, data, if_absent=True)

    def put(self, key: str, data: bytes) -> None:
        self._put_object(self._key(key), key, data, if_absent=False)

    def _put_object(self, full_key: str, key: str, data: bytes, *, if_absent: bool) -> bool:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": full_key, "Body": data}
        if if_absent:
            kwargs["IfNoneMatch"] = "*"
        return self._conditional(key, lambda: self._client.put_object(**kwargs))

    def _conditional(self, key: str, request: Callable[[], object]) -> bool:
        """Run a (possibly conditional) write; False if the server refused it because the key exists."""
        with _vendor_errors(key):
            for attempt in range(_CONFLICT_RETRIES):
                try:
                    request()
                    return True
                except ClientError as exc:
                    code = _error_code(exc)
                    if code in _PRECONDITION_CODES:
                        return False
                    if code != "ConditionalRequestConflict" or attempt == _CONFLICT_RETRIES - 1:
                        raise
                time.sleep(0.05 * 2**attempt)
        raise AssertionError("unreachable")

    def put_stream(self, key: str, chunks: Iterable[bytes], *, if_absent: bool = False) -> int:
        full_key = self._key(key)
        if if_absent and self.head(key) is not None:
            return sum(len(chunk) for chunk in chunks)
        buffer = bytearray()
        size = 0
        iterator = iter(chunks)
        for chunk in iterator:
            buffer += chunk
            size += len(chunk)
            if len(buffer) >= self.part_size:
                return size + self._multipart(full_key, key, buffer, iterator, if_absent=if_absent)
        self._put_object(full_key, key, bytes(buffer), if_absent=if_absent)
        return size

    def _multipart(self, full_key: str, key: str, buffer: bytearray, rest: Iterator[bytes], *, if_absent: bool) -> int:
        """Upload `buffer` and then `rest` as one multipart upload; return the bytes taken from `rest`."""
        with _vendor_errors(key):
            upload_id = self._client.create_multipart_upload(Bucket=self.bucket, Key=full_key)["UploadId"]
        parts: list[dict[str, Any]] = []
        size = 0
        try:
            while True:
                part_size = min(MAX_PART_SIZE, self.part_size << (len(parts) // _PARTS_PER_SIZE_STEP))
                if len(buffer) < part_size:
                    for chunk in rest:
                        buffer += chunk
                        size += len(chunk)
                        if len(buffer) >= part_size:
                            break
                if not buffer:
                    break
                body = bytes(buffer)
                buffer.clear()
                parts.append(self._upload_part(full_key, key, upload_id, len(parts) + 1, body))
                del body
            complete: dict[str, Any] = {
                "Bucket": self.bucket,
                "Key": full_key,
                "UploadId": upload_id,
                "MultipartUpload": {"Parts": parts},
            }
            if if_absent:
                complete["IfNoneMatch"] = "*"
            if not self._conditional(key, lambda: self._client.complete_multipart_upload(**complete)):
                self._abort(full_key, upload_id)
        except BaseException:
            self._abort(full_key, upload_id)
            raise
        return size

    def _upload_part(self, full_key: str, key: str, upload_id: str, number: int, body: bytes) -> dict[str, Any]:
        with _vendor_errors(key):
            response = self._client.upload_part(
                Bucket=self.bucket, Key=full_key, UploadId=upload_id, PartNumber=number, Body=body
            )
        part = {"PartNumber": number, "ETag": response["ETag"]}
        # Newer botocore checksums parts by default; the completion must then repeat each checksum.
        part.update({name: value for name, value in response.items() if name.startswith("Checksum")})
        part.pop("ChecksumType", None)
        return part

    def _abort(self, full_key: str, upload_id: str) -> None:
        # Best effort: an upload left behind is invisible and a bucket lifecycle rule reaps it.
        with contextlib.suppress(ClientError, BotoCoreError):
            self._client.abort_multipart_upload(Bucket=self.bucket, Key=full_key, UploadId=upload_id)

    # -- reads ----------------------------------------------------------------------------------------

    def get(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        body = self._open_range(key, start, end)
        if body is None:
            return b""
        try:
            with _vendor_errors(key):
                data: bytes = body.read()
                return data
        finally:
            body.close()

    def iter_range(
        self, key: str, start: int = 0, end: int | None = None, chunk_bytes: int = DEFAULT_CHUNK_BYTES
    ) -> Iterator[bytes]:
        if chunk_bytes <= 0:
            raise ValueError("chunk_bytes must be positive")
        body = self._open_range(key, start, end)  # requested now, so a missing object fails at the call
        if body is None:
            return iter(())
        return self._iter_body(key, body, chunk_bytes)

    def _iter_body(self, key: str, body: Any, chunk_bytes: int) -> Iterator[bytes]:
        try:
            with _vendor_errors(key):
                yield from body.iter_chunks(chunk_bytes)
        finally:
            body.close()

    def _open_range(self, key: str, start: int, end: int | None) -> Any:
        """The response body for bytes [start, end), or None when the range holds no bytes."""
        full_key = self._key(key)
        check_range(start, end)
        if end == start:
            return None  # no Range header can ask for zero bytes
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": full_key}
        if start or end is not None:
            kwargs["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        with _vendor_errors(key):
            try:
                return self._client.get_object(**kwargs)["Body"]
            except ClientError as exc:
                if _error_code(exc) == "InvalidRange":
                    return None  # the range starts at or past the end: clipped to nothing
                raise

    def head(self, key: str) -> ObjectInfo | None:
        full_key = self._key(key)
        try:
            with _vendor_errors(key):
                response = self._client.head_object(Bucket=self.bucket, Key=full_key)
        except ObjectNotFound:
            return None
        return ObjectInfo(
            key=key,
            size=int(response["ContentLength"]),
            last_modified=response["LastModified"].astimezone(UTC),
        )

    def delete(self, key: str) -> None:
        full_key = self._key(key)
        with _vendor_errors(key):
            self._client.delete_object(Bucket=self.bucket, Key=full_key)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        validate_prefix(prefix)
        return self._list_pages(prefix)

    def _list_pages(self, prefix: str) -> Iterator[ObjectInfo]:
        kwargs: dict[str, Any] = {
            "Bucket": self.bucket,
            "Prefix": self.prefix + prefix,
            "MaxKeys": self.list_page_size,
        }
        strip = len(self.prefix)
        while True:
            with _vendor_errors(prefix):
                page = self._client.list_objects_v2(**kwargs)
            # S3 lists in UTF-8 byte order, which for our ASCII keys is Python's string order.
            for item in page.get("Contents", ()):
                yield ObjectInfo(
                    key=item["Key"][strip:],
                    size=int(item["Size"]),
                    last_modified=item["LastModified"].astimezone(UTC),
                )
            if not page.get("IsTruncated"):
                return
            kwargs["ContinuationToken"] = page["NextContinuationToken"]

    def _key(self, key: str) -> str:
        return self.prefix + validate_key(key)
