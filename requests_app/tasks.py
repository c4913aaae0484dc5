"""Celery tasks: thin wrappers, named after the services they call.

Payloads are plain IDs; what is due is read from the database, so a lost message
only means the next sweep does the work.
"""

from celery import shared_task

from requests_app import services


@shared_task(name="requests_app.sweep", ignore_result=True)
def sweep() -> str:
    return str(services.sweep())


@shared_task(name="requests_app.mail_send", ignore_result=True)
def mail_send(mail_id: int) -> bool:
    return services.mail_send(mail_id=mail_id)
