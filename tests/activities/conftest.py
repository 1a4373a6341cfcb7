"""The loopback fake providers (tests/channels/fake_providers.py) for activity tests."""

from tests.channels.fake_providers import fake, fake_providers  # noqa: F401
