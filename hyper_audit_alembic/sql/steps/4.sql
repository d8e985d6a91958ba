-- Audit schema version 3 -> 4: the trail as a time machine (issue 14).
--
-- SNAPSHOT rows: audit.snapshot() records each row a table held when its trail became
-- complete (one SNAPSHOT row per row: record_id and record, like an INSERT, no old_*), and
-- audit.trail_complete_since says from when the trail rebuilds a table
-- (audit.table_as_of). Column renames and drops of tracked tables are recorded
-- (audit.column_change), so that records written under older column names map to today's.
-- The trigger functions (the write path) do not change.
--
-- Idempotent: every install runs it after steps/3.sql. The functions come from functions/.
-- The text holds no '%' and no ':name'.

-- (version_guard.sql runs before this step: the installed version must be 3.)

-- A new label at the end: no rewrite of the history. A fresh install has it already
-- (steps/1.sql). Added here, it cannot be used before this transaction commits (55P04):
-- audit.snapshot_batch says so, with the fix.
do $$
begin
    if not exists (
        select from pg_catalog.pg_enum e
        where e.enumtypid = 'audit.operation'::pg_catalog.regtype and e.enumlabel = 'SNAPSHOT'
    ) then
        alter type audit.operation add value 'SNAPSHOT';
    end if;
end
$$;

-- A SNAPSHOT row has a record and its id, like INSERT and UPDATE. The label is compared as
-- text, so that this statement does not use the label it may just have added, and a fresh
-- install and an upgrade have the same definition. INSERT and UPDATE rows decide at the
-- first test; only DELETE and TRUNCATE rows also render their label. Replaced once (the
-- table is read once to check the new rules); a schema that has them is left alone.
do $$
begin
    if not exists (
        select from pg_catalog.pg_constraint k
        where k.conrelid = 'audit.record_version'::pg_catalog.regclass
            and k.conname = 'record_version_record_id_when_new'
            and pg_catalog.strpos(pg_catalog.pg_get_constraintdef(k.oid), 'SNAPSHOT') > 0
    ) then
        alter table audit.record_version
            drop constraint if exists record_version_record_id_when_new,
            add constraint record_version_record_id_when_new
                check ((op in ('INSERT', 'UPDATE') or op::text = 'SNAPSHOT') = (record_id is not null)),
            drop constraint if exists record_version_record_when_new,
            add constraint record_version_record_when_new
                check ((op in ('INSERT', 'UPDATE') or op::text = 'SNAPSHOT') = (record is not null));
    end if;
end
$$;

-- From when each table's trail is complete: from `since` on, the audit rows of the table
-- with an id above `after_id` rebuild it row for row (audit.table_as_of). Set by a finished
-- snapshot (how = 'snapshot': after_id is the last audit id before it began) and by
-- enable_tracking on an empty table (how = 'empty'); cleared where the trail may have a
-- gap (disable_tracking, audit triggers disabled, tracking started anew).
create table if not exists audit.trail_complete_since (
    table_oid oid primary key,
    since timestamptz not null,
    after_id bigint not null,
    how text not null check (how in ('snapshot', 'empty'))
);

revoke all on audit.trail_complete_since from public;

-- A snapshot in progress (audit.snapshot_batch): the pages of the table read so far, in
-- the table's file as it was (relfilenode: a rewrite starts the pages again), and the last
-- audit id before it began (audit rows above it, for a record, make its SNAPSHOT row
-- unnecessary: never a row twice).
create table if not exists audit.snapshot_progress (
    table_oid oid primary key,
    start_id bigint not null,
    started_at timestamptz not null,
    file_node oid not null,
    next_page bigint not null,
    end_page bigint not null,
    written bigint not null
);

revoke all on audit.snapshot_progress from public;

-- The column names of each tracked table as last seen (by enable_tracking and the event
-- trigger that follows ALTER TABLE), to tell what a later ALTER TABLE renamed or dropped.
create table if not exists audit.tracked_column (
    table_oid oid not null,
    attnum smallint not null,
    name name not null,
    primary key (table_oid, attnum)
);

revoke all on audit.tracked_column from public;

-- Renames and drops of tracked tables' columns, also those made outside Alembic (seen by
-- the event trigger, or by the next enable_tracking without one). The audit rows of the
-- table with an id up to before_id use old_name. One step per ALTER TABLE seen: its renames
-- apply together (a swap of two names is two renames of one step only when seen late).
create table if not exists audit.column_change (
    id bigserial primary key,
    step bigint not null,
    table_oid oid not null,
    attnum smallint not null,
    kind text not null check (kind in ('rename', 'drop')),
    old_name name not null,
    new_name name,
    before_id bigint not null,
    changed_at timestamptz not null default now(),
    check ((kind = 'rename') = (new_name is not null))
);

create index if not exists column_change_table_oid on audit.column_change (table_oid, before_id);

revoke all on audit.column_change from public;

-- The columns of the tables tracked now, so that their first rename is seen.
insert into audit.tracked_column (table_oid, attnum, name)
select a.attrelid, a.attnum, a.attname
from pg_catalog.pg_attribute a
where a.attnum > 0 and not a.attisdropped
    and a.attrelid in (
        select t.tgrelid from pg_catalog.pg_trigger t
        where t.tgfoid = pg_catalog.to_regprocedure('audit.record_row_change()')
    )
on conflict do nothing;

delete from audit.schema_version;

insert into audit.schema_version (version) values (4);
