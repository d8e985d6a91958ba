-- Records the renames and drops of a tracked table's columns since its columns were last
-- seen (audit.tracked_column), then notes its columns as they are. Called by
-- enable_tracking_keys, so by every enable_tracking and by the event trigger after each
-- ALTER TABLE of a tracked table (a superuser install): changes made outside Alembic are
-- seen as they happen. Without the event trigger they are seen at the next enable_tracking
-- (changed_at is then that time; the mapping, by audit row id, stays right).
-- Names are stored as data, never executed. A table seen for the first time records nothing.
create or replace function audit.record_column_changes(target regclass)
returns void
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
    step_id bigint;
    before bigint;
begin
    if not exists (
        select from audit.tracked_column c where c.table_oid = target
    ) then
        insert into audit.tracked_column (table_oid, attnum, name)
        select target, a.attnum, a.attname from pg_attribute a
        where a.attrelid = target and a.attnum > 0 and not a.attisdropped;
        return;
    end if;
    if exists (
        select from audit.tracked_column c
        left join pg_attribute a on a.attrelid = c.table_oid and a.attnum = c.attnum
        where c.table_oid = target
            and (a.attnum is null or a.attisdropped or a.attname <> c.name)
    ) then
        step_id := nextval('audit.column_change_id_seq'::regclass);
        before := audit.last_audit_id();
        insert into audit.column_change (
            step, table_oid, attnum, kind, old_name, new_name, before_id
        )
        select step_id, c.table_oid, c.attnum,
            case when a.attnum is null or a.attisdropped then 'drop' else 'rename' end,
            c.name,
            case when a.attnum is null or a.attisdropped then null else a.attname end,
            before
        from audit.tracked_column c
        left join pg_attribute a on a.attrelid = c.table_oid and a.attnum = c.attnum
        where c.table_oid = target
            and (a.attnum is null or a.attisdropped or a.attname <> c.name)
        order by c.attnum;
    elsif not exists (
        select from pg_attribute a
        where a.attrelid = target and a.attnum > 0 and not a.attisdropped
            and not exists (
                select from audit.tracked_column c
                where c.table_oid = target and c.attnum = a.attnum
            )
    ) then
        return;  -- as last seen
    end if;
    delete from audit.tracked_column c where c.table_oid = target;
    insert into audit.tracked_column (table_oid, attnum, name)
    select target, a.attnum, a.attname from pg_attribute a
    where a.attrelid = target and a.attnum > 0 and not a.attisdropped;
end
$$;

revoke all on function audit.record_column_changes(regclass) from public;
