"""Fetching published weight files into the cache: hash-checked, atomic, offline-aware.

The HTTP transfer itself is `pooch`'s (``pooch.HTTPDownloader``: `requests`, streamed, with a
tqdm progress bar, redirects followed). This module adds what the zoo needs around it:

* **Cache.** Files live under ``$KERASSEG_HOME`` (default ``~/.cache/kerasseg``), downloads
  in ``downloads/<file name from the URL>``.
* **Verification before use.** A cached file is hashed every time it is asked for. The
  expected value is the full SHA-256 when the metafile knows it, else the publisher's prefix
  of it (torchvision publishes the first 8 hex digits in the file name,
  ``resnet34-b627a593.pth``, and checks only those; so do we, and `kerasseg.zoo.info` says
  so). A cached file that does not match is reported (a logged warning), deleted and fetched
  again; it is never returned.
* **Atomic writes.** The transfer goes to a temporary file beside the target, which is hashed
  and only then renamed into place; an interrupted or wrong transfer leaves nothing behind.
  Transfers are not resumed: an interrupted one starts again from the beginning.
* **Offline.** ``KERASSEG_OFFLINE=1`` never touches the network: a file that is not cached
  raises `WeightsNotAvailableError`, which lists where it looked, the environment variables
  and the ``kerasseg zoo download`` command to run.
* **Mirror.** ``KERASSEG_MIRROR`` replaces the scheme and host of every URL (see
  `mirrored_url`); it may be an ``http(s)://`` base URL or a local directory (or
  ``file://`` URL) laid out the same way. Only the mirror is tried when it is set.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import re
import shutil
import urllib.parse
from collections.abc import Sequence
from pathlib import Path

from kerasseg.utils.files import atomic_path

logger = logging.getLogger(__name__)

ENV_HOME = "KERASSEG_HOME"
ENV_OFFLINE = "KERASSEG_OFFLINE"
ENV_MIRROR = "KERASSEG_MIRROR"
DEFAULT_HOME = "~/.cache/kerasseg"
DOWNLOADS = "downloads"

#: Seconds `requests` waits for the server to connect or send the next bytes.
TIMEOUT = 60
_CHUNK = 1 << 20
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SHA256_PREFIX = re.compile(r"^[0-9a-f]{8,63}$")


class WeightsNotAvailableError(FileNotFoundError):
    """Weights are neither in the cache nor allowed/able to be fetched (offline, untrained)."""


class DownloadError(OSError):
    """A transfer failed (HTTP error, connection lost, truncated body, unreadable mirror)."""


class ChecksumError(DownloadError):
    """A fetched file's SHA-256 does not match the one the metafile publishes."""


# --------------------------------------------------------------------------------------------
# Environment


def home() -> Path:
    """The cache root: ``$KERASSEG_HOME``, default ``~/.cache/kerasseg`` (read on every call)."""
    return Path(os.environ.get(ENV_HOME) or DEFAULT_HOME).expanduser()


