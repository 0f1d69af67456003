"""Invoice documents: bounded download, unwrapping, verification, storage.

Shared by Google Ads (PDF from pdf_url) and Amazon Business (report documents
that arrive as a PDF inside a zip inside gzip, whatever compressionAlgorithm
says). Everything happens in memory, bounded by `documents.max_bytes`; the only
file ever written is the final one under `documents.destination` (through a
temporary name beside it, so it is never seen half-written).
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import io
import os
import re
import tempfile
import threading
import zipfile
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import fsspec
import requests
import urllib3
from fsspec.implementations.local import LocalFileSystem
from singer_sdk import typing as th

from tap_ad_invoices.errors import ConfigError
from tap_ad_invoices.http import BrokenBody, HttpClient
from tap_ad_invoices.settings import check_int

DEFAULT_MAX_BYTES = 50 * 1024 * 1024
PDF_MAGIC = b"%PDF"
GZIP_MAGIC = b"\x1f\x8b"
ZIP_MAGIC = b"PK\x03\x04"
_PAGE = re.compile(rb"/Type\s*/Page(?![a-zA-Z])")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class DocumentError(ValueError):
    """A document is unusable (too large, not a PDF, a broken archive)."""


class BrokenArchive(DocumentError):
    """A gzip or zip layer fails its checksum or ends early: the download is fetched again."""


@dataclass(frozen=True)
class DocumentSettings:
    destination: str | None = None
    inline: bool = False
    max_bytes: int = DEFAULT_MAX_BYTES

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> DocumentSettings:
        section = config.get("documents") or {}
        max_bytes = section.get("max_bytes", DEFAULT_MAX_BYTES)
        check_int("documents", "max_bytes", max_bytes, minimum=1)
        destination = section.get("destination") or None
        if destination is not None and not isinstance(destination, str):
            raise ConfigError("documents.destination", "expected a directory path or fsspec URL")
        return cls(destination, bool(section.get("inline", False)), int(max_bytes))


@dataclass(frozen=True)
class StoredDocument:
    sha256: str
    size: int
    page_count: int | None
    uri: str | None
    content_base64: str | None


# The document fields of a record that carries its PDF (Google Ads, Amazon Ads
# invoices, Meta): one schema and one way to fill it.
PDF_PROPERTIES = (
    th.Property("pdf_sha256", th.StringType),
    th.Property("pdf_size", th.IntegerType),
    th.Property("pdf_page_count", th.IntegerType),
    th.Property("pdf_uri", th.StringType),
    th.Property("pdf_content_base64", th.StringType),
)


def pdf_fields(document: StoredDocument | None) -> dict[str, Any]:
    """A record's `pdf_*` fields for `document` (all null without one)."""
    if document is None:
        return {str(prop.name): None for prop in PDF_PROPERTIES}
    return {
        "pdf_sha256": document.sha256,
        "pdf_size": document.size,
        "pdf_page_count": document.page_count,
        "pdf_uri": document.uri,
        "pdf_content_base64": document.content_base64,
    }


def read_bounded(chunks: Iterable[bytes], max_bytes: int, what: str) -> bytes:
    """Join chunks, refusing to hold more than `max_bytes` in memory."""
    buffer = bytearray()
    for chunk in chunks:
        buffer += chunk
        if len(buffer) > max_bytes:
            raise DocumentError(f"{what} is larger than documents.max_bytes ({max_bytes} bytes)")
    return bytes(buffer)


def fetch_bounded(
    http: HttpClient, url: str, *, max_bytes: int, what: str, authenticated: bool
) -> bytes:
    """A document's bytes, in memory, refused past `max_bytes` before it fills memory.

    The gzip and zip layers are opened here, inside the client's retry loop: a body
    cut short or an archive failing its checksum is fetched again like a 5xx, within
    `max_retry_seconds`. No transparent decompression: the layers are recognised
    from the bytes, so a body that S3 serves with Content-Encoding: gzip is never
    inflated twice. The result is the innermost content (`unwrap_pdf` checks %PDF).
    """
    return http.fetch(
        "GET",
        url,
        lambda response: _read_document(response, max_bytes, what),
        operation=f"download {what}",
        endpoint="download",
        authenticated=authenticated,
        stream=True,
        headers={"Accept-Encoding": "identity"},
    )


def _read_document(response: requests.Response, max_bytes: int, what: str) -> bytes:
    with response:
        length = response.headers.get("Content-Length")
        announced = int(length) if length and length.isdigit() else None
        if announced is not None and announced > max_bytes:
            raise DocumentError(
                f"{what} is {length} bytes, larger than documents.max_bytes ({max_bytes})"
            )
        try:
            data = read_bounded(response.raw.stream(1 << 16, decode_content=False), max_bytes, what)
        except urllib3.exceptions.HTTPError as exc:
            raise BrokenBody(f"{what}: body cut off ({type(exc).__name__})") from None
    if announced is not None and len(data) < announced:
        raise BrokenBody(f"{what}: body cut off ({len(data)} of {announced} bytes)")
    try:
        return unwrap_layers(data, max_bytes, what)
    except BrokenArchive as exc:
        raise BrokenBody(str(exc)) from None


