"""Accounts for the integration tests: users of every role and API tokens, written to the real
accounts topic, and signing a browser page in through the console's sign-in form."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from typing import Any

from infra.settings import Settings
from streams import topics
from streams.soc.accounts import ROLES, new_token, new_user, record
from streams.soc.compacted import produce


@dataclass(frozen=True)
class Account:
    name: str
    role: str
    password: str
    token: str

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def make_accounts(settings: Settings) -> dict[str, Account]:
    """One user per role (unique names), each with a password and an API token."""
    run = uuid.uuid4().hex[:6]
    accounts: dict[str, Account] = {}
    records = []
    for role in ROLES:
        name, password = f"{role}-{run}", secrets.token_urlsafe(16)
        token, stored = new_token(name, "tests")
        records += [record(new_user(name, role, password)), record(stored)]
        accounts[role] = Account(name, role, password, token)
    produce(settings, topics.ACCOUNTS, records)
    return accounts


def wait_healthy(base: str, process: Any, timeout_s: float = 120) -> None:
    """Until the worker at ``base`` answers /health with ok (its web server, feeds and accounts are up)."""
    import time

    import httpx

    deadline = time.monotonic() + timeout_s
    while True:
        assert process.running, process.log_tail()
        try:
            if httpx.get(f"{base}/health", timeout=5).json()["status"] == "ok":
                return
        except (httpx.HTTPError, ValueError):
            pass
        assert time.monotonic() < deadline, f"worker never became healthy:\n{process.log_tail()}"
        time.sleep(0.5)


def sign_in(page: Any, base: str, account: Account) -> None:
    """Sign ``page`` in through the form and wait for the console."""
    page.goto(base + "/")
    page.wait_for_url("**/login", timeout=30_000)
    page.fill('input[name="user"]', account.name)
    page.fill('input[name="password"]', account.password)
    page.click('button[type="submit"]')
    page.wait_for_selector("#whoami:has-text('" + account.name + "')", timeout=30_000)
