"""Listening to the finished channel: the id of each job whose final state landed
(`scripts.WRITE_UNLESS_FINAL` publishes it), for the gateways' long polls (`gateway.wakeups`)."""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis


@dataclass(frozen=True)
class Announcement:
    """Redis confirming the subscription (`job_id` None: listening from here on), or a job
    whose final state landed."""

    job_id: str | None = None


class FinishedAnnouncements:
    """One subscription, open while `AsyncStore.finished_announcements` is entered."""

    def __init__(self, pubsub: aioredis.client.PubSub):
        self._pubsub = pubsub

    async def next(self, timeout_s: float) -> Announcement | None:
        """The next announcement, or None if none came within `timeout_s`; raises Redis's
        connection errors when the subscription is lost."""
        message = await self._pubsub.get_message(timeout=timeout_s)
        if message is None:
            return None
        if message["type"] == "subscribe":
            return Announcement()
        if message["type"] == "message":
            return Announcement(message["data"].decode())
        return None
