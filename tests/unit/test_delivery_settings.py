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


def test_an_amqp_broker_gets_a_quorum_queue_and_publisher_confirms_not_redis_options() -> None:
    """The records stay in Redis; the queue both sides declare is a quorum queue; no Redis
    transport option (visibility timeout, ack emulation) is passed to the AMQP transport."""
    settings = Settings(redis_url="redis://records:6379/0", broker_url="amqp://u:p@rabbit:5672//")
    app = make_celery(settings)
    assert app.conf.broker_url == "amqp://u:p@rabbit:5672//"
    assert app.conf.broker_transport_options == {"confirm_publish": True}
    queue = app.amqp.queues[settings.queue_name]
    assert queue.queue_arguments == {"x-queue-type": "quorum"} and queue.durable
    assert app.conf.worker_detect_quorum_queues is True
    redis_app = make_celery(Settings(redis_url="redis://records:6379/0"))
    assert redis_app.conf.broker_url == "redis://records:6379/0"
    assert redis_app.conf.broker_transport_options["visibility_timeout"] == 300
