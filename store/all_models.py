"""Import every table module so SQLModel.metadata is complete (Alembic, tests)."""

from store import carriers, models  # noqa: F401
