"""Security tests reuse the API fixture: the real app, a migrated database, a fake Temporal."""

from tests.api.conftest import Api, api  # noqa: F401  (fixture re-exported for this folder)
