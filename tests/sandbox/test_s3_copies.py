"""S3's copies between the regions cross the inter-region link as bytes: real TCP on loopback
through the relay, to a real receiver (drdrill.sandbox.aws.assets).

Lower bounds only for time (a copy can be slower on a busy machine, never faster than the
link); what a partition holds is checked by what arrives, not by how fast.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from drdrill.sandbox.aws.assets import CopyFailed, CopyReceiver, send_copy
from drdrill.sandbox.link import InterRegionLink, LinkShape, Route

pytestmark = pytest.mark.slow  # real TCP through the relay's delays and partitions

HOST = "127.0.0.1"
LATENCY_S = 0.05


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


class _Bucket:
    """The DR bucket as the receiver fills it: each key with its bytes and arrival."""

    def __init__(self) -> None:
        self.objects: dict[str, tuple[bytes, float]] = {}
        self.up = True

    def store(self, key: str, data: bytes) -> None:
        self.objects[key] = (data, time.monotonic())


@pytest.fixture
def bucket() -> _Bucket:
    return _Bucket()


@pytest.fixture
def link(bucket: _Bucket) -> Iterator[InterRegionLink]:
    receiver = CopyReceiver((HOST, _free_port()), bucket.store, accepting=lambda: bucket.up)
    receiver.start()
    relay = InterRegionLink(
        [Route("s3-primary-to-dr", (HOST, _free_port()), receiver.address)],
        LinkShape(latency_s=LATENCY_S),
    )
    relay.start()
    yield relay
    relay.stop()
    receiver.stop()


def _entrance(link: InterRegionLink) -> tuple[str, int]:
    return link.routes[0].listen


def test_a_copy_takes_the_links_latency_each_way(link: InterRegionLink, bucket: _Bucket) -> None:
    data = b'{"n": 1}' * 100
    sent = time.monotonic()
    send_copy(_entrance(link), "assets/1.json", data)
    done = time.monotonic()
    stored, arrived = bucket.objects["assets/1.json"]
    assert stored == data
    # the bytes cross once to arrive, the answer once more to complete
    assert arrived - sent >= LATENCY_S
    assert done - sent >= 2 * LATENCY_S
    assert link.status()["routes"]["s3-primary-to-dr"]["bytes"] >= len(data)


def test_a_copy_sent_during_a_partition_lands_only_when_it_heals(
    link: InterRegionLink, bucket: _Bucket
) -> None:
    assert link.partition()
    errors: list[BaseException] = []

    def copy() -> None:
        try:
            send_copy(_entrance(link), "assets/held.json", b"held")
        except BaseException as exc:
            errors.append(exc)

    sender = threading.Thread(target=copy)
    sender.start()
    time.sleep(1.0)
    assert "assets/held.json" not in bucket.objects, "a copy crossed a partition"
    assert sender.is_alive(), "the copy ended during the partition"
    healed = time.monotonic()
    assert link.heal()
    sender.join(10)
    assert not sender.is_alive() and not errors, errors
    data, arrived = bucket.objects["assets/held.json"]
    assert data == b"held" and arrived >= healed


def test_a_copy_into_a_region_down_is_not_stored_and_fails_to_be_sent_again(
    link: InterRegionLink, bucket: _Bucket
) -> None:
    bucket.up = False
    with pytest.raises(CopyFailed):
        send_copy(_entrance(link), "assets/refused.json", b"x")
    assert "assets/refused.json" not in bucket.objects
    bucket.up = True
    send_copy(_entrance(link), "assets/refused.json", b"x")
    assert bucket.objects["assets/refused.json"][0] == b"x"


def test_a_copy_abandoned_by_its_sender_stops_waiting(link: InterRegionLink) -> None:
    """A sandbox going down does not wait for copies a partition holds."""
    assert link.partition()
    stop = threading.Event()
    errors: list[BaseException] = []

    def copy() -> None:
        try:
            send_copy(_entrance(link), "assets/abandoned.json", b"x", stop=stop.is_set)
        except BaseException as exc:
            errors.append(exc)

    sender = threading.Thread(target=copy)
    sender.start()
    time.sleep(0.3)
    stop.set()
    sender.join(5)
    assert not sender.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], CopyFailed), errors
