"""Where archives live: ``s3://bucket/prefix`` on any S3-compatible store, or ``file:///path``.

:func:`open_store` turns an archive URL into a :class:`Store` over a ``pyarrow.fs``
filesystem. Nothing here creates a bucket or a root directory: a missing one is an error,
so that a typo in a URL never scatters an archive somewhere new.

S3 settings come from the standard AWS variables: ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_REGION`` (or ``AWS_DEFAULT_REGION``)
and ``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_S3``) for stores other than AWS.

Objects are published by name: a file is written under a name no reader looks at
(``*.partial``), checked, then moved to its final name. A local move is a rename; on S3 it
is a server-side copy, which makes the whole object appear at once, then a delete.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import AuditError, ConfigurationError, one_line

#: Seconds an S3 request may take to connect, and to complete, before it fails.
CONNECT_TIMEOUT = 5.0
REQUEST_TIMEOUT = 30.0
#: How often a failed S3 request is tried in all.
S3_ATTEMPTS = 3
#: The suffix of an object being written, which no archive reader lists.
PARTIAL = ".partial"


class StoreError(AuditError):
    """The archive's store refused or failed a request (unreachable, wrong key, no bucket)."""


def _pyarrow_fs() -> Any:
    try:
        import pyarrow.fs
    except ImportError as exc:  # pragma: no cover - the archive extra is missing
        raise ConfigurationError(
            "the archive needs pyarrow: pip install 'django-partitioned-audit[archive]'"
        ) from exc
    return pyarrow.fs


@dataclass(frozen=True)
class Store:
    """An archive root: ``fs`` is a ``pyarrow.fs.FileSystem``, ``root`` the path in it."""

    url: str
    fs: Any
    root: str
    #: ``"s3"`` or ``"file"``.
    scheme: str
    #: The S3 connection settings (None for ``file://``), for readers such as DuckDB.
    s3: Mapping[str, str] | None = None

    def path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    def url_of(self, *parts: str) -> str:
        return "/".join([self.url.rstrip("/"), *parts])

    def exists(self, path: str) -> bool:
        fs = _pyarrow_fs()
        return bool(self._call("look at", path, self.fs.get_file_info, path).type != fs.FileType.NotFound)

    def read_bytes(self, path: str) -> bytes:
        def read() -> bytes:
            with self.fs.open_input_stream(path) as stream:
                return bytes(stream.read())

        return bytes(self._call("read", path, read))

    def write_bytes(self, path: str, data: bytes) -> None:
        def write() -> None:
            with self.fs.open_output_stream(path) as stream:
                stream.write(data)

        self._call("write", path, write)

    def publish(self, partial: str, final: str) -> None:
        """Move ``partial`` to ``final``: the whole object appears under its name at once."""
        self._call("publish", final, self.fs.move, partial, final)

    def delete(self, path: str) -> None:
        self._call("delete", path, self.fs.delete_file, path)

    def listing(self, directory: str) -> list[str]:
        """The files directly under ``directory`` (their full paths); [] when there is none."""
        fs = _pyarrow_fs()
        selector = fs.FileSelector(directory, allow_not_found=True, recursive=False)
        infos = self._call("list", directory, self.fs.get_file_info, selector)
        return sorted(info.path for info in infos if info.type == fs.FileType.File)

    def directories(self) -> list[str]:
        """The names of the directories right under the root."""
        fs = _pyarrow_fs()
        selector = fs.FileSelector(self.root, allow_not_found=True, recursive=False)
        infos = self._call("list", self.root, self.fs.get_file_info, selector)
        return sorted(info.base_name for info in infos if info.type == fs.FileType.Directory)

    def _call(self, verb: str, path: str, function: Any, *args: Any) -> Any:
        try:
            return function(*args)
        except (OSError, ValueError) as exc:
            where = f"file://{path}" if self.scheme == "file" else f"s3://{path}"
            raise StoreError(f"cannot {verb} {where}: {one_line(exc)}") from exc

    def make_dir(self, path: str) -> None:
        """Create ``path`` in a local store (an object store has no directories to make)."""
        if self.scheme == "file":
            self._call("create", path, self.fs.create_dir, path)


