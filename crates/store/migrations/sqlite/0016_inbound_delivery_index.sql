-- The operator's inbound events by the provider's delivery id (deliveryId).
-- UNIQUE (provider, dedup_key) cannot serve it: the dedup key is signed
-- material (`id:…` or the body's hash), not the delivery id. Ordered like
-- the listing, so a lookup walks only the matching rows; partial, because
-- many schemes send no delivery id and those rows then cost the index
-- nothing.
CREATE INDEX IF NOT EXISTS inbound_events_delivery
    ON inbound_events (delivery_id, received_at, id) WHERE delivery_id IS NOT NULL;
