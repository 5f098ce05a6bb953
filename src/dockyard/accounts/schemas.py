"""Request and response bodies of the accounts API (pydantic v2; every bound checked here)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    StringConstraints,
)

from dockyard.accounts.passwords import MAX_PASSWORD_LENGTH
from dockyard.accounts.services import MAX_TOKEN_DAYS, MIN_PASSWORD_LENGTH
from dockyard.authz import Scope, StaffRole

AccountName = Annotated[
    StrictStr, StringConstraints(min_length=2, max_length=64, pattern=r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")
]
# Free text may hold anything but NUL, which PostgreSQL cannot store (and logins refuse).
NO_NUL = r"^[^\x00]*$"
Password = Annotated[
    StrictStr,
    StringConstraints(min_length=MIN_PASSWORD_LENGTH, max_length=MAX_PASSWORD_LENGTH, pattern=NO_NUL),
]
MemberRole = Annotated[StrictStr, StringConstraints(pattern=r"^(owner|maintainer|reader)$")]
RobotRole = Annotated[StrictStr, StringConstraints(pattern=r"^(maintainer|reader)$")]


def _utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


# The database keeps naive UTC (db.utcnow); an RFC 3339 date-time, as documented, carries its offset ("Z").
UtcDateTime = Annotated[dt.datetime, AfterValidator(_utc)]


class Strict(BaseModel):
    """Unknown fields are refused, and no value is coerced (``true`` is no number, "5" is no integer)."""

    # Strictness per field (StrictStr, StrictInt, StrictBool): model-wide strict mode would also refuse
    # enum values given as strings, which is what JSON has.
    model_config = ConfigDict(extra="forbid")


class Me(BaseModel):
    name: str
    kind: str = Field(description="user or robot")
    staff: list[StaffRole]
    via: str = Field(description="how this request authenticated: password, token, robot, session")
    scopes: list[Scope]


class NewUser(Strict):
    username: AccountName
    password: Password
    email: Annotated[StrictStr, StringConstraints(max_length=320, pattern=NO_NUL)] | None = None
    staff: list[StaffRole] = Field(default_factory=list, max_length=len(StaffRole))


class UserOut(BaseModel):
    username: str
    email: str | None = None
    active: bool = True
    staff: list[StaffRole]


class UserList(BaseModel):
    users: list[UserOut]
    next_offset: int | None = None


class NewOrg(Strict):
    name: AccountName


class OrgOut(BaseModel):
    name: str


class Member(BaseModel):
    username: str
    role: str


class MemberList(BaseModel):
    members: list[Member]
    next_offset: int | None = None


class MemberRoleIn(Strict):
    role: MemberRole


class NewRobot(Strict):
    name: AccountName
    role: RobotRole = "reader"


class RobotOut(BaseModel):
    username: str
    role: str


class RobotCreated(RobotOut):
    secret: str = Field(description="shown once; log in as <org>+<name> with it")


class RobotList(BaseModel):
    robots: list[RobotOut]
    next_offset: int | None = None


class NewToken(Strict):
    name: Annotated[StrictStr, StringConstraints(min_length=1, max_length=100, pattern=NO_NUL)]
    expires_in_days: Annotated[StrictInt, Field(ge=1, le=MAX_TOKEN_DAYS)] | None = None
    scopes: list[Scope] = Field(
        default_factory=lambda: [Scope.PULL, Scope.PUSH], min_length=1, max_length=len(Scope)
    )


class TokenOut(BaseModel):
    id: int
    name: str
    scopes: list[Scope]
    revoked: bool
    created_at: UtcDateTime | None = None
    expires_at: UtcDateTime | None = None
    last_used_at: UtcDateTime | None = None


class TokenCreated(BaseModel):
    id: int
    name: str
    scopes: list[Scope]
    token: str = Field(description="the secret, shown once")


class TokenList(BaseModel):
    tokens: list[TokenOut]
    next_offset: int | None = None


class StaffGrantOut(BaseModel):
    username: str
    role: StaffRole


class StaffList(BaseModel):
    staff: list[StaffGrantOut]


class VisibilityIn(Strict):
    public: StrictBool


class VisibilityOut(BaseModel):
    name: str
    public: bool
