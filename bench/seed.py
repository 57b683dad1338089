"""Bulk seeding of a realistic CRM corp into PostgreSQL for the customer-list benchmark.

The org (corp, 150 departments, 2,000 users, tags) goes in through the ORM like the app would write it;
customers, customer_tags, customer_collaborators, contacts and follow-ups go in with COPY (psycopg 3
``cursor.copy``), generated in one Python thread and streamed by another so generation and the server
work overlap. Ids are assigned here, so rows can reference each other without round trips; sequences are
moved past them afterwards.

Bulk-load discipline (as pg_restore does it): before a load the secondary indexes and the foreign keys of
the loaded tables are dropped, after it they are recreated from their saved definitions (foreign keys
*validated*), then ANALYZE. All of that is inside the timed window the seeding rate is computed over.

Used by ``bench/customer_list.py``; can also be run alone:
    .venv/bin/python bench/seed.py --customers 10000 --followups 50000
"""

from __future__ import annotations

import argparse
import os
import queue
import random
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import psycopg  # noqa: E402

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/crm_bench"
CORP_PLATFORM_ID = "dingbench"
NUL = "\\N"  # COPY text NULL
BIG_TABLES = ("customers", "customer_tags", "customer_collaborators", "contacts", "follow_ups")

# ----------------------------------------------------------------------------- vocabulary

CITIES = [
    ("上海市", "上海", "华东"), ("杭州市", "浙江", "华东"), ("南京市", "江苏", "华东"), ("苏州市", "江苏", "华东"),
    ("宁波市", "浙江", "华东"), ("合肥市", "安徽", "华东"), ("深圳市", "广东", "华南"), ("广州市", "广东", "华南"),
    ("东莞市", "广东", "华南"), ("佛山市", "广东", "华南"), ("厦门市", "福建", "华南"), ("北京市", "北京", "华北"),
    ("天津市", "天津", "华北"), ("石家庄市", "河北", "华北"), ("济南市", "山东", "华北"), ("青岛市", "山东", "华北"),
    ("武汉市", "湖北", "华中"), ("长沙市", "湖南", "华中"), ("郑州市", "河南", "华中"), ("成都市", "四川", "西南"),
    ("重庆市", "重庆", "西南"), ("昆明市", "云南", "西南"), ("西安市", "陕西", "西北"), ("兰州市", "甘肃", "西北"),
]
BRAND_CHARS = (
    "华泰达鑫恒盛源通信宏昌隆兴旺佳瑞丰嘉新联创天成海瀚博远金银光明正大中国际东方南北星辰宇宙阳晨浩"
    "永安康健力德仁和美富贵祥福禄寿云峰山川江河湖泽林森木青蓝绿紫红彩凯旋腾飞跃龙凤麒麟鹏程万里千百"
    "亿众智慧聪睿思维创意科技数码网讯电子微芯能源动力环保净水洁宝利益广汇聚合融汇诚信实业精工匠心"
)
INDUSTRY_WORDS = {
    "制造业": ["机械制造", "精密机械", "模具", "五金制品", "汽车零部件", "电气设备"],
    "软件/互联网": ["网络科技", "软件技术", "信息技术", "数据科技", "智能科技", "云计算"],
    "零售": ["商贸", "百货", "贸易", "连锁超市", "电子商务"],
    "医疗": ["医疗器械", "生物医药", "健康管理", "医药科技"],
    "教育": ["教育科技", "文化传播", "培训服务"],
    "金融": ["投资管理", "融资租赁", "资产管理"],
    "物流": ["物流", "供应链管理", "国际货运代理"],
    "建筑": ["建筑工程", "建设工程", "装饰工程", "建材"],
    "能源": ["新能源科技", "电力工程", "光伏科技"],
    "餐饮": ["餐饮管理", "食品", "酒店管理"],
    "农业": ["农业科技", "生态农业", "农产品"],
    "政府/事业单位": ["公共服务", "城市建设投资", "产业园管理"],
}
LEGAL_SUFFIXES = ["有限公司"] * 8 + ["股份有限公司", "有限责任公司"]
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华玲丹萍鹏辉飞鑫波宁健宇浩凯婷雪琳晨阳欣怡子涵梓轩"
TITLES = ["总经理", "采购经理", "技术总监", "财务经理", "IT主管", "行政主管", "董事长", "副总经理", "项目经理",
          "运营总监"]
