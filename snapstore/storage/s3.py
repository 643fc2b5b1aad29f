"""The S3 backend: repository files as objects under ``s3://BUCKET/PREFIX/`` (boto3).

Works with AWS S3 and the S3-compatible servers (Ceph RGW, SeaweedFS, MinIO); docs/remote.md
says how to point snap at each. boto3 is imported when the first request is made, so local
repositories never load it.

- Puts: ``put_file`` uses boto3's managed transfer (multipart above ``MULTIPART_THRESHOLD``,
  parts sent in parallel); an S3 PUT is atomic, so readers see a whole pack or none.
- Reads: ``get_range`` is one ranged GET; the body read is retried on its own, since botocore
  retries a request but not a body that breaks off half way.
- Errors become snapstore errors: a missing object is ``FileNotFoundError`` (as on disk), a
  missing bucket :class:`RepositoryNotFound`, refused credentials :class:`RemoteAccessDenied`;
  what may pass (timeouts, connection resets, a body that breaks off, 5xx, throttling such as
  ``SlowDown``) is a :class:`TransientError`, anything else :class:`RemoteError`.
- This class sends each request once: botocore's own retries are off. Retrying, counting and
  fault injection are wrappers around any backend (:mod:`snapstore.storage.retrying`,
  :mod:`~snapstore.storage.metered`, :mod:`~snapstore.storage.faulty`), composed by
  :func:`snapstore.storage.locations.open_backend` (``SNAP_S3_MAX_ATTEMPTS``, default 6).
- Conditional writes (``If-None-Match: *``, ``If-Match: ETAG``) serve the gc lease
  (:mod:`snapstore.storage.lease`); a server without them falls back to plain writes.
- Listings come in key order (S3 lists keys in UTF-8 byte order, which is code-point order).

Credentials come from boto3's default chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``,
``AWS_PROFILE``, instance roles); snap never stores them.

``SNAP_S3_CONNECT_TIMEOUT``/``SNAP_S3_READ_TIMEOUT`` tune the timeouts (seconds).
"""

from __future__ import annotations

import errno
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from snapstore.errors import RemoteAccessDenied, RemoteError, RepositoryNotFound, TransientError, UsageError
from snapstore.storage.backend import BackendStats

MULTIPART_THRESHOLD = 16 * 1024 * 1024
MULTIPART_CHUNK = 8 * 1024 * 1024
ENDPOINT_ENV = "SNAP_S3_ENDPOINT"
_ACCESS_CODES = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403", "Forbidden",
                 "InvalidToken", "ExpiredToken", "AuthorizationHeaderMalformed", "AccountProblem"}
_NOT_FOUND_CODES = {"NoSuchKey", "404", "NotFound"}
_UNSUPPORTED_CODES = {"NotImplemented", "501"}
# What botocore's "standard" retry mode treats as passing: throttling and transient errors.
_TRANSIENT_CODES = {"Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
                    "TooManyRequestsException", "ProvisionedThroughputExceededException", "RequestLimitExceeded",
                    "BandwidthLimitExceeded", "LimitExceededException", "RequestThrottled", "SlowDown",
                    "PriorRequestNotComplete", "EC2ThrottledException", "RequestTimeout", "RequestTimeoutException",
                    "InternalError", "ServiceUnavailable", "TransactionInProgressException"}
_UPLOAD_CODE = re.compile(r"An error occurred \(([A-Za-z0-9.]+)\)")

T = TypeVar("T")


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, "") or default)
    except ValueError:
        return default


def check_endpoint(endpoint: str) -> str:
    """The endpoint URL, or a UsageError for something that is not one."""
    text = endpoint.strip().rstrip("/")
    scheme, sep, host = text.partition("://")
    if not sep or scheme.lower() not in ("http", "https") or not host or any(c.isspace() for c in host):
        raise UsageError(f"invalid S3 endpoint {endpoint!r}: give a URL like http://HOST:PORT or https://HOST")
    return text


