"""drdrill.faults."""
