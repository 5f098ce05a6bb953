"""Request and response bodies of the notifications API."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from dockyard.accounts.schemas import UtcDateTime
from dockyard.alerts.services import Preferences, WatchView


class SecurityMail(BaseModel):
    entitlement: int
    publisher: str
    product: str
    product_name: str
    tier: str
    notify_security: bool = Field(description="security mail about this product (hold, lift, revocation)")


class Notifications(BaseModel):
    critical_now: bool = Field(description="a new Critical finding of a watched repository mailed at once")
    daily_digest: bool = Field(
        description="a daily digest of the other new findings (and of the Critical "
        "ones when critical_now is off)"
    )
    digest_sent_at: UtcDateTime | None = Field(description="when the last digest went out")
    security_mail: list[SecurityMail] = Field(description="per active entitlement")


class SecurityMailIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    entitlement: StrictInt = Field(ge=1, le=2**31 - 1)
    notify_security: StrictBool


class NotificationsIn(BaseModel):
    """Fields left out stay as they are."""

    model_config = ConfigDict(extra="forbid")

    critical_now: StrictBool | None = None
    daily_digest: StrictBool | None = None
    security_mail: list[SecurityMailIn] = Field(default_factory=list, max_length=1000)


class Watch(BaseModel):
    repository: str
    since: UtcDateTime = Field(description="when the watch began: findings seen before are not mailed")
    noticed_until: UtcDateTime = Field(
        description="findings first seen or reopened up to here were looked at"
    )
    readable: bool = Field(description="false: you lost access to the repository; nothing is mailed")
    told: int = Field(description="findings mailed so far")


class WatchList(BaseModel):
    watches: list[Watch]


def notifications_out(prefs: Preferences, entitlements: list[Any]) -> dict[str, Any]:
    return {
        "critical_now": prefs.critical_now,
        "daily_digest": prefs.daily_digest,
        "digest_sent_at": prefs.digest_sent_at,
        "security_mail": [
            {
                "entitlement": e.id,
                "publisher": e.publisher,
                "product": e.product,
                "product_name": e.product_name,
                "tier": e.tier,
                "notify_security": e.notify_security,
            }
            for e in entitlements
        ],
    }


def watch_out(w: WatchView) -> dict[str, Any]:
    return {
        "repository": w.repository,
        "since": w.since,
        "noticed_until": w.noticed_until,
        "readable": w.readable,
        "told": w.told,
    }
