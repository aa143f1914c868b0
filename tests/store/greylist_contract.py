"""The greylist store contract every backend keeps (SQLite file, Redis, the store's SQL
tables): triplets round-trip and expire on the caller's clock; client passes count and expire."""

from __future__ import annotations

from mailsift.store.greylist import GreylistStore, Triplet


def assert_triplets_round_trip(store: GreylistStore) -> None:
    """A triplet is absent, then stored, then replaced, then expired at its `expires`."""
    assert store.get_triplet("k", 100.0) is None
    store.put_triplet("k", Triplet(100.0, None, 100.0, 200.0))
    assert store.get_triplet("k", 150.0) == Triplet(100.0, None, 100.0, 200.0)
    store.put_triplet("k", Triplet(100.0, 160.0, 160.0, 1000.0))
    assert store.get_triplet("k", 170.0) == Triplet(100.0, 160.0, 160.0, 1000.0)
    assert store.get_triplet("k", 1000.0) is None  # expired on the caller's clock


def assert_client_passes_count(store: GreylistStore) -> None:
    """A client's passes count up, expire, and count again from one."""
    assert store.client_passes("192.0.2.0/24", 0.0) == 0
    assert store.add_client_pass("192.0.2.0/24", 10.0, 100.0) == 1
    assert store.add_client_pass("192.0.2.0/24", 20.0, 110.0) == 2
    assert store.client_passes("192.0.2.0/24", 50.0) == 2
    assert store.client_passes("192.0.2.0/24", 110.0) == 0  # expired
    assert store.add_client_pass("192.0.2.0/24", 120.0, 200.0) == 1  # counting restarts
