from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.core.validators import MaxLengthValidator


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
