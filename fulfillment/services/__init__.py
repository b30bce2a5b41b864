"""Write side, one module per concern; the only code that writes.

- ``receipts``: what intake takes (``OrderDraft``) and answers (receipts, bulk results)
- ``intake``: one order, one SQL statement; ``bulk_intake``: many orders, set-based
- ``transition``: the stage statement (prepared once per connection); ``stages``: every status
  change (``order_transition``, ``order_cancel``), the stage job's body, stage deferral
- ``simulation``: stage delays and failures; ``stale``: stale-order healing
- ``inventory``, ``products``, ``api_keys``, ``idempotency``, ``reconciliation``, ``reports``
"""
