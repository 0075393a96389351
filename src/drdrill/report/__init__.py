"""drdrill.report."""