def _inflate_bounded(stream: io.BufferedIOBase | gzip.GzipFile, max_bytes: int, what: str) -> bytes:
    return read_bounded(iter(lambda: stream.read(1 << 16), b""), max_bytes, what)


def unwrap_pdf(data: bytes, max_bytes: int, what: str) -> bytes:
    """gzip, then zip, then %PDF, by the bytes themselves; bounded at every layer."""
    data = unwrap_layers(data, max_bytes, what)
    if not data.startswith(PDF_MAGIC):
        raise DocumentError(f"{what} is not a PDF (starts with {data[:8]!r})")
    return data


def unwrap_layers(data: bytes, max_bytes: int, what: str) -> bytes:
    """gzip, then zip, by the bytes themselves; bounded at every layer, checksums checked.

    Names inside a zip are never used as paths: the single PDF member is read
    into memory by content.
    """
    for _ in range(3):  # gzip(zip(pdf)) at most, plus one redundant layer
        if data.startswith(GZIP_MAGIC):
            try:
                data = _inflate_bounded(gzip.GzipFile(fileobj=io.BytesIO(data)), max_bytes, what)
            except (OSError, EOFError, zlib.error) as exc:
                raise BrokenArchive(f"{what}: broken gzip data ({exc})") from None
        elif data.startswith(ZIP_MAGIC):
            try:
                data = _pdf_from_zip(data, max_bytes, what)
            except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
                raise BrokenArchive(f"{what}: broken zip archive ({exc})") from None
        else:
            break
    return data


def _pdf_from_zip(data: bytes, max_bytes: int, what: str) -> bytes:
    archive = zipfile.ZipFile(io.BytesIO(data))
    members = [m for m in archive.infolist() if not m.is_dir()]
    if not members:
        raise DocumentError(f"{what}: empty zip archive")
    for member in members:
        if member.file_size > max_bytes:
            raise DocumentError(f"{what} is larger than documents.max_bytes ({max_bytes} bytes)")
        with archive.open(member) as handle:
            content = _inflate_bounded(handle, max_bytes, what)  # type: ignore[arg-type]
        if content.startswith((PDF_MAGIC, GZIP_MAGIC, ZIP_MAGIC)):
            return content
    raise DocumentError(f"{what}: no PDF inside the zip archive")


def count_pages(pdf: bytes) -> int | None:
    """Cheap page count (page objects); None when the PDF hides them in object streams."""
    count = len(_PAGE.findall(pdf))
    return count or None


def safe_name(*parts: str) -> str:
    return "-".join(_UNSAFE.sub("_", p).strip("_") or "_" for p in parts if p)


# fsspec protocol -> the extra that installs its package (pyproject optional-dependencies).
PIP_EXTRAS = {
    "s3": "s3",
    "s3a": "s3",
    "gs": "gcs",
    "gcs": "gcs",
    "az": "azure",
    "abfs": "azure",
    "abfss": "azure",
}
PROBE_NAME = ".tap-ad-invoices-write-probe"


def preflight_destination(settings: DocumentSettings) -> None:
    """Prove the destination can take a document, before any API call is made.

    Local folders are created and a probe file written and removed; for an fsspec
    URL the protocol must be known and its package importable (no network call:
    credentials and buckets are the object store's to check).
    """
    destination = settings.destination
    if not destination:
        return
    protocol = _protocol(destination)
    if protocol in ("file", "local"):
        _probe_local_folder(destination)
        return
    try:
        fsspec.get_filesystem_class(protocol)
    except ValueError:
        raise ConfigError(
            "documents.destination",
            f"unknown storage protocol {protocol}:// (use a local folder or an fsspec URL "
            "such as s3://bucket/prefix)",
        ) from None
    except ImportError:
        extra = PIP_EXTRAS.get(protocol)
        install = f"pip install 'tap-ad-invoices[{extra}]'" if extra else "install its package"
        raise ConfigError(
            "documents.destination",
            f"{protocol}:// needs a package that is not installed: {install}",
        ) from None


def _protocol(destination: str) -> str:
    protocol = fsspec.core.split_protocol(destination)[0]
    return protocol or "file"


def _probe_local_folder(destination: str) -> None:
    fs, path = fsspec.core.url_to_fs(destination)
    probe = f"{path.rstrip('/')}/{PROBE_NAME}"
    try:
        fs.makedirs(path, exist_ok=True)
        fs.pipe_file(probe, b"probe")
        fs.rm_file(probe)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(
            "documents.destination", f"cannot write to {destination}: {reason}"
        ) from None