class S3Backend:
    """Repository files as objects in one bucket under one key prefix."""

    remote = True
    parallel_puts = 4
    parallel_gets = 8
    default_safety_window_s = 3600.0

    def __init__(self, bucket: str, prefix: str, *, endpoint: str | None = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        chosen = endpoint or os.environ.get(ENDPOINT_ENV) or None
        self.endpoint = check_endpoint(chosen) if chosen else None
        self.tmp_dir: str | None = None
        self._client: Any = None
        self._client_lock = threading.Lock()

    # -- naming -------------------------------------------------------------------------
    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def _name(self, key: str) -> str:
        return key[len(self.prefix) + 1:] if self.prefix else key

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def describe(self) -> str:
        return self.url

    def _where(self) -> str:
        return self.endpoint or "AWS S3"

    # -- the client ---------------------------------------------------------------------
    def client(self) -> Any:
        with self._client_lock:
            if self._client is None:
                self._client = self._make_client()
            return self._client

    def _make_client(self) -> Any:
        try:
            import boto3
            from botocore.config import Config
        except ImportError:
            raise RemoteError("S3 repositories need boto3: pip install 'snapstore[s3]'") from None
        session = boto3.session.Session()
        region = session.region_name or "us-east-1"
        options: dict[str, Any] = {
            "retries": {"mode": "standard", "total_max_attempts": 1},  # the retrying wrapper retries
            "connect_timeout": _env_float("SNAP_S3_CONNECT_TIMEOUT", 10.0),
            "read_timeout": _env_float("SNAP_S3_READ_TIMEOUT", 60.0),
            "max_pool_connections": 32,
            "user_agent_extra": "snapstore",
        }
        if self.endpoint:
            # S3-compatible servers: path-style addressing, and checksums only where required
            # (several of them reject the aws-chunked uploads newer boto3 sends by default).
            options["s3"] = {"addressing_style": "path"}
            options["request_checksum_calculation"] = "when_required"
            options["response_checksum_validation"] = "when_required"
        try:
            config = Config(**options)
        except TypeError:  # botocore older than 1.36: no checksum options
            options.pop("request_checksum_calculation", None)
            options.pop("response_checksum_validation", None)
            config = Config(**options)
        return session.client("s3", endpoint_url=self.endpoint, region_name=region, config=config)

    # -- error mapping ------------------------------------------------------------------
    def _translate(self, exc: BaseException, what: str) -> BaseException:
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectTimeoutError,
            EndpointConnectionError,
            HTTPClientError,
            NoCredentialsError,
            PartialCredentialsError,
        )
        from botocore.exceptions import ConnectionError as BotoConnectionError

        if isinstance(exc, ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            return self._from_code(code, status, str(err.get("Message", "")), what)
        if isinstance(exc, NoCredentialsError | PartialCredentialsError):
            return RemoteAccessDenied("no S3 credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                                      "(or AWS_PROFILE)")
        if isinstance(exc, EndpointConnectionError | ConnectTimeoutError):
            why = "connection timed out" if isinstance(exc, ConnectTimeoutError) else "connection failed"
            return TransientError(f"cannot reach S3 endpoint {self._where()} ({what}: {why})")
        if isinstance(exc, BotoConnectionError | HTTPClientError | ConnectionError | TimeoutError) \
                or _is_streaming_error(exc):
            # read timeouts, dropped connections, bodies broken off: a new attempt may get past them
            return TransientError(f"S3 {what} at {self._where()} failed: {exc}")
        if isinstance(exc, BotoCoreError):
            return RemoteError(f"S3 {what} at {self._where()} failed: {exc}")
        try:
            from boto3.exceptions import S3UploadFailedError
        except ImportError:  # pragma: no cover
            S3UploadFailedError = ()  # type: ignore[assignment]  # noqa: N806
        if isinstance(exc, S3UploadFailedError):
            text = str(exc)
            found = _UPLOAD_CODE.search(text)
            if found:
                return self._from_code(found.group(1), 0, text, what)
            for code in ("NoSuchBucket", *_ACCESS_CODES):
                if code in text:
                    return self._from_code(code, 0, text, what)
            return RemoteError(f"S3 {what} at {self._where()} failed: {text}")
        return exc

    def _from_code(self, code: str, status: int, message: str, what: str) -> BaseException:
        if code == "NoSuchBucket":
            return RepositoryNotFound(f"bucket {self.bucket!r} does not exist at {self._where()} "
                                      "(create it first, see docs/remote.md)")
        if code in _NOT_FOUND_CODES or status == 404:
            return FileNotFoundError(errno.ENOENT, "no such object", what)
        if code in _ACCESS_CODES or status == 403:
            return RemoteAccessDenied(f"S3 at {self._where()} refused access to {self.url} ({code or status}): "
                                      "check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the profile and its "
                                      "permissions")
        if code in ("PermanentRedirect", "301", "AuthorizationHeaderMalformed"):
            return RemoteError(f"bucket {self.bucket!r} is in another region: set AWS_REGION ({code})")
        detail = f"{code} {message}".strip() or f"HTTP {status}"
        transient = code in _TRANSIENT_CODES or status == 429 or (status >= 500 and status != 501)
        return (TransientError if transient else RemoteError)(f"S3 {what} at {self._where()} failed: {detail}")

    def _call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            mapped = self._translate(exc, what)
            if mapped is exc:
                raise
            raise mapped from None

    def _read_body(self, what: str, **params: Any) -> tuple[bytes, str]:
        """GET an object (or a range) and read its body: ``(data, etag)``. A body that breaks
        off half way is a TransientError like any other (botocore retries neither)."""

        def fetch() -> tuple[bytes, str]:
            response = self.client().get_object(Bucket=self.bucket, **params)
            return response["Body"].read(), str(response.get("ETag", ""))

        return self._call(what, fetch)

    # -- Backend protocol ---------------------------------------------------------------
    def set_local_tmp_dir(self, path: str) -> None:
        self.tmp_dir = path

    def local_tmp_dir(self) -> str:
        if self.tmp_dir is None:
            self.tmp_dir = tempfile.mkdtemp(prefix="snap-s3-")
        os.makedirs(self.tmp_dir, exist_ok=True)
        return self.tmp_dir

    def put_file(self, name: str, local_path: str) -> None:
        from boto3.s3.transfer import TransferConfig

        config = TransferConfig(multipart_threshold=MULTIPART_THRESHOLD, multipart_chunksize=MULTIPART_CHUNK,
                                max_concurrency=4, use_threads=True)
        self._call(f"upload of {name}", self.client().upload_file, local_path, self.bucket, self.key(name),
                   Config=config)
        os.unlink(local_path)

    def put_bytes(self, name: str, data: bytes) -> None:
        self._call(f"write of {name}", self.client().put_object, Bucket=self.bucket, Key=self.key(name), Body=data)

    def get(self, name: str) -> bytes:
        return self._read_body(f"read of {name}", Key=self.key(name))[0]

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        if length <= 0:
            return b""
        return self._read_body(f"read of {name}", Key=self.key(name),
                               Range=f"bytes={offset}-{offset + length - 1}")[0]

    def _head(self, name: str) -> dict[str, Any] | None:
        try:
            return self._call(f"stat of {name}", self.client().head_object, Bucket=self.bucket, Key=self.key(name))
        except FileNotFoundError:
            return None

    def size(self, name: str) -> int | None:
        head = self._head(name)
        return None if head is None else int(head["ContentLength"])

    def mtime(self, name: str) -> float | None:
        head = self._head(name)
        return None if head is None else head["LastModified"].timestamp()

    def list_stat(self, prefix: str) -> Iterator[tuple[str, int, float]]:
        paginator = self.client().get_paginator("list_objects_v2")
        pages = paginator.paginate(Bucket=self.bucket, Prefix=self.key(prefix.strip("/")) + "/")
        iterator = iter(pages)
        while True:
            try:
                page = self._call(f"listing of {prefix}/", next, iterator, None)
            except FileNotFoundError:
                return
            if page is None:
                return
            for item in page.get("Contents", []):
                yield self._name(item["Key"]), int(item["Size"]), item["LastModified"].timestamp()

    def list(self, prefix: str) -> Iterator[tuple[str, int]]:
        for name, size, _mtime in self.list_stat(prefix):
            yield name, size

    def delete(self, name: str) -> None:
        try:
            self._call(f"delete of {name}", self.client().delete_object, Bucket=self.bucket, Key=self.key(name))
        except FileNotFoundError:
            pass

    def rename(self, name: str, new_name: str) -> None:
        if self._head(name) is None:
            raise FileNotFoundError(errno.ENOENT, "no such object", name)
        self._call(f"copy of {name}", self.client().copy_object, Bucket=self.bucket, Key=self.key(new_name),
                   CopySource={"Bucket": self.bucket, "Key": self.key(name)})
        self.delete(name)

    # -- repository-level checks --------------------------------------------------------
    def check(self) -> None:
        """Raise the right error when the bucket is missing or the credentials are refused."""
        try:
            self._call("bucket check", self.client().head_bucket, Bucket=self.bucket)
        except FileNotFoundError:
            raise RepositoryNotFound(f"bucket {self.bucket!r} does not exist at {self._where()} "
                                     "(create it first, see docs/remote.md)") from None

    def is_empty(self) -> bool:
        prefix = self.key("") if self.prefix else ""
        page = self._call("listing", self.client().list_objects_v2, Bucket=self.bucket, Prefix=prefix, MaxKeys=1)
        return not page.get("Contents")

    # -- conditional writes (the gc lease) ----------------------------------------------
    def get_tagged(self, name: str) -> tuple[bytes, str] | None:
        """``(data, etag)`` of ``name``, or None when it does not exist."""
        try:
            return self._read_body(f"read of {name}", Key=self.key(name))
        except FileNotFoundError:
            return None

    def _conditional_put(self, name: str, data: bytes, **condition: str) -> str | None:
        from botocore.exceptions import ClientError

        try:
            response = self.client().put_object(Bucket=self.bucket, Key=self.key(name), Body=data, **condition)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            if code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (409, 412):
                return None
            if code in _UNSUPPORTED_CODES or status == 501:
                response = self._call(f"write of {name}", self.client().put_object, Bucket=self.bucket,
                                      Key=self.key(name), Body=data)
            else:
                raise self._translate(exc, f"write of {name}") from None
        except Exception as exc:
            mapped = self._translate(exc, f"write of {name}")
            if mapped is exc:
                raise
            raise mapped from None
        return str(response.get("ETag", "")) or "*"

    def create_exclusive(self, name: str, data: bytes) -> str | None:
        """Create ``name`` unless it exists; its ETag, or None when it already existed."""
        return self._conditional_put(name, data, IfNoneMatch="*")

    def replace_if(self, name: str, data: bytes, tag: str) -> str | None:
        """Overwrite ``name`` only if its ETag is still ``tag``; the new ETag or None."""
        return self._conditional_put(name, data, IfMatch=tag)

    def delete_if(self, name: str, tag: str) -> None:
        """Delete ``name`` if it is still the version ``tag`` (plain delete where unsupported)."""
        from botocore.exceptions import ClientError

        try:
            self.client().delete_object(Bucket=self.bucket, Key=self.key(name), IfMatch=tag)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _UNSUPPORTED_CODES:
                self.delete(name)
        except Exception as exc:  # a conditional delete is best effort: the lease expires anyway
            mapped = self._translate(exc, f"delete of {name}")
            if mapped is exc:
                raise

    # -- life cycle ---------------------------------------------------------------------
    def stats(self) -> BackendStats:
        return BackendStats()  # counting is the metering wrapper's

    def close(self) -> None:
        """Nothing to release: boto3's connection pool goes with the process."""


def _is_streaming_error(exc: BaseException) -> bool:
    """A response body that broke off or timed out while being read."""
    try:
        from botocore.exceptions import IncompleteReadError, ReadTimeoutError, ResponseStreamingError
        from urllib3.exceptions import ProtocolError
    except ImportError:  # pragma: no cover - older botocore
        return False
    return isinstance(exc, IncompleteReadError | ReadTimeoutError | ResponseStreamingError | ProtocolError)
