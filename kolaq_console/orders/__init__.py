"""Orders: validated status changes with their effects (stock, activity, customer email, once)
and the queries the CLI and console show.

- `lifecycle.set_status(session, settings, number, status, actor=...)` — an operator's change;
  `lifecycle.change_status(...)` — the same inside a caller's transaction (payment webhooks);
- `queries.list_orders(...)`, `queries.order_detail(session, number)`.
"""
