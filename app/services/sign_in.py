"""Sign-in from the DingTalk workbench (免登): a one-time auth code becomes a session user.

The code is exchanged through the platform (`topapi/v2/user/getuserinfo`, fact sheet §3.2); the person
is then found in our mirror of the org, or fetched and added when the org sync has not seen them yet.
Every refusal is a 4xx naming why; nothing here starts the session — the view does, after success.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
import sqlalchemy.orm as so

from app.errors import ApiError, Forbidden, NotFound, Unauthorized
from app.services.org_sync import apply_users
from app.services.platform import ClientFactory, unavailable
from integrations.base import (
    InvalidCodeError,
    NotFoundError,
    PermissionDeniedError,
    PlatformClient,
    PlatformError,
    SignInIdentity,
)
from models.org import Corp, Platform, User


@dataclass(frozen=True)
class SignedIn:
    user: User
    corp: Corp
    created: bool  # first time we saw this person: fetched from the platform during sign-in


def find_dingtalk_corp(session: so.Session, corp_id: str) -> Corp:
    corp = session.execute(
        sa.select(Corp).where(Corp.platform == Platform.DINGTALK, Corp.platform_corp_id == corp_id)
    ).scalar_one_or_none()
    if corp is None or not corp.active:
        raise NotFound("该企业未绑定本应用 / this corp is not bound to the app", code="unknown_corp",
                       fields={"corpId": "unknown"})
    return corp


def outside_range(field: str) -> Forbidden:
    return Forbidden("你不在本应用的可见范围内，请联系管理员 / you are outside the app's visible range",
                     code="outside_visible_range", fields={field: "user not visible to the app"})


def _user_by_userid(session: so.Session, corp: Corp, userid: str, *, case_insensitive: bool) -> User | None:
    column = sa.func.lower(User.platform_userid) if case_insensitive else User.platform_userid
    return session.execute(
        sa.select(User).where(User.corp_id == corp.id, column == (userid.lower() if case_insensitive else userid))
    ).scalars().first()


def user_for_identity(session: so.Session, corp: Corp, client: PlatformClient, identity: SignInIdentity, *,
                      field: str, case_insensitive: bool = False,
                      not_found: Callable[[], ApiError] | None = None) -> SignedIn:
    """The signed-in person in our mirror of the org, fetched and added when the sync has not seen them yet
    (both platforms). `field` names the request field refusals point at; `not_found` is the refusal when the
    platform no longer knows the userid (default: outside the visible range)."""
    user = _user_by_userid(session, corp, identity.userid, case_insensitive=case_insensitive)
    created = False
    if user is None:
        try:
            person = client.get_user(identity.userid)
        except PermissionDeniedError:
            raise outside_range(field) from None
        except NotFoundError:
            raise (not_found or (lambda: outside_range(field)))() from None
        except PlatformError as exc:
            raise unavailable(exc) from exc
        try:
            # A savepoint: a concurrent first sign-in of the same person may win the insert.
            with session.begin_nested():
                apply_users(session, corp, [person], None)
            created = True
        except sa.exc.IntegrityError:
            pass
        user = _user_by_userid(session, corp, identity.userid, case_insensitive=case_insensitive)
        if user is None:  # pragma: no cover - only if the row vanished between the two statements
            raise unavailable(PlatformError("用户创建失败 / could not add the user", platform=corp.platform))
    if not user.active:
        raise Forbidden("账号已停用，请联系管理员 / your account is deactivated", code="account_disabled",
                        fields={field: "user deactivated"})
    if identity.unionid and user.unionid != identity.unionid:
        user.unionid = identity.unionid
    session.flush()
    return SignedIn(user=user, corp=corp, created=created)


def sign_in_with_dingtalk(session: so.Session, *, clients: ClientFactory, corp_id: str, auth_code: str) -> SignedIn:
    """Exchange `auth_code` for the user of corp `corp_id`; create them if the sync has not yet."""
    corp = find_dingtalk_corp(session, corp_id)
    client = clients(corp)
    try:
        identity = client.exchange_sign_in_code(auth_code)
    except InvalidCodeError:
        raise Unauthorized("免登授权码无效、已过期或已使用，请重新进入应用 / sign-in code expired or already used",
                           code="invalid_auth_code", fields={"authCode": "expired or already used"}) from None
    except PermissionDeniedError:
        raise outside_range("authCode") from None
    except PlatformError as exc:
        raise unavailable(exc) from exc

    return user_for_identity(
        session, corp, client, identity, field="authCode",
        not_found=lambda: Forbidden("钉钉通讯录中找不到你 / you are not in the corp's address book",
                                    code="user_not_in_org", fields={"authCode": "user not found"}))
