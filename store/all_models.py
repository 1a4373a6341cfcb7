"""Import every table module so SQLModel.metadata is complete (Alembic, tests)."""

from store import (  # noqa: F401
    carriers,
    models,
    ndr,  # issue 5: reply routing, inbound replies
)
