"""The webhooks in the admin: endpoints the desk configures, and the delivery log (read-only)."""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.text import Truncator
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from portal_lib.admin_base import ReadOnlyAdmin, ReadOnlyInline, time_column
from webhooks import outbox
from webhooks.forms import EndpointForm
from webhooks.models import Delivery, Endpoint, Event, EventType


@admin.register(Endpoint)
class EndpointAdmin(admin.ModelAdmin):
    form = EndpointForm
    list_display = ["name", "url", "active", "event_types", "created_at_column"]
    list_filter = ["active"]
    search_fields = ["name", "url"]
    created_at_column = time_column(Endpoint, "created_at")

    @admin.display(description=_("Events"))
    def event_types(self, endpoint: Endpoint) -> str:
        labels = dict(EventType.choices)
        return ", ".join(str(labels.get(t, t)) for t in endpoint.events) or "-"

    def has_delete_permission(self, request, obj=None):
        # Its deliveries are its history: deactivate it instead.
        return False


class DeliveryInline(ReadOnlyInline):
    model = Delivery
    fields = ["endpoint", "status", "attempts", "last_status_code", "last_error", "delivered_at_column"]
    delivered_at_column = time_column(Delivery, "delivered_at")


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = ["at_column", "type", "uid"]
    list_filter = ["type"]
    fields = ["uid", "type", "at_column", "body"]
    readonly_fields = fields
    inlines = [DeliveryInline]
    at_column = time_column(Event, "at")

    @admin.display(description=_("Payload"))
    def body(self, event: Event) -> str:
        return format_html("<pre>{}</pre>", json.dumps(event.payload(), indent=2, ensure_ascii=False))


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    """The delivery log: what each endpoint got, what it answered, and what is still owed."""

    list_display = [
        "id",
        "event_type",
        "endpoint",
        "status",
        "attempts",
        "last_status_code",
        "error",
        "created_at_column",
        "last_attempt_at_column",
        "due_at_column",
        "delivered_at_column",
    ]
    list_filter = ["status", "endpoint", "event__type"]
    list_select_related = ["event", "endpoint"]
    show_full_result_count = False
    actions = ["retry_now"]
    created_at_column = time_column(Delivery, "created_at")
    last_attempt_at_column = time_column(Delivery, "last_attempt_at")
    due_at_column = time_column(Delivery, "due_at")
    delivered_at_column = time_column(Delivery, "delivered_at")

    @admin.display(description=_("Event"), ordering="event__type")
    def event_type(self, delivery: Delivery) -> str:
        return delivery.event.get_type_display()

    @admin.display(description=_("Last error"))
    def error(self, delivery: Delivery) -> str:
        return Truncator(delivery.last_error).chars(80) or "-"

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("webhooks.change_delivery")

    @admin.action(description=_("Retry now"), permissions=["retry"])
    def retry_now(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        count = outbox.deliveries_retry_now(list(queryset.values_list("pk", flat=True)))
        self.message_user(
            request,
            ngettext(
                "%(count)d delivery will be tried again now.",
                "%(count)d deliveries will be tried again now.",
                count,
            )
            % {"count": count},
            messages.SUCCESS if count else messages.WARNING,
        )
