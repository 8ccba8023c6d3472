-- Activity per minute for the console's charts (#15); the SQLite twin of
-- migrations/postgres/0015_activity.sql (minute in unix milliseconds).
CREATE TABLE activity (
    minute INTEGER NOT NULL,
    series TEXT    NOT NULL,
    value  INTEGER NOT NULL,
    PRIMARY KEY (minute, series)
) STRICT;
