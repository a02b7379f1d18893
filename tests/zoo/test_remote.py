"""Fetching weights end to end against a local HTTP server: success, cache, corruption,
interrupted transfers, wrong hashes, 404, redirects, mirrors and offline mode."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from kerasseg.zoo import remote
from kerasseg.zoo.remote import (
    ChecksumError,
    DownloadError,
    RemoteFile,
    WeightsNotAvailableError,
)
from tests.zoo.support import LocalServer, sha256_bytes

BODY = np.random.default_rng(0).bytes(300_000)  # several chunks of the downloader


@pytest.fixture()
def server():
    with LocalServer() as running:
        running.files["/models/weights-abc.bin"] = BODY
        yield running


def _file(server, path="/models/weights-abc.bin", **hashes) -> RemoteFile:
    hashes = hashes or {"sha256": sha256_bytes(BODY)}
    return RemoteFile(url=server.url(path), **hashes)


def _cache_listing(home):
    folder = home / "downloads"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_download_is_verified_cached_and_reused(server, isolated_zoo):
    file = _file(server)
    path = remote.fetch(file, progress=True)
    assert path == isolated_zoo / "downloads" / "weights-abc.bin"
    assert path.read_bytes() == BODY
    assert remote.fetch(file) == path
    assert server.requests == ["/models/weights-abc.bin"]  # the second call used the cache
    assert _cache_listing(isolated_zoo) == ["weights-abc.bin"]  # no temporary files left


def test_publisher_hash_prefix_is_enough_and_checked(server):
    prefix = sha256_bytes(BODY)[:8]
    assert remote.fetch(_file(server, sha256_prefix=prefix)).read_bytes() == BODY
    assert "first 8 hex digits" in _file(server, sha256_prefix=prefix).hash_check
    wrong = format((int(prefix, 16) + 1) % 16**8, "08x")
    digest = sha256_bytes(BODY)
    expected = rf"has SHA-256 {digest}, but the metafile expects {wrong} \(first 8 hex digits"
    with pytest.raises(ChecksumError, match=expected):
        remote.fetch(RemoteFile(url=server.url("/models/weights-abc.bin"), sha256_prefix=wrong))


def test_corrupt_cached_file_is_reported_and_fetched_again(server, isolated_zoo, caplog):
    file = _file(server)
    path = remote.fetch(file)
    path.write_bytes(BODY[:1000])  # truncated on disk
    with caplog.at_level(logging.WARNING, logger="kerasseg.zoo.remote"):
        again = remote.fetch(file)
    assert again.read_bytes() == BODY
    assert len(server.requests) == 2
    assert any(
        "corrupt or truncated" in r.getMessage() and str(path) in r.getMessage()
        for r in caplog.records
    )


def test_interrupted_transfer_leaves_nothing_and_says_so(server, isolated_zoo):
    server.truncated.add("/models/weights-abc.bin")
    with pytest.raises(DownloadError, match=r"failed after \d+ bytes") as error:
        remote.fetch(_file(server), progress=False)
    assert not isinstance(error.value, ChecksumError)
    assert server.url("/models/weights-abc.bin") in str(error.value)
    assert _cache_listing(isolated_zoo) == []  # neither the file nor a partial one
    server.truncated.clear()  # a later attempt starts again and succeeds
    assert remote.fetch(_file(server)).read_bytes() == BODY


def test_wrong_hash_is_an_error_and_nothing_is_kept(server, isolated_zoo):
    with pytest.raises(ChecksumError, match=r"has SHA-256 .* but the metafile expects 0{64}"):
        remote.fetch(_file(server, sha256="0" * 64))
    assert _cache_listing(isolated_zoo) == []


def test_http_404_names_the_url(server, isolated_zoo):
    with pytest.raises(DownloadError, match=r"HTTP 404") as error:
        remote.fetch(_file(server, path="/models/missing.bin"))
    assert "/models/missing.bin" in str(error.value)
    assert _cache_listing(isolated_zoo) == []


@pytest.mark.parametrize("status", [301, 302])
def test_redirects_are_followed(server, status):
    server.redirects["/old/weights-abc.bin"] = (status, "/models/weights-abc.bin")
    path = remote.fetch(_file(server, path="/old/weights-abc.bin"))
    assert path.read_bytes() == BODY
    assert server.requests == ["/old/weights-abc.bin", "/models/weights-abc.bin"]


def test_http_mirror_replaces_scheme_and_host(server, monkeypatch):
    server.files["/mirror/models/weights-abc.bin"] = BODY
    monkeypatch.setenv("KERASSEG_MIRROR", server.url("/mirror") + "/")
    # The published host does not exist: only the mirror can serve the file.
    file = RemoteFile(
        url="https://weights.invalid/models/weights-abc.bin", sha256=sha256_bytes(BODY)
    )
    assert remote.fetch(file).read_bytes() == BODY
    assert server.requests == ["/mirror/models/weights-abc.bin"]


def test_local_directory_mirror(tmp_path, monkeypatch):
    (tmp_path / "mirror" / "models").mkdir(parents=True)
    (tmp_path / "mirror" / "models" / "weights-abc.bin").write_bytes(BODY)
    monkeypatch.setenv("KERASSEG_MIRROR", str(tmp_path / "mirror"))
    file = RemoteFile(
        url="https://weights.invalid/models/weights-abc.bin", sha256=sha256_bytes(BODY)
    )
    assert remote.fetch(file).read_bytes() == BODY
    monkeypatch.setenv("KERASSEG_MIRROR", (tmp_path / "mirror").as_uri())
    file.cache_path().unlink()
    assert remote.fetch(file).read_bytes() == BODY
    missing = RemoteFile(url="https://weights.invalid/models/other.bin", sha256="1" * 64)
    with pytest.raises(DownloadError, match=r"The mirror has no file .*models/other\.bin"):
        remote.fetch(missing)


def test_mirrored_url_rule():
    url = "https://download.pytorch.org/models/resnet34-b627a593.pth"
    assert remote.mirrored_url(url, "http://mirror.lan/w/") == (
        "http://mirror.lan/w/models/resnet34-b627a593.pth"
    )
    assert remote.mirrored_url(url, "/srv/w") == "/srv/w/models/resnet34-b627a593.pth"
    assert remote.mirrored_url(url, "") == url


def test_offline_never_touches_the_network(server, isolated_zoo, monkeypatch):
    monkeypatch.setenv("KERASSEG_OFFLINE", "1")
    file = _file(server)
    with pytest.raises(WeightsNotAvailableError) as error:
        remote.fetch(file, what="The test weights", command="kerasseg zoo download some_model")
    message = str(error.value)
    assert server.requests == []
    assert str(isolated_zoo / "downloads" / "weights-abc.bin") in message
    for text in (
        "KERASSEG_HOME",
        "KERASSEG_OFFLINE=1",
        "KERASSEG_MIRROR",
        "kerasseg zoo download some_model",
        "The test weights",
    ):
        assert text in message
    # A verified cached copy is used offline.
    monkeypatch.delenv("KERASSEG_OFFLINE")
    remote.fetch(file)
    monkeypatch.setenv("KERASSEG_OFFLINE", "true")
    assert remote.fetch(file).read_bytes() == BODY
    assert len(server.requests) == 1


def test_bad_settings_and_entries_are_named():
    with pytest.raises(ValueError, match="Exactly one of `sha256` and `sha256_prefix`"):
        RemoteFile(url="https://x.invalid/a.bin")
    with pytest.raises(ValueError, match="64 lowercase hex digits"):
        RemoteFile(url="https://x.invalid/a.bin", sha256="ABC")
    with pytest.raises(ValueError, match="does not end with a file name"):
        RemoteFile(url="https://x.invalid/", sha256_prefix="12345678")


def test_offline_variable_must_be_a_boolean(monkeypatch):
    monkeypatch.setenv("KERASSEG_OFFLINE", "sometimes")
    with pytest.raises(ValueError, match="KERASSEG_OFFLINE must be one of"):
        remote.offline()
