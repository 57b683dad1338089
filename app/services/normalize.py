"""Normalisation behind the duplicate check and search: company names and phone numbers."""

from __future__ import annotations

import re
import unicodedata

# Legal-form suffixes that do not distinguish one company from another.
_SUFFIXES = (
    "股份有限公司", "有限责任公司", "有限公司", "集团公司", "集团", "公司",
    "co.,ltd.", "co.,ltd", "co.ltd", "coltd", "ltd.", "ltd", "inc.", "inc", "llc", "corp.", "corp",
)
_STRIP = re.compile(r"[\s\W_]+", re.UNICODE)


def company_name(name: str) -> str:
    """`"  深圳市华为技术 有限公司 "` → `"深圳市华为技术"`; full-width forms folded, case-insensitive."""
    text = unicodedata.normalize("NFKC", name).casefold().strip()
    text = text.replace("（", "(").replace("）", ")")
    changed = True
    while changed:
        changed = False
        compact = text.replace(" ", "")
        for suffix in _SUFFIXES:
            if compact.endswith(suffix) and len(compact) > len(suffix):
                text = compact[: -len(suffix)]
                changed = True
                break
    return _STRIP.sub("", text)


def phone(value: str | None) -> str | None:
    """Digits only; a mainland mobile loses its +86/0086/86 prefix so every spelling matches."""
    if value is None:
        return None
    digits = re.sub(r"\D", "", unicodedata.normalize("NFKC", value))
    if not digits:
        return None
    for prefix in ("0086", "86"):
        if digits.startswith(prefix) and len(digits) == len(prefix) + 11 and digits[len(prefix)] == "1":
            digits = digits[len(prefix):]
    return digits


def like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
