"""Platform integrations (DingTalk, WeCom) behind the interface in `integrations.base`."""
