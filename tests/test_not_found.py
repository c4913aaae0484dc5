"""An unknown status page gets the portal's own 404 page, in the reader's language."""


def test_an_unknown_status_page_is_a_friendly_404(client, db, settings):
    settings.DEBUG = False
    response = client.get("/status/no-such-request", HTTP_ACCEPT_LANGUAGE="sv")
    assert response.status_code == 404
    html = response.content.decode()
    assert "Sidan finns inte" in html and "Tillbaka till startsidan" in html
