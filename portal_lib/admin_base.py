from datetime import datetime

from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.core.validators import MaxLengthValidator
from django.utils import timezone


def desk_time(value: datetime | None) -> str:
    """A moment as the desk reads it, its time zone named: "2026-03-02 12:00 UTC"."""
    if value is None:
        return "-"
    local = timezone.localtime(value)
    return f"{local:%Y-%m-%d %H:%M} {local.tzname()}"


def time_column(model, name: str):
    """A list column or read-only field showing a model's datetime with desk_time, labelled and
    sorted as the field itself (Django's own rendering names no time zone)."""

    @admin.display(description=model._meta.get_field(name).verbose_name, ordering=name)
    def column(self, obj) -> str:
        return desk_time(getattr(obj, name))

    column.__name__ = f"{name}_column"
    return column


class ReadOnlyInline(admin.TabularInline):
    """History shown beside an object: visible to whoever may view it, changeable by nobody."""

    extra = 0
    can_delete = False

    def get_readonly_fields(self, request, obj=None):
        return self.fields

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class ReadOnlyAdmin(admin.ModelAdmin):
    """A record the desk reads and nobody changes: the audit trail, the outbox."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class BoundedLoginForm(AdminAuthenticationForm):
    """The admin login, with the username's length enforced before anyone looks it up.

    Django only sets the HTML maxlength; without a validator a 5,000-character username reaches
    authenticate() and the lockout's records, which hold 255.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        field = self.fields["username"]
        field.validators.append(MaxLengthValidator(field.max_length or 150))
