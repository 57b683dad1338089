"""Who is where in the seed-11 sandbox corp the visible-range tests use. 华北大区 (7) sits under 销售部 (3)
with 北京一组 (8) and 天津组 (9); user0012 is in 财务部 (17) and user0013 in 人事行政部 (18), both outside that
subtree and in different departments; user0011 (客户成功部) is in none of them."""

from __future__ import annotations

TAG_DEPT = 7
SUBTREE = {7, 8, 9}
PEOPLE = ["user0012", "user0013"]
OUTSIDER = "user0011"


def in_subtree(sbx) -> set[str]:
    """Userids of everyone in a department of the 华北大区 subtree."""
    return {u.userid for u in sbx.corp.users.values() if set(u.dept_ids) & SUBTREE}
