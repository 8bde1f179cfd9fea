"""The live hub: fan-out, filtering and bounded subscriber buffers."""

from receiver.live import LiveHub


async def test_subscribers_get_only_what_they_accept() -> None:
    hub = LiveHub()
    findings = hub.subscribe(lambda message: message.kind == "finding")
    everything = hub.subscribe()
    hub.publish("event", "vm-a", {"n": 1})
    hub.publish("finding", "vm-a", {"n": 2})
    got, missed = await findings.next_batch(0.1)
    assert [m.data["n"] for m in got] == [2] and missed == 0
    got, _ = await everything.next_batch(0.1)
    assert [m.data["n"] for m in got] == [1, 2]


async def test_slow_subscriber_is_bounded_and_told_what_it_missed() -> None:
    hub = LiveHub()
    slow = hub.subscribe(capacity=10)
    for n in range(25):
        hub.publish("event", "vm-a", {"n": n})
    got, missed = await slow.next_batch(0.1)
    assert [m.data["n"] for m in got] == list(range(15, 25))
    assert missed == 15
    hub.unsubscribe(slow)
    assert hub.subscribers == 0
