"""Import every table module so SQLModel.metadata is complete (Alembic, tests)."""

from store import (
    models,  # noqa: F401
    ndr,  # noqa: F401  (issue 5: reply routing, inbound replies)
)
