"""A simulated corp that speaks the DingTalk (and WeCom) HTTP APIs on loopback — see design.md."""

from integrations.sandbox.dingtalk_state import DingTalkWorld
from integrations.sandbox.server import SandboxServer, create_app, serve

__all__ = ["DingTalkWorld", "SandboxServer", "create_app", "serve"]
