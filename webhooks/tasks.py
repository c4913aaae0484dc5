"""Celery tasks of the webhooks: thin wrappers around the outbox."""

from celery import shared_task

from webhooks import outbox


@shared_task(name="webhooks.deliveries_send_due", ignore_result=True)
def deliveries_send_due() -> int:
    # Give up first: what is past its time is never tried again.
    outbox.deliveries_give_up()
    return outbox.deliveries_send_due()
