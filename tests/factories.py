"""Builders for test data: a corp with an org tree, users in roles, customers."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import sqlalchemy.orm as so
from cryptography.fernet import Fernet

from app.services.corps import SecretBox, create_corp
from models.crm import Customer, Tag
from models.org import Corp, Department, DepartmentLeader, Role, User, UserDepartment

_seq = itertools.count(1)


def corp(
    session: so.Session,
    *,
    platform: str = "dingtalk",
    corp_id: str | None = None,
    name: str = "测试公司",
    secrets: dict[str, str] | None = None,
    box: SecretBox | None = None,
) -> Corp:
    box = box or SecretBox(Fernet.generate_key().decode())
    return create_corp(
        session,
        box,
        platform=platform,
        platform_corp_id=corp_id or f"ding{next(_seq):06d}",
        name=name,
        agent_id="1000",
        app_key="appkey",
        secrets=secrets,
    )


def department(session: so.Session, corp: Corp, name: str, parent: Department | None = None) -> Department:
    dept = Department(
        corp_id=corp.id,
        platform_dept_id=str(next(_seq)),
        name=name,
        parent_id=parent.id if parent else None,
        depth=(parent.depth + 1) if parent else 0,
    )
    session.add(dept)
    session.flush()
    dept.path = f"{parent.path if parent else '/'}{dept.id}/"
    session.flush()
    return dept


def user(
    session: so.Session,
    corp: Corp,
    name: str,
    *,
    role: str = Role.SALESPERSON,
    departments: list[Department] = (),
    leads: list[Department] = (),
    active: bool = True,
) -> User:
    person = User(
        corp_id=corp.id,
        platform_userid=f"u{next(_seq)}",
        unionid=f"union{next(_seq)}",
        name=name,
        role=role,
        active=active,
        main_department_id=departments[0].id if departments else None,
    )
    session.add(person)
    session.flush()
    for dept in departments:
        session.add(UserDepartment(corp_id=corp.id, user_id=person.id, department_id=dept.id))
    for dept in leads:
        session.add(DepartmentLeader(corp_id=corp.id, user_id=person.id, department_id=dept.id))
    session.flush()
    return person


def tag(session: so.Session, corp: Corp, name: str, group: str = "意向") -> Tag:
    t = Tag(corp_id=corp.id, group_name=group, name=name)
    session.add(t)
    session.flush()
    return t


def customer(session: so.Session, corp: Corp, owner: User | None, name: str | None = None, **kwargs) -> Customer:
    from app.services.normalize import company_name

    name = name or f"客户{next(_seq)}有限公司"
    c = Customer(
        corp_id=corp.id,
        name=name,
        name_norm=company_name(name),
        owner_id=owner.id if owner else None,
        in_pool=owner is None,
        **kwargs,
    )
    session.add(c)
    session.flush()
    return c


@dataclass
class Org:
    """A small corp: 总部 → 销售部 → (华东组, 华南组), with a manager leading 销售部."""

    corp: Corp
    hq: Department
    sales: Department
    east: Department
    south: Department
    admin: User
    manager: User
    east_lead: User
    alice: User  # salesperson in 华东组
    bob: User  # salesperson in 华南组
    extra: dict = field(default_factory=dict)


def org(session: so.Session, **corp_kwargs) -> Org:
    c = corp(session, **corp_kwargs)
    hq = department(session, c, "总部")
    sales = department(session, c, "销售部", hq)
    east = department(session, c, "华东组", sales)
    south = department(session, c, "华南组", sales)
    admin = user(session, c, "管理员", role=Role.ADMIN, departments=[hq])
    manager = user(session, c, "王经理", role=Role.MANAGER, departments=[sales], leads=[sales])
    east_lead = user(session, c, "东组长", role=Role.MANAGER, departments=[east], leads=[east])
    alice = user(session, c, "张三", departments=[east])
    bob = user(session, c, "李四", departments=[south])
    return Org(c, hq, sales, east, south, admin, manager, east_lead, alice, bob)


def login(client, who: User, corp: Corp) -> None:
    resp = client.post("/api/v1/auth/dev", json={"corpId": corp.platform_corp_id, "userid": who.platform_userid})
    assert resp.status_code == 200, resp.get_json()


def CustomerTagRow(customer: Customer, tag: Tag):
    from models.crm import CustomerTag

    return CustomerTag(corp_id=customer.corp_id, customer_id=customer.id, tag_id=tag.id)
