"""The local stacks' helpers (``ray_operators/devstack``)."""

from __future__ import annotations


def test_a_service_gets_distinct_ports():
    """A port picked and released may be handed out again: a service's ports come from one call.
    (Two of a Ray head's ports were once the same one: ``ray start`` refused to start.)"""
    from ray_operators.devstack.ports import free_ports

    for _ in range(20):
        ports = free_ports(8)
        assert len(set(ports)) == 8, ports
