"""The bundle store and its HTTP server, and the board's download: digest-addressed entries,
Range requests as RFC 9110 has them, and a download that resumes and never keeps wrong bytes."""

from __future__ import annotations

import hashlib
import http.client
import shutil
import threading

import pytest
from deploy_fleet import cached_test_bundles

from edgekit.bundle import archive_bundle
from edgekit.bundle_server import BundleServer, byte_range
from edgekit.bundle_store import BundleStore, manifest_digest
from edgekit.errors import BundleError, BundleIntegrityError, DeployError
from edgekit.runtime.bundle_fetch import FetchInterrupted, fetch_archive


@pytest.fixture(scope="session")
def bundles(request):
    return cached_test_bundles(request.config.cache.mkdir("edgekit-deploy"))


@pytest.fixture
def store(tmp_path, bundles):
    store = BundleStore(tmp_path / "store")
    return store, store.add(bundles.a)


def _get(server: BundleServer, name: str, *, method: str = "GET", range_: str | None = None):
    host, port = server.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request(method, f"/{name}", headers={"Range": range_} if range_ else {})
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response, body


def test_the_store_addresses_bundles_by_their_manifest_digest(tmp_path, bundles, store):
    store_, entry = store
    assert entry.bundle_digest == manifest_digest(bundles.a)
    archive = store_.archive_path(entry.bundle_digest)
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == entry.archive_sha256
    assert entry.archive_size == archive.stat().st_size
    assert entry.signing_key_id is not None
    # the same bundle again, even as its own archive: the entry that is there
    packed = archive_bundle(bundles.a, tmp_path / "a.tar.gz")
    assert store_.add(packed) == entry
    assert [e.bundle_digest for e in store_.entries()] == [entry.bundle_digest]


def test_the_store_refuses_what_is_not_a_whole_bundle(tmp_path, bundles, store):
    store_, entry = store
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "manifest.json").write_text("{}")
    with pytest.raises(BundleError, match="invalid manifest"):
        store_.add(broken)
    # an entry changed on disk is not handed out again as if it were whole
    store_.archive_path(entry.bundle_digest).write_bytes(b"not the archive")
    with pytest.raises(BundleError, match="no longer matches its record"):
        store_.add(bundles.a)


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 10, None),
        ("bytes=0-3", 10, (0, 3)),
        ("bytes=4-", 10, (4, 9)),
        ("bytes=-3", 10, (7, 9)),
        ("bytes=2-100", 10, (2, 9)),
        ("bytes=0-1,4-5", 10, None),  # several ranges: the whole file, as RFC 9110 allows
        ("pages=1-2", 10, None),
    ],
)
def test_byte_ranges(header, size, expected):
    assert byte_range(header, size) == expected


def test_the_server_answers_ranges_heads_and_unknown_names(tmp_path, store):
    store_, entry = store
    data = store_.archive_path(entry.bundle_digest).read_bytes()
    with BundleServer(store_.root) as server:
        whole, body = _get(server, entry.archive_name)
        assert (whole.status, body) == (200, data)
        assert whole.getheader("Accept-Ranges") == "bytes"
        part, body = _get(server, entry.archive_name, range_="bytes=100-")
        assert part.status == 206
        assert part.getheader("Content-Range") == f"bytes 100-{len(data) - 1}/{len(data)}"
        assert body == data[100:]
        past, _ = _get(server, entry.archive_name, range_=f"bytes={len(data)}-")
        assert (past.status, past.getheader("Content-Range")) == (416, f"bytes */{len(data)}")
        head, body = _get(server, entry.archive_name, method="HEAD")
        assert (head.status, body, head.getheader("Content-Length")) == (200, b"", str(len(data)))
        record, body = _get(server, f"{entry.bundle_digest}.json")
        assert record.status == 200
        assert entry.bundle_digest.encode() in body
        # only the store's own names: nothing beside them, nothing above the folder
        (store_.root / "notes.txt").write_text("private")
        for name in ("notes.txt", "..%2Fetc%2Fpasswd", "0" * 64 + ".tar.gz"):
            missing, _ = _get(server, name)
            assert missing.status == 404, name


