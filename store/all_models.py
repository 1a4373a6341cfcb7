"""Import every table module so SQLModel.metadata is complete (Alembic, tests)."""

from store import models  # noqa: F401
