"""What senders paste from a bounce comes down to the one address in it, read as strictly as ever."""

import pytest
from django.core.exceptions import ValidationError

from blocklist.ip_paste import MAX_PASTE, address_from_paste

REJECTION = (
    "550 5.7.606 Access denied, banned sending IP [5.61.14.7]; To request removal from this list "
    "please visit https://delist.example.org/?ip=5.61.14.7 and follow the directions."
)


def taken(text):
    pasted = address_from_paste(text)
    return str(pasted.address), pasted.from_paste


def refusal(text) -> ValidationError:
    with pytest.raises(ValidationError) as raised:
        address_from_paste(text)
    return raised.value


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5.61.14.7", "5.61.14.7"),
        (" 5.61.14.7\t", "5.61.14.7"),
        ("\n5.61.14.7\n", "5.61.14.7"),
        ("2a05:d018:1:2::abcd", "2a05:d018:1:2::abcd"),
        # One spelling per address, but nothing was taken out of anything.
        ("2A05:D018:1:2::ABCD", "2a05:d018:1:2::abcd"),
        ("::ffff:5.61.14.7", "5.61.14.7"),
    ],
)
def test_a_bare_address_is_taken_as_it_is_and_not_called_a_paste(text, expected):
    assert taken(text) == (expected, False)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[5.61.14.7]", "5.61.14.7"),
        ("[ 5.61.14.7 ]", "5.61.14.7"),
        ("(5.61.14.7)", "5.61.14.7"),
        ("<5.61.14.7>", "5.61.14.7"),
        ("5.61.14.7/32", "5.61.14.7"),
        ("2a05:d018:1:2::abcd/128", "2a05:d018:1:2::abcd"),
        ("[2a05:d018:1:2::abcd]", "2a05:d018:1:2::abcd"),
        ('"5.61.14.7"', "5.61.14.7"),
        ("'5.61.14.7'", "5.61.14.7"),
        ("“5.61.14.7”", "5.61.14.7"),
        ("'[5.61.14.7]'", "5.61.14.7"),
        ('  "[5.61.14.7/32]" ', "5.61.14.7"),
        ("5.61.14.7.", "5.61.14.7"),  # the end of a sentence
        ("[5.61.14.7];", "5.61.14.7"),
        ("5.61.14.7,", "5.61.14.7"),
    ],
)
def test_brackets_quotes_and_a_single_address_prefix_are_taken_off(text, expected):
    assert taken(text) == (expected, True)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (REJECTION, "5.61.14.7"),
        # The same line with its reply code's continuation dash, as multi-line replies show it.
        (REJECTION.replace("550 ", "550-"), "5.61.14.7"),
        ("Client host [5.61.14.7] blocked using bl.example.org", "5.61.14.7"),
        ("rejected because 5.61.14.7 is in a black list at bl.example.org", "5.61.14.7"),
        ("https://delist.example.org/?ip=5.61.14.7", "5.61.14.7"),
        ("https://delist.example.org/?ip=2a05:d018:1:2::abcd&lang=sv", "2a05:d018:1:2::abcd"),
        ("banned sending IP [2a05:d018:1:2::abcd]; To request removal", "2a05:d018:1:2::abcd"),
        ("client=mx.example.com[5.61.14.7]:25", "5.61.14.7"),
        # The address written twice, once IPv4-mapped: one address.
        ("from [::ffff:5.61.14.7] (5.61.14.7)", "5.61.14.7"),
        # A timestamp's 10:30:00 is not an IPv6 address; the reply code 5.7.606 is no IPv4 one.
        ("2025-01-01T10:30:00.000Z 10:30:00 550 5.7.606 [5.61.14.7]", "5.61.14.7"),
        # Private and documentation addresses cannot be listed: the one that can is meant.
        ("Received: from [10.0.0.5] by mx; banned sending IP [5.61.14.7]", "5.61.14.7"),
        ("IP [5.61.14.07] or rather [5.61.14.7]", "5.61.14.7"),
        # Several lines of a bounce.
        ("Reporting-MTA: dns; mx\n\nDiagnostic-Code: smtp; " + REJECTION, "5.61.14.7"),
    ],
)
def test_the_one_address_is_found_in_a_pasted_rejection(text, expected):
    assert taken(text) == (expected, True)


