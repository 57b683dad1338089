"""Bulk writes used by the org sync, on SQLite and PostgreSQL: awkward values survive, keys match."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from app.services import bulk
from models.org import Department, User, UserDepartment
from tests import factories as f

AWKWARD = ["O'Brien \"x\" \\ ;--", "张三🙂", "", None, "a\nb\tc", "%(x)s :y ?"]


def test_insert_update_delete_round_trip(database):
    with database.session() as s:
        corp = f.corp(s)
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    u = User.__table__
    rows = [{"corp_id": corp.id, "platform_userid": f"p{i}", "name": name or "-", "title": name, "active": i % 2 == 0,
             "role": "salesperson", "created_at": when, "updated_at": when} for i, name in enumerate(AWKWARD)]
    with database.session() as s:
        back = bulk.insert_rows(s, u, rows, returning=("id", "platform_userid"))
    assert sorted(p for _, p in back) == sorted(f"p{i}" for i in range(len(AWKWARD)))
    ids = {p: pk for pk, p in back}
    with database.session() as s:
        got = {r.platform_userid: r for r in s.execute(
            sa.select(u).where(bulk.any_of(s, u.c.platform_userid, ["p0", "p1", "p3", "p5", "nobody"])))}
    assert set(got) == {"p0", "p1", "p3", "p5"}
    assert got["p0"].title == AWKWARD[0] and got["p1"].title == "张三🙂" and got["p3"].title is None
    assert got["p5"].title == "%(x)s :y ?" and got["p0"].created_at == when and got["p1"].active is False

    later = datetime(2026, 2, 1, tzinfo=UTC)
    with database.session() as s:
        bulk.update_rows(s, u, [{"id": ids["p0"], "title": "经理", "left_at": later},
                                {"id": ids["p1"], "title": None, "left_at": None}])
    with database.session() as s:
        p0, p1 = (s.get(User, ids[p]) for p in ("p0", "p1"))
        assert (p0.title, p0.left_at, p1.title, p1.left_at) == ("经理", later, None, None)

    with database.session() as s:
        dept = Department(corp_id=corp.id, platform_dept_id="1", name="总部", path="/", depth=0)
        s.add(dept)
        s.flush()
        dept_id = dept.id
    ud = UserDepartment.__table__
    members = [{"corp_id": corp.id, "user_id": pk, "department_id": dept_id, "sort_order": 1} for pk in ids.values()]
    with database.session() as s:
        bulk.insert_rows(s, ud, members, conflict=("user_id", "department_id"), update=("sort_order",))
        bulk.insert_rows(s, ud, [{**members[0], "sort_order": 9}], conflict=("user_id", "department_id"),
                         update=("sort_order",))
        bulk.insert_rows(s, ud, [{**members[1], "sort_order": 7}], conflict=("user_id", "department_id"))
    with database.session() as s:
        orders = dict(s.execute(sa.select(ud.c.user_id, ud.c.sort_order)).all())
    assert orders[ids["p0"]] == 9 and orders[ids["p1"]] == 1 and len(orders) == len(AWKWARD)
    with database.session() as s:
        bulk.delete_pairs(s, ud, "user_id", "department_id", [(ids["p0"], dept_id), (ids["p1"], dept_id + 1)])
    with database.session() as s:
        left = set(s.scalars(sa.select(ud.c.user_id)))
    assert ids["p0"] not in left and ids["p1"] in left and len(left) == len(AWKWARD) - 1


def test_empty_input_writes_nothing(database):
    with database.session() as s:
        assert bulk.insert_rows(s, User.__table__, [], returning=("id",)) == []
        bulk.update_rows(s, User.__table__, [])
        bulk.delete_pairs(s, UserDepartment.__table__, "user_id", "department_id", [])
        assert s.scalar(sa.select(sa.func.count()).select_from(User)) == 0


def test_upsert_fills_shared_values_and_rewrites_only_changed_rows(database):
    with database.session() as s:
        corp = f.corp(s)
        dept = Department(corp_id=corp.id, platform_dept_id="1", name="总部", path="/", depth=0)
        s.add(dept)
        s.flush()
        dept_id = dept.id
    when = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    with database.session() as s:
        back = bulk.insert_rows(s, User.__table__, [{"platform_userid": f"p{i}", "name": f"员工{i}"} for i in range(3)],
                                returning=("id",), const={"corp_id": corp.id, "active": True, "role": "salesperson",
                                                          "created_at": when, "updated_at": when})
    ids = [pk for (pk,) in back]
    with database.session() as s:
        got = s.execute(sa.select(User.corp_id, User.active, User.created_at).where(User.id.in_(ids))).all()
    assert got == [(corp.id, True, when)] * 3

    ud = UserDepartment.__table__
    rows = [{"user_id": pk, "department_id": dept_id, "sort_order": 1} for pk in ids]
    upsert = {"conflict": ("user_id", "department_id"), "update": ("sort_order",), "const": {"corp_id": corp.id}}
    with database.session() as s:
        bulk.insert_rows(s, ud, rows, **upsert)
    pg = database.dialect == "postgresql"

    def versions(s):  # PostgreSQL: xmin changes with every write; SQLite counts the rows written
        if pg:
            return dict(s.execute(sa.text("SELECT user_id, xmin::text FROM user_departments")).all())
        return s.scalar(sa.text("SELECT total_changes()"))

    with database.session() as s:
        before = versions(s)
        bulk.insert_rows(s, ud, [rows[0], {**rows[1], "sort_order": 5}, rows[2]], **upsert)
        after = versions(s)
        orders = dict(s.execute(sa.select(ud.c.user_id, ud.c.sort_order)).all())
        corps = set(s.scalars(sa.select(ud.c.corp_id)))
    assert orders == {ids[0]: 1, ids[1]: 5, ids[2]: 1} and corps == {corp.id}
    if pg:
        assert {pk for pk in ids if before[pk] != after[pk]} == {ids[1]}
    else:
        assert after - before == 1


def test_any_of_matches_awkward_values_exactly(database):
    """Quotes, backslashes, braces, commas, the word NULL and the empty string each match themselves and
    nothing else (PostgreSQL gets them as one array parameter)."""
    odd = ['a"b', "c\\d", "{x,y}", "NULL", "", " sp ", "张三🙂", "e\\\"f", "a\nb"]
    with database.session() as s:
        corp = f.corp(s)
    when = datetime(2026, 1, 2, tzinfo=UTC)
    u = User.__table__
    with database.session() as s:
        bulk.insert_rows(s, u, [{"platform_userid": v, "name": "-"} for v in [*odd, "plain", "b", "c", "null"]],
                         const={"corp_id": corp.id, "active": True, "role": "salesperson", "created_at": when,
                                "updated_at": when})
    with database.session() as s:
        found = set(s.scalars(sa.select(u.c.platform_userid).where(bulk.any_of(s, u.c.platform_userid,
                                                                               [*odd, None, "missing"]))))
        ids = list(s.scalars(sa.select(u.c.id).where(u.c.platform_userid.in_(["plain", "b"]))))
        by_id = set(s.scalars(sa.select(u.c.platform_userid).where(bulk.any_of(s, u.c.id, ids))))
    assert found == set(odd) and by_id == {"plain", "b"}
