"""Inventory: stock from the event log, reconciliation with an audit trail, low-stock alerts.

Public entry points (domain functions take an Engine or Session):
- stock.record_event(session, product_id, delta, kind, ...)    append an event (other areas)
- reconcile.reconcile(engine, full=..., actor=...)             all products
- reconcile.reconcile_product(engine, sku, actor=...)          one product
- adjust.adjust(engine, settings, sku, delta, reason, ...)     operator adjustment
- adjust.history(session, sku)                                 events + activity of a product
- lowstock.low_stock_products(session, default_threshold)      the one low-stock query
- lowstock.send_alerts(engine, settings)                       the deduplicated daily alert
- alert.send_low_stock_alert(session, settings, products, key) the seam to the email outbox
- periodic.run_scheduled / periodic.catch_up / periodic.reconcile_now  what tasks.py calls
"""
