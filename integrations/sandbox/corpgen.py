"""Deterministic fake organisations for the sandbox: the same seed always gives the same corp.

A corp looks like a small Chinese sales company: a root department, functional departments, a sales
department split into regions and teams, a leader for most departments, a few people who belong to two
departments, and a boss who leads the root.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import random
from dataclasses import dataclass, field
from typing import Any

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华建国志红玉兰晓东海燕鹏宇婷浩然子涵思远嘉怡"
TITLES = {"sales": ["销售代表", "高级销售", "大客户经理"], "default": ["专员", "主管", "高级专员"]}

# (name, kind, children)
TREE: list[tuple[str, str, list]] = [
    ("总经办", "default", []),
    ("销售部", "sales", [
        ("华东大区", "sales", [("上海一组", "sales", []), ("杭州组", "sales", [])]),
        ("华北大区", "sales", [("北京一组", "sales", []), ("天津组", "sales", [])]),
        ("华南大区", "sales", [("深圳组", "sales", []), ("广州组", "sales", [])]),
    ]),
    ("市场部", "default", [("品牌组", "default", []), ("渠道组", "default", [])]),
    ("客户成功部", "default", []),
    ("财务部", "default", []),
    ("人事行政部", "default", []),
    ("研发中心", "default", [("产品组", "default", []), ("工程组", "default", [])]),
]


@dataclass
class SandboxDept:
    dept_id: int
    name: str
    parent_id: int | None
    order: int
    kind: str = "default"
    manager_userids: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        d: dict[str, Any] = {"dept_id": self.dept_id, "name": self.name, "auto_add_user": False,
                             "create_dept_group": False}
        if self.parent_id is not None:
            d["parent_id"] = self.parent_id
        return d


@dataclass
class SandboxUser:
    userid: str
    unionid: str
    name: str
    title: str
    mobile: str
    email: str
    dept_ids: list[int]
    dept_orders: dict[int, int]
    job_number: str
    hired_date: int
    active: bool = True  # DingTalk meaning: has activated the account
    admin: bool = False
    boss: bool = False


@dataclass
class SandboxCorp:
    corp_id: str
    name: str
    app_key: str
    app_secret: str
    agent_id: int
    callback_token: str
    callback_aes_key: str
    depts: dict[int, SandboxDept] = field(default_factory=dict)
    users: dict[str, SandboxUser] = field(default_factory=dict)
    callback_url: str | None = None
    next_dept_id: int = 100
    # Lookup indexes, rebuilt lazily after `touch()`: a 50,000-person corp answers thousands of listings,
    # and scanning every person per listing made the sandbox, not the client, the bottleneck.
    _index: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    def touch(self) -> None:
        """Call after changing departments, people or memberships directly."""
        self._index = None

    def _indexes(self) -> dict[str, Any]:
        index = self._index
        if index is None:
            children: dict[int, list[SandboxDept]] = {}
            for d in self.depts.values():
                if d.parent_id is not None:
                    children.setdefault(d.parent_id, []).append(d)
            members: dict[int, list[SandboxUser]] = {}
            for u in self.users.values():
                for d in u.dept_ids:
                    members.setdefault(d, []).append(u)
            for d, people in members.items():
                people.sort(key=lambda u, d=d: (u.dept_orders.get(d, 0), u.userid))
            for kids in children.values():
                kids.sort(key=lambda d: (d.order, d.dept_id))
            index = self._index = {"children": children, "members": members,
                                   "unionid": {u.unionid: u for u in self.users.values()}}
        return index

    def children(self, dept_id: int) -> list[SandboxDept]:
        return list(self._indexes()["children"].get(dept_id, ()))

    def members(self, dept_id: int) -> list[SandboxUser]:
        return list(self._indexes()["members"].get(dept_id, ()))

    def user_by_unionid(self, unionid: str) -> SandboxUser | None:
        return self._indexes()["unionid"].get(unionid)

    def is_leader(self, user: SandboxUser, dept_id: int) -> bool:
        dept = self.depts.get(dept_id)
        return bool(dept and user.userid in dept.manager_userids)

    def credentials(self) -> dict[str, Any]:
        return {
            "corpId": self.corp_id, "name": self.name, "appKey": self.app_key, "appSecret": self.app_secret,
            "agentId": self.agent_id, "callbackToken": self.callback_token,
            "callbackAesKey": self.callback_aes_key, "callbackUrl": self.callback_url,
            "departments": len(self.depts), "users": len(self.users),
        }


def _token(rng: random.Random, n: int, alphabet: str = "abcdefghijklmnopqrstuvwxyz0123456789") -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _aes_key(rng: random.Random) -> str:
    return base64.b64encode(bytes(rng.getrandbits(8) for _ in range(32))).decode().rstrip("=")


def _grow_tree(corp: SandboxCorp, rng: random.Random, total: int, next_id: list[int]) -> None:
    """Add teams under existing departments until the corp has `total`: sales regions split most."""
    depth = {1: 0}
    for d in sorted(corp.depts.values(), key=lambda d: d.dept_id):
        if d.parent_id is not None:
            depth[d.dept_id] = depth[d.parent_id] + 1
    parents = [d for d in corp.depts.values() if d.dept_id != 1]
    weights = [3 if d.kind == "sales" else 1 for d in parents]
    counts: dict[int, int] = {}
    while len(corp.depts) < total:
        parent = rng.choices(parents, weights)[0]
        counts[parent.dept_id] = counts.get(parent.dept_id, 0) + 1
        dept_id = next_id[0]
        next_id[0] += 1
        dept = SandboxDept(dept_id, f"{parent.name[:12]}-{counts[parent.dept_id]}组", parent.dept_id,
                           counts[parent.dept_id] * 10, parent.kind)
        corp.depts[dept_id] = dept
        depth[dept_id] = depth[parent.dept_id] + 1
        if depth[dept_id] < 6:
            parents.append(dept)
            weights.append(3 if dept.kind == "sales" else 1)


def generate_corp(seed: int | str = 1, *, index: int = 0, users: int = 60, depts: int | None = None,
                  name: str | None = None) -> SandboxCorp:
    """`depts` beyond the fixed functional tree (21 departments) adds generated teams."""
    rng = random.Random(f"{seed}:{index}")
    corp = SandboxCorp(
        corp_id="ding" + _token(rng, 16),
        name=name or rng.choice(["星河", "云帆", "青禾", "远山", "晨光", "海川"]) + "科技有限公司",
        app_key="ding" + _token(rng, 16),
        app_secret=_token(rng, 64, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"),
        agent_id=rng.randint(1_000_000_000, 3_999_999_999),
        callback_token=_token(rng, 24),
        callback_aes_key=_aes_key(rng),
    )
    corp.depts[1] = SandboxDept(1, corp.name, None, 0)
    next_id = [2]

    def add(children: list, parent: int) -> None:
        for order, (dname, kind, sub) in enumerate(children):
            dept_id = next_id[0]
            next_id[0] += 1
            corp.depts[dept_id] = SandboxDept(dept_id, dname, parent, order * 10, kind)
            add(sub, dept_id)

    add(TREE, 1)
    if depts is not None and depts > len(corp.depts):
        _grow_tree(corp, rng, depts, next_id)
    corp.next_dept_id = max(100, next_id[0])
    leaves = [d for d in corp.depts.values() if d.dept_id != 1 and not corp.children(d.dept_id)]
    # Sales teams are the bulk of the company.
    weights = [4 if d.kind == "sales" else 1 for d in leaves]
    cum_weights = list(itertools.accumulate(weights))
    used_names: set[str] = set()

    def person(i: int, dept_ids: list[int], title: str) -> SandboxUser:
        while True:
            full = rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice([1, 2])))
            if full not in used_names:
                used_names.add(full)
                break
            if len(used_names) > 20_000:  # big corps run out of unique two-character names: number them
                full = f"{full}{i}"
                break
        userid = f"user{i:04d}"
        unionid = hashlib.sha1(f"{corp.corp_id}:{userid}".encode()).hexdigest()[:24]
        return SandboxUser(
            userid=userid, unionid=unionid, name=full, title=title,
            mobile=f"13{rng.randint(100000000, 999999999)}", email=f"{userid}@example.com",
            dept_ids=dept_ids, dept_orders={d: rng.randint(1, 1000) for d in dept_ids},
            job_number=f"E{i:05d}", hired_date=1_500_000_000_000 + rng.randint(0, 250_000_000_000),
            active=rng.random() > 0.08,
        )

    office = next(d.dept_id for d in corp.depts.values() if d.name == "总经办")
    boss = person(1, [1, office], "总经理")
    boss.boss = boss.admin = True
    corp.users[boss.userid] = boss
    corp.depts[1].manager_userids.append(boss.userid)
    for i in range(2, max(users, 2) + 1):
        # Everyone else is weighted; the first few staff make sure no team is empty.
        dept = leaves[i - 2] if i - 2 < len(leaves) else rng.choices(leaves, cum_weights=cum_weights)[0]
        titles = TITLES["sales"] if dept.kind == "sales" else TITLES["default"]
        corp.users[f"user{i:04d}"] = person(i, [dept.dept_id], rng.choice(titles))

    # Leaders: each non-root department gets one of its (sub-tree) members; leaders of branches also
    # sit in the branch department itself, so they show up in its listing like in a real org.
    by_dept: dict[int, dict[str, SandboxUser]] = {}
    for u in corp.users.values():
        for d in u.dept_ids:
            by_dept.setdefault(d, {})[u.userid] = u
    kids_of: dict[int, list[int]] = {}
    for d in corp.depts.values():
        if d.parent_id is not None:
            kids_of.setdefault(d.parent_id, []).append(d.dept_id)
    leading = set(corp.depts[1].manager_userids)
    for dept in sorted(corp.depts.values(), key=lambda d: -d.dept_id):
        if dept.dept_id == 1:
            continue
        candidates = [u for u in by_dept.get(dept.dept_id, {}).values() if u.userid != boss.userid]
        if not candidates:
            seen: dict[str, SandboxUser] = {}
            for kid in kids_of.get(dept.dept_id, ()):
                seen.update((k, v) for k, v in by_dept.get(kid, {}).items() if not v.boss)
            candidates = list(seen.values())
        if not candidates:
            continue
        fresh = [u for u in candidates if u.userid not in leading]
        leader = rng.choice(sorted(fresh or candidates, key=lambda u: u.userid))
        dept.manager_userids.append(leader.userid)
        leading.add(leader.userid)
        if dept.dept_id not in leader.dept_ids:
            leader.dept_ids.append(dept.dept_id)
            leader.dept_orders[dept.dept_id] = 0
            by_dept.setdefault(dept.dept_id, {})[leader.userid] = leader
        leader.title = "负责人" if dept.kind == "default" else "销售经理"

    # A few people work across two departments (e.g. a sales rep also in customer success).
    plain = [u for u in corp.users.values() if len(u.dept_ids) == 1 and not u.boss]
    for u in rng.sample(plain, k=min(len(plain), max(2, users // 12))):
        other = rng.choice([d for d in leaves if d.dept_id not in u.dept_ids])
        u.dept_ids.append(other.dept_id)
        u.dept_orders[other.dept_id] = rng.randint(1, 1000)
    if depts is not None:
        # Big generated corps also have people in three departments (matrix roles).
        for u in rng.sample(plain, k=min(len(plain), users // 50)):
            others = [d for d in leaves if d.dept_id not in u.dept_ids]
            if others:
                third = rng.choice(others)
                u.dept_ids.append(third.dept_id)
                u.dept_orders[third.dept_id] = rng.randint(1, 1000)
    corp.touch()
    return corp