def write_atomically(uri: str, data: bytes) -> None:
    """Write `data` so that `uri` holds either nothing or the whole document.

    Local files go to a temporary name in the same folder, then are renamed (atomic
    on one filesystem); a killed run leaves at most a hidden `.part` file. Object
    stores publish an object only when its single upload completes, so one put is
    already atomic there.
    """
    fs, path = fsspec.core.url_to_fs(uri)
    if not isinstance(fs, LocalFileSystem):
        fs.pipe_file(path, data)
        return
    folder, name = os.path.split(path)
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=folder)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


class DocumentStore:
    def __init__(self, settings: DocumentSettings) -> None:
        self.settings = settings

    def uri_for(self, *, source: str, account: str, name: str) -> str | None:
        if not self.settings.destination:
            return None
        base = self.settings.destination.rstrip("/")
        return f"{base}/{safe_name(source)}/{safe_name(account)}/{safe_name(name)}.pdf"

    def store(self, pdf: bytes, *, source: str, account: str, name: str) -> StoredDocument:
        """Keep `pdf` as configured; the stored path derives from source, account and name."""
        sha256 = hashlib.sha256(pdf).hexdigest()
        uri = self.uri_for(source=source, account=account, name=name)
        if uri is not None:
            write_atomically(uri, pdf)
        content = base64.b64encode(pdf).decode("ascii") if self.settings.inline else None
        return StoredDocument(sha256, len(pdf), count_pages(pdf), uri, content)

    def already_stored(
        self, known: Mapping[str, Any] | None, *, source: str, account: str, name: str
    ) -> StoredDocument | None:
        """The document a previous run stored, when downloading it again would change nothing.

        `known` is what that run recorded (`remember`). A look-back re-read of an issued
        invoice needs no new download when its file is still where this configuration
        puts it; with `inline`, or when the file is gone or elsewhere, it does.
        """
        if not known or self.settings.inline:
            return None
        uri = self.uri_for(source=source, account=account, name=name)
        if known.get("uri") != uri:
            return None
        if uri is not None:
            fs, path = fsspec.core.url_to_fs(uri)
            if not fs.exists(path):
                return None
        return StoredDocument(known["sha256"], known["size"], known.get("page_count"), uri, None)


def remember(document: StoredDocument) -> dict[str, Any]:
    """What state keeps of a stored document so a later run can skip its download."""
    return {
        "sha256": document.sha256,
        "size": document.size,
        "page_count": document.page_count,
        "uri": document.uri,
    }


class KnownDocuments:
    """The PDFs earlier runs stored, kept in a stream's state, so a look-back re-read reuses
    them instead of downloading them again.

    An issued invoice's PDF does not change (a correction is a new invoice or credit
    memo), so a document whose file is still where this configuration puts it costs no
    call (`DocumentStore.already_stored` says when). `entries` is the state's dict,
    updated in place: {key: what `remember` keeps, plus the caller's fields (an issue
    date, to forget entries the look-back no longer reaches)}.
    """

    def __init__(
        self,
        store: DocumentStore,
        entries: dict[str, Any],
        *,
        also: Mapping[str, Any] | None = None,
    ) -> None:
        self._store = store
        self.entries = entries
        # Read by download threads while the main thread notes new documents; `also`:
        # entries kept elsewhere by an earlier form of the config (still reusable).
        self._at_start = {**(also or {}), **entries}
        self._lock = threading.Lock()
        self.reused = 0

    def earlier(self, key: str) -> Mapping[str, Any]:
        """What an earlier run noted for `key` ({} if nothing)."""
        return self._at_start.get(key) or {}

    def reuse(
        self,
        key: str,
        *,
        source: str,
        account: str,
        name: str,
        unchanged: Mapping[str, Any] | None = None,
    ) -> StoredDocument | None:
        """The stored document, if any; `unchanged` are fields `note` kept that must still
        hold (a payment status a PDF may print), else it is downloaded again."""
        known = self._at_start.get(key)
        if known and any(known.get(k) != v for k, v in (unchanged or {}).items()):
            return None
        stored = self._store.already_stored(known, source=source, account=account, name=name)
        if stored is not None:
            with self._lock:
                self.reused += 1
        return stored

    def note(self, key: str, document: StoredDocument, **fields: Any) -> None:
        """Remember a document whose record is about to be written."""
        self.entries[key] = {**remember(document), **fields}

    def forget(self, unreachable: Callable[[str, Mapping[str, Any]], bool]) -> None:
        """Drop the entries the next run's look-back will not reach: state stays small."""
        for key in [k for k, entry in self.entries.items() if unreachable(k, entry)]:
            del self.entries[key]
