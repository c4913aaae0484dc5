from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from webhooks.models import Endpoint, EventType
from webhooks.targets import TargetRefused, resolve


class EndpointForm(forms.ModelForm):
    """An endpoint as the desk saves it: the URL must point at a public http(s) target now."""

    # A URL typed without a scheme means https.
    url = forms.URLField(
        label=Endpoint._meta.get_field("url").verbose_name,
        help_text=Endpoint._meta.get_field("url").help_text,
        max_length=2000,
        assume_scheme="https",
    )
    events = forms.MultipleChoiceField(
        label=_("Events"), choices=EventType.choices, widget=forms.CheckboxSelectMultiple
    )

    class Meta:
        model = Endpoint
        fields = ["name", "url", "secret", "events", "active"]

    def clean_url(self) -> str:
        url = self.cleaned_data["url"]
        try:
            resolve(url)
        except TargetRefused as e:
            raise forms.ValidationError(str(e)) from None
        return url
