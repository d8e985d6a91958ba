-- Runs before the install for op.install_audit(partitioned=...): where the timescaledb
-- extension is installed, the install (indexes.sql) makes audit.record_version a hypertable, and a
-- hypertable cannot also be natively partitioned. An audit table that is partitioned
-- already stays so (indexes.sql leaves it alone).
do $$
declare
    kind "char" := (
        select c.relkind from pg_catalog.pg_class c
        where c.oid = pg_catalog.to_regclass('audit.record_version')
    );
begin
    if kind is distinct from 'p'
        and exists (select from pg_catalog.pg_extension where extname = 'timescaledb')
    then
        raise exception using
            errcode = 'feature_not_supported',
            message = 'op.install_audit(partitioned=...): the timescaledb extension is installed '
                || 'in this database, and with it audit.record_version is a hypertable',
            hint = 'TimescaleDB partitions the audit table itself: use '
                || 'op.install_audit(timescale={...}) for its chunk interval, compression and '
                || 'retention, or install with partitioned=... where timescaledb is not installed.';
    end if;
end
$$;
