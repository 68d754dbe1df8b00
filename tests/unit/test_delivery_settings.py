"""PNEUMO_BROKER_ACK_EMULATION reaches kombu, and the sweeper waits accordingly."""

from __future__ import annotations

from shared.config import Settings
from shared.queue import make_celery
from worker.serving.recovery import stale_after_s


def test_ack_emulation_off_reaches_kombu_and_shortens_the_sweepers_wait() -> None:
    on, off = Settings(visibility_timeout_s=300), Settings(visibility_timeout_s=300,
                                                           broker_ack_emulation=False)  # fmt: skip
    assert make_celery(on).conf.broker_transport_options["ack_emulation"] is True
    assert make_celery(off).conf.broker_transport_options["ack_emulation"] is False
    # On, kombu's restore gets the first visibility timeout; off, the sweeper is the restore.
    assert (stale_after_s(on), stale_after_s(off)) == (600.0, 300.0)
