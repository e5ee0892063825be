"""Payment and delivery webhooks: `verify` (signatures on the raw body), `inbox` (store,
sweep, replay), `effects` (what each event does), `process` (one event, once), `server` (the
Starlette app `kolaq-console webhooks serve` runs), `pages` (the unsubscribe pages)."""
