"""Redis cache keys shared by the code that fills an entry (selectors) and the code that drops
it (services)."""

# The cached inventory summary, tagged with the ledger head it was computed at.
INVENTORY_SUMMARY = "inventory:summary:v2"
ORDER_STATISTICS = "orders:statistics:v1"
