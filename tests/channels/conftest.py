"""The loopback fake providers for every channel test (tests/channels/fake_providers.py)."""

from tests.channels.fake_providers import fake, fake_providers  # noqa: F401
