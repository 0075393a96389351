"""drdrill.sandbox."""
