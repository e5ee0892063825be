"""Record screens: one order, customer or product with everything about it, opened from the
command palette (ctrl+p) or a link key, and linked to each other."""