def offline() -> bool:
    """Whether ``KERASSEG_OFFLINE`` forbids network access (``1``/``true``/``yes``/``on``)."""
    value = os.environ.get(ENV_OFFLINE, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(
        f"Environment variable {ENV_OFFLINE} must be one of {_TRUE + _FALSE[1:]} (or unset), "
        f"got {os.environ[ENV_OFFLINE]!r}."
    )


def mirror() -> str | None:
    """``$KERASSEG_MIRROR`` without a trailing slash, or None when unset or empty."""
    value = os.environ.get(ENV_MIRROR, "").strip()
    return value.rstrip("/") or None


def mirrored_url(url: str, mirror_base: str | None = None) -> str:
    """`url` with its scheme and host replaced by the mirror (default ``$KERASSEG_MIRROR``).

    The URL's path (and query) is kept: with ``KERASSEG_MIRROR=http://mirror.lan/weights``,
    ``https://download.pytorch.org/models/resnet34-b627a593.pth`` is fetched from
    ``http://mirror.lan/weights/models/resnet34-b627a593.pth``; with
    ``KERASSEG_MIRROR=/srv/weights`` it is copied from
    ``/srv/weights/models/resnet34-b627a593.pth``. Without a mirror, `url` is returned.
    """
    base = mirror() if mirror_base is None else mirror_base.rstrip("/")
    if not base:
        return url
    parts = urllib.parse.urlsplit(url)
    tail = parts.path + (f"?{parts.query}" if parts.query else "")
    return base + (tail if tail.startswith("/") else "/" + tail)


def environment_summary() -> str:
    """One line per variable: its value and meaning, for error messages."""
    return "\n".join(
        [
            f"  {ENV_HOME}={os.environ.get(ENV_HOME, '')!s} (cache folder; unset: "
            f"{DEFAULT_HOME}; now {home()})",
            f"  {ENV_OFFLINE}={os.environ.get(ENV_OFFLINE, '')} (1: never use the network)",
            f"  {ENV_MIRROR}={os.environ.get(ENV_MIRROR, '')} (replaces the scheme and host of "
            f"every weights URL)",
        ]
    )


# --------------------------------------------------------------------------------------------
# Published files


@dataclasses.dataclass(frozen=True)
class RemoteFile:
    """A published file and what is known of its content.

    Attributes:
        url: ``http(s)://`` URL as published.
        sha256: Full SHA-256 (64 lowercase hex digits), or None.
        sha256_prefix: The publisher's prefix of the SHA-256 (at least 8 hex digits) when the
            full hash is not published (torchvision: the 8 digits in the file name), or None.
        size_bytes: Exact size in bytes, if published.
        size_mb: Size in MB as the publisher states it (torchvision's ``_file_size``), if any.
    """

    url: str
    sha256: str | None = None
    sha256_prefix: str | None = None
    size_bytes: int | None = None
    size_mb: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.url, str) or not self.url.startswith(("http://", "https://")):
            raise ValueError(f"`url` must be an http(s) URL, got {self.url!r}.")
        if (self.sha256 is None) == (self.sha256_prefix is None):
            raise ValueError(
                f"Exactly one of `sha256` and `sha256_prefix` must be given for {self.url}; got "
                f"sha256={self.sha256!r}, sha256_prefix={self.sha256_prefix!r}."
            )
        if self.sha256 is not None and not _SHA256.match(str(self.sha256)):
            raise ValueError(f"`sha256` must be 64 lowercase hex digits, got {self.sha256!r}.")
        if self.sha256_prefix is not None and not _SHA256_PREFIX.match(str(self.sha256_prefix)):
            raise ValueError(
                f"`sha256_prefix` must be 8 to 63 lowercase hex digits, got {self.sha256_prefix!r}."
            )
        if not self.filename:
            raise ValueError(f"`url` {self.url!r} does not end with a file name.")

    @property
    def filename(self) -> str:
        """The last path component of the URL (the cached file's name)."""
        return urllib.parse.unquote(urllib.parse.urlsplit(self.url).path.rsplit("/", 1)[-1])

    @property
    def expected_hash(self) -> str:
        return self.sha256 or self.sha256_prefix or ""

    @property
    def hash_check(self) -> str:
        """How a file is verified, in words (shown by `kerasseg.zoo.info`)."""
        if self.sha256:
            return "full SHA-256"
        return (
            f"first {len(self.sha256_prefix or '')} hex digits of the SHA-256 only (all the "
            f"publisher states)"
        )

    def matches(self, digest: str) -> bool:
        """Whether a file with SHA-256 `digest` is this file (full hash or prefix)."""
        return digest.startswith(self.expected_hash) if self.expected_hash else False

    def cache_path(self) -> Path:
        return home() / DOWNLOADS / self.filename


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 of a file, as 64 lowercase hex digits."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def check_cached(file: RemoteFile, path: Path | None = None) -> tuple[str, str]:
    """Status of the cached copy of `file`: ``("ok" | "corrupt" | "missing", detail)``."""
    path = path or file.cache_path()
    if not path.is_file():
        return "missing", str(path)
    digest = sha256_file(path)
    if file.matches(digest):
        return "ok", f"sha256 {digest}"
    return "corrupt", (
        f"sha256 {digest} does not match the expected {file.expected_hash} "
        f"({path.stat().st_size} bytes)"
    )