ROLES = ["decision_maker", "influencer", "user", "purchaser", "other"]
MOBILE_PREFIXES = ["130", "131", "132", "135", "136", "137", "138", "139", "150", "151", "152", "155", "156", "158",
                   "159", "166", "170", "176", "177", "180", "181", "182", "185", "186", "187", "188", "189", "199"]
AREA_CODES = {"上海": "021", "北京": "010", "广东": "020", "浙江": "0571", "江苏": "025", "四川": "028",
              "湖北": "027", "重庆": "023", "天津": "022", "陕西": "029"}
FOLLOW_KINDS = ["call"] * 5 + ["wechat"] * 3 + ["visit"] * 2 + ["meeting", "other"]
FOLLOW_TEXTS = [
    "电话沟通了报价，客户关注交付周期，约下周再议", "拜访客户，演示了产品，采购经理比较认可", "微信发送了方案和报价单",
    "客户反馈预算要到下季度才批", "确认了需求清单，技术部需要做对接评估", "客户对比了竞品，价格是主要顾虑",
    "约了总经理下周二面谈", "寄送了样品，等待试用反馈", "客户要求提供案例和资质材料", "催款，财务说月底安排付款",
    "年度续约沟通，意向较强", "客户换了对接人，重新介绍了产品", "参加客户内部评审会，答疑", "电话未接通，稍后再联系",
    "客户提出定制需求，需要评估工作量", "合同条款已发法务审核", "回访使用情况，客户满意度较高",
    "展会上交换了名片，初步了解需求",
]
TAG_GROUPS: dict[str, list[tuple[str, float, str]]] = {
    "意向": [("高意向", 0.20, "red"), ("中意向", 0.45, "orange"), ("低意向", 0.35, "gray")],
    "来源": [("展会", 0.15, "blue"), ("官网", 0.20, "blue"), ("转介绍", 0.15, "green"), ("电话营销", 0.25, "blue"),
           ("渠道", 0.15, "purple"), ("广告", 0.10, "blue")],
    "行业": [(name, w, "cyan") for name, w in zip(INDUSTRY_WORDS, (0.18, 0.14, 0.12, 0.08, 0.06, 0.05, 0.08, 0.09,
                                                                   0.06, 0.06, 0.04, 0.04), strict=True)],
}
REGION_NAMES = ["华东", "华南", "华北", "华中", "西南", "西北"]


# ----------------------------------------------------------------------------- fast timestamps

