"""The abuse desk's view of the listings: find what covers an IP, add, delist, relist, import."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.widgets import AdminSplitDateTime
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models
from django.db.models import Q
from django.http import HttpRequest, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from blocklist import api_keys, services
from blocklist.import_jobs import IMPORT_UPLOAD_MAX, import_job_create
from blocklist.ip import parse_ip, parse_network
from blocklist.models import ApiKey, Entry, Event, ImportJob
from portal_lib.admin_base import ReadOnlyAdmin, ReadOnlyInline, desk_time, time_column
from portal_lib.big_lists import BigListAdmin, IndexedValuesFilter, distinct_values


class StatusFilter(admin.SimpleListFilter):
    title = _("status")
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [("active", _("active")), ("delisted", _("delisted")), ("expired", _("expired"))]

    def queryset(self, request, queryset):
        now = timezone.now()
        lapsed = Q(expires_at__lte=now) & (Q(delisted_at__isnull=True) | Q(delisted_by="expiry"))
        if self.value() == "active":
            return queryset.active(now)
        if self.value() == "expired":
            return queryset.filter(lapsed)
        if self.value() == "delisted":
            return queryset.filter(delisted_at__isnull=False).exclude(delisted_by="expiry")
        return queryset


class CodeFilter(admin.SimpleListFilter):
    """The SMTP codes entries actually use, not all 44 a code may be: read along entry_code_idx."""

    title = _("SMTP code")
    parameter_name = "code"

    def lookups(self, request, model_admin):
        return [(code, code) for code in distinct_values(Entry, "code")]

    def queryset(self, request, queryset):
        return queryset.filter(code=self.value()) if self.value() else queryset


class LabelledSplitDateTime(AdminSplitDateTime):
    """Django's date and time boxes, each with a name of its own: the field's label names
    neither (axe: label)."""

    def __init__(self, attrs=None):
        super().__init__(attrs)
        self.widgets[0].attrs["aria-label"] = _("Date")
        self.widgets[1].attrs["aria-label"] = _("Time")


class EntryForm(forms.ModelForm):
    network = forms.CharField(
        label=_("Network"), help_text=_("An IP address or a CIDR range, e.g. 5.61.14.0/24")
    )

    class Meta:
        model = Entry
        fields = ["network", "code", "reason", "source", "expires_at", "self_service"]

    def clean_network(self):
        return parse_network(self.cleaned_data["network"])


class EventInline(ReadOnlyInline):
    model = Event
    fk_name = "entry"
    fields = ["at_column", "action", "actor", "reason", "request"]
    ordering = ["at", "id"]
    verbose_name_plural = _("History")
    at_column = time_column(Event, "at")


class DelistForm(forms.Form):
    reason = forms.CharField(label=_("Reason"), widget=forms.Textarea(attrs={"rows": 3}), max_length=1000)


class ImportForm(forms.Form):
    file = forms.FileField(label=_("List"), help_text=_("Plain (one IP or CIDR a line, # comments) or CSV."))

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > IMPORT_UPLOAD_MAX:
            raise ValidationError(
                _("Over %(size)s MB: import it on the server with manage.py import_blocklist."),
                params={"size": IMPORT_UPLOAD_MAX // (1024 * 1024)},
            )
        return upload

    source = forms.CharField(label=_("Source"), initial="import", max_length=100)


@admin.register(Entry)
class EntryAdmin(BigListAdmin):
    form = EntryForm
    list_display = [
        "network",
        "status",
        "code",
        "reason",
        "source",
        "listed_at_column",
        "expires_at_column",
        "self_service",
    ]
    list_filter = [StatusFilter, CodeFilter, ("source", IndexedValuesFilter), "self_service", "listed_at"]
    search_fields = ["network", "reason", "source"]
    search_help_text = _(
        "An IP finds every entry whose network covers it; otherwise network, reason or source."
    )
    inlines = [EventInline]
    actions = ["delist", "relist"]
    change_list_template = "admin/blocklist/entry/change_list.html"
    formfield_overrides = {models.DateTimeField: {"widget": LabelledSplitDateTime}}

    listed_at_column = time_column(Entry, "listed_at")
    expires_at_column = time_column(Entry, "expires_at")
    delisted_at_column = time_column(Entry, "delisted_at")

    @admin.display(description=_("Status"))
    def status(self, entry: Entry) -> str:
        if entry.is_active():
            return _("active")
        return _("expired") if entry.delisted_by == "expiry" or entry.delisted_at is None else _("delisted")

    def get_inlines(self, request, obj=None):
        return self.inlines if obj is not None else []  # a new entry has no history yet

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ["listed_at_column"]
        return ["network", "listed_at_column", "delisted_at_column", "delisted_by", "same_network"]

    def get_fields(self, request, obj=None):
        if obj is None:
            return EntryForm.Meta.fields
        return [
            *EntryForm.Meta.fields,
            "listed_at_column",
            "delisted_at_column",
            "delisted_by",
            "same_network",
        ]

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is not None:
            kwargs["form"] = forms.ModelForm
        return super().get_form(request, obj, change=change, **kwargs)

    @admin.display(description=_("Other entries for this network"))
    def same_network(self, entry: Entry) -> str:
        others = Entry.objects.filter(network=entry.network).exclude(pk=entry.pk).order_by("listed_at")
        return (
            "; ".join(
                (
                    _("#%(pk)s listed %(listed)s, delisted %(delisted)s by %(by)s")
                    if e.delisted_at
                    else _("#%(pk)s listed %(listed)s, active")
                )
                % {
                    "pk": e.pk,
                    "listed": desk_time(e.listed_at),
                    "delisted": desk_time(e.delisted_at),
                    "by": e.delisted_by,
                }
                for e in others
            )
            or "-"
        )

    def get_search_results(self, request, queryset, search_term):
        try:
            address = parse_ip(search_term)
        except ValidationError:
            return super().get_search_results(request, queryset, search_term)
        # Every entry (live or past) whose network covers the address.
        return queryset.filter(services.covering_q(address)), False

    def save_model(self, request, obj, form, change):
        actor = request.user.get_username()
        if change:
            terms = {
                name: form.cleaned_data[name] for name in services.EDITABLE_TERMS if name in form.cleaned_data
            }
            services.entry_update(Entry.objects.get(pk=obj.pk), actor=actor, **terms)
            return
        entry, outcome = services.entry_list(
            form.cleaned_data["network"],
            actor=actor,
            **{name: form.cleaned_data[name] for name in services.EDITABLE_TERMS},
        )
        obj.pk = entry.pk
        if outcome == services.UNCHANGED:
            self.message_user(
                request, _("%(network)s was already listed.") % {"network": entry}, messages.WARNING
            )

    def has_delete_permission(self, request, obj=None):
        return False  # delisting keeps history; nothing is deleted

    @admin.action(description=_("Delist selected entries…"), permissions=["change"])
    def delist(self, request: HttpRequest, queryset):
        form = DelistForm(request.POST if "reason" in request.POST else None)
        if form.is_valid():
            count = services.entries_delist(
                queryset.values_list("pk", flat=True),
                actor=request.user.get_username(),
                reason=form.cleaned_data["reason"],
            )
            message = ngettext("Delisted %(count)d entry.", "Delisted %(count)d entries.", count)
            self.message_user(request, message % {"count": count}, messages.SUCCESS)
            return None
        return TemplateResponse(
            request,
            "admin/blocklist/entry/delist.html",
            {
                **self.admin_site.each_context(request),
                "title": _("Delist entries"),
                "entries": queryset,
                "form": form,
                "opts": self.model._meta,
                "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            },
        )

    # Relisting creates entries, like adding one.
    @admin.action(description=_("Relist selected entries"), permissions=["add"])
    def relist(self, request: HttpRequest, queryset):
        actor = request.user.get_username()
        outcomes = [services.entry_relist(e, actor=actor)[1] for e in queryset if not e.is_active()]
        relisted = outcomes.count(services.RELISTED) + outcomes.count(services.ADDED)
        message = ngettext("Relisted %(count)d entry.", "Relisted %(count)d entries.", relisted)
        self.message_user(request, message % {"count": relisted}, messages.SUCCESS)

    def get_urls(self):
        return [
            path("import/", self.admin_site.admin_view(self.import_view), name="blocklist_entry_import"),
            path(
                "import/<int:job_id>/",
                self.admin_site.admin_view(self.import_job_view),
                name="blocklist_entry_import_job",
            ),
            *super().get_urls(),
        ]

    def has_import_permission(self, request: HttpRequest) -> bool:
        # An import adds entries and can change the terms of live ones.
        return self.has_add_permission(request) and self.has_change_permission(request)

    def changelist_view(self, request: HttpRequest, extra_context=None):
        context = {**(extra_context or {}), "has_import_permission": self.has_import_permission(request)}
        return super().changelist_view(request, context)

    def import_view(self, request: HttpRequest):
        """Store the upload and hand it to the worker; the job's page shows how it goes."""
        if not self.has_import_permission(request):
            raise PermissionDenied
        form = ImportForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            job = import_job_create(
                name=upload.name,
                data=upload.read(),
                source=form.cleaned_data["source"],
                actor=request.user.get_username(),
            )
            return HttpResponseRedirect(reverse("admin:blocklist_entry_import_job", args=[job.pk]))
        return TemplateResponse(
            request,
            "admin/blocklist/entry/import.html",
            {
                **self.admin_site.each_context(request),
                "title": _("Import a list"),
                "form": form,
                "recent": ImportJob.objects.defer("data")[:5],
                "opts": self.model._meta,
            },
        )

    def import_job_view(self, request: HttpRequest, job_id: int):
        if not self.has_import_permission(request):
            raise PermissionDenied
        job = get_object_or_404(ImportJob.objects.defer("data"), pk=job_id)
        return TemplateResponse(
            request,
            "admin/blocklist/entry/import_job.html",
            {
                **self.admin_site.each_context(request),
                "title": _("Import of %(name)s") % {"name": job.name},
                "job": job,
                # The page reloads itself (no script needed) until the worker is done.
                "refresh": job.status in (ImportJob.Status.QUEUED, ImportJob.Status.RUNNING),
                "opts": self.model._meta,
            },
        )


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin, BigListAdmin):
    """The audit trail: readable by the desk, changeable by nobody."""

    list_display = ["at_column", "action", "actor", "entry", "request", "reason"]
    list_filter = ["action", ("actor", IndexedValuesFilter), "at"]
    search_fields = ["actor", "reason", "entry__network", "request__ip", "request__email"]
    list_select_related = ["entry", "request"]
    at_column = time_column(Event, "at")