def parse(url: str) -> tuple[str, str]:
    """(scheme, path) of an archive URL; ``path`` is ``bucket/prefix`` or an absolute path.

    Raises:
        ConfigurationError: not an ``s3://bucket[/prefix]`` or ``file:///absolute/path`` URL.
    """
    if not isinstance(url, str) or not url:
        raise ConfigurationError(f"an archive URL is s3://bucket/prefix or file:///path, got {url!r}")
    parts = urllib.parse.urlsplit(url)
    if parts.query or parts.fragment:
        raise ConfigurationError(f"an archive URL takes no query or fragment, got {url!r}")
    if parts.scheme == "s3":
        if not parts.netloc or "@" in parts.netloc or ":" in parts.netloc:
            raise ConfigurationError(
                f"an s3:// archive URL names a bucket, as in s3://bucket/prefix; got {url!r}"
            )
        prefix = parts.path.strip("/")
        return "s3", f"{parts.netloc}/{prefix}" if prefix else parts.netloc
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ConfigurationError(
                f"a file:// archive URL holds an absolute path, as in file:///var/archive; got {url!r}"
            )
        return "file", urllib.parse.unquote(parts.path).rstrip("/") or "/"
    raise ConfigurationError(f"an archive URL is s3://bucket/prefix or file:///path, got {url!r}")


def s3_settings(environ: Mapping[str, str]) -> dict[str, str]:
    """The S3 connection settings the standard AWS variables give (absent ones left out)."""
    found = {
        "access_key": environ.get("AWS_ACCESS_KEY_ID", ""),
        "secret_key": environ.get("AWS_SECRET_ACCESS_KEY", ""),
        "session_token": environ.get("AWS_SESSION_TOKEN", ""),
        "region": environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or "us-east-1",
        "endpoint": environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL") or "",
    }
    return {k: v for k, v in found.items() if v}


def open_store(url: str, environ: Mapping[str, str] | None = None) -> Store:
    """The :class:`Store` of ``url``, checked to exist.

    Raises:
        ConfigurationError: a malformed URL.
        StoreError: the bucket or the directory does not exist, or the store cannot be reached
            or refuses the credentials.
    """
    scheme, path = parse(url)
    fs = _pyarrow_fs()
    if scheme == "file":
        store = Store(url, fs.LocalFileSystem(), path, "file")
        if store.fs.get_file_info(path).type != fs.FileType.Directory:
            raise StoreError(
                f"archive directory {path} does not exist; create it first (the archive never does)"
            )
        return store
    settings = s3_settings(os.environ if environ is None else environ)
    endpoint = settings.get("endpoint", "")
    options: dict[str, Any] = {
        "region": settings["region"],
        "connect_timeout": CONNECT_TIMEOUT,
        "request_timeout": REQUEST_TIMEOUT,
        "retry_strategy": fs.AwsStandardS3RetryStrategy(max_attempts=S3_ATTEMPTS),
        # A missing bucket is an error: never create or delete one.
        "allow_bucket_creation": False,
        "allow_bucket_deletion": False,
    }
    if "access_key" in settings and "secret_key" in settings:
        options.update(access_key=settings["access_key"], secret_key=settings["secret_key"])
        if "session_token" in settings:
            options["session_token"] = settings["session_token"]
    if endpoint:
        split = urllib.parse.urlsplit(endpoint)
        options["endpoint_override"] = split.netloc or endpoint
        options["scheme"] = split.scheme or "https"
    try:
        filesystem = fs.S3FileSystem(**options)
    except (OSError, ValueError) as exc:
        raise StoreError(f"cannot open {url}: {one_line(exc)}") from exc
    store = Store(url, filesystem, path, "s3", settings)
    bucket = path.split("/", 1)[0]
    try:
        info = filesystem.get_file_info(bucket)
        if info.type == fs.FileType.NotFound:
            raise StoreError(
                f"bucket {bucket} does not exist at {endpoint or 'AWS S3'}; create it first (the archive never does)"
            )
        # Listing proves the credentials: a bucket's existence alone may be visible without them.
        filesystem.get_file_info(fs.FileSelector(path, allow_not_found=True, recursive=False))
    except OSError as exc:
        raise StoreError(f"cannot reach {url} at {endpoint or 'AWS S3'}: {one_line(exc)}") from exc
    return store
