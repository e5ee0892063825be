"""Broadcasts: one marketing message to an audience, sent through the email batch path.

- `audience`: who (subscribers, customers, sku:SKU, admin), net of unsubscribed/suppressed;
- `lifecycle`: draft, submit (recipients materialised once), pause, resume, cancel, test copy;
- `sending`: the `send_broadcast_batch` jobs forming and sending batches, a few at a time,
  and the end of a broadcast;
- `copies`: each recipient's copy (one-click unsubscribe), rendered once per broadcast;
- `progress`: sent / failed / skipped / cancelled of total, rate and ETA.
"""
