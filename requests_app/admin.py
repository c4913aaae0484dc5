"""Delist requests in the admin: the review queue, approve, reject and revoke, each request's history."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

from axes.helpers import get_cool_off
from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone
from django.utils.formats import number_format
from django.utils.html import format_html_join
from django.utils.safestring import mark_safe
from django.utils.timesince import timesince
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from blocklist.models import Entry, Event
from portal_lib.admin_base import ReadOnlyAdmin, ReadOnlyInline, desk_time, time_column
from portal_lib.big_lists import BigListAdmin
from requests_app import dashboard, services
from requests_app.models import DelistRequest, Mail, ReviewQueue, State


class TimelineInline(ReadOnlyInline):
    model = Event
    fk_name = "request"
    fields = ["at_column", "action", "actor", "reason", "entry"]
    ordering = ["at", "id"]
    verbose_name_plural = _("Timeline")
    at_column = time_column(Event, "at")


class MailInline(ReadOnlyInline):
    model = Mail
    fields = [
        "kind",
        "created_at_column",
        "sent_at_column",
        "cancelled_at_column",
        "failed_at_column",
        "attempts",
        "last_error",
    ]
    created_at_column = time_column(Mail, "created_at")
    sent_at_column = time_column(Mail, "sent_at")
    cancelled_at_column = time_column(Mail, "cancelled_at")
    failed_at_column = time_column(Mail, "failed_at")


class ReasonForm(forms.Form):
    """Why a reviewer rejects a request or revokes its approval: the sender reads it."""

    reason = forms.CharField(
        label=_("Reason the sender will read"), widget=forms.Textarea(attrs={"rows": 4}), max_length=2000
    )


_SUPERSCRIPT = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


def address_count(entry: Entry) -> str:
    """How many addresses an entry's network holds, readably: "65,536", or "2⁸⁰ ≈ 1.2 × 10²⁴"."""
    network = entry.ip_network
    size = network.num_addresses
    if size <= 2**32:  # every IPv4 size still reads well in full
        return number_format(size, force_grouping=True)
    mantissa, exponent = f"{size:.1e}".split("e")
    bits = str(network.max_prefixlen - network.prefixlen)
    return f"2{bits.translate(_SUPERSCRIPT)} ≈ {mantissa} × 10{str(int(exponent)).translate(_SUPERSCRIPT)}"


def network_size(entry: Entry) -> str:
    """ "37.120.8.0/24 (256 addresses)": a network and how much of the Internet it holds."""
    count = entry.ip_network.num_addresses
    return ngettext("%(network)s (%(size)s address)", "%(network)s (%(size)s addresses)", count) % {
        "network": entry.network,
        "size": address_count(entry),
    }


def by_width(entries) -> list[Entry]:
    """Narrowest last, IPv4 first: the order the desk reads networks in."""
    return sorted(entries, key=lambda e: (e.version, e.prefix_len, e.network))


def is_wide(entry: Entry) -> bool:
    """A range so wide that approving its delisting takes a superuser (DELIST_REVIEW_WIDE_PREFIX_*)."""
    if entry.version == 4:
        return entry.prefix_len < settings.DELIST_REVIEW_WIDE_PREFIX_V4
    return entry.prefix_len < settings.DELIST_REVIEW_WIDE_PREFIX_V6


@dataclass
class Delisting:
    """One network an approval will delist, as the confirmation page shows it."""

    entry: Entry
    size: str
    wide: bool


@dataclass
class Approval:
    """What approving one selected request would do, and whether this reviewer may."""

    request: DelistRequest
    delistings: list[Delisting]
    waiting: bool  # still waiting for a decision; otherwise approving leaves it alone
    needs_superuser: bool  # covers a wide range and the reviewer is not a superuser

    @property
    def allowed(self) -> bool:
        return self.waiting and not self.needs_superuser


def approvals(queryset: QuerySet[DelistRequest], *, superuser: bool) -> list[Approval]:
    plans = []
    for request in queryset.prefetch_related("entries"):
        delistings = [
            Delisting(entry, address_count(entry), is_wide(entry))
            for entry in by_width(request.entries.all())
        ]
        plans.append(
            Approval(
                request=request,
                delistings=delistings,
                waiting=request.state == State.NEEDS_REVIEW,
                needs_superuser=not superuser and any(d.wide for d in delistings),
            )
        )
    return plans


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials: dict | None = None
) -> HttpResponse:
    """django-axes' answer to a locked-out admin login (AXES_LOCKOUT_CALLABLE): the admin's own
    look, when to try again, and 429 with Retry-After."""
    now = timezone.now()
    # Every attempt during the lockout starts the cool-off again, so it ends a cool-off from now;
    # the next whole minute after that is a time a person can read and trust.
    retry_at = (now + get_cool_off(request)).replace(second=0, microsecond=0) + timedelta(minutes=1)
    response = render(
        request,
        "admin/lockout.html",
        {**admin.site.each_context(request), "title": _("Too many failed logins"), "retry_at": retry_at},
        status=settings.AXES_HTTP_RESPONSE_CODE,
    )
    response["Retry-After"] = str(math.ceil((retry_at - now).total_seconds()))
    return response


