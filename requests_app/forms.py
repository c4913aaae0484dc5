from django import forms
from django.utils.translation import gettext_lazy as _

from blocklist.ip import parse_ip
from requests_app.mailboxes import validate_deliverable


class IPField(forms.CharField):
    """One public IP address, parsed strictly; cleaned to an ipaddress object."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 64)
        kwargs.setdefault("label", _("IP address"))
        super().__init__(**kwargs)

    def clean(self, value):
        value = super().clean(value)
        return parse_ip(value) if value else value


class CheckForm(forms.Form):
    def __init__(self, *args, **kwargs):
        # Shares the page with the request form: keep the element ids apart.
        kwargs.setdefault("auto_id", "check_%s")
        super().__init__(*args, **kwargs)

    ip = IPField(widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}))


class DelistRequestForm(forms.Form):
    email = forms.EmailField(
        label=_("Email address"),
        max_length=254,
        validators=[validate_deliverable],
        help_text=_("We send the confirmation link here."),
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
    )
    ip = IPField(
        help_text=_("The IP address from the rejection message."),
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
