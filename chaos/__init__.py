"""Chaos run: journeys through the real stack while its processes are killed and the carriers
misbehave, then an audit that every message and instruction happened exactly once."""