@pytest.mark.parametrize(
    "text",
    [
        "5.61.14.7 81.2.69.160",
        "banned sending IP [5.61.14.7]; see https://delist.example.org/?ip=81.2.69.160",
        "[5.61.14.7] and [2a05:d018:1:2::abcd]",
    ],
)
def test_several_different_addresses_are_refused_and_named(text):
    error = refusal(text)
    assert error.code == "several"
    message = error.messages[0]
    assert "several IP addresses" in message
    for address in ("5.61.14.7", "81.2.69.160", "2a05:d018:1:2::abcd"):
        assert (address in message) == (address in text)


def test_a_paste_with_very_many_addresses_names_only_the_first_few():
    text = " ".join(f"81.2.69.{i}" for i in range(1, 21))
    message = refusal(text).messages[0]
    assert "81.2.69.5," in message and "81.2.69.6" not in message and message.count("…") == 1


@pytest.mark.parametrize(
    "text",
    [
        "nothing to see here",
        "550 5.7.606 Access denied; To request removal please visit https://delist.example.org/",
        "at 10:30:00 today",
        "IP [٥.٦١.١٤.٧]",  # Arabic-Indic digits are not ASCII digits: no address here
        "IP [５.６１.１４.７]",  # nor are fullwidth ones
        "x " * 100,
    ],
)
def test_a_paste_without_an_address_says_so(text):
    error = refusal(text)
    assert error.code == "not_found"
    assert "We found no IP address in what you pasted" in error.messages[0]


@pytest.mark.parametrize("text", ["5.61.14.07", "[5.61.14.07]", "banned sending IP [5.61.14.07]; To request"])
def test_a_leading_zero_is_named(text):
    error = refusal(text)
    assert error.code == "leading_zero"
    assert "has a leading zero in “07”" in error.messages[0]
    assert "5.61.14.07" in error.messages[0]


@pytest.mark.parametrize(
    ("text", "code"),
    [
        # Strict parsing stays strict: no inet_aton forms, no zone ids, no networks.
        ("5.61.14", "invalid"),
        ("0x5.61.14.7", "invalid"),
        ("5.61.3591", "invalid"),
        ("84938247", "invalid"),
        ("٥.٦١.١٤.٧", "invalid"),
        ("5.61.14.256", "invalid"),
        ("fe80::1%eth0", "zone"),
        ("2a05:d018::1%eth0", "zone"),
        ("banned sending IP [2a05:d018::1%eth0]", "zone"),
        ("5.61.14.0/24", "network"),
        ("5.61.14.7/128", "network"),  # /128 is an IPv6 prefix: not a way of writing one IPv4 address
        ("2a05:d018::/32", "network"),
        ("banned range [5.61.14.0/24]", "network"),
        ("10.0.0.1", "non_global"),
        ("[192.168.1.1]", "non_global"),
        ("banned sending IP [203.0.113.7]; To request removal", "non_global"),
        ("", "required"),
        ('  ""  ', "required"),
        ("mail.example.com", "invalid"),
        ("7.14.61.5.bl.example.org", "invalid"),
    ],
)
def test_what_is_not_one_public_address_is_refused_with_the_strict_parsers_reason(text, code):
    error = refusal(text)
    assert error.code == code
    assert error.messages[0]


def test_an_address_glued_to_a_hostname_or_a_longer_number_is_not_taken():
    # 7.14.61.5.bl.example.org is a DNSBL query name, 1.5.61.14.7 no address at all.
    assert refusal("query 7.14.61.5.bl.example.org failed").code == "not_found"
    assert refusal("version 1.5.61.14.7 here").code == "not_found"


def test_the_longest_accepted_paste_is_found_in_quickly():
    # A hostile paste of the field's full length: the scan is linear, so this takes milliseconds.
    text = ("1:" * (MAX_PASTE // 2))[: MAX_PASTE - 12] + " [5.61.14.7]"
    assert len(text) <= MAX_PASTE
    assert taken(text) == ("5.61.14.7", True)


def test_it_is_pure_the_same_text_always_gives_the_same_answer():
    assert {taken(REJECTION) for _ in range(3)} == {("5.61.14.7", True)}
