"""The webhook notifier against a real HTTP receiver."""

from __future__ import annotations

from campaign_common.notifier import WebhookNotifier, WebhookSettings
from tests.support import WebhookReceiver, eventually


async def test_notifier_retries_until_delivered_in_order() -> None:
    with WebhookReceiver(fail_first=2) as receiver:
        notifier = WebhookNotifier(WebhookSettings(receiver.hook_url, initial_delay_s=0.01))
        notifier.start()
        notifier.notify({"event": "run.dead_lettered", "runId": "a"})
        notifier.notify({"event": "run.dead_lettered", "runId": "b"})

        async def both() -> bool:
            return len(receiver.received) == 2

        await eventually(both, timeout_s=10, what="two alerts delivered")
        await notifier.stop()
    assert [alert["runId"] for alert in receiver.received] == ["a", "b"]
    assert receiver.requests == 4 and notifier.delivered == 2


async def test_notifier_gives_up_after_max_attempts_without_blocking() -> None:
    with WebhookReceiver(fail_first=100) as receiver:
        settings = WebhookSettings(receiver.hook_url, initial_delay_s=0.01, max_attempts=3)
        notifier = WebhookNotifier(settings)
        notifier.start()
        notifier.notify({"event": "x"})  # returns at once whatever the receiver does

        async def three_tries() -> bool:
            return receiver.requests >= 3

        await eventually(three_tries, timeout_s=10, what="three attempts")
        await notifier.stop(grace_s=1.0)
    assert receiver.requests == 3 and notifier.delivered == 0