class Clock:
    """Seconds since an epoch → PostgreSQL timestamptz text, via cached day and time-of-day strings."""

    def __init__(self, now: datetime) -> None:
        self.now = now.replace(microsecond=0)
        self.base = self.now - timedelta(days=4 * 365)
        self.base = self.base.replace(hour=0, minute=0, second=0)
        self.now_s = int((self.now - self.base).total_seconds())
        days = self.now_s // 86400 + 400  # next_contact_at may lie in the future
        self.days = [(self.base + timedelta(days=d)).strftime("%Y-%m-%d ") for d in range(days)]
        self.times = [f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}+00" for s in range(86400)]

    def fmt(self, s: int) -> str:
        return self.days[s // 86400] + self.times[s % 86400]


# ----------------------------------------------------------------------------- the org

@dataclass
class Org:
    corp_id: int
    tag_ids: dict[str, list[int]]  # group → ids in TAG_GROUPS order
    tag_weights: dict[str, list[float]]
    owners: list[int]  # salespeople (and group leaders) who own customers, with repeats for weight
    user_ids: list[int]
    userid_of: dict[int, str]  # users.id → platform_userid
    admins: list[int]
    salespeople: list[int]
    region_leaders: list[tuple[int, int]]  # (user id, department id)
    city_leaders: list[tuple[int, int]]
    city_of_owner: dict[int, int]  # owner user id → index into CITIES
    departments: int = 0
    rows: int = 0  # rows written for the org (corp, departments, users, memberships, leaders, tags)
    extra: dict = field(default_factory=dict)


def build_org(url: str, rng: random.Random, *, users_total: int = 2000, departments_total: int = 150) -> Org:
    """Corp, a 150-department tree with leaders, 2,000 users and the tag catalogue, through the ORM."""
    import sqlalchemy as sa
    from cryptography.fernet import Fernet

    from app.services.corps import SecretBox, create_corp
    from models.crm import Tag
    from models.db import Database
    from models.org import Department, DepartmentLeader, Role, User, UserDepartment

    db = Database(_sa_url(url))
    rows = 0
    with db.session() as s:
        corp = create_corp(s, SecretBox(Fernet.generate_key().decode()), platform="dingtalk",
                           platform_corp_id=CORP_PLATFORM_ID, name="华信数智科技集团有限公司", agent_id="1000",
                           app_key="benchkey")
        rows += 1 + 6  # corp + default opportunity stages
        seq = iter(range(1, 10**6))

        def dept(name: str, parent: Department | None) -> Department:
            d = Department(corp_id=corp.id, platform_dept_id=str(next(seq)), name=name,
                           parent_id=parent.id if parent else None, depth=(parent.depth + 1) if parent else 0,
                           sort_order=next(seq))
            s.add(d)
            s.flush()
            d.path = f"{parent.path if parent else '/'}{d.id}/"
            return d

        root = dept("华信集团", None)
        sales = dept("销售中心", root)
        support = [dept(n, root) for n in ("市场部", "研发中心", "客服中心", "财务部", "人力资源部")]
        regions = [dept(f"{r}大区", sales) for r in REGION_NAMES]
        cities: list[tuple[Department, int]] = []  # (department, CITIES index)
        for ci, (city, _prov, region) in enumerate(CITIES):
            cities.append((dept(f"{city[:-1]}分公司", regions[REGION_NAMES.index(region)]), ci))
        groups: list[tuple[Department, int]] = []
        for d, ci in cities:
            for g in range(4):
                groups.append((dept(f"{d.name}销售{'一二三四'[g]}组", d), ci))
        sub_names = ["品牌组", "活动组", "前端组", "后端组", "测试组", "产品组", "运维组", "一线客服组", "大客户服务组",
                     "质检组", "会计组", "出纳组", "招聘组", "培训组", "薪酬组", "数据组", "设计组"]
        others: list[Department] = []
        made = 1 + 1 + len(support) + len(regions) + len(cities) + len(groups)
        for i, name in enumerate(sub_names[: max(0, departments_total - made)]):
            others.append(dept(name, support[min(i * len(support) // len(sub_names), len(support) - 1)]))
        all_depts = [root, sales, *support, *regions, *(d for d, _ in cities), *(d for d, _ in groups), *others]
        rows += len(all_depts)
        s.flush()

        people: list[tuple[User, list[Department], list[Department]]] = []
        n = iter(range(1, 10**6))

        def person(role: str, depts: list[Department], leads: list[Department], title: str) -> User:
            i = next(n)
            name = rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2, 2))))
            u = User(corp_id=corp.id, platform_userid=f"u{i:05d}", unionid=f"union{i:05d}", name=name, title=title,
                     mobile=rng.choice(MOBILE_PREFIXES) + f"{rng.randrange(10**8):08d}", role=role, active=True,
                     main_department_id=None)
            people.append((u, depts, leads))
            return u

        admins = [person(Role.ADMIN, [root], [root], "总裁"), person(Role.ADMIN, [root], [], "CRM管理员")]
        leaders: dict[int, User] = {}
        for d in all_depts[1:]:
            leaders[id(d)] = person(Role.MANAGER, [d], [d], "经理" if d.depth > 1 else "总监")
        # Non-sales staff: ~8 per support department.
        for d in [*support, *others]:
            for _ in range(8):
                person(Role.SALESPERSON, [d], [], "专员")
        remaining = users_total - len(people)
        sales_people: list[tuple[User, int]] = []
        for k in range(remaining):
            g, ci = groups[k % len(groups)]
            depts = [g]
            if rng.random() < 0.03:  # a few people belong to two groups of the same city
                other = rng.choice([gg for gg, cc in groups if cc == ci and gg is not g])
                depts.append(other)
            sales_people.append((person(Role.SALESPERSON, depts, [], "销售代表"), ci))
        s.add_all(u for u, _, _ in people)
        s.flush()
        for u, depts, leads in people:
            u.main_department_id = depts[0].id
            for order, d in enumerate(depts):
                s.add(UserDepartment(corp_id=corp.id, user_id=u.id, department_id=d.id, sort_order=order))
            for d in leads:
                s.add(DepartmentLeader(corp_id=corp.id, user_id=u.id, department_id=d.id))
            rows += 1 + len(depts) + len(leads)
        tag_ids: dict[str, list[int]] = {}
        tag_weights: dict[str, list[float]] = {}
        for group, items in TAG_GROUPS.items():
            tags = [Tag(corp_id=corp.id, group_name=group, name=name, color=color) for name, _w, color in items]
            s.add_all(tags)
            s.flush()
            tag_ids[group] = [t.id for t in tags]
            tag_weights[group] = [w for _n, w, _c in items]
            rows += len(tags)
        s.flush()

        owners: list[int] = []
        city_of_owner: dict[int, int] = {}
        for u, ci in sales_people:
            owners.extend([u.id] * 10)
            city_of_owner[u.id] = ci
        for g, ci in groups:  # group leaders keep a few key accounts themselves
            lid = leaders[id(g)].id
            owners.append(lid)
            city_of_owner[lid] = ci
        org = Org(
            corp_id=corp.id, tag_ids=tag_ids, tag_weights=tag_weights, owners=owners,
            user_ids=[u.id for u, _, _ in people], userid_of={u.id: u.platform_userid for u, _, _ in people},
            admins=[a.id for a in admins], salespeople=[u.id for u, _ in sales_people],
            region_leaders=[(leaders[id(r)].id, r.id) for r in regions],
            city_leaders=[(leaders[id(c)].id, c.id) for c, _ in cities],
            city_of_owner=city_of_owner, departments=len(all_depts), rows=rows,
        )
        s.execute(sa.text("SELECT 1"))
    db.dispose()
    return org


def load_org(url: str) -> Org:
    """The Org of an already seeded bench database (for --measure-only runs)."""
    with psycopg.connect(_pg_url(url)) as c:
        corp_id = c.execute("SELECT id FROM corps WHERE platform_corp_id = %s", (CORP_PLATFORM_ID,)).fetchone()[0]
        tag_ids: dict[str, list[int]] = {}
        for group, items in TAG_GROUPS.items():
            ids = dict(c.execute("SELECT name, id FROM tags WHERE corp_id = %s AND group_name = %s",
                                 (corp_id, group)).fetchall())
            tag_ids[group] = [ids[name] for name, _w, _c in items]
        users = c.execute("SELECT id, platform_userid, role FROM users WHERE corp_id = %s ORDER BY id",
                          (corp_id,)).fetchall()
        regions = c.execute(
            """SELECT l.user_id, d.id FROM departments d JOIN department_leaders l ON l.department_id = d.id
                WHERE d.corp_id = %s AND d.depth = 2 AND d.name LIKE '%%大区' ORDER BY d.id""", (corp_id,)).fetchall()
        cities = c.execute(
            """SELECT l.user_id, d.id FROM departments d JOIN department_leaders l ON l.department_id = d.id
                WHERE d.corp_id = %s AND d.depth = 3 AND d.name LIKE '%%分公司' ORDER BY d.id""", (corp_id,)).fetchall()
        sales = [r[0] for r in c.execute(
            "SELECT id FROM users WHERE corp_id = %s AND role = 'salesperson' AND title = '销售代表' ORDER BY id",
            (corp_id,))]
        n_depts = c.execute("SELECT count(*) FROM departments WHERE corp_id = %s", (corp_id,)).fetchone()[0]
    weights = {g: [w for _n, w, _c in TAG_GROUPS[g]] for g in TAG_GROUPS}
    return Org(corp_id=corp_id, tag_ids=tag_ids, tag_weights=weights,
               owners=[], user_ids=[u for u, _p, _r in users], userid_of={u: p for u, p, _r in users},
               admins=[u for u, _p, r in users if r == "admin"], salespeople=sales,
               region_leaders=[tuple(r) for r in regions], city_leaders=[tuple(r) for r in cities],
               city_of_owner={}, departments=n_depts)


def _sa_url(url: str) -> str:
    return "postgresql+psycopg://" + url.split("://", 1)[1] if url.startswith("postgresql://") else url


def _pg_url(url: str) -> str:
    return "postgresql://" + url.split("://", 1)[1] if url.startswith("postgresql+psycopg://") else url


# ----------------------------------------------------------------------------- row generation

CUSTOMER_COLS = ("id", "corp_id", "name", "name_norm", "industry", "company_size", "source", "grade", "region",
                 "address", "status", "owner_id", "in_pool", "custom", "last_contact_at", "next_contact_at",
                 "created_by_id", "updated_by_id", "deleted_at", "created_at", "updated_at")
TAG_COLS = ("customer_id", "tag_id", "corp_id")
COLLAB_COLS = ("customer_id", "user_id", "corp_id")
CONTACT_COLS = ("id", "corp_id", "customer_id", "name", "title", "mobile", "phone", "email", "wechat",
                "decision_role", "is_primary", "custom", "deleted_at", "created_at", "updated_at")
FOLLOW_COLS = ("id", "corp_id", "customer_id", "contact_id", "author_id", "kind", "content", "occurred_at",
               "location", "latitude", "longitude", "next_contact_at", "created_at")
TABLE_COLS = {"customers": CUSTOMER_COLS, "customer_tags": TAG_COLS, "customer_collaborators": COLLAB_COLS,
              "contacts": CONTACT_COLS, "follow_ups": FOLLOW_COLS}


@dataclass
class Cursor:
    """Where the next load continues: next ids (the generator owns the id space)."""
    customer: int = 1
    contact: int = 1
    follow_up: int = 1


def _cumulative(weights: list[float]) -> list[float]:
    out, acc = [], 0.0
    for w in weights:
        acc += w
        out.append(acc)
    return out


def generate_chunks(org: Org, clock: Clock, rng: random.Random, cur: Cursor, customers: int, followups: int,
                    chunk: int = 20000) -> Iterator[dict[str, list[str]]]:
    """Yield dicts table → list of COPY text lines for `customers` customers and exactly `followups` follow-ups."""
    corp = org.corp_id
    owners = org.owners
    users = org.user_ids
    tag_groups = list(org.tag_ids)
    tag_cum = {g: _cumulative(org.tag_weights[g]) for g in tag_groups}
    industries = list(INDUSTRY_WORDS)
    sources = [name for name, _w, _c in TAG_GROUPS["来源"]]
    assert tag_groups == ["意向", "来源", "行业"] and [n for n, _w, _c in TAG_GROUPS["行业"]] == industries
    industry_words = [INDUSTRY_WORDS[i] for i in industries]
    sizes = ["1-20人", "20-99人", "100-499人", "500-999人", "1000人以上"]
    statuses = ["lead"] * 4 + ["prospect"] * 3 + ["customer"] * 2 + ["lost"]
    grades = ["A", "B", "B", "C", "C", "C", "\\N"]
    fmt = clock.fmt
    now_s = clock.now_s
    span = 3 * 365 * 86400
    brand = BRAND_CHARS
    rand, randrange, choice = rng.random, rng.randrange, rng.choice
    remaining_fu = followups
    remaining_c = customers
    bisect = __import__("bisect").bisect_left
    while remaining_c > 0:
        n = min(chunk, remaining_c)
        # Follow-ups for this chunk: proportional share, spread unevenly (0..2×mean, some heavy accounts).
        share = remaining_fu if n == remaining_c else round(remaining_fu * n / remaining_c)
        remaining_fu -= share
        remaining_c -= n
        mean = share / n if n else 0
        counts = [int(rand() * (2 * mean + 1)) for _ in range(n)]
        diff = share - sum(counts)
        while diff:
            i = randrange(n)
            if diff > 0:
                counts[i] += 1
                diff -= 1
            elif counts[i] > 0:
                counts[i] -= 1
                diff += 1
        cust, tags, collab, contacts, fus = [], [], [], [], []
        for k in range(n):
            cid = cur.customer
            cur.customer += 1
            pool = rand() < 0.05
            owner = None if pool else owners[randrange(len(owners))]
            ci = org.city_of_owner.get(owner, randrange(len(CITIES))) if owner else randrange(len(CITIES))
            city, prov, _region = CITIES[ci]
            # Tags: one per group, weighted; the 行业 tag matches the industry column.
            picked = [bisect(tag_cum[g], rand() * tag_cum[g][-1]) for g in tag_groups]
            ind = picked[2]
            bname = brand[randrange(len(brand))] + brand[randrange(len(brand))]
            if rand() < 0.4:
                bname += brand[randrange(len(brand))]
            core = city + bname + choice(industry_words[ind])
            name = core + choice(LEGAL_SUFFIXES)
            name_norm = core  # == normalize.company_name(name) for CJK names without punctuation
            created = now_s - randrange(span)
            updated = created + randrange(max(1, min(30 * 86400, now_s - created)))
            # Contacts.
            ncontacts = 1 if rand() < 0.45 else (2 if rand() < 0.7 else 3)
            first_contact = cur.contact
            for j in range(ncontacts):
                ctid = cur.contact
                cur.contact += 1
                cname = SURNAMES[randrange(len(SURNAMES))] + GIVEN[randrange(len(GIVEN))] + \
                    (GIVEN[randrange(len(GIVEN))] if rand() < 0.6 else "")
                mobile = MOBILE_PREFIXES[randrange(len(MOBILE_PREFIXES))] + f"{randrange(100000000):08d}"
                phone = (AREA_CODES.get(prov, "0" + str(300 + ci)) + f"{randrange(10**8):08d}") \
                    if rand() < 0.3 else "\\N"
                contacts.append(
                    f"{ctid}\t{corp}\t{cid}\t{cname}\t{TITLES[randrange(len(TITLES))]}\t{mobile}\t{phone}\t"
                    f"{NUL if rand() < 0.5 else f'c{ctid}@example.cn'}\t\\N\t{ROLES[randrange(5)]}\t"
                    f"{'t' if j == 0 else 'f'}\t{{}}\t\\N\t{fmt(created)}\t{fmt(created)}")
            # Follow-ups: between creation and now; the customer's last/next contact derive from them.
            nf = counts[k]
            last = None
            next_contact = "\\N"
            if nf:
                times = sorted(created + randrange(max(1, now_s - created)) for _ in range(nf))
                author_default = owner or users[randrange(len(users))]
                for t in times:
                    fid = cur.follow_up
                    cur.follow_up += 1
                    author = author_default if rand() < 0.9 else users[randrange(len(users))]
                    nxt = fmt(t + 86400 * (1 + randrange(14))) if rand() < 0.3 else "\\N"
                    kind = FOLLOW_KINDS[randrange(len(FOLLOW_KINDS))]
                    loc = f"{city}客户现场" if kind == "visit" else "\\N"
                    fus.append(f"{fid}\t{corp}\t{cid}\t{first_contact + randrange(ncontacts)}\t{author}\t{kind}\t"
                               f"{FOLLOW_TEXTS[randrange(len(FOLLOW_TEXTS))]}\t{fmt(t)}\t{loc}\t\\N\t\\N\t{nxt}\t"
                               f"{fmt(t)}")
                last = times[-1]
                next_contact = nxt
                updated = max(updated, last)
            deleted = fmt(updated) if rand() < 0.01 else "\\N"
            by = owner or org.admins[1]
            ind_name = industries[ind]
            cust.append(
                f"{cid}\t{corp}\t{name}\t{name_norm}\t{ind_name}\t{sizes[randrange(5)]}\t"
                f"{sources[picked[1]]}\t{grades[randrange(7)]}\t{prov}\t"
                f"{city}{'高新区' if rand() < 0.5 else '经开区'}创业路{randrange(1, 999)}号\t"
                f"{statuses[randrange(10)]}\t"
                f"{owner if owner else NUL}\t{'t' if pool else 'f'}\t{{}}\t{fmt(last) if last else NUL}\t"
                f"{next_contact}\t{by}\t{by}\t{deleted}\t{fmt(created)}\t{fmt(updated)}")
            for gi, g in enumerate(tag_groups):
                tags.append(f"{cid}\t{org.tag_ids[g][picked[gi]]}\t{corp}")
            if owner and rand() < 0.08:
                other = owners[randrange(len(owners))]
                if other != owner:
                    collab.append(f"{cid}\t{other}\t{corp}")
        yield {"customers": cust, "customer_tags": tags, "customer_collaborators": collab, "contacts": contacts,
               "follow_ups": fus}


# ----------------------------------------------------------------------------- bulk load

@dataclass
class LoadStats:
    rows: dict[str, int] = field(default_factory=dict)
    copy_s: float = 0.0
    drop_s: float = 0.0
    index_s: float = 0.0
    fk_s: float = 0.0
    analyze_s: float = 0.0
    total_s: float = 0.0

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())


