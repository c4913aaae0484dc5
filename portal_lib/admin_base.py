from django.contrib import admin


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
