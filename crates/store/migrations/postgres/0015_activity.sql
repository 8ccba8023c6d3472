-- Activity per minute for the console's charts (#15): each replica adds the
-- deltas it counted in memory (value = value + delta), so a row is the sum
-- over every replica. Series are named by the server (`inbound.accepted`,
-- `latency.le.250`, ...). Rows older than two days are pruned.
CREATE TABLE hook.activity (
    minute TIMESTAMPTZ NOT NULL,
    series TEXT        NOT NULL,
    value  BIGINT      NOT NULL,
    PRIMARY KEY (minute, series)
);
