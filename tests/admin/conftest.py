"""Fixtures of the console tests: bureau accounts of each role and a signed-in browser client."""

from __future__ import annotations

import re

import pytest

from server import accounts
from server.extensions import db

PASSWORD = "correct-horse-battery"


def csrf_token(html: str) -> str:
    found = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html) or re.search(
        r'value="([^"]+)"[^>]*name="csrf_token"', html
    )
    assert found, "no CSRF token on the page"
    return found.group(1)


def sign_in(client, username: str, password: str = PASSWORD, next_: str | None = None):
    page = client.get("/admin/login")
    token = csrf_token(page.get_data(as_text=True))
    url = "/admin/login" + (f"?next={next_}" if next_ else "")
    return client.post(url, data={"csrf_token": token, "username": username, "password": password})


@pytest.fixture
def make_account(app):
    def make(role: str = "admin", username: str | None = None) -> str:
        username = username or f"{role}-user"
        with app.app_context():
            accounts.create_admin(username, PASSWORD, role)
            db.session.commit()
        return username

    return make


@pytest.fixture
def console(app, make_account):
    """A client signed in with the given role: console("auditor")."""

    def signed_in(role: str = "admin"):
        client = app.test_client()
        answer = sign_in(client, make_account(role))
        assert answer.status_code == 302, answer.get_data(as_text=True)
        return client

    return signed_in
