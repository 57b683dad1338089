"""Contacts, follow-ups, opportunities, tags, tasks and custom field definitions."""