class DelistRequestAdmin(BigListAdmin):
    list_display = [
        "ip",
        "email",
        "state",
        "created_at_column",
        "confirmed_at_column",
        "decided_by",
        "effective_at_column",
    ]
    list_filter = ["state", "created_at", "decided_at"]
    search_fields = ["ip", "email"]
    inlines = [TimelineInline, MailInline]
    actions = ["approve", "reject", "revoke"]
    fields = [
        "ip",
        "email",
        "state",
        "language",
        "client_ip",
        "created_at_column",
        "token_expires_at_column",
        "confirmed_at_column",
        "decided_at_column",
        "decided_by",
        "decision_reason",
        "effective_at_column",
        "completed_at_column",
        "closed_at_column",
        "covered_listings",
    ]
    readonly_fields = fields
    created_at_column = time_column(DelistRequest, "created_at")
    token_expires_at_column = time_column(DelistRequest, "token_expires_at")
    confirmed_at_column = time_column(DelistRequest, "confirmed_at")
    decided_at_column = time_column(DelistRequest, "decided_at")
    effective_at_column = time_column(DelistRequest, "effective_at")
    completed_at_column = time_column(DelistRequest, "completed_at")
    closed_at_column = time_column(DelistRequest, "closed_at")

    @admin.display(description=_("Listings covered at confirmation, with their history"))
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
                            f"{desk_time(ev.at)} {ev.get_action_display()} ({ev.actor})"
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

    @admin.action(description=_("Approve selected requests…"), permissions=["review"])
    def approve(self, request: HttpRequest, queryset):
        # Evaluated before anything changes: the queue's queryset drops requests once approved.
        plans = approvals(queryset, superuser=request.user.is_superuser)
        if "confirm" not in request.POST:
            return self._action_page(
                request,
                "admin/requests_app/approve.html",
                title=_("Approve delist requests"),
                plans=plans,
                requests=[plan.request for plan in plans],
                approvable=sum(plan.allowed for plan in plans),
                wide_v4=settings.DELIST_REVIEW_WIDE_PREFIX_V4,
                wide_v6=settings.DELIST_REVIEW_WIDE_PREFIX_V6,
            )
        actor = request.user.get_username()
        approved = sum(
            services.request_approve(request=plan.request, actor=actor) for plan in plans if plan.allowed
        )
        refused = sum(plan.waiting and plan.needs_superuser for plan in plans)
        skipped = len(plans) - approved - refused
        if approved or not (refused or skipped):
            message = ngettext("Approved %(count)d request.", "Approved %(count)d requests.", approved)
            self.message_user(request, message % {"count": approved}, messages.SUCCESS)
        if refused:
            self.message_user(
                request,
                ngettext(
                    "%(count)d covers a range wider than /%(v4)d (IPv4) or /%(v6)d (IPv6): only a "
                    "superuser may approve it, so it stays in review.",
                    "%(count)d cover a range wider than /%(v4)d (IPv4) or /%(v6)d (IPv6): only a "
                    "superuser may approve them, so they stay in review.",
                    refused,
                )
                % {
                    "count": refused,
                    "v4": settings.DELIST_REVIEW_WIDE_PREFIX_V4,
                    "v6": settings.DELIST_REVIEW_WIDE_PREFIX_V6,
                },
                messages.ERROR,
            )
        if skipped:
            self.message_user(
                request,
                ngettext(
                    "%(count)d was not waiting for review and was left alone.",
                    "%(count)d were not waiting for review and were left alone.",
                    skipped,
                )
                % {"count": skipped},
                messages.WARNING,
            )
        return None

    @admin.action(description=_("Reject selected requests…"), permissions=["review"])
    def reject(self, request: HttpRequest, queryset):
        form = ReasonForm(request.POST if "reason" in request.POST else None)
        if form.is_valid():
            actor, reason = request.user.get_username(), form.cleaned_data["reason"]
            rejected = sum(services.request_reject(request=r, actor=actor, reason=reason) for r in queryset)
            message = ngettext("Rejected %(count)d request.", "Rejected %(count)d requests.", rejected)
            self.message_user(request, message % {"count": rejected}, messages.SUCCESS)
            return None
        return self._action_page(
            request,
            "admin/requests_app/reject.html",
            title=_("Reject delist requests"),
            requests=queryset,
            form=form,
        )

    @admin.action(description=_("Revoke the approval of selected requests…"), permissions=["review"])
    def revoke(self, request: HttpRequest, queryset):
        form = ReasonForm(request.POST if "reason" in request.POST else None)
        if form.is_valid():
            actor, reason = request.user.get_username(), form.cleaned_data["reason"]
            selected = list(queryset)
            revoked = sum(services.request_revoke(request=r, actor=actor, reason=reason) for r in selected)
            message = ngettext("Revoked %(count)d approval.", "Revoked %(count)d approvals.", revoked)
            self.message_user(request, message % {"count": revoked}, messages.SUCCESS)
            if len(selected) > revoked:
                left = len(selected) - revoked
                self.message_user(
                    request,
                    ngettext(
                        "%(count)d was not approved or already due, and was left alone.",
                        "%(count)d were not approved or already due, and were left alone.",
                        left,
                    )
                    % {"count": left},
                    messages.WARNING,
                )
            return None
        return self._action_page(
            request,
            "admin/requests_app/revoke.html",
            title=_("Revoke approvals"),
            requests=queryset,
            form=form,
            now=timezone.now(),
        )

    def _action_page(self, request: HttpRequest, template: str, **context) -> TemplateResponse:
        """The intermediate page an action shows before it changes anything."""
        return TemplateResponse(
            request,
            template,
            {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
                **context,
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

    list_display = ["ip", "email", "waiting", "confirmed_at_column", "why", "networks"]
    # No filter sidebar: it would push "why" and the networks off a 1280 px screen, and the
    # queue is read oldest first anyway.
    list_filter = []
    actions = ["approve", "reject"]  # nothing here is approved yet, so nothing to revoke
    ordering = ["confirmed_at", "pk"]  # the changelist's ordering wins over get_queryset's

    def get_queryset(self, request):
        # Why each request is here, in the same query rather than one per row.
        why = Event.objects.filter(request=OuterRef("pk"), action=Event.Action.SENT_TO_REVIEW).order_by("-at")
        return (
            super()
            .get_queryset(request)
            .filter(state=State.NEEDS_REVIEW)
            .annotate(review_reason=Subquery(why.values("reason")[:1]))
            # The networks column: one query for the page, not one per row.
            .prefetch_related("entries")
        )

    @admin.display(description=_("Waiting"))
    def waiting(self, request: DelistRequest) -> str:
        return timesince(request.confirmed_at, timezone.now()) if request.confirmed_at else "-"

    @admin.display(description=_("Why in review"))
    def why(self, request: DelistRequest) -> str:
        return request.review_reason or "-"

    @admin.display(description=_("Covering networks"))
    def networks(self, request: DelistRequest) -> str:
        entries = by_width(request.entries.all())
        return format_html_join(mark_safe("<br>"), "{}", ((network_size(e),) for e in entries)) or "-"


class MailStateFilter(admin.SimpleListFilter):
    title = _("state")
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [
            ("owed", _("owed")),
            ("sent", _("sent")),
            ("failed", _("given up")),
            ("cancelled", _("cancelled")),
        ]

    def queryset(self, request, queryset):
        unsent = {"sent_at__isnull": True, "cancelled_at__isnull": True, "failed_at__isnull": True}
        return {
            "owed": queryset.filter(**unsent),
            "sent": queryset.filter(sent_at__isnull=False),
            "failed": queryset.filter(failed_at__isnull=False),
            "cancelled": queryset.filter(cancelled_at__isnull=False),
        }.get(self.value(), queryset)


@admin.register(Mail)
class MailAdmin(ReadOnlyAdmin, BigListAdmin):
    """The outbox, read-only: what is owed, what went out, what was given up on and why."""

    list_display = [
        "id",
        "kind",
        "request",
        "created_at_column",
        "sent_at_column",
        "failed_at_column",
        "attempts",
        "last_error",
    ]
    created_at_column = time_column(Mail, "created_at")
    sent_at_column = time_column(Mail, "sent_at")
    failed_at_column = time_column(Mail, "failed_at")
    list_filter = [MailStateFilter, "kind"]
    list_select_related = ["request"]
    ordering = ["-created_at"]
    show_full_result_count = False
