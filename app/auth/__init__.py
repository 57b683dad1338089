"""Sign-in: a signed session cookie bound to (corp, user)."""
