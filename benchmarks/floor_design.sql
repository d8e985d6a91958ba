-- The floor of the benchmark: the least work that writes the audit rows of the package
-- (and of the reference design) for public.bench. Nothing here is for production.
--
-- Needs the package's install (audit.record_version, audit.to_record_id) and the bench
-- table. Two parts:
--
-- 1. audit_floor.record_row(), a bare PL/pgSQL row trigger: one INSERT of the audit row
--    per changed row, the record ids computed inline from the key columns given as
--    trigger arguments, each row's jsonb made once. No catalog lookup, no key-change
--    handling, no options: the cheapest trigger that writes these rows, the floor of the
--    single-row statements (a trigger of any design pays at least this).
--
-- 2. The bulk statements of run.py (FLOOR_BULK_STATEMENTS) need no trigger at all: each
--    makes the change and writes its audit rows in one statement (a data-modifying WITH),
--    with this trigger switched off for it (session_replication_role = replica).

create schema audit_floor;

create function audit_floor.record_row()
returns trigger
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    new_rec jsonb;
    old_rec jsonb;
begin
    if tg_op <> 'DELETE' then
        new_rec := to_jsonb(new);
    end if;
    if tg_op <> 'INSERT' then
        old_rec := to_jsonb(old);
    end if;
    insert into audit.record_version (
        record_id, old_record_id, op, table_oid, table_schema, table_name, record, old_record
    )
    values (
        audit.to_record_id(tg_relid, tg_argv, new_rec),
        audit.to_record_id(tg_relid, tg_argv, old_rec),
        tg_op::audit.operation,
        tg_relid,
        tg_table_schema,
        tg_table_name,
        new_rec,
        old_rec
    );
    return null;
end
$$;

create trigger audit_floor_row
    after insert or update or delete on public.bench
    for each row execute function audit_floor.record_row('id');