def _saved_ddl(conn: psycopg.Connection) -> tuple[list[tuple[str, str]], list[tuple[str, str, str]]]:
    """Secondary (non-constraint) indexes and foreign keys of the bulk tables, as recreatable DDL."""
    idx = conn.execute(
        """SELECT c.relname, pg_get_indexdef(i.indexrelid)
             FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid
            WHERE t.relname = ANY(%s) AND t.relnamespace = 'public'::regnamespace
              AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
            ORDER BY pg_relation_size(t.oid) DESC, c.relname""", (list(BIG_TABLES),)).fetchall()
    fks = conn.execute(
        """SELECT t.relname, k.conname, pg_get_constraintdef(k.oid)
             FROM pg_constraint k JOIN pg_class t ON t.oid = k.conrelid
            WHERE k.contype = 'f' AND t.relname = ANY(%s) AND t.relnamespace = 'public'::regnamespace
            ORDER BY t.relname, k.conname""", (list(BIG_TABLES),)).fetchall()
    return [(n, d) for n, d in idx], [(t, n, d) for t, n, d in fks]


def _session_setup(conn: psycopg.Connection) -> None:
    conn.execute("SET synchronous_commit = off")
    conn.execute("SET maintenance_work_mem = '512MB'")
    conn.execute("SET max_parallel_maintenance_workers = 2")


