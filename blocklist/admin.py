from django.contrib import admin

from blocklist.models import Entry


@admin.register(Entry)
class EntryAdmin(admin.ModelAdmin):
    list_display = [
        "network",
        "code",
        "reason",
        "source",
        "listed_at",
        "expires_at",
        "self_service",
        "delisted_at",
    ]
    list_filter = ["code", "self_service", "source"]
    search_fields = ["network", "reason", "source"]
    date_hierarchy = "listed_at"
    readonly_fields = ["delisted_at", "delisted_by"]
