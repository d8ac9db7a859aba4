"""The deployment wire: commands and events validate, round-trip, refuse what they must, and the
two classifiers never raise for anything a sender can put on a topic."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
from fuzz_strategies import FAST, JSON_KEYS, NASTY_JSON, ODD_TEXT, json_bytes, mutated, weighted
from hypothesis import event, given
from hypothesis import strategies as st

from edgekit.deploy_wire import (
    MAX_COMMAND_BYTES,
    DeployAction,
    DeployCommand,
    DeploymentEvent,
    DeploymentPhase,
    FitBudgets,
    RejectedMessage,
    classify_command,
    classify_event,
    deploy_topic,
    deployment_topic,
    parse_command,
    parse_event,
    topic_device,
)
from edgekit.errors import PayloadError

NOW = datetime(2026, 1, 1, tzinfo=UTC)
DIGEST = "ab" * 32


def command(**changes) -> DeployCommand:
    fields = dict(
        rollout_id="r1a2b3c4d",
        device_id="rpi4-01",
        bundle_digest=DIGEST,
        bundle_id="cnn-rpi4",
        url="http://store.example:8080/" + DIGEST + ".tar.gz",
        archive_sha256="cd" * 32,
        archive_size=123_456,
        signature_required=True,
        budgets=FitBudgets(max_model_mb=32, max_ram_mb=512, max_bundle_mb=None),
        measure_windows=3,
        issued_at=NOW,
    )
    return DeployCommand(**{**fields, **changes})


def deployment_event(**changes) -> DeploymentEvent:
    fields = dict(
        message_id=uuid.uuid4().hex,
        device_id="rpi4-01",
        rollout_id="r1a2b3c4d",
        bundle_digest=DIGEST,
        phase=DeploymentPhase.DOWNLOADING,
        at=NOW,
        percent=50.0,
    )
    return DeploymentEvent(**{**fields, **changes})


def test_a_command_round_trips_and_carries_its_schema():
    original = command()
    wire = original.to_json()
    assert json.loads(wire)["schema"] == "edgekit.deploy/1"
    assert parse_command(wire) == original
    assert len(wire) < MAX_COMMAND_BYTES


def test_an_install_says_where_the_bundle_is_and_a_revert_need_not():
    with pytest.raises(ValueError, match="url, archive_sha256 and archive_size"):
        command(url=None)
    revert = command(action=DeployAction.REVERT, url=None, archive_sha256=None, archive_size=None)
    assert parse_command(revert.to_json()).action is DeployAction.REVERT


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://store/x.tar.gz", "http:// or https://"),
        ("http:///x.tar.gz", "with a host"),
        ("https://user:secret@store/x.tar.gz", "credentials"),  # retained: every reader sees it
        ("http://store/" + "x" * 3000, "at most 2048"),
    ],
)
def test_bundle_urls_are_http_with_a_host_and_no_secret(url, why):
    payload = json.loads(command().to_json())
    with pytest.raises(PayloadError, match=why):
        parse_command(json.dumps({**payload, "url": url}).encode())


def test_oversized_and_unknown_payloads_are_refused():
    with pytest.raises(PayloadError, match="exceeds"):
        parse_command(b"{" + b" " * MAX_COMMAND_BYTES + b"}")
    payload = json.loads(command().to_json())
    with pytest.raises(PayloadError, match="Extra inputs"):
        parse_command(json.dumps({**payload, "shell": "rm -rf /"}).encode())
    with pytest.raises(PayloadError, match="schema"):
        parse_command(json.dumps({**payload, "schema": "edgekit.deploy/2"}).encode())


def test_topics_name_the_device_and_nothing_else():
    assert deploy_topic("rpi4-01") == "edgekit/v1/rpi4-01/deploy"
    assert deployment_topic("rpi4-01", "fleet/v1") == "fleet/v1/rpi4-01/deployment"
    assert topic_device("edgekit/v1/rpi4-01/deployment", "deployment") == "rpi4-01"
    for wrong in ("edgekit/v1/rpi4-01/report", "edgekit/v1//deploy", "edgekit/v1/a/b/deploy"):
        with pytest.raises(PayloadError):
            topic_device(wrong, "deploy")


def test_a_board_takes_only_commands_for_itself():
    wire = command().to_json()
    assert classify_command(deploy_topic("rpi4-01"), wire, device_id="rpi4-01") == command()
    # on its own topic, naming another board: not taken
    other = command(device_id="rpi4-02").to_json()
    rejected = classify_command(deploy_topic("rpi4-01"), other, device_id="rpi4-01")
    assert isinstance(rejected, RejectedMessage)
    assert "not for 'rpi4-01'" in rejected.reason
    # a retained state cleared with an empty payload is nothing to do
    assert classify_command(deploy_topic("rpi4-01"), b"", device_id="rpi4-01") is None


def test_an_event_naming_another_board_than_its_topic_is_a_forgery():
    event_wire = deployment_event(device_id="rpi4-02").to_json()
    rejected = classify_event(deployment_topic("rpi4-01"), event_wire)
    assert isinstance(rejected, RejectedMessage)
    assert "does not match topic" in rejected.reason
    accepted = classify_event(deployment_topic("rpi4-02"), event_wire)
    assert accepted == parse_event(event_wire)


def test_percent_is_a_percent():
    for bad in (-1.0, 100.5, float("nan")):
        with pytest.raises(ValueError, match="percent"):
            deployment_event(percent=bad)


COMMAND = json.loads(command().to_json())
EVENT = json.loads(deployment_event().to_json())


@st.composite
def deploy_messages(draw: st.DrawFn) -> tuple[str, bytes]:
    device = draw(weighted((4, st.sampled_from(["rpi4-01", "rpi4-02"])), (1, ODD_TEXT)))
    kind = draw(st.sampled_from(["deploy", "deploy", "deployment", "report"]))
    topic = draw(weighted((5, st.just(f"edgekit/v1/{device}/{kind}")), (1, ODD_TEXT)))
    payload = draw(
        weighted(
            (3, st.just(json_bytes({**COMMAND, "device_id": device}, ascii_only=False))),
            (3, st.just(json_bytes({**EVENT, "device_id": device}, ascii_only=False))),
            (1, st.binary(max_size=256)),
            (2, mutated(COMMAND, NASTY_JSON, JSON_KEYS).map(json_bytes)),
            (2, mutated(EVENT, NASTY_JSON, JSON_KEYS).map(json_bytes)),
        )
    )
    return topic, payload


@FAST
@given(message=deploy_messages())
def test_classify_command_never_raises(message: tuple[str, bytes]) -> None:
    topic, payload = message
    got = classify_command(topic, payload, device_id="rpi4-01")
    event(type(got).__name__)
    if isinstance(got, DeployCommand):
        assert got.device_id == "rpi4-01" == topic_device(topic, "deploy")
        assert parse_command(got.to_json()) == got
    elif got is None:
        assert payload == b""
    else:
        assert isinstance(got, RejectedMessage)
        assert got.reason


@FAST
@given(message=deploy_messages())
def test_classify_event_never_raises(message: tuple[str, bytes]) -> None:
    topic, payload = message
    got = classify_event(topic, payload)
    event(type(got).__name__)
    if isinstance(got, DeploymentEvent):
        assert got.device_id == topic_device(topic, "deployment")
        assert parse_event(got.to_json()) == got
    else:
        assert isinstance(got, RejectedMessage)
        assert got.reason
