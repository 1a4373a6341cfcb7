"""Import every table module so SQLModel.metadata is complete (Alembic, tests)."""

from store import carriers, models, notifications  # noqa: F401
