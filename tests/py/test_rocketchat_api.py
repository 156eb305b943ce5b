"""rcsim against pypi `rocketchat_API` 3.7.1 (REST).

What the library needs (protocol doc 6.4, 1.4, 1.6, 1.7):
- `login()` posts `{"password", "username"}` (or `"user"` for an email) and accepts only
  HTTP 200 with `status == "success"`, storing `data.authToken` / `data.userId`;
  HTTP 401 raises `RocketAuthenticationException`, anything else `RocketConnectionException`.
- other calls: non-2xx with `success: false` raises `RocketApiException`.

REST logins in this module (rate limiter: 10/min per route per IP): alice, super, the new
user, two wrong-password attempts = 5.
"""

from __future__ import annotations

import re
import uuid

import pytest
import requests
from rocketchat_API.APIExceptions.RocketExceptions import (
    RocketApiException,
    RocketAuthenticationException,
)
from rocketchat_API.rocketchat import RocketChat

from conftest import ADMIN_PASSWORD, ADMIN_USER, DEMO_PASSWORDS, HTTP_TIMEOUT_S

METEOR_ID = re.compile(r"^[23456789ABCDEFGHJKLMNPQRSTWXYZabcdefghijkmnopqrstuvwxyz]{17}$")
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def test_login_and_me(rcsim):
    rc = RocketChat("alice", DEMO_PASSWORDS["alice"], server_url=rcsim.base_url, timeout=HTTP_TIMEOUT_S)

    # login() stored the credentials from data.userId / data.authToken (1.4).
    user_id = rc.headers.get("X-User-Id")
    token = rc.headers.get("X-Auth-Token")
    assert user_id and token, rc.headers
    assert METEOR_ID.match(user_id), f"userId {user_id!r} is not a Meteor id"

    me = rc.me()
    assert me.get("success") is True, me
    assert me["username"] == "alice", me
    assert me["_id"] == user_id, me
    assert me.get("name") == "Alice", me
    assert me.get("active") is True, me
    assert "user" in me.get("roles", []), me
    # 1.6: `email` is only the first *verified* address; the demo emails are unverified.
    assert "email" not in me, me
    assert me.get("emails", [{}])[0].get("address") == "alice@example.com", me
    # REST dates are ISO strings.
    assert ISO_DATE.match(me.get("_updatedAt", "")), me


def test_admin_users_create_then_visible(rcsim):
    admin = RocketChat(ADMIN_USER, ADMIN_PASSWORD, server_url=rcsim.base_url, timeout=HTTP_TIMEOUT_S)

    suffix = uuid.uuid4().hex[:8]
    username = f"dave{suffix}"
    password = f"dave-pw-{suffix}"
    created = admin.users_create(
        email=f"{username}@example.com", name="Dave", password=password, username=username
    )
    assert created.get("success") is True, created
    user = created["user"]
    assert user["username"] == username, created
    assert user.get("name") == "Dave", created
    assert METEOR_ID.match(user["_id"]), created
    assert user.get("active") is True, created
    assert user.get("roles") == ["user"], created
    # `verified` was not sent, so the address is unverified (1.7 example).
    assert user.get("emails") == [{"address": f"{username}@example.com", "verified": False}], created
    assert "services" not in user, f"users.create leaked services: {created}"

    # It shows up through users.info.
    info = admin.users_info(username=username)
    assert info.get("success") is True, info
    assert info["user"]["_id"] == user["_id"], info
    assert info["user"]["username"] == username, info

    # Creating the same username again: 400 error-field-unavailable (1.2, 1.7).
    with pytest.raises(RocketApiException) as exc:
        admin.users_create(
            email=f"other{suffix}@example.com", name="Dave", password=password, username=username
        )
    assert exc.value.status_code == 400, exc.value.response
    assert exc.value.error_type == "error-field-unavailable", exc.value.response

    # And the new user can log in with the password it was given.
    dave = RocketChat(username, password, server_url=rcsim.base_url, timeout=HTTP_TIMEOUT_S)
    assert dave.headers.get("X-User-Id") == user["_id"]
    assert dave.me()["username"] == username


def test_wrong_password_raises_authentication_exception(rcsim):
    with pytest.raises(RocketAuthenticationException):
        RocketChat("bob", "not-bobs-password", server_url=rcsim.base_url, timeout=HTTP_TIMEOUT_S)

    # The library only looks at the 401; hold the body to the real server's shape (1.4).
    r = requests.post(
        rcsim.api("login"),
        json={"username": "bob", "password": "not-bobs-password"},
        timeout=HTTP_TIMEOUT_S,
    )
    assert r.status_code == 401, r.text
    assert r.json() == {
        "success": False,
        "error": 403,
        "status": "error",
        "message": "Incorrect password",
    }, r.text