@admin.register(ApiKey)
class ApiKeyAdmin(ReadOnlyAdmin):
    """Keys are made with `manage.py api_key create` (the only time a key is shown); here they
    are read and revoked. The hash is never shown: it is of no use to a person."""

    list_display = [
        "name",
        "scope",
        "prefix",
        "created_at_column",
        "last_used_at_column",
        "requests",
        "revoked_at_column",
    ]
    list_filter = ["scope", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name"]
    fields = list_display
    readonly_fields = fields
    actions = ["revoke"]
    created_at_column = time_column(ApiKey, "created_at")
    last_used_at_column = time_column(ApiKey, "last_used_at")
    revoked_at_column = time_column(ApiKey, "revoked_at")

    def get_queryset(self, request):
        return super().get_queryset(request).defer("key_hash")

    @admin.display(description=_("Requests"))
    def requests(self, key: ApiKey) -> int:
        return api_keys.requests_made([key])[key.pk]

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("blocklist.change_apikey")

    @admin.action(description=_("Revoke selected keys"), permissions=["revoke"])
    def revoke(self, request: HttpRequest, queryset):
        revoked = sum(api_keys.api_key_revoke(name=key.name) for key in queryset)
        message = ngettext("Revoked %(count)d key.", "Revoked %(count)d keys.", revoked) % {"count": revoked}
        self.message_user(request, message, messages.SUCCESS)
