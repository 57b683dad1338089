"""The DingTalk half of the sandbox as a Flask blueprint: the platform's own paths (served at the root,
so `CRM_DINGTALK_OAPI_BASE` and `CRM_DINGTALK_API_BASE` both point at the server) plus control endpoints
under `/sandbox/dingtalk/` for tests, benchmarks and newcomers."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Blueprint, Response, jsonify, request

from integrations.sandbox.dingtalk_events import deliver, event_payload
from integrations.sandbox.dingtalk_state import ApiFailure, DingTalkWorld, Fault, SentMessage

# OLD errcode → NEW (HTTP status, code) for failures raised by shared checks (§2.2).
_NEW_EQUIVALENT = {
    90018: (403, "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi"),
    90020: (403, "Forbidden.AccessDenied.ApiCountLimitForOrg"),
    60011: (403, "Forbidden.AccessDenied.AccessTokenPermissionDenied"),
    60020: (403, "Forbidden.AccessDenied.IpNotInWhiteList"),
    -1: (500, "systemError"),
}


def _request_id() -> str:
    return secrets.token_hex(12)


def _old_error(exc: ApiFailure) -> Response:
    body: dict[str, Any] = {"errcode": exc.errcode, "errmsg": exc.errmsg, "request_id": _request_id()}
    if exc.errcode == 88 and exc.sub_code:
        body["sub_code"] = exc.sub_code
        body["sub_msg"] = {"40000": "access_token is blank", "40014": "不合法的access_token",
                           "42001": "access_token超时"}.get(exc.sub_code, exc.errmsg)
    # OLD APIs answer HTTP 200 even on errors (§0.3).
    return jsonify(body)


def _new_error(exc: ApiFailure) -> Response:
    status, code = exc.status, exc.code
    if code is None and exc.errcode in _NEW_EQUIVALENT:
        status, code = _NEW_EQUIVALENT[exc.errcode]
    resp = jsonify({"code": code or str(exc.errcode), "message": exc.errmsg, "requestid": _request_id()})
    resp.status_code = status if status >= 400 else 400
    return resp


def _fault_response(fault: Fault, new: bool) -> Response:
    if fault.delay > 0:
        time.sleep(fault.delay)
    if fault.raw is not None:
        # Verbatim bodies, e.g. the IP-block JSON or an HTML error page (§2.3).
        resp = jsonify(fault.raw) if isinstance(fault.raw, dict | list) else Response(
            str(fault.raw), mimetype="text/html")
        resp.status_code = fault.status or 200
        return resp
    errcode = fault.errcode if fault.errcode is not None else -1
    if new:
        status, code = _NEW_EQUIVALENT.get(errcode, (400, None))
        failure = ApiFailure(errcode, fault.errmsg, status=fault.status if fault.status >= 400 else status,
                             code=fault.code or code)
        return _new_error(failure)
    resp = _old_error(ApiFailure(errcode, fault.errmsg, sub_code=fault.code))
    if fault.status >= 500:
        resp.status_code = fault.status
    return resp


def _body() -> dict[str, Any]:
    data = request.get_json(silent=True)
    if isinstance(data, dict):
        return data
    return request.form.to_dict()


def create_blueprint(world: DingTalkWorld) -> Blueprint:
    bp = Blueprint("sandbox_dingtalk", __name__)

    def latency() -> None:
        if world.latency > 0:
            time.sleep(world.latency)

    def answered_late(view: Callable[..., Response]) -> Callable[..., Response]:
        """The gateway counts a call (QPS windows, faults) when it arrives; the configured latency is the
        time until the answer leaves. Sleeping first made the sandbox's own thread scheduling (under load
        a 50 ms sleep can take far longer) decide which second a call fell in."""

        @wraps(view)
        def wrapper(**kwargs):
            resp = view(**kwargs)
            latency()
            return resp

        return wrapper

    def old_api(path: str, *, methods: tuple[str, ...] = ("POST",)):
        """An OLD `oapi` endpoint: `?access_token=`, errcode answers, per-app QPS → 90018."""

        def decorate(fn: Callable[..., dict[str, Any]]):
            @answered_late
            @wraps(fn)
            def view():
                try:
                    if request.headers.get("x-acs-dingtalk-access-token") and not request.args.get(
                            "access_token"):
                        world.note_call("-", path)
                        raise ApiFailure(88, "鉴权异常", sub_code="40000")
                    try:
                        corp = world.check_token(request.args.get("access_token"))
                    except ApiFailure:
                        world.note_call("-", path)
                        raise
                    world.note_call(corp.app_key, path)
                    fault = world.take_fault(path, corp.corp_id)
                    if fault is not None:
                        return _fault_response(fault, new=False)
                    if not world.check_qps(corp.app_key, path):
                        raise ApiFailure(90018, "应用调用该接口频率超限，请降低调用频率")
                    world.count_quota(corp, path)
                    result = fn(corp, _body())
                except ApiFailure as exc:
                    return _old_error(exc)
                return jsonify({"errcode": 0, "errmsg": "ok", "request_id": _request_id(), **result})

            bp.add_url_rule(path, endpoint=fn.__name__, view_func=view, methods=list(methods))
            return view

        return decorate

    def new_api(rule: str, path_prefix: str, *, methods: tuple[str, ...] = ("POST",),
                needs_token: bool = True):
        """A NEW v1.0 endpoint: token in `x-acs-dingtalk-access-token`, HTTP status + code answers."""

        def decorate(fn: Callable[..., Any]):
            @answered_late
            @wraps(fn)
            def view(**kwargs):
                try:
                    if request.args.get("access_token") and not request.headers.get(
                            "x-acs-dingtalk-access-token"):
                        raise ApiFailure(0, "缺少参数：x-acs-dingtalk-access-token",
                                         code="AuthenticationFailed.MissingParameter")
                    corp = None
                    if needs_token:
                        token = request.headers.get("x-acs-dingtalk-access-token")
                        if not token:
                            raise ApiFailure(0, "缺少参数：x-acs-dingtalk-access-token",
                                             code="AuthenticationFailed.MissingParameter")
                        try:
                            corp = world.check_token(token)
                        except ApiFailure:
                            world.note_call("-", path_prefix)
                            raise ApiFailure(0, "不合法的access_token", code="InvalidAuthentication") from None
                    world.note_call(corp.app_key if corp else "-", path_prefix)
                    fault = world.take_fault(path_prefix, corp.corp_id if corp else None)
                    if fault is not None:
                        return _fault_response(fault, new=True)
                    if corp is not None:
                        if not world.check_qps(corp.app_key, path_prefix):
                            raise ApiFailure(90018, "QPS limit")
                        world.count_quota(corp, request.path)
                    return jsonify(fn(corp, **kwargs))
                except ApiFailure as exc:
                    return _new_error(exc)

            bp.add_url_rule(rule, endpoint=fn.__name__, view_func=view, methods=list(methods))
            return view

        return decorate

    # ------------------------------------------------------------------ tokens (§1, §4)

    @bp.post("/v1.0/oauth2/accessToken")
    def access_token():
        latency()
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            # JSON only; a form body is rejected (§1.1).
            return _new_error(ApiFailure(0, "请求体必须是JSON", code="invalidParameter"))
        app_key = str(data.get("appKey") or "")
        world.note_call(app_key or "-", "/v1.0/oauth2/accessToken")
        try:
            fault = world.take_fault("/v1.0/oauth2/accessToken", None)
            if fault is not None:
                return _fault_response(fault, new=True)
            if app_key and not world.check_qps(app_key, "/v1.0/oauth2/accessToken"):
                raise ApiFailure(90018, "QPS limit")
            cred = world.issue_token(app_key, str(data.get("appSecret") or ""))
        except ApiFailure as exc:
            return _new_error(exc)
        return jsonify({"accessToken": cred.value, "expireIn": round(cred.expires_at - world.now())})

    @bp.get("/gettoken")
    def gettoken():
        latency()
        appkey, appsecret = request.args.get("appkey"), request.args.get("appsecret")
        if not appkey or not appsecret:
            return _old_error(ApiFailure(40035, "缺少参数 corpid or appkey"))
        try:
            cred = world.issue_token(appkey, appsecret)
        except ApiFailure as exc:
            return _old_error(exc)
        return jsonify({"errcode": 0, "errmsg": "ok", "access_token": cred.value,
                        "expires_in": round(cred.expires_at - world.now())})

    @new_api("/v1.0/oauth2/jsapiTickets", "/v1.0/oauth2/jsapiTickets")
    def jsapi_tickets(corp):
        ticket = world.issue_ticket(corp)
        return {"jsapiTicket": ticket.value, "expireIn": round(ticket.expires_at - world.now())}

    # ------------------------------------------------------------------ sign-in (§3)

    @old_api("/topapi/v2/user/getuserinfo")
    def getuserinfo(corp, body):
        user = world.redeem_auth_code(corp, str(body.get("code") or ""))
        return {"result": {
            "userid": user.userid, "unionid": user.unionid, "associated_unionid": "", "name": user.name,
            "device_id": secrets.token_hex(8), "sys": user.admin,
            "sys_level": 1 if user.boss else (2 if user.admin else 0),
        }}

    # ------------------------------------------------------------------ contacts (§5)

    @old_api("/topapi/v2/department/listsub")
    def department_listsub(corp, body):
        dept = world.dept(corp, body.get("dept_id") or 1)
        return {"result": [d.summary() for d in corp.children(dept.dept_id)]}

    @old_api("/topapi/v2/department/listsubid")
    def department_listsubid(corp, body):
        if not body.get("dept_id"):
            raise ApiFailure(400002, "dept_id 不能为空")
        dept = world.dept(corp, body.get("dept_id"))
        return {"result": {"dept_id_list": [d.dept_id for d in corp.children(dept.dept_id)]}}

    @old_api("/topapi/v2/department/get")
    def department_get(corp, body):
        if not body.get("dept_id"):
            raise ApiFailure(400002, "dept_id 不能为空")
        dept = world.dept(corp, body.get("dept_id"))
        result = dept.summary()
        result.update({
            "order": dept.order, "dept_manager_userid_list": list(dept.manager_userids),
            "member_count": len(corp.members(dept.dept_id)), "hide_dept": False, "outer_dept": False,
            "group_contain_sub_dept": False, "brief": "",
        })
        return {"result": result}

    @old_api("/topapi/v2/user/list")
    def user_list(corp, body):
        dept = world.dept(corp, body.get("dept_id"))
        try:
            cursor, size = int(body.get("cursor", 0)), int(body.get("size", 0))
        except (TypeError, ValueError):
            raise ApiFailure(400002, "cursor/size 不合法") from None
        # Max size 100 is what `listsimple` documents (§5.2); assumed for `v2/user/list` too.
        if size < 1 or size > 100:
            raise ApiFailure(40069, "size 不合法")
        if cursor < 0:
            raise ApiFailure(40068, "cursor 不合法")
        members = corp.members(dept.dept_id)
        page = members[cursor:cursor + size]
        has_more = cursor + size < len(members)
        result: dict[str, Any] = {"has_more": has_more,
                                  "list": [world.user_json(corp, u, listed_in=dept.dept_id) for u in page]}
        if has_more:
            result["next_cursor"] = cursor + size
        return {"result": result}

    @old_api("/topapi/user/listid")
    def user_listid(corp, body):
        dept = world.dept(corp, body.get("dept_id"))
        return {"result": {"userid_list": [u.userid for u in corp.members(dept.dept_id)]}}

    @old_api("/topapi/v2/user/get")
    def user_get(corp, body):
        return {"result": world.user_json(corp, world.user(corp, body.get("userid")))}

    @old_api("/topapi/user/count")
    def user_count(corp, body):
        users = corp.users.values()
        only_active = body.get("only_active") in (True, "true")
        return {"result": {"count": sum(1 for u in users if u.active or not only_active)}}

    # ------------------------------------------------------------------ work notifications (§9)

    @old_api("/topapi/message/corpconversation/asyncsend_v2")
    def asyncsend_v2(corp, body):
        sent: SentMessage = world.send(corp, body)
        return {"task_id": sent.task_id}

    @old_api("/topapi/message/corpconversation/getsendprogress")
    def getsendprogress(corp, body):
        world.message(corp, body.get("agent_id"), body.get("task_id"))
        return {"progress": {"progress_in_percent": 100, "status": 2}}

    @old_api("/topapi/message/corpconversation/getsendresult")
    def getsendresult(corp, body):
        sent = world.message(corp, body.get("agent_id"), body.get("task_id"))
        result: dict[str, Any] = {
            "read_user_id_list": [u for u in sent.delivered if u in sent.read],
            "unread_user_id_list": [u for u in sent.delivered if u not in sent.read],
            "invalid_user_id_list": list(sent.invalid),
            "forbidden_user_id_list": [],
            "failed_user_id_list": [],
            "invalid_dept_id_list": [],
            "forbidden_list": [{"code": code, "count": 1, "userid": uid} for uid, code in sent.dropped.items()],
        }
        return {"send_result": {k: v for k, v in result.items() if v}}

    @old_api("/topapi/message/corpconversation/recall")
    def recall(corp, body):
        sent = world.message(corp, body.get("agent_id"), body.get("msg_task_id"))
        sent.delivered.clear()
        return {}

    # ------------------------------------------------------------------ to-dos (§10)

    @new_api("/v1.0/todo/users/<union_id>/tasks", "/v1.0/todo/", methods=("POST",))
    def todo_create(corp, union_id):
        return world.todo_create(corp, union_id, _body())

    @new_api("/v1.0/todo/users/<union_id>/tasks/<task_id>", "/v1.0/todo/", methods=("PUT", "DELETE", "GET"))
    def todo_task(corp, union_id, task_id):
        if request.method == "GET":
            task = world.todo_get(corp, union_id, task_id)
            return {k: v for k, v in task.items() if k not in {"corpId", "ownerId", "executorStatus"}}
        if request.method == "DELETE":
            world.todo_delete(corp, union_id, task_id)
        else:
            world.todo_update(corp, union_id, task_id, _body())
        return {"result": True}

    @new_api("/v1.0/todo/users/<union_id>/tasks/sources/<source_id>", "/v1.0/todo/", methods=("GET",))
    def todo_by_source(corp, union_id, source_id):
        task = world.todo_by_source(corp, union_id, source_id)
        return {k: v for k, v in task.items() if k not in {"corpId", "ownerId", "executorStatus"}}

    @new_api("/v1.0/todo/users/<union_id>/tasks/<task_id>/executorStatus", "/v1.0/todo/", methods=("PUT",))
    def todo_executor_status(corp, union_id, task_id):
        world.todo_executor_status(corp, union_id, task_id, _body())
        return {"result": True}

    # ------------------------------------------------------------------ control endpoints

    def control_error(exc: ApiFailure, status: int = 400) -> tuple[Response, int]:
        return jsonify({"error": exc.errmsg, "errcode": exc.errcode}), status

    @bp.get("/sandbox/dingtalk/corps")
    def corps():
        return jsonify({"corps": [c.credentials() for c in world.corps.values()]})

    @bp.get("/sandbox/dingtalk/corps/<corp_id>/org")
    def corp_org(corp_id):
        try:
            corp = world.corp(corp_id)
        except ApiFailure as exc:
            return control_error(exc, 404)
        return jsonify({
            "departments": [{**d.summary(), "managers": d.manager_userids} for d in corp.depts.values()],
            "users": [world.user_json(corp, u) for u in corp.users.values()],
        })

    @bp.post("/sandbox/dingtalk/authcode")
    def authcode():
        data = _body()
        try:
            code = world.issue_auth_code(data.get("corpId") or world.corp().corp_id, str(data.get("userid") or ""))
        except ApiFailure as exc:
            return control_error(exc)
        return jsonify({"code": code, "expiresIn": 300})

    @bp.get("/sandbox/dingtalk/inbox")
    def inbox():
        return jsonify({"messages": world.inbox(request.args.get("corpId"), request.args.get("userid"))})

    @bp.post("/sandbox/dingtalk/inbox/<int:task_id>/read")
    def mark_read(task_id):
        sent = world.messages.get(task_id)
        if sent is None:
            return jsonify({"error": "unknown task"}), 404
        userid = _body().get("userid")
        sent.read.update([userid] if userid else sent.delivered)
        return jsonify(sent.as_json())

    @bp.get("/sandbox/dingtalk/todos")
    def todos():
        return jsonify({"todos": world.todo_list(request.args.get("corpId"))})

    @bp.get("/sandbox/dingtalk/calls")
    def calls():
        with world.lock:
            return jsonify({"calls": [{"at": t, "appKey": a, "path": p} for t, a, p in world.calls[-1000:]],
                            "total": sum(world.call_counts.values()), "byPath": dict(world.call_counts),
                            "throttled": dict(world.throttled)})

    @bp.delete("/sandbox/dingtalk/calls")
    def reset_calls():
        with world.lock:
            world.calls.clear()
            world.call_counts.clear()
            world.throttled.clear()
        return jsonify({"total": 0})

    @bp.get("/sandbox/dingtalk/corps/<corp_id>/stats")
    def corp_stats(corp_id):
        """Sizes a sync can be judged against: the fewest calls a full sync needs at `pageSize`."""
        try:
            corp = world.corp(corp_id)
            size = int(request.args.get("pageSize", 100))
        except (ApiFailure, ValueError):
            return jsonify({"error": "unknown corp or bad pageSize"}), 404
        pages = sum(-(-len(corp.members(d)) // size) for d in corp.depts)
        return jsonify({"departments": len(corp.depts), "users": len(corp.users),
                        "memberships": sum(len(u.dept_ids) for u in corp.users.values()),
                        "userPages": pages, "minimumCalls": len(corp.depts) + pages,
                        "emptyDepartments": sum(1 for d in corp.depts if not corp.members(d))})

    @bp.post("/sandbox/dingtalk/config")
    def config():
        data = _body()
        with world.lock:
            if "latency" in data:
                world.latency = float(data["latency"])
            if "qpsLimit" in data:
                world.qps_limit = int(data["qpsLimit"])
            if "dailyCap" in data:
                world.daily_cap = int(data["dailyCap"])
            if "monthlyQuota" in data:
                world.monthly_quota = None if data["monthlyQuota"] is None else int(data["monthlyQuota"])
            if "advanceClock" in data:
                world.clock_offset += float(data["advanceClock"])
        return jsonify({"latency": world.latency, "qpsLimit": world.qps_limit, "dailyCap": world.daily_cap,
                        "monthlyQuota": world.monthly_quota, "clockOffset": world.clock_offset})

    @bp.post("/sandbox/dingtalk/faults")
    def add_fault():
        data = _body()
        if not data.get("path"):
            return jsonify({"error": "path is required"}), 400
        fault = Fault(path=data["path"], remaining=int(data.get("count", 1)), errcode=data.get("errcode"),
                      errmsg=data.get("errmsg", "sandbox fault"), status=int(data.get("status", 200)),
                      code=data.get("code"), corp_id=data.get("corpId"), raw=data.get("raw"),
                      after=int(data.get("after", 0)), delay=float(data.get("delay", 0)))
        with world.lock:
            world.faults.append(fault)
        return jsonify({"faults": len(world.faults)}), 201

    @bp.delete("/sandbox/dingtalk/faults")
    def clear_faults():
        with world.lock:
            world.faults.clear()
        return jsonify({"faults": 0})

    @bp.post("/sandbox/dingtalk/tokens/revoke")
    def revoke():
        return jsonify({"revoked": world.revoke_tokens(_body().get("corpId"))})

    @bp.post("/sandbox/dingtalk/callback")
    def set_callback():
        data = _body()
        try:
            corp = world.corp(data.get("corpId"))
        except ApiFailure as exc:
            return control_error(exc, 404)
        corp.callback_url = data.get("url") or None
        return jsonify(corp.credentials())

    def fire(corp, event_type: str, **ids: Any) -> dict[str, Any] | None:
        url = request.args.get("url") or corp.callback_url
        if not url:
            return None
        outcome = deliver(corp, url, event_payload(corp, event_type, **ids))
        world.events_sent.append(outcome)
        return outcome

    @bp.post("/sandbox/dingtalk/events")
    def events():
        data = _body()
        try:
            corp = world.corp(data.get("corpId"))
        except ApiFailure as exc:
            return control_error(exc, 404)
        url = data.get("url") or corp.callback_url
        if not url or not data.get("eventType"):
            return jsonify({"error": "eventType and a url (or a configured callback) are required"}), 400
        payload = event_payload(corp, data["eventType"], user_ids=data.get("userId"),
                                dept_ids=data.get("deptId"), event_id=data.get("eventId"))
        times = max(1, int(data.get("times", 1)))  # >1 simulates DingTalk's redeliveries
        outcomes = [deliver(corp, url, payload) for _ in range(times)]
        world.events_sent.extend(outcomes)
        return jsonify({"payload": payload, "deliveries": outcomes, "accepted": outcomes[-1]["accepted"]})

    @bp.post("/sandbox/dingtalk/users")
    def add_user():
        data = _body()
        try:
            corp = world.corp(data.get("corpId"))
            user = world.add_user(corp, name=data.get("name") or "新同事", userid=data.get("userid"),
                                  dept_ids=[int(d) for d in data.get("deptIds") or [1]],
                                  title=data.get("title") or "销售代表")
        except ApiFailure as exc:
            return control_error(exc)
        return jsonify({"user": world.user_json(corp, user),
                        "event": fire(corp, "user_add_org", user_ids=[user.userid])}), 201

    @bp.delete("/sandbox/dingtalk/users/<userid>")
    def remove_user(userid):
        try:
            corp = world.corp(request.args.get("corpId"))
            world.remove_user(corp, userid)
        except ApiFailure as exc:
            return control_error(exc, 404)
        return jsonify({"removed": userid, "event": fire(corp, "user_leave_org", user_ids=[userid])})

    @bp.post("/sandbox/dingtalk/departments")
    def add_department():
        data = _body()
        try:
            corp = world.corp(data.get("corpId"))
            dept = world.add_dept(corp, name=data.get("name") or "新部门", parent_id=int(data.get("parentId", 1)))
        except ApiFailure as exc:
            return control_error(exc)
        return jsonify({"department": dept.summary(),
                        "event": fire(corp, "org_dept_create", dept_ids=[dept.dept_id])}), 201

    @bp.delete("/sandbox/dingtalk/departments/<int:dept_id>")
    def remove_department(dept_id):
        try:
            corp = world.corp(request.args.get("corpId"))
            world.remove_dept(corp, dept_id)
        except ApiFailure as exc:
            return control_error(exc, 409)
        return jsonify({"removed": dept_id, "event": fire(corp, "org_dept_remove", dept_ids=[dept_id])})

    return bp
