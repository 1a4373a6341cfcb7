"""Import every table module so SQLModel.metadata is complete (Alembic, tests)."""

from store import agents, carriers, models  # noqa: F401
