-- The single-order intake transaction as raw SQL: the database ceiling for POST /api/v1/orders/.
-- Same statements as fulfillment/services/orders.py (insert order + lines with prices copied,
-- one conditional stock UPDATE with ledger rows, one Procrastinate job), same triggers (pghistory
-- events with a request context, ledger protection, queue notification).
-- Run by loadtests/bench.py:  pgbench -n -M simple -c 16 -f loadtests/order_txn.sql -D pmin=.. -D pmax=..
\set o1 random(0, :pmax - :pmin)
\set span :pmax - :pmin + 1
\set p1 :pmin + :o1
\set p2 :pmin + (:o1 + random(1, :span / 2 - 1)) % :span
\set p3 :pmin + (:o1 + :span / 2 + random(0, :span / 2 - 1)) % :span
\set q1 random(1, 3)
\set q2 random(1, 3)
\set q3 random(1, 3)
\set n random(1, 3)
BEGIN;
WITH items AS (
    SELECT * FROM unnest((ARRAY[:p1, :p2, :p3]::bigint[])[1:(:n)],
                         (ARRAY[:q1, :q2, :q3]::int[])[1:(:n)]) WITH ORDINALITY
        AS i(product_id, quantity, n)
), p AS (
    SELECT i.product_id, i.quantity, i.n, pr.price
    FROM items i JOIN fulfillment_product pr ON pr.id = i.product_id AND pr.is_active
), o AS (
    INSERT INTO fulfillment_order
        (order_id, customer_name, customer_email, priority, status, version, total_amount,
         shipping_address, shipping_city, shipping_postal_code, shipping_country,
         tracking_number, failure_reason, idempotency_key, recovery_count,
         created_at, status_changed_at)
    SELECT gen_random_uuid(), 'pgbench', 'pgbench@example.com', 'normal', 'pending', 1,
           (SELECT sum(p.price * p.quantity) FROM p), '', '', '', '', '', '', NULL, 0, now(), now()
    FROM (SELECT set_config('pghistory.context_id', gen_random_uuid()::text, true),
                 set_config('pghistory.context_metadata', '{"request_id": "pgbench"}', true)) ctx
    WHERE (SELECT count(*) FROM p) = :n
    RETURNING id
), l AS (
    INSERT INTO fulfillment_orderline (order_id, product_id, quantity, unit_price)
    SELECT o.id, p.product_id, p.quantity, p.price FROM o CROSS JOIN p ORDER BY p.n
)
SELECT id AS order_pk FROM o
\gset
WITH d AS (
    SELECT product_id, 0 AS oh, quantity AS rs
    FROM unnest((ARRAY[:p1, :p2, :p3]::bigint[])[1:(:n)],
                (ARRAY[:q1, :q2, :q3]::int[])[1:(:n)]) AS d(product_id, quantity)
), locked AS (
    SELECT s.id FROM fulfillment_stocklevel s
    WHERE s.product_id IN (SELECT product_id FROM d)
    ORDER BY s.id
    FOR UPDATE
), upd AS (
    UPDATE fulfillment_stocklevel s
    SET on_hand = s.on_hand + d.oh, reserved = s.reserved + d.rs,
        version = s.version + 1, updated_at = now()
    FROM d, locked
    WHERE s.id = locked.id AND s.product_id = d.product_id
      AND s.on_hand + d.oh >= 0 AND s.reserved + d.rs >= 0
      AND s.reserved + d.rs <= s.on_hand + d.oh
    RETURNING s.product_id, s.on_hand, s.reserved, s.version, d.oh, d.rs
)
INSERT INTO fulfillment_stockmovement
    (product_id, kind, on_hand_delta, reserved_delta, on_hand_after, reserved_after,
     order_id, reason, actor, created_at)
SELECT upd.product_id, 'reserve', upd.oh, upd.rs, upd.on_hand, upd.reserved,
       :order_pk, '', 'pgbench', now()
FROM upd
RETURNING product_id, on_hand_after, reserved_after, id;
SELECT unnest(procrastinate_defer_jobs_v1(ARRAY[ROW(
    'pipeline', 'fulfillment.advance_order', 0, NULL, NULL,
    jsonb_build_object('order_pk', :order_pk, 'expected_status', 'pending'), NULL
)::procrastinate_job_to_defer_v1])) AS id;
COMMIT;
