-- The functions of the partitioned layout brought to this release's definitions where the
-- layout is in use: a template whose one value is the text of partitioned.sql, statement
-- by statement (the operation fills it in with sql.filled(); nothing else goes into it).
--
-- op.upgrade_audit() and op.install_audit() replay functions/ only; partitioned.sql runs
-- when op.install_audit(partitioned=...) makes the layout. A database that was made
-- partitioned by an earlier release would keep that release's audit.maintain_partitions()
-- (which, before audit schema version 5, dropped partitions without an 'expiry' link of
-- the seal chain), so these operations end with this block: where
-- audit.maintain_partitions() exists, partitioned.sql runs again (every statement of it is
-- idempotent); elsewhere nothing happens. The decision is made when the SQL runs, so the
-- offline output is the same.
do $hyper_audit$
declare
    definitions constant text[] := :'definitions';
    statement text;
begin
    if pg_catalog.to_regprocedure('audit.maintain_partitions()') is null then
        return;
    end if;
    foreach statement in array definitions loop
        execute statement;
    end loop;
end
$hyper_audit$;
