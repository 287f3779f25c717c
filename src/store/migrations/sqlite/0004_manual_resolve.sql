-- Cards whose source cannot resolve them (a service's repeated error, an
-- OTLP log record) carry a Resolve button; Alertmanager's do not.
ALTER TABLE cards ADD COLUMN manual_resolve INTEGER NOT NULL DEFAULT 0;
