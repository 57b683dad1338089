"""Developer tool: regenerate a migration by autogenerate against a scratch SQLite database.

    .venv/bin/python -m models.migrations.regenerate "message"

Review the generated file before committing; PostgreSQL-only statements (extensions) are added by hand.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from alembic import command

from models.migrate import alembic_config


def main(message: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'scratch.sqlite3'}"
        cfg = alembic_config(url)
        command.upgrade(cfg, "head")
        script = command.revision(cfg, message=message, autogenerate=True)
    path = Path(script.path)
    # Autogenerate renders JSONB's astext_type with a bare name the template does not import.
    path.write_text(path.read_text().replace("astext_type=Text()", "astext_type=sa.Text()"))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "schema change")
