"""Sign-up, logout and login in chromium, with the mouse and with the keyboard."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect
from tests.browser.helpers import EMAIL, PASSWORD, log_in, log_out, sign_up

pytestmark = pytest.mark.browser

# The login page's focusable elements before the form: the site's name and
# the Log in and Sign up links. A few more Tab presses leave room for a
# skip link or a new navigation item.
MAX_TABS_TO_FORM = 8


def test_signup_first_account_owns_default_team(page: Page) -> None:
    page.goto("/signup")
    expect(page.get_by_role("heading", name="Sign up")).to_be_visible()
    expect(page.get_by_text("this one becomes the administrator")).to_be_visible()

    sign_up(page)

    expect(page).to_have_url(re.compile(r"/dashboard$"))
    expect(page.get_by_role("navigation", name="Site")).to_contain_text(EMAIL)
    page.goto("/teams")
    expect(page.get_by_role("link", name="default")).to_be_visible()
    expect(page.get_by_role("main")).to_contain_text("(owner)")


def test_signup_mismatched_passwords_shows_error(page: Page) -> None:
    page.goto("/signup")
    page.get_by_label("Email address").fill(EMAIL)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password again").fill(PASSWORD + " typo")
    page.get_by_role("button", name="Sign up").click()

    expect(page.get_by_role("alert")).to_contain_text("The two passwords differ")
    expect(page.get_by_label("Email address")).to_have_value(EMAIL)
    expect(page.get_by_role("button", name="Log out")).to_have_count(0)


def test_logout_then_login_again(page: Page) -> None:
    sign_up(page)

    log_out(page)
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    page.goto("/teams")
    expect(page).to_have_url(re.compile(r"/login\?next=%2Fteams$"))

    # The login form on that page leads back to the page that asked for it.
    page.get_by_label("Email address").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/teams$"))
    expect(page.get_by_role("navigation", name="Site")).to_contain_text(EMAIL)


def test_login_wrong_password_shows_one_message(page: Page) -> None:
    sign_up(page)
    log_out(page)

    log_in(page, password="not the password at all")

    expect(page.get_by_role("alert")).to_contain_text(
        "The email address or password is wrong"
    )
    expect(page.get_by_role("button", name="Log out")).to_have_count(0)


def test_login_form_keyboard_only(page: Page) -> None:
    sign_up(page)
    log_out(page)
    page.goto("/login")
    email = page.get_by_label("Email address")

    for _ in range(MAX_TABS_TO_FORM):
        page.keyboard.press("Tab")
        if email.evaluate("field => field === document.activeElement"):
            break
    expect(email).to_be_focused()
    outline = email.evaluate("field => getComputedStyle(field).outlineStyle")
    assert outline != "none", "the focused email field shows no focus outline"

    page.keyboard.type(EMAIL)
    page.keyboard.press("Tab")
    expect(page.get_by_label("Password")).to_be_focused()
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")

    expect(page).to_have_url(re.compile(r"/dashboard$"))
    expect(page.get_by_role("navigation", name="Site")).to_contain_text(EMAIL)
