"""Read side, one module per area. Selectors return querysets or plain objects with their joins
applied, so endpoints never run N+1 queries."""