def unavailable_message(
    what: str, looked: Sequence[tuple[Path, str]], command: str, reason: str
) -> str:
    """The text of a `WeightsNotAvailableError`: where it looked, the variables, the command."""
    places = "\n".join(
        f"  {path}  ({description}: {'present but invalid' if path.exists() else 'missing'})"
        for path, description in looked
    )
    return (
        f"{what}: {reason}.\nLooked for:\n{places}\nEnvironment:\n{environment_summary()}\n"
        f"To fetch it, run (where the network is reachable, then copy the cache folder here "
        f"if needed):\n  {command}"
    )


def fetch(
    file: RemoteFile,
    *,
    what: str = "",
    command: str = "",
    progress: bool = True,
    also_looked: Sequence[tuple[Path, str]] = (),
) -> Path:
    """The cached, verified copy of `file`, downloading it if needed.

    Args:
        file: What to fetch.
        what: Description for messages (e.g. ``"ImageNet weights of resnet34"``).
        command: The ``kerasseg zoo download ...`` command quoted in the offline error.
        progress: Show a progress bar while downloading.
        also_looked: Further places the caller already checked, listed in the offline error.

    Returns:
        The path in the cache, hashed and matching the metafile's hash.

    Raises:
        WeightsNotAvailableError: offline (``KERASSEG_OFFLINE=1``) and not cached.
        DownloadError: the transfer failed (HTTP status, interrupted, unreadable mirror).
        ChecksumError: the transferred file does not match the published hash.
    """
    path = file.cache_path()
    what = what or file.filename
    status, detail = check_cached(file, path)
    if status == "ok":
        logger.debug("Using cached %s (%s)", path, detail)
        return path
    if status == "corrupt":
        logger.warning(
            "Cached file %s is corrupt or truncated (%s); deleting it and fetching it again.",
            path,
            detail,
        )
        path.unlink()
    if offline():
        looked = [*also_looked, (path, f"download of {file.url}")]
        raise WeightsNotAvailableError(
            unavailable_message(
                what,
                looked,
                command or "kerasseg zoo download NAME",
                f"not in the cache, and {ENV_OFFLINE}=1 forbids downloading",
            )
        )
    source = mirrored_url(file.url)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as partial:
        if source.startswith(("http://", "https://")):
            _http_download(source, partial, progress=progress)
        else:
            _copy_local(source, partial)
        digest = sha256_file(partial)
        if not file.matches(digest):
            raise ChecksumError(
                f"The file fetched from {source} has SHA-256 {digest}, but the metafile expects "
                f"{file.expected_hash} ({file.hash_check}); it was discarded. The server (or "
                f"mirror) serves a different or damaged file."
            )
    logger.info("Saved %s (sha256 %s) from %s", path, digest, source)
    return path


def _http_download(url: str, destination: Path, *, progress: bool) -> None:
    import pooch
    import requests

    logger.info("Downloading %s", url)
    downloader = pooch.HTTPDownloader(progressbar=progress, chunk_size=_CHUNK, timeout=TIMEOUT)
    try:
        downloader(url, str(destination), None)
    except requests.HTTPError as error:
        status = error.response.status_code if error.response is not None else "?"
        raise DownloadError(f"Downloading {url} failed: HTTP {status} ({error}).") from error
    except (requests.RequestException, OSError) as error:
        received = destination.stat().st_size if destination.exists() else 0
        raise DownloadError(
            f"Downloading {url} failed after {received} bytes: {type(error).__name__}: {error}. "
            f"Nothing was kept; run the command again to restart the transfer."
        ) from error


def _copy_local(source: str, destination: Path) -> None:
    local = (
        Path(urllib.parse.unquote(urllib.parse.urlsplit(source).path))
        if source.startswith("file://")
        else Path(source)
    )
    if not local.is_file():
        raise DownloadError(
            f"The mirror has no file {local} ({ENV_MIRROR}={mirror()}); the mirror must keep the "
            f"URL's path below its root."
        )
    logger.info("Copying %s from the mirror", local)
    try:
        shutil.copyfile(local, destination)
    except OSError as error:
        raise DownloadError(f"Copying {local} from the mirror failed: {error}") from error