def test_a_download_resumes_from_what_it_holds(tmp_path, store):
    store_, entry = store
    data = store_.archive_path(entry.bundle_digest).read_bytes()
    part = tmp_path / "staging" / f"{entry.bundle_digest}.tar.gz.part"
    part.parent.mkdir()
    part.write_bytes(data[: len(data) // 3])  # what a killed download left
    with BundleServer(store_.root) as server:
        final = fetch_archive(
            entry.url(server.url), part, size=entry.archive_size, sha256=entry.archive_sha256
        )
        asked = [(s.start, s.status) for s in server.served]
    assert final.read_bytes() == data
    assert not part.exists()
    assert asked == [(len(data) // 3, 206)]  # only the rest went over the wire


def test_wrong_bytes_are_never_kept(tmp_path, store):
    store_, entry = store
    data = store_.archive_path(entry.bundle_digest).read_bytes()
    part = tmp_path / f"{entry.bundle_digest}.tar.gz.part"
    part.write_bytes(b"X" * 100)  # a prefix that is not the archive's
    with BundleServer(store_.root) as server:
        with pytest.raises(BundleIntegrityError, match="wrong or changed file"):
            fetch_archive(entry.url(server.url), part, size=len(data), sha256=entry.archive_sha256)
        assert not part.exists()
        assert not part.with_name(part.name.removesuffix(".part")).exists()
        # the next attempt starts afresh and gets it whole
        final = fetch_archive(
            entry.url(server.url), part, size=len(data), sha256=entry.archive_sha256
        )
    assert final.read_bytes() == data


def test_an_interrupted_download_keeps_its_prefix(tmp_path, store):
    store_, entry = store
    part = tmp_path / f"{entry.bundle_digest}.tar.gz.part"
    stop = threading.Event()
    with BundleServer(store_.root, rate_limit_bps=8 * 1024) as server:

        def progress(done: int, total: int) -> None:
            if done >= 4096:
                stop.set()

        with pytest.raises(FetchInterrupted):
            fetch_archive(
                entry.url(server.url),
                part,
                size=entry.archive_size,
                sha256=entry.archive_sha256,
                stop=stop.is_set,
                on_progress=progress,
            )
    data = store_.archive_path(entry.bundle_digest).read_bytes()
    kept = part.read_bytes()
    assert 0 < len(kept) < len(data)
    assert data.startswith(kept)


def test_store_errors_are_one_clear_sentence(tmp_path, store):
    from edgekit._net import free_port

    store_, entry = store
    part = tmp_path / "x.tar.gz.part"
    nowhere = f"http://127.0.0.1:{free_port()}/{entry.archive_name}"
    with pytest.raises(DeployError, match="cannot reach the bundle store"):
        fetch_archive(nowhere, part, size=10, sha256="0" * 64, timeout_s=2)
    with BundleServer(store_.root) as server, pytest.raises(DeployError, match="answered 404"):
        fetch_archive(f"{server.url}/{'1' * 64}.tar.gz", part, size=10, sha256="0" * 64)
    with pytest.raises(DeployError, match="not a directory"):
        BundleServer(tmp_path / "no-such-store")


def test_an_archive_unpacking_to_more_than_its_manifest_lists_is_refused_unread(bundles, tmp_path):
    """A bundle folder with a file the manifest does not list (here 32 MB of zeros, a few KB
    gzipped): the board sees it from the archive's headers, before writing anything."""
    from edgekit.bundle import read_manifest
    from edgekit.runtime.bundle_fit import DoesNotFit, check_unpacked, manifest_in_archive

    padded = tmp_path / "padded"
    shutil.copytree(bundles.a, padded)
    (padded / "padding.bin").write_bytes(bytes(32 * 2**20))
    archive = archive_bundle(padded, tmp_path / "padded.tar.gz")
    assert archive.stat().st_size < 2**20
    raw, unpacked = manifest_in_archive(archive)
    assert raw == (bundles.a / "manifest.json").read_bytes()
    with pytest.raises(DoesNotFit, match="unpacks to"):
        check_unpacked(read_manifest(bundles.a), len(raw), unpacked)
    whole = archive_bundle(bundles.a, tmp_path / "a.tar.gz")
    check_unpacked(read_manifest(bundles.a), len(raw), manifest_in_archive(whole)[1])
