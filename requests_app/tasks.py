"""Celery tasks: thin wrappers, named after the services they call.

Payloads are plain IDs; what is due is read from the database, so a lost message
only means the next sweep does the work.
"""

from celery import shared_task
from django.core.management import call_command

from requests_app import outbox, propagation, services
from requests_app.wakeups import woken


@shared_task(name="requests_app.sweep", ignore_result=True)
def sweep() -> str:
    return str(services.sweep())


# No longer queued (mail wakes mails_send_due): kept for messages queued before an upgrade.
@shared_task(name="requests_app.mail_send", ignore_result=True)
def mail_send(mail_id: int) -> bool:
    return outbox.mail_send(mail_id=mail_id)


@shared_task(name=outbox.SEND_DUE, ignore_result=True)
def mails_send_due() -> int:
    woken(outbox.SEND_DUE)  # before looking: a mail owed from now on queues another wake-up
    return outbox.mails_send_due()


@shared_task(name="requests_app.sessions_clear", ignore_result=True)
def sessions_clear() -> None:
    # Sessions hold which confirmation links a browser opened: drop them once expired.
    call_command("clearsessions")


@shared_task(name="requests_app.propagations_check_due", ignore_result=True)
def propagations_check_due() -> int:
    return propagation.propagations_check_due()
