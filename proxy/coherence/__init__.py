"""Coherence across proxies: when a cached copy may be served without asking Redis."""

from proxy.coherence.coherence import Coherence, LeasedCoherence

__all__ = ["Coherence", "LeasedCoherence"]
