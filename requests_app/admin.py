"""Delist requests in the admin: the review queue, approve and reject, each request's history."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import OuterRef, Subquery
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone
from django.utils.html import format_html_join
from django.utils.timesince import timesince
from django.utils.translation import gettext_lazy as _

from blocklist.models import Event
from portal_lib.admin_base import ReadOnlyInline
from requests_app import dashboard, services
from requests_app.models import DelistRequest, Mail, ReviewQueue, State


class TimelineInline(ReadOnlyInline):
    model = Event
    fk_name = "request"
    fields = ["at", "action", "actor", "reason", "entry"]
    ordering = ["at", "id"]
    verbose_name_plural = _("timeline")


class MailInline(ReadOnlyInline):
    model = Mail
    fields = ["kind", "created_at", "sent_at", "cancelled_at", "attempts", "last_error"]


class RejectForm(forms.Form):
    reason = forms.CharField(
        label=_("reason the sender will read"), widget=forms.Textarea(attrs={"rows": 4}), max_length=2000
    )


class DelistRequestAdmin(admin.ModelAdmin):
    list_display = ["ip", "email", "state", "created_at", "confirmed_at", "decided_by", "effective_at"]
    list_filter = ["state", "created_at", "decided_at"]
    search_fields = ["ip", "email"]
    date_hierarchy = "created_at"
    inlines = [TimelineInline, MailInline]
    actions = ["approve", "reject"]
    fields = [
        "ip",
        "email",
        "state",
        "language",
        "client_ip",
        "created_at",
        "token_expires_at",
        "confirmed_at",
        "decided_at",
        "decided_by",
        "decision_reason",
        "effective_at",
        "completed_at",
        "closed_at",
        "covered_listings",
    ]
    readonly_fields = fields

    @admin.display(description=_("listings covered at confirmation, with their history"))
    def covered_listings(self, request: DelistRequest):
        entries = request.entries.prefetch_related("events").order_by("prefix_len")
        return (
            format_html_join(
                "",
                "<p><strong>{}</strong> ({}, {}): {}<br>{}</p>",
                (
                    (
                        e.network,
                        e.code,
                        _("self-service") if e.self_service else _("review only"),
                        e.reason or "-",
                        "; ".join(
                            f"{ev.at:%Y-%m-%d %H:%M} {ev.get_action_display()} ({ev.actor})"
                            for ev in e.events.all()
                        ),
                    )
                    for e in entries
                ),
            )
            or "-"
        )

    def has_add_permission(self, request):
        return False  # requests come from senders

    def has_change_permission(self, request, obj=None):
        return False  # state changes only through the review actions

    def has_delete_permission(self, request, obj=None):
        return False

    def has_review_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("requests_app.review_delistrequest")

    @admin.action(description=_("Approve selected requests"), permissions=["review"])
    def approve(self, request: HttpRequest, queryset):
        actor = request.user.get_username()
        approved = sum(services.request_approve(request=r, actor=actor) for r in queryset)
        skipped = queryset.count() - approved
        self.message_user(request, _("Approved %(count)d requests.") % {"count": approved}, messages.SUCCESS)
        if skipped:
            self.message_user(
                request,
                _("%(count)d were not waiting for review and were left alone.") % {"count": skipped},
                messages.WARNING,
            )

    @admin.action(description=_("Reject selected requests…"), permissions=["review"])
    def reject(self, request: HttpRequest, queryset):
        form = RejectForm(request.POST if "reason" in request.POST else None)
        if form.is_valid():
            actor, reason = request.user.get_username(), form.cleaned_data["reason"]
            rejected = sum(services.request_reject(request=r, actor=actor, reason=reason) for r in queryset)
            self.message_user(
                request, _("Rejected %(count)d requests.") % {"count": rejected}, messages.SUCCESS
            )
            return None
        return TemplateResponse(
            request,
            "admin/requests_app/reject.html",
            {
                **self.admin_site.each_context(request),
                "title": _("Reject delist requests"),
                "requests": queryset,
                "form": form,
                "opts": self.model._meta,
                "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            },
        )

    def get_urls(self):
        return [
            path(
                "dashboard/", self.admin_site.admin_view(self.dashboard_view), name="requests_app_dashboard"
            ),
            *super().get_urls(),
        ]

    def dashboard_view(self, request: HttpRequest):
        if not self.has_view_permission(request):
            raise PermissionDenied
        return TemplateResponse(
            request,
            "admin/requests_app/dashboard.html",
            {**self.admin_site.each_context(request), "title": _("Dashboard"), **dashboard.figures()},
        )


admin.site.register(DelistRequest, DelistRequestAdmin)


@admin.register(ReviewQueue)
class ReviewQueueAdmin(DelistRequestAdmin):
    """Waiting for a reviewer, oldest first."""

    list_display = ["ip", "email", "waiting", "confirmed_at", "why"]
    list_filter = ["confirmed_at"]
    date_hierarchy = None
    ordering = ["confirmed_at", "pk"]  # the changelist's ordering wins over get_queryset's

    def get_queryset(self, request):
        # Why each request is here, in the same query rather than one per row.
        why = Event.objects.filter(request=OuterRef("pk"), action=Event.Action.SENT_TO_REVIEW).order_by("-at")
        return (
            super()
            .get_queryset(request)
            .filter(state=State.NEEDS_REVIEW)
            .annotate(review_reason=Subquery(why.values("reason")[:1]))
        )

    @admin.display(description=_("waiting"))
    def waiting(self, request: DelistRequest) -> str:
        return timesince(request.confirmed_at, timezone.now()) if request.confirmed_at else "-"

    @admin.display(description=_("why in review"))
    def why(self, request: DelistRequest) -> str:
        return request.review_reason or "-"
