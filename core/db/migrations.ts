import type pg from 'pg';

/**
 * Schema migrations, applied in order at start-up by every process that uses the database, inside
 * one transaction under an advisory lock so that replicas starting together apply each once.
 * Append new migrations; never edit an applied one.
 */
export const MIGRATIONS: { version: number; name: string; sql: string }[] = [
  {
    version: 1,
    name: 'events, money movements and the outbox',
    sql: `
      CREATE TABLE events (
        id              bigserial PRIMARY KEY,
        source          text NOT NULL CHECK (source IN ('stripe', 'cal')),
        integration     text NOT NULL,              -- namespace/name of the custom resource
        idempotency_key text NOT NULL,              -- Stripe: account:evt_…; Cal.com: trigger:uid[:seat]
        provider_event_id text,                     -- Stripe evt_…
        provider_type   text NOT NULL,              -- checkout.session.completed, BOOKING_CREATED, …
        conversion_type text,                       -- checkout_completed, booking_created, …; NULL when only stored
        occurred_at     timestamptz NOT NULL,       -- when the provider says it happened
        received_at     timestamptz NOT NULL DEFAULT now(),
        amount_minor    bigint,                     -- this event's own amount, in minor units
        currency        text CHECK (currency ~ '^[A-Z]{3}$'),
        money_key       text,                       -- the money movement it reports (see money_movements)
        customer_id     text,
        customer_email  text,
        account         text,                       -- Stripe Connect account
        livemode        boolean,
        attribution     jsonb NOT NULL DEFAULT '{}', -- fbc, fbp, client_ip, client_user_agent, anonymous_id, utm_*
        details         jsonb NOT NULL DEFAULT '{}', -- normalised provider fields (booking, attendee, object ids)
        payload         jsonb NOT NULL,             -- the provider's event as received
        UNIQUE (integration, idempotency_key),
        CHECK ((amount_minor IS NULL) = (currency IS NULL))
      );
      CREATE INDEX events_by_integration_time ON events (integration, occurred_at DESC, id DESC);

      -- One row per money movement: a payment counts once, however many events report it.
      -- same_as points at the movement it duplicates (e.g. an invoice's PaymentIntent); those rows add no revenue.
      CREATE TABLE money_movements (
        integration   text NOT NULL,
        key           text NOT NULL,                 -- invoice:in_…, payment_intent:pi_…, checkout:cs_…, charge:ch_…
        amount_minor  bigint NOT NULL,
        currency      text NOT NULL,
        customer_id   text,
        occurred_at   timestamptz NOT NULL,
        event_id      bigint NOT NULL REFERENCES events (id),
        same_as       text,
        PRIMARY KEY (integration, key)
      );
      CREATE INDEX money_movements_revenue ON money_movements (integration, occurred_at) WHERE same_as IS NULL;
      CREATE INDEX money_movements_match ON money_movements (integration, customer_id, currency, amount_minor)
        WHERE same_as IS NULL;

      -- What the forwarder sends: one row per destination that wants an event.
      CREATE TABLE outbox (
        id              bigserial PRIMARY KEY,
        event_id        bigint NOT NULL REFERENCES events (id),
        destination     text NOT NULL,               -- meta:namespace/name
        status          smallint NOT NULL DEFAULT 0, -- 0 pending, 1 sent, 2 dead-lettered
        attempts        integer NOT NULL DEFAULT 0,
        next_attempt_at timestamptz NOT NULL DEFAULT now(),
        locked_until    timestamptz,
        last_error      text,
        created_at      timestamptz NOT NULL DEFAULT now(),
        sent_at         timestamptz,
        UNIQUE (event_id, destination)
      );
      CREATE INDEX outbox_pending ON outbox (destination, id) WHERE status = 0;

      -- Records the money movements of newly stored events (a jsonb array, one call per batch) and returns
      -- 'integration key' for each movement that added revenue. Per integration it runs under an advisory lock, so concurrent batches
      -- see each other's movements. Rules, in order:
      --   1. a key already recorded is the same money (checkout → payment intent → charge share pi_…);
      --   2. an alias the payload names (an invoice's payments) points at the movement recorded for it;
      --   3. an invoice and a PaymentIntent of the same customer, amount and currency within 24 h are one
      --      payment: Stripe's current payloads do not link an invoice's PaymentIntent any other way.
      CREATE FUNCTION record_money_movements(items jsonb) RETURNS SETOF text
      LANGUAGE plpgsql AS $fn$
      DECLARE
        it record; integ text; canonical text; alias text; partner_like text; own_like text;
        simple jsonb; complex jsonb;
      BEGIN
        FOR integ IN SELECT DISTINCT x->>'integration' FROM jsonb_array_elements(items) x ORDER BY 1 LOOP
          PERFORM pg_advisory_xact_lock(hashtext('tally.money:' || integ));
        END LOOP;

        -- New keys only, first occurrence in the batch. Most need no matching (rule 1 alone): they are
        -- inserted in one statement; the few with aliases or a possible invoice/PaymentIntent partner
        -- (already recorded or in this batch) go through rules 2 and 3 one by one, in batch order.
        WITH x AS (
          SELECT r.*, e.n FROM jsonb_array_elements(items) WITH ORDINALITY AS e(v, n),
               jsonb_to_record(e.v) AS r(integration text, key text, "amountMinor" bigint, currency text,
                                         "customerId" text, "occurredAt" timestamptz, "eventId" bigint, aliases jsonb)),
        fresh AS (
          SELECT DISTINCT ON (integration, key) * FROM x
           WHERE NOT EXISTS (SELECT 1 FROM money_movements m WHERE m.integration = x.integration AND m.key = x.key)
           ORDER BY integration, key, n),
        flagged AS (
          SELECT f.*, (
            jsonb_array_length(f.aliases) > 0
            OR (f."customerId" IS NOT NULL AND (f.key LIKE 'invoice:%' OR f.key LIKE 'payment_intent:%') AND (
              EXISTS (SELECT 1 FROM money_movements m
                       WHERE m.integration = f.integration AND m.same_as IS NULL AND m.customer_id = f."customerId"
                         AND m.currency = f.currency AND m.amount_minor = f."amountMinor"
                         AND m.key LIKE CASE WHEN f.key LIKE 'invoice:%' THEN 'payment_intent:%' ELSE 'invoice:%' END)
              OR EXISTS (SELECT 1 FROM fresh g
                          WHERE g.integration = f.integration AND g."customerId" = f."customerId"
                            AND g.currency = f.currency AND g."amountMinor" = f."amountMinor" AND g.key <> f.key
                            AND (g.key LIKE 'invoice:%' OR g.key LIKE 'payment_intent:%'))))
          ) AS matching
          FROM fresh f)
        SELECT jsonb_agg(to_jsonb(flagged) ORDER BY n) FILTER (WHERE NOT matching),
               jsonb_agg(to_jsonb(flagged) ORDER BY n) FILTER (WHERE matching)
          INTO simple, complex
          FROM flagged;

        RETURN QUERY
          INSERT INTO money_movements (integration, key, amount_minor, currency, customer_id, occurred_at, event_id)
          SELECT integration, key, "amountMinor", currency, "customerId", "occurredAt", "eventId"
            FROM jsonb_to_recordset(coalesce(simple, '[]'::jsonb)) AS s(
              integration text, key text, "amountMinor" bigint, currency text, "customerId" text,
              "occurredAt" timestamptz, "eventId" bigint)
          RETURNING money_movements.integration || ' ' || money_movements.key;

        FOR it IN
          SELECT * FROM jsonb_to_recordset(coalesce(complex, '[]'::jsonb)) AS c(
            integration text, key text, "amountMinor" bigint, currency text, "customerId" text,
            "occurredAt" timestamptz, "eventId" bigint, aliases jsonb)
        LOOP
          -- An alias recorded by an earlier item of this batch may have claimed this key meanwhile.
          CONTINUE WHEN EXISTS (SELECT 1 FROM money_movements WHERE integration = it.integration AND key = it.key);
          canonical := NULL;
          SELECT coalesce(m.same_as, m.key) INTO canonical FROM money_movements m
           WHERE m.integration = it.integration AND m.key IN (SELECT jsonb_array_elements_text(it.aliases))
           LIMIT 1;
          IF canonical IS NULL AND it."customerId" IS NOT NULL
             AND (it.key LIKE 'invoice:%' OR it.key LIKE 'payment_intent:%') THEN
            own_like := CASE WHEN it.key LIKE 'invoice:%' THEN 'invoice:%' ELSE 'payment_intent:%' END;
            partner_like := CASE WHEN it.key LIKE 'invoice:%' THEN 'payment_intent:%' ELSE 'invoice:%' END;
            SELECT m.key INTO canonical FROM money_movements m
             WHERE m.integration = it.integration AND m.same_as IS NULL AND m.key LIKE partner_like
               AND m.customer_id = it."customerId" AND m.currency = it.currency
               AND m.amount_minor = it."amountMinor"
               AND m.occurred_at BETWEEN it."occurredAt" - interval '24 hours' AND it."occurredAt" + interval '24 hours'
               AND NOT EXISTS (SELECT 1 FROM money_movements d
                                WHERE d.integration = it.integration AND d.same_as = m.key AND d.key LIKE own_like)
             ORDER BY abs(extract(epoch FROM m.occurred_at - it."occurredAt")), m.key
             LIMIT 1;
          END IF;
          INSERT INTO money_movements (integration, key, amount_minor, currency, customer_id, occurred_at, event_id, same_as)
          VALUES (it.integration, it.key, it."amountMinor", it.currency, it."customerId", it."occurredAt",
                  it."eventId", canonical);
          FOR alias IN SELECT jsonb_array_elements_text(it.aliases) LOOP
            INSERT INTO money_movements (integration, key, amount_minor, currency, customer_id, occurred_at, event_id, same_as)
            VALUES (it.integration, alias, it."amountMinor", it.currency, it."customerId", it."occurredAt",
                    it."eventId", coalesce(canonical, it.key))
            ON CONFLICT DO NOTHING;
          END LOOP;
          IF canonical IS NULL THEN
            RETURN NEXT it.integration || ' ' || it.key;
          END IF;
        END LOOP;
      END
      $fn$;

      -- One batch of events in one call, so group commit costs one round trip and one transaction:
      -- inserts the events (the first occurrence of a key wins; an existing key is a duplicate), their
      -- outbox rows and their money movements. Returns {"inserted": [ordinals], "revenue": [{integration, currency, amountMinor}]}.
      CREATE FUNCTION store_events(
        p_source text[], p_integration text[], p_key text[], p_provider_event_id text[], p_provider_type text[],
        p_conversion_type text[], p_occurred_at timestamptz[], p_amount bigint[], p_currency text[],
        p_money_key text[], p_customer_id text[], p_customer_email text[], p_account text[], p_livemode boolean[],
        p_attribution jsonb[], p_details jsonb[], p_payload jsonb[],
        p_dest_ord bigint[], p_dest text[], p_money jsonb[])
      RETURNS jsonb LANGUAGE plpgsql AS $fn$
      DECLARE
        ords bigint[]; ids bigint[]; movements jsonb; added text[]; revenue jsonb;
      BEGIN
        WITH input AS (
          SELECT * FROM unnest(p_source, p_integration, p_key, p_provider_event_id, p_provider_type, p_conversion_type,
                               p_occurred_at, p_amount, p_currency, p_money_key, p_customer_id, p_customer_email,
                               p_account, p_livemode, p_attribution, p_details, p_payload)
                   WITH ORDINALITY AS t(source, integration, idempotency_key, provider_event_id, provider_type,
                                        conversion_type, occurred_at, amount_minor, currency, money_key, customer_id,
                                        customer_email, account, livemode, attribution, details, payload, n)),
        firsts AS (SELECT DISTINCT ON (integration, idempotency_key) * FROM input ORDER BY integration, idempotency_key, n),
        ins AS (
          INSERT INTO events (source, integration, idempotency_key, provider_event_id, provider_type, conversion_type,
                              occurred_at, amount_minor, currency, money_key, customer_id, customer_email, account,
                              livemode, attribution, details, payload)
          SELECT source, integration, idempotency_key, provider_event_id, provider_type, conversion_type, occurred_at,
                 amount_minor, currency, money_key, customer_id, customer_email, account, livemode, attribution,
                 details, payload
            FROM firsts
          ON CONFLICT (integration, idempotency_key) DO NOTHING
          RETURNING id, integration, idempotency_key)
        SELECT array_agg(f.n ORDER BY f.n), array_agg(ins.id ORDER BY f.n) INTO ords, ids
          FROM ins JOIN firsts f USING (integration, idempotency_key);

        IF ords IS NULL THEN
          RETURN jsonb_build_object('inserted', '[]'::jsonb, 'revenue', '[]'::jsonb);
        END IF;

        INSERT INTO outbox (event_id, destination)
        SELECT i.id, d.dest
          FROM unnest(ords, ids) AS i(n, id) JOIN unnest(p_dest_ord, p_dest) AS d(n, dest) ON d.n = i.n;

        SELECT jsonb_agg(p_money[i.n] || jsonb_build_object('eventId', i.id)) INTO movements
          FROM unnest(ords, ids) AS i(n, id) WHERE p_money[i.n] IS NOT NULL;
        SELECT array_agg(k) INTO added FROM record_money_movements(coalesce(movements, '[]'::jsonb)) AS r(k);
        -- A statement of its own: the function's inserts are invisible to the statement that calls it.
        SELECT coalesce(jsonb_agg(jsonb_build_object(
                 'integration', m.integration, 'currency', m.currency, 'amountMinor', m.amount_minor)), '[]'::jsonb)
          INTO revenue
          FROM unnest(added) AS a(k)
          JOIN money_movements m ON m.integration = split_part(a.k, ' ', 1) AND m.key = split_part(a.k, ' ', 2);

        RETURN jsonb_build_object('inserted', to_jsonb(ords), 'revenue', revenue);
      END
      $fn$;
    `,
  },
  {
    version: 2,
    name: 'forwarder: skipped rows, failure reasons, one purchase per payment',
    sql: `
      -- status 3: skipped on purpose (not a conversion for this destination, or its payment already sent).
      ALTER TABLE outbox ADD CONSTRAINT outbox_status_known CHECK (status IN (0, 1, 2, 3));
      -- Why the row was dead-lettered or skipped (too_old, invalid_event, …); last_error says it for people.
      ALTER TABLE outbox ADD COLUMN failure_reason text;
      -- The event_id a sent row shares with another event of the same payment (a subscription's checkout
      -- and its first invoice), so the second of them is skipped instead of counted twice.
      ALTER TABLE outbox ADD COLUMN shared_event_id text;
      CREATE INDEX outbox_shared_sent ON outbox (destination, shared_event_id)
        WHERE shared_event_id IS NOT NULL AND status = 1;
      CREATE INDEX outbox_dead ON outbox (destination, id) WHERE status = 2;
    `,
  },
  {
    version: 3,
    name: 'forwarder: one row per destination may own a shared purchase event id',
    sql: `
      -- Two forwarder loops may hold a subscription's checkout and its first invoice at the same moment:
      -- the first to set the shared event id owns the Purchase, the other is skipped.
      DROP INDEX outbox_shared_sent;
      CREATE UNIQUE INDEX outbox_shared_once ON outbox (destination, shared_event_id)
        WHERE shared_event_id IS NOT NULL;
    `,
  },
  {
    version: 4,
    name: 'outbox: room for HOT lease updates, eager autovacuum',
    sql: `
      -- The forwarder updates every row twice (lease, then outcome). Free space on each page lets the lease
      -- update stay on the page without new index entries (HOT); doubled the forwarder's drain rate in
      -- bench/forwarder.ts. Eager autovacuum keeps the dead versions of a busy queue table from piling up.
      ALTER TABLE outbox SET (fillfactor = 70, autovacuum_vacuum_scale_factor = 0.02,
                              autovacuum_analyze_scale_factor = 0.02, autovacuum_vacuum_cost_limit = 2000);
    `,
  },
  {
    version: 5,
    name: 'events: the payload exactly as received (json), one leaner batch insert',
    sql: `
      -- json keeps the provider's bytes as they arrived (whitespace, key order), which is what "as received"
      -- means, and costs less to store than jsonb, which nothing here queries the payload as.
      ALTER TABLE events ALTER COLUMN payload TYPE json USING payload::json;

      -- store_event_batch: like store_events, but the caller sends each key once (it resolves repeats in a
      -- batch itself), so there is no DISTINCT ON over rows carrying payloads, and the payloads arrive as one
      -- text joined by U+001E: valid JSON never contains that character unescaped, and one plain text
      -- parameter skips quoting every payload into an array literal and unquoting it again.
      CREATE FUNCTION store_event_batch(
        p_source text[], p_integration text[], p_key text[], p_provider_event_id text[], p_provider_type text[],
        p_conversion_type text[], p_occurred_at timestamptz[], p_amount bigint[], p_currency text[],
        p_money_key text[], p_customer_id text[], p_customer_email text[], p_account text[], p_livemode boolean[],
        p_attribution jsonb[], p_details jsonb[], p_payloads text,
        p_dest_ord bigint[], p_dest text[], p_money jsonb[])
      RETURNS jsonb LANGUAGE plpgsql AS $fn$
      DECLARE
        ords bigint[]; ids bigint[]; movements jsonb; added text[]; revenue jsonb;
      BEGIN
        WITH ins AS (
          INSERT INTO events (source, integration, idempotency_key, provider_event_id, provider_type, conversion_type,
                              occurred_at, amount_minor, currency, money_key, customer_id, customer_email, account,
                              livemode, attribution, details, payload)
          SELECT * FROM unnest(p_source, p_integration, p_key, p_provider_event_id, p_provider_type, p_conversion_type,
                               p_occurred_at, p_amount, p_currency, p_money_key, p_customer_id, p_customer_email,
                               p_account, p_livemode, p_attribution, p_details,
                               string_to_array(p_payloads, E'\\x1e')::json[])
          ON CONFLICT (integration, idempotency_key) DO NOTHING
          RETURNING id, integration, idempotency_key)
        SELECT array_agg(k.n ORDER BY k.n), array_agg(ins.id ORDER BY k.n) INTO ords, ids
          FROM ins JOIN unnest(p_integration, p_key) WITH ORDINALITY AS k(integration, idempotency_key, n)
            USING (integration, idempotency_key);

        IF ords IS NULL THEN
          RETURN jsonb_build_object('inserted', '[]'::jsonb, 'revenue', '[]'::jsonb);
        END IF;

        INSERT INTO outbox (event_id, destination)
        SELECT i.id, d.dest
          FROM unnest(ords, ids) AS i(n, id) JOIN unnest(p_dest_ord, p_dest) AS d(n, dest) ON d.n = i.n;

        SELECT jsonb_agg(p_money[i.n] || jsonb_build_object('eventId', i.id)) INTO movements
          FROM unnest(ords, ids) AS i(n, id) WHERE p_money[i.n] IS NOT NULL;
        IF movements IS NULL THEN
          RETURN jsonb_build_object('inserted', to_jsonb(ords), 'revenue', '[]'::jsonb);
        END IF;
        SELECT array_agg(k) INTO added FROM record_money_movements(movements) AS r(k);
        -- A statement of its own: the function's inserts are invisible to the statement that calls it.
        SELECT coalesce(jsonb_agg(jsonb_build_object(
                 'integration', m.integration, 'currency', m.currency, 'amountMinor', m.amount_minor)), '[]'::jsonb)
          INTO revenue
          FROM unnest(added) AS a(k)
          JOIN money_movements m ON m.integration = split_part(a.k, ' ', 1) AND m.key = split_part(a.k, ' ', 2);

        RETURN jsonb_build_object('inserted', to_jsonb(ords), 'revenue', revenue);
      END
      $fn$;
    `,
  },
  {
    version: 6,
    name: 'money movements: lookups that do not grow with the table',
    sql: `
      -- record_money_movements, same rules, without the work that grew with the table: rule 3 looked for a
      -- partner among all of a customer's payments of the same amount, ever, and for a partner's earlier
      -- match without an index, which made every invoice of a busy integration scan all its movements.
      -- Now only a partner of the other kind within the 24 h window routes an item through rules 2 and 3,
      -- and both lookups have an index. (A plan made before the table has statistics may still pick another
      -- index for the partner lookup; autovacuum's first ANALYZE replaces it.)
      DROP INDEX money_movements_match;
      CREATE INDEX money_movements_match
        ON money_movements (integration, customer_id, currency, amount_minor, split_part(key, ':', 1), occurred_at)
        WHERE same_as IS NULL;
      CREATE INDEX money_movements_same_as ON money_movements (integration, same_as) WHERE same_as IS NOT NULL;
      CREATE OR REPLACE FUNCTION record_money_movements(items jsonb) RETURNS SETOF text
      LANGUAGE plpgsql AS $fn$
      DECLARE
        it record; integ text; canonical text; alias text; partner_kind text; own_like text;
        simple jsonb; complex jsonb;
      BEGIN
        FOR integ IN SELECT DISTINCT x->>'integration' FROM jsonb_array_elements(items) x ORDER BY 1 LOOP
          PERFORM pg_advisory_xact_lock(hashtext('tally.money:' || integ));
        END LOOP;

        -- New keys only, first occurrence in the batch. Most need no matching (rule 1 alone): they are
        -- inserted in one statement; the few with aliases or a possible invoice/PaymentIntent partner
        -- (already recorded or in this batch) go through rules 2 and 3 one by one, in batch order.
        -- "known" is an index lookup per item: a LATERAL subquery with LIMIT cannot become a join or a hashed
        -- subplan, which, planned while the table was small (a new database), reads the whole table every call.
        WITH x AS (
          SELECT r.*, e.n, k.known IS NOT NULL AS known
            FROM jsonb_array_elements(items) WITH ORDINALITY AS e(v, n)
           CROSS JOIN jsonb_to_record(e.v) AS r(integration text, key text, "amountMinor" bigint, currency text,
                                                "customerId" text, "occurredAt" timestamptz, "eventId" bigint, aliases jsonb)
            LEFT JOIN LATERAL (SELECT true AS known FROM money_movements m
                                WHERE m.integration = r.integration AND m.key = r.key LIMIT 1) k ON true),
        fresh AS (
          SELECT DISTINCT ON (integration, key) * FROM x WHERE NOT known ORDER BY integration, key, n),
        -- Materialised: inlined, its lookups would run once for each of the three places "matching" is read.
        flagged AS MATERIALIZED (
          SELECT f.*, (
            jsonb_array_length(f.aliases) > 0
            OR (f."customerId" IS NOT NULL AND (f.key LIKE 'invoice:%' OR f.key LIKE 'payment_intent:%') AND (
              EXISTS (SELECT 1 FROM money_movements m
                       WHERE m.integration = f.integration AND m.same_as IS NULL AND m.customer_id = f."customerId"
                         AND m.currency = f.currency AND m.amount_minor = f."amountMinor"
                         AND split_part(m.key, ':', 1) = CASE WHEN f.key LIKE 'invoice:%' THEN 'payment_intent' ELSE 'invoice' END
                         AND m.occurred_at BETWEEN f."occurredAt" - interval '24 hours' AND f."occurredAt" + interval '24 hours')
              OR EXISTS (SELECT 1 FROM fresh g
                          WHERE g.integration = f.integration AND g."customerId" = f."customerId"
                            AND g.currency = f.currency AND g."amountMinor" = f."amountMinor"
                            AND g."occurredAt" BETWEEN f."occurredAt" - interval '24 hours' AND f."occurredAt" + interval '24 hours'
                            AND g.key LIKE CASE WHEN f.key LIKE 'invoice:%' THEN 'payment_intent:%' ELSE 'invoice:%' END)))
          ) AS matching
          FROM fresh f)
        SELECT jsonb_agg(to_jsonb(flagged) ORDER BY n) FILTER (WHERE NOT matching),
               jsonb_agg(to_jsonb(flagged) ORDER BY n) FILTER (WHERE matching)
          INTO simple, complex
          FROM flagged;

        RETURN QUERY
          INSERT INTO money_movements (integration, key, amount_minor, currency, customer_id, occurred_at, event_id)
          SELECT integration, key, "amountMinor", currency, "customerId", "occurredAt", "eventId"
            FROM jsonb_to_recordset(coalesce(simple, '[]'::jsonb)) AS s(
              integration text, key text, "amountMinor" bigint, currency text, "customerId" text,
              "occurredAt" timestamptz, "eventId" bigint)
          RETURNING money_movements.integration || ' ' || money_movements.key;

        FOR it IN
          SELECT * FROM jsonb_to_recordset(coalesce(complex, '[]'::jsonb)) AS c(
            integration text, key text, "amountMinor" bigint, currency text, "customerId" text,
            "occurredAt" timestamptz, "eventId" bigint, aliases jsonb)
        LOOP
          -- An alias recorded by an earlier item of this batch may have claimed this key meanwhile.
          CONTINUE WHEN EXISTS (SELECT 1 FROM money_movements WHERE integration = it.integration AND key = it.key);
          canonical := NULL;
          SELECT coalesce(m.same_as, m.key) INTO canonical FROM money_movements m
           WHERE m.integration = it.integration AND m.key IN (SELECT jsonb_array_elements_text(it.aliases))
           LIMIT 1;
          IF canonical IS NULL AND it."customerId" IS NOT NULL
             AND (it.key LIKE 'invoice:%' OR it.key LIKE 'payment_intent:%') THEN
            own_like := CASE WHEN it.key LIKE 'invoice:%' THEN 'invoice:%' ELSE 'payment_intent:%' END;
            partner_kind := CASE WHEN it.key LIKE 'invoice:%' THEN 'payment_intent' ELSE 'invoice' END;
            SELECT m.key INTO canonical FROM money_movements m
             WHERE m.integration = it.integration AND m.same_as IS NULL AND split_part(m.key, ':', 1) = partner_kind
               AND m.customer_id = it."customerId" AND m.currency = it.currency
               AND m.amount_minor = it."amountMinor"
               AND m.occurred_at BETWEEN it."occurredAt" - interval '24 hours' AND it."occurredAt" + interval '24 hours'
               AND NOT EXISTS (SELECT 1 FROM money_movements d
                                WHERE d.integration = it.integration AND d.same_as = m.key AND d.key LIKE own_like)
             ORDER BY abs(extract(epoch FROM m.occurred_at - it."occurredAt")), m.key
             LIMIT 1;
          END IF;
          INSERT INTO money_movements (integration, key, amount_minor, currency, customer_id, occurred_at, event_id, same_as)
          VALUES (it.integration, it.key, it."amountMinor", it.currency, it."customerId", it."occurredAt",
                  it."eventId", canonical);
          FOR alias IN SELECT jsonb_array_elements_text(it.aliases) LOOP
            INSERT INTO money_movements (integration, key, amount_minor, currency, customer_id, occurred_at, event_id, same_as)
            VALUES (it.integration, alias, it."amountMinor", it.currency, it."customerId", it."occurredAt",
                    it."eventId", coalesce(canonical, it.key))
            ON CONFLICT DO NOTHING;
          END LOOP;
          IF canonical IS NULL THEN
            RETURN NEXT it.integration || ' ' || it.key;
          END IF;
        END LOOP;
      END
      $fn$;
    `,
  },
  {
    version: 7,
    name: 'events: the payload as text; one batch insert with joined JSON and the common money movements in SQL',
    sql: `
      -- The payload as text: ingest parsed it as JSON before storing it, so the json type's check only
      -- repeated that work (about a tenth of PostgreSQL's time per event in bench:ingest). Nothing here
      -- queries into it; ad-hoc queries cast it: payload::jsonb->'data'.
      ALTER TABLE events ALTER COLUMN payload TYPE text;

      -- store_events_joined: one batch of events in one call, like store_event_batch, with two changes.
      -- 1. Attribution and details arrive like the payloads, as one text each joined by U+001E (JSON text
      --    never holds it unescaped): quoting JSON into array literals cost the caller an escape of every
      --    quote and PostgreSQL an unescape.
      -- 2. Money movements arrive as plain arrays (the key, customer and time are the event's; amount,
      --    currency and aliases their own), and the common case, a new key with no aliases and no possible
      --    invoice/PaymentIntent partner (rule 1 alone), is recorded here in one statement. Only the rest go
      --    through record_money_movements(), after these are visible; partners flag each other, so an item
      --    recorded here is never another item's match. PostgreSQL's time per new payment fell by a fifth
      --    (bench, batches of 25): the money path had spent most of its time building and parsing jsonb.
      -- A new name, not an overload: the previous version's untyped parameters would make an overloaded
      -- name ambiguous for replicas still running it during a rolling upgrade.
      CREATE FUNCTION store_events_joined(
        p_source text[], p_integration text[], p_key text[], p_provider_event_id text[], p_provider_type text[],
        p_conversion_type text[], p_occurred_at timestamptz[], p_amount bigint[], p_currency text[],
        p_money_key text[], p_customer_id text[], p_customer_email text[], p_account text[], p_livemode boolean[],
        p_attribution text, p_details text, p_payloads text, p_dest_ord bigint[], p_dest text[],
        p_money_amount bigint[], p_money_currency text[], p_alias_ord bigint[], p_alias text[])
      RETURNS jsonb LANGUAGE plpgsql AS $fn$
      DECLARE
        ords bigint[]; ids bigint[]; integ text; complex jsonb; added text[]; revenue jsonb; more jsonb;
      BEGIN
        WITH ins AS (
          INSERT INTO events (source, integration, idempotency_key, provider_event_id, provider_type, conversion_type,
                              occurred_at, amount_minor, currency, money_key, customer_id, customer_email, account,
                              livemode, attribution, details, payload)
          SELECT * FROM unnest(p_source, p_integration, p_key, p_provider_event_id, p_provider_type, p_conversion_type,
                               p_occurred_at, p_amount, p_currency, p_money_key, p_customer_id, p_customer_email,
                               p_account, p_livemode, string_to_array(p_attribution, E'\\x1e')::jsonb[],
                               string_to_array(p_details, E'\\x1e')::jsonb[], string_to_array(p_payloads, E'\\x1e'))
          ON CONFLICT (integration, idempotency_key) DO NOTHING
          RETURNING id, integration, idempotency_key)
        SELECT array_agg(k.n ORDER BY k.n), array_agg(ins.id ORDER BY k.n) INTO ords, ids
          FROM ins JOIN unnest(p_integration, p_key) WITH ORDINALITY AS k(integration, idempotency_key, n)
            USING (integration, idempotency_key);

        IF ords IS NULL THEN
          RETURN jsonb_build_object('inserted', '[]'::jsonb, 'revenue', '[]'::jsonb);
        END IF;

        IF cardinality(p_dest) > 0 THEN
          INSERT INTO outbox (event_id, destination)
          SELECT i.id, d.dest
            FROM unnest(ords, ids) AS i(n, id) JOIN unnest(p_dest_ord, p_dest) AS d(n, dest) ON d.n = i.n;
        END IF;

        -- The same lock record_money_movements() takes: concurrent batches see each other's movements.
        FOR integ IN
          SELECT DISTINCT e.integration
            FROM unnest(p_integration, p_money_key) WITH ORDINALITY AS e(integration, key, n)
            JOIN unnest(ords) AS i(n) ON i.n = e.n
           WHERE e.key IS NOT NULL ORDER BY 1
        LOOP
          PERFORM pg_advisory_xact_lock(hashtext('tally.money:' || integ));
        END LOOP;

        -- "known" and the partner lookups are index probes per item (see record_money_movements).
        WITH m AS (
          SELECT e.*, i.id AS event_id
            FROM unnest(p_integration, p_money_key, p_money_amount, p_money_currency, p_customer_id, p_occurred_at)
                   WITH ORDINALITY AS e(integration, key, amount, currency, customer, occurred, n)
            JOIN unnest(ords, ids) AS i(n, id) ON i.n = e.n
           WHERE e.key IS NOT NULL),
        fresh AS MATERIALIZED (
          SELECT DISTINCT ON (m.integration, m.key) m.*
            FROM m
            LEFT JOIN LATERAL (SELECT true AS known FROM money_movements x
                                WHERE x.integration = m.integration AND x.key = m.key LIMIT 1) k ON true
           WHERE k.known IS NULL
           ORDER BY m.integration, m.key, m.n),
        flagged AS MATERIALIZED (
          SELECT f.*, (
            f.n IN (SELECT a.n FROM unnest(p_alias_ord) AS a(n))
            OR (f.customer IS NOT NULL AND (f.key LIKE 'invoice:%' OR f.key LIKE 'payment_intent:%') AND (
              EXISTS (SELECT 1 FROM money_movements x
                       WHERE x.integration = f.integration AND x.same_as IS NULL AND x.customer_id = f.customer
                         AND x.currency = f.currency AND x.amount_minor = f.amount
                         AND split_part(x.key, ':', 1) = CASE WHEN f.key LIKE 'invoice:%' THEN 'payment_intent' ELSE 'invoice' END
                         AND x.occurred_at BETWEEN f.occurred - interval '24 hours' AND f.occurred + interval '24 hours')
              OR EXISTS (SELECT 1 FROM fresh g
                          WHERE g.integration = f.integration AND g.customer = f.customer
                            AND g.currency = f.currency AND g.amount = f.amount
                            AND g.occurred BETWEEN f.occurred - interval '24 hours' AND f.occurred + interval '24 hours'
                            AND g.key LIKE CASE WHEN f.key LIKE 'invoice:%' THEN 'payment_intent:%' ELSE 'invoice:%' END)))
          ) AS matching
          FROM fresh f),
        simple AS (
          INSERT INTO money_movements (integration, key, amount_minor, currency, customer_id, occurred_at, event_id)
          SELECT integration, key, amount, currency, customer, occurred, event_id FROM flagged WHERE NOT matching
          RETURNING integration, currency, amount_minor)
        SELECT (SELECT coalesce(jsonb_agg(jsonb_build_object(
                          'integration', integration, 'currency', currency, 'amountMinor', amount_minor)), '[]'::jsonb)
                  FROM simple),
               (SELECT jsonb_agg(jsonb_build_object(
                          'integration', f.integration, 'key', f.key, 'amountMinor', f.amount, 'currency', f.currency,
                          'customerId', f.customer, 'occurredAt', f.occurred, 'eventId', f.event_id,
                          'aliases', coalesce((SELECT jsonb_agg(a.alias) FROM unnest(p_alias_ord, p_alias) AS a(n, alias)
                                                WHERE a.n = f.n), '[]'::jsonb)) ORDER BY f.n)
                  FROM flagged f WHERE f.matching)
          INTO revenue, complex;

        IF complex IS NOT NULL THEN
          -- A statement of its own: it must see the movements recorded above, and its inserts are invisible
          -- to the statement that calls it, hence the lookup after it.
          SELECT array_agg(k) INTO added FROM record_money_movements(complex) AS r(k);
          SELECT coalesce(jsonb_agg((
                   SELECT jsonb_build_object('integration', m.integration, 'currency', m.currency, 'amountMinor', m.amount_minor)
                     FROM money_movements m
                    WHERE m.integration = split_part(a.k, ' ', 1) AND m.key = split_part(a.k, ' ', 2))), '[]'::jsonb)
            INTO more
            FROM unnest(added) AS a(k);
          revenue := revenue || more;
        END IF;

        RETURN jsonb_build_object('inserted', to_jsonb(ords), 'revenue', revenue);
      END
      $fn$;
    `,
  },
  {
    version: 8,
    name: 'destination totals: events each destination accepted, kept across restarts and retention',
    sql: `
      -- What a MetaPixel's status reports as eventsForwarded: one row per destination, raised in the same
      -- transaction that marks rows sent, so it is shared by all forwarder replicas, survives restarts,
      -- and stays when old outbox rows are deleted.
      CREATE TABLE destination_totals (
        destination text PRIMARY KEY,
        sent        bigint NOT NULL DEFAULT 0
      );
      INSERT INTO destination_totals (destination, sent)
      SELECT destination, count(*) FROM outbox WHERE status = 1 GROUP BY destination;
    `,
  },
];

const LOCK_ID = 0x7a11_0001;

export async function migrate(pool: pg.Pool): Promise<number[]> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await client.query('SELECT pg_advisory_xact_lock($1)', [LOCK_ID]);
    await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
    const { rows } = await client.query<{ version: number }>('SELECT version FROM schema_migrations');
    const applied = new Set(rows.map((r) => r.version));
    const now: number[] = [];
    for (const m of MIGRATIONS) {
      if (applied.has(m.version)) continue;
      await client.query(m.sql);
      await client.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [
        m.version,
        m.name,
      ]);
      now.push(m.version);
    }
    await client.query('COMMIT');
    return now;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    client.release();
  }
}
