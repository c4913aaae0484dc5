"""The reviewer group: sees everything, approves, rejects and revokes approvals, edits nothing.

Kept in step with the code after every migrate, so a deployment never has to click
permissions together by hand.
"""

REVIEWER_GROUP = "reviewer"
REVIEWER_PERMISSIONS = [
    ("blocklist", "view_entry"),
    ("blocklist", "view_event"),
    ("requests_app", "view_delistrequest"),
    ("requests_app", "view_reviewqueue"),
    ("requests_app", "view_mail"),
    ("requests_app", "review_delistrequest"),
]


def ensure_reviewer_group(**kwargs) -> None:
    from django.contrib.auth.models import Group, Permission

    group, _created = Group.objects.get_or_create(name=REVIEWER_GROUP)
    wanted = [
        Permission.objects.get(content_type__app_label=app, codename=codename)
        for app, codename in REVIEWER_PERMISSIONS
    ]
    group.permissions.set(wanted)
