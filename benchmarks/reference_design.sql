-- A faithful re-implementation of the reference (supa_audit / hyper_audit) per-row
-- design, written from ../shared/design/AUDIT_BEHAVIOUR.md. It is the baseline that the
-- benchmark measures against and that the equivalence test compares audit rows with.
--
-- It lives in its own schema, audit_reference, with its own trigger names (audit_i_u_d,
-- audit_t), so that it can track the same table as the package's triggers in the same
-- database: both then record the very same statements, with the same table oids.
--
-- Its cost profile is the reference's: a catalog query per row to find the primary-key
-- columns, and a record-id function called per row behind a security-definer boundary.
--
-- Like the reference, every security-definer function pins search_path = '' except the
-- row trigger, which resolves uuid_generate_v5 (to_record_id) through the caller's
-- search_path because uuid-ossp may live in any schema.

create extension if not exists "uuid-ossp";

create schema if not exists audit_reference;

create type audit_reference.operation as enum ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE');

create table audit_reference.record_version (
    id bigserial primary key,
    record_id uuid,
    old_record_id uuid,
    op audit_reference.operation not null,
    ts timestamptz not null default now(),
    table_oid oid not null,
    table_schema name not null,
    table_name name not null,
    record jsonb,
    old_record jsonb,
    check (coalesce(record_id, old_record_id) is not null or op = 'TRUNCATE'),
    check (op in ('INSERT', 'UPDATE') = (record_id is not null)),
    check (op in ('INSERT', 'UPDATE') = (record is not null)),
    check (op in ('UPDATE', 'DELETE') = (old_record_id is not null)),
    check (op in ('UPDATE', 'DELETE') = (old_record is not null))
);

create index record_version_record_id on audit_reference.record_version (record_id)
    where record_id is not null;
create index record_version_old_record_id on audit_reference.record_version (old_record_id)
    where old_record_id is not null;
create index record_version_ts on audit_reference.record_version using brin (ts);
create index record_version_table_oid on audit_reference.record_version (table_oid);

create function audit_reference.primary_key_columns(entity_oid oid)
returns text[]
stable
security definer
set search_path = ''
language sql
as $$
    select coalesce(array_agg(pa.attname::text order by pa.attnum), array[]::text[])
    from pg_index pi
    join pg_attribute pa on pi.indrelid = pa.attrelid and pa.attnum = any (pi.indkey)
    where indrelid = $1 and indisprimary
$$;

create function audit_reference.to_record_id(entity_oid oid, pkey_cols text[], rec jsonb)
returns uuid
stable
language sql
as $$
    select case
        when rec is null then null
        when pkey_cols = array[]::text[] then uuid_generate_v4()
        else (
            select uuid_generate_v5(
                'fd62bc3d-8d6e-43c2-919c-802ba3762271',
                (jsonb_build_array(to_jsonb($1)) || jsonb_agg($3 ->> key_))::text
            )
            from unnest($2) x (key_)
        )
    end
$$;

create function audit_reference.insert_update_delete_trigger()
returns trigger
security definer
language plpgsql
as $$
declare
    pkey_cols text[] = audit_reference.primary_key_columns(tg_relid);
    record_jsonb jsonb = to_jsonb(new);
    record_id uuid = audit_reference.to_record_id(tg_relid, pkey_cols, record_jsonb);
    old_record_jsonb jsonb = to_jsonb(old);
    old_record_id uuid = audit_reference.to_record_id(tg_relid, pkey_cols, old_record_jsonb);
begin
    insert into audit_reference.record_version (
        record_id, old_record_id, op, table_oid, table_schema, table_name, record, old_record
    )
    select
        record_id, old_record_id, tg_op::audit_reference.operation, tg_relid,
        tg_table_schema, tg_table_name, record_jsonb, old_record_jsonb;
    return coalesce(new, old);
end;
$$;

create function audit_reference.truncate_trigger()
returns trigger
security definer
set search_path = ''
language plpgsql
as $$
begin
    insert into audit_reference.record_version (op, table_oid, table_schema, table_name)
    select tg_op::audit_reference.operation, tg_relid, tg_table_schema, tg_table_name;
    return coalesce(old, new);
end;
$$;

create function audit_reference.enable_tracking(regclass)
returns void
volatile
security definer
set search_path = ''
language plpgsql
as $$
declare
    pkey_cols text[] = audit_reference.primary_key_columns($1);
begin
    if pkey_cols = array[]::text[] then
        raise exception 'Table % can not be audited because it has no primary key', $1;
    end if;
    if not exists (select 1 from pg_trigger where tgrelid = $1 and tgname = 'audit_i_u_d') then
        execute 'create trigger audit_i_u_d after insert or update or delete on '
            || $1::text
            || ' for each row execute procedure audit_reference.insert_update_delete_trigger()';
    end if;
    if not exists (select 1 from pg_trigger where tgrelid = $1 and tgname = 'audit_t') then
        execute 'create trigger audit_t after truncate on ' || $1::text
            || ' for each statement execute procedure audit_reference.truncate_trigger()';
    end if;
end;
$$;

create function audit_reference.disable_tracking(regclass)
returns void
volatile
security definer
set search_path = ''
language plpgsql
as $$
begin
    execute 'drop trigger if exists audit_i_u_d on ' || $1::text;
    execute 'drop trigger if exists audit_t on ' || $1::text;
end;
$$;
