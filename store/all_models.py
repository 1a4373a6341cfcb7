"""Import every table module so SQLModel.metadata is complete (Alembic, tests)."""

from store import (  # noqa: F401
    agents,  # issue 6: agent action audit, attention records
    carriers,  # issue 4: carrier instructions, unknown codes
    models,  # foundation: keys, shipments, carrier events, refusals
    ndr,  # issue 5: reply routing, inbound replies
    notifications,  # issue 3: notification log, opt-outs, outbox
    send_budget,  # issue 7: provider send budget shared by inline and queued notifications
)