def bulk_load(url: str, org: Org, clock: Clock, rng: random.Random, cur: Cursor, customers: int, followups: int,
              *, log=print) -> LoadStats:
    """COPY `customers` more customers (and their rows) plus `followups` follow-ups; rebuild; ANALYZE."""
    url = _pg_url(url)
    st = LoadStats(rows=dict.fromkeys(BIG_TABLES, 0))
    t0 = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        _session_setup(conn)
        indexes, fks = _saved_ddl(conn)
        for table, name, _d in fks:
            conn.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
        for name, _d in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        st.drop_s = time.perf_counter() - t0

        # Producer thread generates text chunks; this thread streams them with COPY.
        q: queue.Queue = queue.Queue(maxsize=3)
        err: list[BaseException] = []

        def produce() -> None:
            try:
                for c in generate_chunks(org, clock, rng, cur, customers, followups):
                    q.put({t: "\n".join(lines) + "\n" if lines else "" for t, lines in c.items()} |
                          {"_n": {t: len(lines) for t, lines in c.items()}})
            except BaseException as exc:  # pragma: no cover - surfaced below
                err.append(exc)
            finally:
                q.put(None)

        t1 = time.perf_counter()
        th = threading.Thread(target=produce, daemon=True)
        th.start()
        with conn.transaction():
            while (item := q.get()) is not None:
                for table in BIG_TABLES:
                    if not item[table]:
                        continue
                    cols = ", ".join(TABLE_COLS[table])
                    with conn.cursor().copy(f"COPY {table} ({cols}) FROM STDIN") as cp:
                        cp.write(item[table])
                    st.rows[table] += item["_n"][table]
        th.join()
        if err:
            raise err[0]
        st.copy_s = time.perf_counter() - t1
        log(f"    COPY {st.total_rows:,} rows in {st.copy_s:.1f}s ({st.total_rows / st.copy_s:,.0f} rows/s)")

        t2 = time.perf_counter()
        _parallel(url, [d for _n, d in indexes], workers=2)
        st.index_s = time.perf_counter() - t2
        log(f"    {len(indexes)} indexes rebuilt in {st.index_s:.1f}s")
        t3 = time.perf_counter()
        _parallel(url, [f'ALTER TABLE {t} ADD CONSTRAINT "{n}" {d}' for t, n, d in fks], workers=2)
        st.fk_s = time.perf_counter() - t3
        log(f"    {len(fks)} foreign keys re-added (validated) in {st.fk_s:.1f}s")
        for seq_table, next_id in (("customers", cur.customer), ("contacts", cur.contact),
                                   ("follow_ups", cur.follow_up)):
            conn.execute("SELECT setval(pg_get_serial_sequence(%s, 'id'), %s)", (seq_table, next_id - 1))
        t4 = time.perf_counter()
        conn.execute("ANALYZE")
        st.analyze_s = time.perf_counter() - t4
        log(f"    ANALYZE in {st.analyze_s:.1f}s")
    st.total_s = time.perf_counter() - t0
    return st


