-- The single-order intake transaction as raw SQL: the database ceiling for POST /api/v1/orders/.
-- The same statement as fulfillment/services/orders.py `_CREATE_SQL` (stock rows locked in pk
-- order, one conditional UPDATE for every line, order + lines + ledger rows inserted, first
-- pipeline job deferred through procrastinate_defer_jobs_v1), run as its own transaction as the
-- API runs it, with the same triggers (pghistory events with a request context, append-only
-- ledger, queue notification).
-- Run by loadtests/bench.py: pgbench -n -M simple -c 16 -f loadtests/order_txn.sql -D pmin=.. -D pmax=..
\set o1 random(0, :pmax - :pmin)
\set span :pmax - :pmin + 1
\set p1 :pmin + :o1
\set p2 :pmin + (:o1 + random(1, :span / 2 - 1)) % :span
\set p3 :pmin + (:o1 + :span / 2 + random(0, :span / 2 - 1)) % :span
\set q1 random(1, 3)
\set q2 random(1, 3)
\set q3 random(1, 3)
\set n random(1, 3)
WITH ctx AS (
    SELECT set_config('pghistory.context_id', gen_random_uuid()::text, true) AS id,
           set_config('pghistory.context_metadata', '{"request_id": "pgbench"}', true) AS meta
), items AS (
    SELECT * FROM unnest((ARRAY[:p1, :p2, :p3]::bigint[])[1:(:n)],
                         (ARRAY[:q1, :q2, :q3]::int[])[1:(:n)]) WITH ORDINALITY
        AS i(product_id, quantity, n)
), p AS (
    SELECT i.product_id, i.quantity, i.n, pr.price, pr.sku, pr.name
    FROM items i JOIN fulfillment_product pr ON pr.id = i.product_id AND pr.is_active
), locked AS (
    SELECT s.id FROM fulfillment_stocklevel s
    WHERE s.product_id IN (SELECT product_id FROM p)
    ORDER BY s.id
    FOR UPDATE
), upd AS (
    UPDATE fulfillment_stocklevel s
    SET reserved = s.reserved + p.quantity, version = s.version + 1, updated_at = now()
    FROM p, locked
    WHERE s.id = locked.id AND s.product_id = p.product_id
      AND s.reserved + p.quantity <= s.on_hand
    RETURNING s.product_id, s.on_hand, s.reserved, p.quantity
), o AS (
    INSERT INTO fulfillment_order
        (order_id, customer_name, customer_email, priority, status, version, total_amount,
         shipping_address, shipping_city, shipping_postal_code, shipping_country,
         tracking_number, failure_reason, idempotency_key, recovery_count,
         created_at, status_changed_at)
    SELECT gen_random_uuid(), 'pgbench', 'pgbench@example.com', 'normal', 'pending', 1,
           (SELECT sum(p.price * p.quantity) FROM p), '', '', '', '', '', '', NULL, 0, now(), now()
    FROM ctx
    WHERE (SELECT count(*) FROM p) = :n AND (SELECT count(*) FROM upd) = :n
    RETURNING id, created_at, total_amount
), l AS (
    INSERT INTO fulfillment_orderline (order_id, product_id, quantity, unit_price)
    SELECT o.id, p.product_id, p.quantity, p.price FROM o CROSS JOIN p ORDER BY p.n
), m AS (
    INSERT INTO fulfillment_stockmovement
        (product_id, kind, on_hand_delta, reserved_delta, on_hand_after, reserved_after,
         order_id, reason, actor, created_at)
    SELECT upd.product_id, 'reserve', 0, upd.quantity, upd.on_hand, upd.reserved,
           o.id, '', 'pgbench', now()
    FROM o CROSS JOIN upd ORDER BY upd.product_id
), j AS (
    SELECT procrastinate_defer_jobs_v1(ARRAY[ROW(
        'pipeline', 'fulfillment.advance_order', 0, NULL, NULL,
        jsonb_build_object('order_pk', o.id, 'expected_status', 'pending'), NULL
    )::procrastinate_job_to_defer_v1]) AS ids
    FROM o
)
SELECT coalesce(
           (SELECT id FROM o),
           fulfillment_order_rejected(json_build_object(
               'found', (SELECT array_agg(p.product_id) FROM p),
               'reserved', (SELECT array_agg(upd.product_id) FROM upd))::text)),
       (SELECT created_at FROM o), (SELECT total_amount FROM o),
       (SELECT array_agg(p.product_id ORDER BY p.n) FROM p),
       (SELECT array_agg(p.price ORDER BY p.n) FROM p),
       (SELECT array_agg(p.sku ORDER BY p.n) FROM p),
       (SELECT array_agg(p.name ORDER BY p.n) FROM p),
       (SELECT ids[1] FROM j);
