"""ndrflow: shipment notifications and NDR resolution on durable Temporal workflows."""

__version__ = "0.1.0"
