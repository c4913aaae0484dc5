from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from blocklist.ip_paste import MAX_PASTE, address_from_paste
from requests_app.mailboxes import validate_deliverable

PASTE_HELP = _("The IP address from the rejection message, or the whole message: we find the address.")


class IPField(forms.CharField):
    """One public IP address, parsed strictly, out of whatever the sender pasted from the bounce.

    Cleans to a Pasted (the address, and whether it came out of a longer paste); the forms'
    clean_ip hands on the address and keeps the rest for the page.
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", MAX_PASTE)
        kwargs.setdefault("label", _("IP address"))
        kwargs.setdefault("help_text", PASTE_HELP)
        kwargs.setdefault("widget", forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}))
        super().__init__(**kwargs)

    def clean(self, value):
        value = super().clean(value)
        return address_from_paste(value) if value else value

    def bound_data(self, data, initial):
        """Shown again in the field: the address taken from a paste, else what was given."""
        if not isinstance(data, str) or len(data) > self.max_length:
            return data
        try:
            return str(address_from_paste(data).address)
        except ValidationError:
            return data


class _PastedIPForm(forms.Form):
    # The address, when it was taken out of a longer paste: the page says which one it took.
    taken_from_paste = None

    def clean_ip(self):
        pasted = self.cleaned_data["ip"]
        if pasted.from_paste:
            self.taken_from_paste = pasted.address
        return pasted.address


class CheckForm(_PastedIPForm):
    def __init__(self, *args, **kwargs):
        # Shares the page with the request form: keep the element ids apart.
        kwargs.setdefault("auto_id", "check_%s")
        super().__init__(*args, **kwargs)

    ip = IPField()


class DelistRequestForm(_PastedIPForm):
    email = forms.EmailField(
        label=_("Email address"),
        max_length=254,
        validators=[validate_deliverable],
        help_text=_("We send the confirmation link here."),
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
    )
    ip = IPField()
