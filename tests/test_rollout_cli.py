"""``edgekit deploy``, ``rollouts``, ``rollback`` and ``serve-bundles`` with bad input: one clear
``edgekit: error:`` line and exit 2, never a traceback; and what ``edgekit rollouts`` lists."""

from __future__ import annotations

import shutil

import pytest
from deploy_fleet import cached_test_bundles
from edgekit_testing import assert_one_clear_error, run_edgekit
from report_factory import BundleSpec, make_report

from edgekit._net import free_port
from edgekit.bundle_server import BundleServer
from edgekit.bundle_store import BundleStore
from edgekit.collector import Store


@pytest.fixture(scope="module")
def bundles(request):
    return cached_test_bundles(request.config.cache.mkdir("edgekit-deploy"))


@pytest.fixture
def db(tmp_path):
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    spec = BundleSpec("cnn-rpi4", "rpi4", 2.0, 91.0, 90.5, 1000)
    with Store(url) as store:
        store.add_report(make_report("rpi4-01", bundle=spec))
    return url


def _deploy(bundle, db, *args):
    return run_edgekit(
        "deploy",
        bundle,
        "--db",
        db,
        "--broker",
        f"mqtt://127.0.0.1:{free_port()}",
        *args,
        timeout=120,
    )


def test_bad_store_urls_and_unreachable_stores(bundles, db, tmp_path):
    store = tmp_path / "store"
    result = _deploy(bundles.a, db, "--devices", "*", "--store", store, "--store-url", "ftp://x")
    assert_one_clear_error(result, "--store-url must be an http:// or https:// URL")
    nowhere = f"http://127.0.0.1:{free_port()}"
    result = _deploy(bundles.a, db, "--devices", "*", "--store", store, "--store-url", nowhere)
    assert_one_clear_error(result, "cannot reach the bundle store at", "Connection refused")
    # without --store, the store must already hold the bundle
    (tmp_path / "empty").mkdir()
    with BundleServer(tmp_path / "empty") as server:
        result = _deploy(bundles.a, db, "--devices", "*", "--store-url", server.url)
    assert_one_clear_error(result, "has no", "add the bundle with --store DIR")


def test_a_store_serving_other_bytes_under_the_digest(bundles, db, tmp_path):
    mine, served = BundleStore(tmp_path / "mine"), BundleStore(tmp_path / "served")
    entry = mine.add(bundles.a)
    other = served.add(bundles.b)
    # the served folder holds b's archive under a's name: what a mixed-up copy would do
    shutil.copyfile(served.archive_path(other.bundle_digest), served.root / entry.archive_name)
    with BundleServer(served.root) as server:
        result = _deploy(
            bundles.a, db, "--devices", "*", "--store", mine.root, "--store-url", server.url
        )
    assert_one_clear_error(result, "wrong digest", entry.archive_name)


def test_choosing_no_board_or_boards_of_another_profile(bundles, db, tmp_path):
    (tmp_path / "store").mkdir()
    with BundleServer(tmp_path / "store") as server:
        common = ("--store", tmp_path / "store", "--store-url", server.url)
        result = _deploy(bundles.a, db, "--devices", "jetson-*", *common)
        assert_one_clear_error(result, "no board with device ids matching 'jetson-*'")
        result = _deploy(bundles.a, db, "--devices", "rpi4-*", *common)
        assert_one_clear_error(result, "built for x86-64", "rpi4-01 (rpi4)")
        result = _deploy(bundles.a, db, *common)
        assert_one_clear_error(result, "exactly one of --devices GLOB or --profile P")


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (("--devices", "*", "--gate", "latency=2"), ("--gate 'latency=2'",)),
        (("--devices", "*", "--waves", "50%"), ("the last wave must be 100%",)),
        (("--devices", "*", "--canary", "ten"), ("--canary 'ten'",)),
        (("--resume", "rabc"), ("give a BUNDLE to roll out, or --resume",)),
    ],
)
def test_bad_options(bundles, db, tmp_path, args, needles):
    (tmp_path / "store").mkdir()
    with BundleServer(tmp_path / "store") as server:
        result = _deploy(
            bundles.a, db, "--store", tmp_path / "store", "--store-url", server.url, *args
        )
    assert_one_clear_error(result, *needles)


def test_missing_bundles_brokers_and_rollouts(db, tmp_path):
    result = run_edgekit(
        "deploy",
        tmp_path / "nope",
        "--devices",
        "*",
        "--db",
        db,
        "--broker",
        "mqtt://127.0.0.1:1",
        "--store-url",
        "http://127.0.0.1:1",
    )
    assert_one_clear_error(result, "bundle not found")
    for command in (("rollback", "r-unknown"), ("deploy", "--resume", "r-unknown")):
        result = run_edgekit(*command, "--db", db, "--broker", "mqtt://127.0.0.1:1")
        assert_one_clear_error(result, "unknown rollout 'r-unknown'", "edgekit rollouts")
    result = run_edgekit("rollback", "r-unknown", "--db", db, "--broker", "http://x:1883")
    assert_one_clear_error(result, "unknown rollout")  # the rollout is looked up first
    result = run_edgekit("rollouts", "--db", f"sqlite:///{tmp_path / 'none.db'}")
    assert_one_clear_error(result, "no SQLite database at")
    result = run_edgekit("serve-bundles", tmp_path / "no-store", "--port", "0")
    assert_one_clear_error(result, "bundle store not found")


def test_a_bad_broker_url_is_refused_before_a_rollout_is_written(bundles, db, tmp_path):
    (tmp_path / "store").mkdir()
    with BundleServer(tmp_path / "store") as server:
        result = run_edgekit(
            "deploy",
            bundles.a,
            "--devices",
            "*",
            "--db",
            db,
            "--broker",
            "http://broker:1883",
            "--store",
            tmp_path / "store",
            "--store-url",
            server.url,
        )
    assert_one_clear_error(result, "broker URL 'http://broker:1883' must start with mqtt://")
    listed = run_edgekit("rollouts", "--db", db)
    assert "no rollouts" in listed.stdout


def test_rollouts_lists_nothing_before_the_first(db):
    result = run_edgekit("rollouts", "--db", db)
    assert result.returncode == 0, result.stderr
    assert "no rollouts in sqlite:///" in result.stdout