def _parallel(url: str, statements: list[str], workers: int) -> None:
    if not statements:
        return

    def run(sql: str) -> None:
        with psycopg.connect(url, autocommit=True) as c:
            _session_setup(c)
            c.execute(sql)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for f in [pool.submit(run, s) for s in statements]:
            f.result()


def recreate_database(url: str) -> None:
    from psycopg import sql

    url = _pg_url(url)
    base, _, dbname = url.rpartition("/")
    dbname = dbname.split("?")[0]
    with psycopg.connect(base + "/postgres", autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))


def migrate(url: str) -> None:
    from models.migrate import upgrade

    upgrade(_sa_url(url))


def _main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--customers", type=int, default=10000)
    ap.add_argument("--followups", type=int, default=50000)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    url = os.environ.get("CRM_BENCH_DATABASE_URL", DEFAULT_URL)
    rng = random.Random(args.seed)
    recreate_database(url)
    migrate(url)
    t = time.perf_counter()
    org = build_org(url, rng)
    org_s = time.perf_counter() - t
    st = bulk_load(url, org, Clock(datetime.now(UTC)), rng, Cursor(), args.customers, args.followups)
    rows = st.total_rows + org.rows
    print(f"{rows:,} rows in {org_s + st.total_s:.1f}s = {rows / (org_s + st.total_s):,.0f} rows/s", st.rows)


if __name__ == "__main__":
    _main()
