-- The last id the audit rows' sequence gave out (0 if none): every audit row written
-- before is at or below it, every row written after above. The sequence is the one the
-- default of audit.record_version.id uses (found through the default's dependency, so in
-- every layout and in adopted installs), read without a lock or a write.
create or replace function audit.last_audit_id()
returns bigint
language sql
volatile
set search_path = pg_catalog, pg_temp
as $$
    select coalesce(pg_sequence_last_value((
        select d.refobjid::regclass
        from pg_attrdef ad
        join pg_depend d on d.classid = 'pg_attrdef'::regclass and d.objid = ad.oid
            and d.refclassid = 'pg_class'::regclass
        join pg_class s on s.oid = d.refobjid and s.relkind = 'S'
        where ad.adrelid = 'audit.record_version'::regclass
            and ad.adnum = (
                select a.attnum from pg_attribute a
                where a.attrelid = 'audit.record_version'::regclass and a.attname = 'id'
            )
        limit 1
    )), 0)
$$;

revoke all on function audit.last_audit_id() from public;
