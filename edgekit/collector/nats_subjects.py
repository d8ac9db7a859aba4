"""MQTT topics as NATS subjects and back, the way nats-server's MQTT layer maps them (2.10+).

``/`` separates levels in a topic and ``.`` tokens in a subject, so ``edgekit/v1/rpi4-01/report``
is ``edgekit.v1.rpi4-01.report``. A ``.`` inside a level becomes ``//`` (``rpi4.01`` is the
single token ``rpi4//01``), and empty levels (a leading, trailing or doubled ``/``) become a
literal ``/`` token. Ported from ``mqttToNATSSubjectConversion`` and ``natsSubjectToMQTTTopic``
in nats-server's ``server/mqtt.go``; pure functions, no nats-py.
"""

from __future__ import annotations

from edgekit.errors import ConfigError

_SEP, _DOT = "/", "."
_WHITESPACE = frozenset(" \t\n\r\f\x7f")


def topic_to_subject(topic: str) -> str:
    """The subject nats-server publishes an MQTT ``topic`` on; ConfigError for a topic it
    refuses (whitespace, wildcards)."""
    out: list[str] = []
    last = len(topic) - 1
    for i, char in enumerate(topic):
        if char in _WHITESPACE:
            raise ConfigError(f"topic {topic!r}: NATS cannot carry whitespace in a topic")
        if char in "+#":
            raise ConfigError(f"topic {topic!r}: wildcards are not part of a topic name")
        if char == _SEP:
            if i == 0 or (out and out[-1] == _DOT):
                out += [_SEP, _DOT]
            elif i == last or topic[i + 1] == _SEP:
                out += [_DOT, _SEP]
            else:
                out.append(_DOT)
        elif char == _DOT:
            out += [_SEP, _SEP]
        else:
            out.append(char)
    if out and out[-1] == _DOT:
        out.append(_SEP)
    return "".join(out)


def subject_to_topic(subject: str) -> str:
    """The MQTT topic of a subject nats-server made from one (the reverse of
    :func:`topic_to_subject`); total: any string gives some topic."""
    out: list[str] = []
    i, last = 0, len(subject) - 1
    while i <= last:
        char = subject[i]
        if char == _SEP:
            if i < last and subject[i + 1] in (_DOT, _SEP):
                out.append(_SEP if subject[i + 1] == _DOT else _DOT)
                i += 1
        elif char == _DOT:
            out.append(_SEP)
        else:
            out.append(char)
        i += 1
    return "".join(out)
