"""The WeCom half of the sandbox as a Flask blueprint: the platform's own paths under `/cgi-bin/` (so
`CRM_WECOM_API_BASE=<sandbox>/cgi-bin`), the OAuth2 authorize page under `/connect/oauth2/authorize` (so
`CRM_WECOM_OAUTH_BASE=<sandbox>`), and control endpoints under `/sandbox/wecom/` for tests, benchmarks
and newcomers: credentials, inbox, config, faults, org changes that fire `change_contact`, card clicks
that fire `template_card_event`."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from functools import wraps
from html import escape
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from flask import Blueprint, Response, jsonify, redirect, request

from integrations.sandbox.wecom_events import change_contact, deliver, verify_url
from integrations.sandbox.wecom_state import Fault, WeComApp, WeComFailure, WeComWorld


def _ok(result: dict[str, Any]) -> Response:
    return jsonify({"errcode": 0, "errmsg": "ok", **result})


def _fail(exc: WeComFailure) -> Response:
    # Errors are HTTP 200 with an errcode (§0); errmsg carries a hint, as the real one does.
    return jsonify({"errcode": exc.errcode, "errmsg": f"{exc.errmsg}, hint: [sandbox], from ip: 127.0.0.1"})


def _int_like(value: Any) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool) and value >= 0) or (
        isinstance(value, str) and value.isdigit())


def _body() -> dict[str, Any]:
    data = request.get_json(silent=True, force=True)
    return data if isinstance(data, dict) else {}


def create_wecom_blueprint(world: WeComWorld) -> Blueprint:
    bp = Blueprint("sandbox_wecom", __name__)
    bp.record_once(lambda state: state.app.extensions.setdefault("sandbox.wecom", world))

    def latency() -> None:
        if world.latency > 0:
            time.sleep(world.latency)

    def api(path: str, *, methods: tuple[str, ...] = ("GET",)):
        """A token-bearing endpoint: `?access_token=` (also on POSTs, §0), frequency limits, faults."""

        def decorate(fn: Callable[[WeComApp], dict[str, Any]]):
            @wraps(fn)
            def view():
                latency()
                try:
                    app = world.check_token(request.args.get("access_token"))
                    fault = world.take_fault(path, app.corp.corp_id)
                    if fault is not None:
                        raise WeComFailure(fault.errcode, fault.errmsg)
                    world.count_call(app, path)
                    world.enter(app, path)
                    try:
                        result = fn(app)
                    finally:
                        world.leave(app, path)
                except WeComFailure as exc:
                    return _fail(exc)
                return _ok(result)

            bp.add_url_rule(f"/cgi-bin/{path}", endpoint=path.replace("/", "_"), view_func=view,
                            methods=list(methods))
            return view

        return decorate

    # ------------------------------------------------------------------ token, sign-in, JS-SDK

    @bp.get("/cgi-bin/gettoken")
    def gettoken():
        latency()
        try:
            fault = world.take_fault("gettoken", request.args.get("corpid"))
            if fault is not None:
                raise WeComFailure(fault.errcode, fault.errmsg)
            issued = world.issue_token(request.args.get("corpid"), request.args.get("corpsecret"))
            world.count_call(issued.app, "gettoken")
        except WeComFailure as exc:
            return _fail(exc)
        return _ok({"access_token": issued.value, "expires_in": int(issued.expires_at - world.now())})

    @api("auth/getuserinfo")
    def getuserinfo(app):
        return world.redeem_code(app, request.args.get("code"))

    @api("get_jsapi_ticket")
    def get_jsapi_ticket(app):
        issued = world.issue_ticket(app, "corp")
        return {"ticket": issued.value, "expires_in": 7200}

    @api("ticket/get")
    def ticket_get(app):
        if request.args.get("type") != "agent_config":
            raise WeComFailure(40035, "type must be agent_config")
        issued = world.issue_ticket(app, "agent")
        return {"ticket": issued.value, "expires_in": 7200}

    @api("agent/get")
    def agent_get(app):
        if str(request.args.get("agentid")) != str(app.agent_id):
            raise WeComFailure(301002, "not allow operate another agent with this accesstoken")
        return {
            "agentid": app.agent_id, "name": app.name, "square_logo_url": "", "description": "CRM 微应用",
            "allow_userinfos": {"user": [{"userid": u} for u in app.allow_users]},
            "allow_partys": {"partyid": list(app.allow_partys)}, "allow_tags": {"tagid": list(app.allow_tags)},
            "close": 0, "redirect_domain": app.trusted_domain or "", "report_location_flag": 0,
            "isreportenter": 0, "home_url": "",
        }

    # ------------------------------------------------------------------ contacts (visible range)

    @api("department/list")
    def department_list(app):
        world.check_contacts(app)
        ids = world.range_dept_ids(app)
        if request.args.get("id"):
            root = world.dept_in_range(app, request.args["id"]).dept_id
            sub = {root}
            for d in ids:  # range_dept_ids is breadth first: parents come before children
                if app.corp.depts[d].parent_id in sub:
                    sub.add(d)
            ids = [d for d in ids if d in sub]
        return {"department": [world.dept_json(app, app.corp.depts[d]) for d in ids]}

    @api("department/simplelist")
    def department_simplelist(app):
        full = department_list.__wrapped__(app)["department"]
        return {"department_id": [{"id": d["id"], "parentid": d["parentid"], "order": d["order"]} for d in full]}

    @api("department/get")
    def department_get(app):
        return {"department": world.dept_json(app, world.dept_in_range(app, request.args.get("id")))}

    def _members(app: WeComApp, simple: bool) -> dict[str, Any]:
        dept = world.dept_in_range(app, request.args.get("department_id"))
        # `fetch_child` is no longer documented (§4.2): ignored, as the current pages imply.
        return {"userlist": [world.user_json(app, u, simple=simple) for u in world.members(app, dept.dept_id)]}

    @api("user/list")
    def user_list(app):
        return _members(app, simple=False)

    @api("user/simplelist")
    def user_simplelist(app):
        return _members(app, simple=True)

    @api("user/get")
    def user_get(app):
        world.check_contacts(app)
        userid = str(request.args.get("userid") or "")
        real = next((u for u in app.corp.users if u.lower() == userid.lower()), None)
        if real is None or not world.in_range_user(app, real):
            raise WeComFailure(60111, "userid not found")
        return world.user_json(app, app.corp.users[real])

    @api("tag/get")
    def tag_get(app):
        # 获取标签成员 (90213): no contact-permission check ("无限制"), the answer is cut to the range.
        return world.tag_get(app, request.args.get("tagid"))

    @api("user/list_id", methods=("POST",))
    def user_list_id(app):
        # Only the Contacts-Sync secret may call it (§4.1); the sandbox has no such secret.
        raise WeComFailure(48002, "api forbidden: user/list_id needs the contacts-sync secret")

    # ------------------------------------------------------------------ messages

    @api("message/send", methods=("POST",))
    def message_send(app):
        return world.send(app, _body())

    @api("message/update_template_card", methods=("POST",))
    def update_template_card(app):
        return world.update_card(app, _body())

    # ------------------------------------------------------------------ OAuth2 authorize page

    def _oauth_error(message: str, status: int = 400) -> Response:
        return Response(f"<!doctype html><meta charset=utf-8><p>{escape(message)}</p>", status=status,
                        mimetype="text/html")

    def _oauth_app() -> tuple[WeComApp, str, str]:
        args = request.args
        app = world.apps.get(args.get("appid") or "")
        if app is None:
            raise WeComFailure(40013, "appid 无效 (invalid appid: use the CorpID)")
        if args.get("response_type") != "code" or args.get("scope") not in {"snsapi_base", "snsapi_privateinfo"}:
            raise WeComFailure(40035, "response_type=code 与 scope=snsapi_base 为必填 (response_type/scope)")
        redirect_uri = args.get("redirect_uri") or ""
        if urlsplit(redirect_uri).scheme not in {"http", "https"}:
            raise WeComFailure(40035, "redirect_uri 无效 (invalid redirect_uri)")
        world.check_redirect(app, redirect_uri)
        if args.get("agentid") and str(args["agentid"]) != str(app.agent_id):
            raise WeComFailure(40056, "agentid 无效 (invalid agentid)")
        return app, redirect_uri, args.get("state", "")

    def _back(redirect_uri: str, code: str, state: str) -> Response:
        parts = urlsplit(redirect_uri)
        query = (parts.query + "&" if parts.query else "") + urlencode({"code": code, "state": state})
        return redirect(urlunsplit((parts.scheme, parts.netloc, parts.path, query, "")), code=302)

    @bp.get("/connect/oauth2/authorize")
    def oauth_authorize():
        """Inside the WeCom client this is silent; the sandbox shows who to sign in as."""
        try:
            app, redirect_uri, state = _oauth_app()
        except WeComFailure as exc:
            return _oauth_error(exc.errmsg)
        chosen = request.args.get("userid")
        if chosen:
            try:
                code = world.issue_code(app.corp.corp_id, chosen)
            except WeComFailure as exc:
                return _oauth_error(exc.errmsg)
            return _back(redirect_uri, code, state)
        people = [u for u in app.corp.users.values() if world.in_range_user(app, u.userid)][:200]
        base = request.full_path.rstrip("?")
        rows = "".join(
            f'<li><a href="{escape(base)}&amp;userid={escape(u.userid)}">{escape(u.name)}</a> '
            f"<small>{escape(u.userid)} · {escape(u.title)}</small></li>"
            for u in people
        )
        html = (f"<!doctype html><meta charset=utf-8><title>企业微信沙箱登录</title>"
                f"<h1>{escape(app.corp.name)}</h1><p>选择以哪位员工身份登录 (choose who signs in):</p>"
                f"<ul>{rows}</ul>")
        return Response(html, mimetype="text/html")

    # ------------------------------------------------------------------ control endpoints

    def control_error(exc: WeComFailure, status: int = 400) -> tuple[Response, int]:
        return jsonify({"error": exc.errmsg, "errcode": exc.errcode}), status

    def fire(app: WeComApp, fields: dict[str, Any]) -> dict[str, Any] | None:
        url = request.args.get("url") or app.callback_url
        if not url:
            return None
        outcome = deliver(app, url, fields)
        world.events_sent.append(outcome)
        return outcome

    @bp.get("/sandbox/wecom/corps")
    def corps():
        return jsonify({"corps": [world.credentials(a) for a in world.apps.values()]})

    @bp.get("/sandbox/wecom/corps/<corp_id>/org")
    def corp_org(corp_id):
        try:
            app = world.app(corp_id)
        except WeComFailure as exc:
            return control_error(exc, 404)
        return jsonify({"departments": [world.dept_json(app, d) for d in app.corp.depts.values()],
                        "users": [world.user_json(app, u) for u in app.corp.users.values()]})

    @bp.post("/sandbox/wecom/code")
    def code():
        """A sign-in code without the browser round trip (tests); `openid` makes a non-member's code."""
        data = _body()
        try:
            corp_id = data.get("corpId") or world.app().corp.corp_id
            issued = world.issue_code(corp_id, data.get("userid"), openid=data.get("openid"))
        except WeComFailure as exc:
            return control_error(exc)
        return jsonify({"code": issued, "expiresIn": 300})

    @bp.get("/sandbox/wecom/inbox")
    def inbox():
        return jsonify({"messages": world.inbox(request.args.get("corpId"), request.args.get("userid"))})

    @bp.get("/sandbox/wecom/calls")
    def calls():
        counts = Counter(p for _, _, p in world.calls)
        errors = Counter(f"{p}:{code}" for _, _, p, code in world.errors)
        return jsonify({"total": len(world.calls), "byPath": dict(counts), "errors": dict(errors)})

    @bp.post("/sandbox/wecom/config")
    def config():
        data = _body()
        # Checked before anything changes: a bad field leaves the sandbox as it was.
        partys = data.get("allowPartys", [])
        if not isinstance(partys, list) or not all(isinstance(p, int) or (isinstance(p, str) and p.isdigit())
                                                   for p in partys):
            return jsonify({"error": "allowPartys must be a list of department ids", "field": "allowPartys"}), 400
        if not isinstance(data.get("allowUsers", []), list):
            return jsonify({"error": "allowUsers must be a list of userids", "field": "allowUsers"}), 400
        target = world.apps.get(data.get("corpId") or "") or (world.app() if world.apps else None)
        tags = data.get("allowTags", [])
        if not isinstance(tags, list) or not all(_int_like(t) for t in tags) or (
                target is not None and any(int(t) not in target.tags for t in tags)):
            # The console only offers the corp's existing tags.
            return jsonify({"error": "allowTags must be a list of existing tag ids", "field": "allowTags"}), 400
        with world.lock:
            if "latency" in data:
                world.latency = float(data["latency"])
            if "perMinute" in data:
                world.per_minute = int(data["perMinute"])
            if "perHour" in data:
                world.per_hour = int(data["perHour"])
            if "maxConcurrent" in data:
                world.max_concurrent = None if data["maxConcurrent"] is None else int(data["maxConcurrent"])
            if "advanceClock" in data:
                world.clock_offset += float(data["advanceClock"])
            if data.get("resetCounters"):
                world.calls.clear()
                world.errors.clear()
                world.api_calls.clear()
            app = world.apps.get(data.get("corpId") or "") or (world.app() if world.apps else None)
            if app is not None:
                if "allowPartys" in data:
                    # The visible range: any set of departments (each brings its subtree), not one root.
                    app.allow_partys = [int(p) for p in partys]
                if "allowUsers" in data:
                    app.allow_users = [str(u) for u in data["allowUsers"]]
                if "allowTags" in data:
                    app.allow_tags = [int(t) for t in tags]
                if "contactPermission" in data:
                    app.contact_permission = bool(data["contactPermission"])
                if "trustedDomain" in data:
                    app.trusted_domain = data["trustedDomain"] or None
                world.org_changed(app)
        return jsonify({"latency": world.latency, "perMinute": world.per_minute, "perHour": world.per_hour,
                        "maxConcurrent": world.max_concurrent, "clockOffset": world.clock_offset})

    @bp.post("/sandbox/wecom/tags")
    def put_tag():
        """Create a tag, or replace the members of `tagid`: {corpId, tagid?, tagname, userlist, partylist}.
        Put it in an app's range with `allowTags` on /sandbox/wecom/config. Fires `update_tag` (§5.5)."""
        data = _body()
        users, parties = data.get("userlist", []), data.get("partylist", [])
        if not isinstance(users, list) or not all(isinstance(u, str) and u for u in users):
            return jsonify({"error": "userlist must be a list of userids", "field": "userlist"}), 400
        if not isinstance(parties, list) or not all(_int_like(p) for p in parties):
            return jsonify({"error": "partylist must be a list of department ids", "field": "partylist"}), 400
        tag_id = data.get("tagid")
        if tag_id is not None and not _int_like(tag_id):
            return jsonify({"error": "tagid must be a positive integer", "field": "tagid"}), 400
        try:
            app = world.app(data.get("corpId"))
            tag, changes = world.put_tag(app, None if tag_id is None else int(tag_id),
                                         str(data.get("tagname") or ""), users, [int(p) for p in parties])
        except WeComFailure as exc:
            return control_error(exc)
        event = None
        if any(changes.values()):
            items = {k: ",".join(map(str, v)) for k, v in changes.items() if v}
            event = fire(app, change_contact(app, "update_tag", TagId=tag.tag_id, **items))
        return jsonify({"tag": tag.as_json(), "event": event}), 201

    @bp.delete("/sandbox/wecom/tags/<int:tag_id>")
    def delete_tag(tag_id):
        try:
            app = world.app(request.args.get("corpId"))
            world.remove_tag(app, tag_id)
        except WeComFailure as exc:
            return control_error(exc, 404)
        return jsonify({"tags": [t.as_json() for t in app.tags.values()], "allowTags": app.allow_tags})

    @bp.post("/sandbox/wecom/faults")
    def add_fault():
        data = _body()
        if not data.get("path") or data.get("errcode") is None:
            return jsonify({"error": "path and errcode are required"}), 400
        with world.lock:
            world.faults.append(Fault(path=data["path"], remaining=int(data.get("count", 1)),
                                      errcode=int(data["errcode"]), errmsg=data.get("errmsg", "sandbox fault"),
                                      corp_id=data.get("corpId")))
        return jsonify({"faults": len(world.faults)}), 201

    @bp.delete("/sandbox/wecom/faults")
    def clear_faults():
        with world.lock:
            world.faults.clear()
        return jsonify({"faults": 0})

    @bp.post("/sandbox/wecom/tokens/revoke")
    def revoke():
        return jsonify({"revoked": world.revoke_tokens(_body().get("corpId"))})

    @bp.post("/sandbox/wecom/callback")
    def set_callback():
        """Save the app's callback URL the way the admin console does: only after it passes verification."""
        data = _body()
        try:
            app = world.app(data.get("corpId"))
        except WeComFailure as exc:
            return control_error(exc, 404)
        url = data.get("url") or None
        if url is None:
            app.callback_url = None
            return jsonify(world.credentials(app))
        check = verify_url(app, url)
        if not check["ok"]:
            return jsonify({"error": "回调地址验证失败 (URL verification failed)", "check": check}), 400
        app.callback_url = url
        return jsonify({**world.credentials(app), "check": check})

    @bp.post("/sandbox/wecom/corps/<corp_id>/users")
    def add_user(corp_id):
        data = _body()
        try:
            app = world.app(corp_id)
            user = world.add_user(app, name=str(data.get("name") or "新同事"),
                                  dept_ids=[int(d) for d in data.get("department") or [1]],
                                  userid=data.get("userid"), title=str(data.get("position") or ""))
        except WeComFailure as exc:
            return control_error(exc)
        event = fire(app, change_contact(app, "create_user", UserID=user.userid, Name=user.name,
                                         Department=",".join(map(str, user.dept_ids)), Position=user.title,
                                         Status=1))
        return jsonify({"user": world.user_json(app, user), "event": event}), 201

    @bp.patch("/sandbox/wecom/corps/<corp_id>/users/<userid>")
    def update_user(corp_id, userid):
        """`newUserid` changes the member's userid the way the admin console does: the event names the old
        one in `UserID` and the new one in `NewUserID` (§5.5)."""
        data = _body()
        new_userid = data.get("newUserid")
        if new_userid is not None and (not isinstance(new_userid, str) or not new_userid.strip()):
            return jsonify({"error": "newUserid must be a non-empty string", "field": "newUserid"}), 400
        try:
            depts = [int(d) for d in data["department"]] if data.get("department") else None
        except (TypeError, ValueError):
            return jsonify({"error": "department must be a list of department ids", "field": "department"}), 400
        try:
            app = world.app(corp_id)
            user = world.update_user(app, userid, name=data.get("name"), dept_ids=depts,
                                     title=data.get("position"), new_userid=new_userid)
        except WeComFailure as exc:
            return control_error(exc)
        renamed = user.userid != userid
        event = fire(app, change_contact(app, "update_user", UserID=userid,
                                         NewUserID=user.userid if renamed else None, Name=user.name,
                                         Department=",".join(map(str, user.dept_ids)), Position=user.title))
        return jsonify({"user": world.user_json(app, user), "event": event})

    @bp.delete("/sandbox/wecom/corps/<corp_id>/users/<userid>")
    def remove_user(corp_id, userid):
        try:
            app = world.app(corp_id)
            world.remove_user(app, userid)
        except WeComFailure as exc:
            return control_error(exc)
        return jsonify({"event": fire(app, change_contact(app, "delete_user", UserID=userid))})

    @bp.post("/sandbox/wecom/corps/<corp_id>/departments")
    def add_department(corp_id):
        data = _body()
        try:
            app = world.app(corp_id)
            dept = world.add_dept(app, name=str(data.get("name") or "新部门"), parent_id=int(data.get("parentid", 1)))
        except WeComFailure as exc:
            return control_error(exc)
        event = fire(app, change_contact(app, "create_party", Id=dept.dept_id, Name=dept.name,
                                         ParentId=dept.parent_id, Order=dept.order))
        return jsonify({"department": world.dept_json(app, dept), "event": event}), 201

    @bp.patch("/sandbox/wecom/corps/<corp_id>/departments/<int:dept_id>")
    def update_department(corp_id, dept_id):
        data = _body()
        try:
            app = world.app(corp_id)
            parent = int(data["parentid"]) if data.get("parentid") is not None else None
            dept = world.update_dept(app, dept_id, name=data.get("name"), parent_id=parent)
        except WeComFailure as exc:
            return control_error(exc)
        event = fire(app, change_contact(app, "update_party", Id=dept.dept_id, Name=dept.name,
                                         ParentId=dept.parent_id))
        return jsonify({"department": world.dept_json(app, dept), "event": event})

    @bp.delete("/sandbox/wecom/corps/<corp_id>/departments/<int:dept_id>")
    def remove_department(corp_id, dept_id):
        try:
            app = world.app(corp_id)
            world.remove_dept(app, dept_id)
        except WeComFailure as exc:
            return control_error(exc)
        return jsonify({"event": fire(app, change_contact(app, "delete_party", Id=dept_id))})

    @bp.post("/sandbox/wecom/cards/<msgid>/click")
    def click(msgid):
        """A member taps a card button: fire the encrypted `template_card_event` at the app and apply a
        passive reply (if any) to that member's copy."""
        data = _body()
        try:
            corp_id = data.get("corpId") or world.app().corp.corp_id
            sent, fields = world.click(corp_id, msgid, str(data.get("userid") or ""), str(data.get("key") or ""))
        except WeComFailure as exc:
            return control_error(exc)
        app = world.app(corp_id)
        event = fire(app, fields)
        if event is None:
            return jsonify({"error": "应用未配置回调地址 (no callback URL configured)"}), 409
        if event.get("reply") and "error" not in event["reply"]:
            world.apply_passive_reply(sent, fields["FromUserName"], event["reply"])
        return jsonify({"event": event, "message": sent.as_json()})

    return bp
