"""Platform-side state: cached tokens, sync runs, API usage, event de-duplication.

Filled in by the platform integrations (DingTalk, WeCom); kept here so every model is in `models/`.
"""
