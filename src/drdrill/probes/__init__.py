"""drdrill.probes."""
