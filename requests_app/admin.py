from django.contrib import admin

from requests_app.models import DelistRequest, Mail


class MailInline(admin.TabularInline):
    model = Mail
    extra = 0
    can_delete = False
    fields = ["kind", "created_at", "sent_at", "cancelled_at", "attempts", "last_error"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(DelistRequest)
class DelistRequestAdmin(admin.ModelAdmin):
    list_display = ["ip", "email", "state", "created_at", "confirmed_at", "effective_at", "completed_at"]
    list_filter = ["state", "created_at"]
    search_fields = ["ip", "email"]
    date_hierarchy = "created_at"
    inlines = [MailInline]
    # State changes go through the services (review actions come with the admin issue).
    readonly_fields = [
        "email",
        "ip",
        "state",
        "language",
        "client_ip",
        "token_expires_at",
        "created_at",
        "confirmed_at",
        "decided_at",
        "effective_at",
        "completed_at",
        "closed_at",
        "decision_reason",
    ]

    def has_add_permission(self, request):
        return False
