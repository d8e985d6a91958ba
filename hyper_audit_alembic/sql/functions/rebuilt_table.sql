-- A tracked table as it stood, rebuilt from its audit trail: at `as_of` (audit.table_as_of:
-- the audit rows with ts <= as_of count) or just before the audit row `before_id` of the
-- table (audit.table_before: the audit rows with id < before_id count). Exactly one of the
-- two is given. One row per record that existed then, with its record id, the audit row it
-- comes from (version_id), its values under today's column names (audit.current_names)
-- and, when columns were dropped since, their values in `dropped`. Rows are jsonb: they
-- survive any change of the table's columns.
--
-- Per record, the last change that counts wins, in the order of the audit rows' ids:
-- writers of one record are serialised by its row lock and write their audit rows holding
-- it, so the id order is their order, while ts (the start of each transaction) can put a
-- change before the snapshot row it follows. INSERT, UPDATE and SNAPSHOT leave the record
-- as recorded; DELETE, and an UPDATE that changes the key (for the old key), remove it; a
-- TRUNCATE removes every record recorded before it.
--
-- Why before_id, not a time: ts is the start of the transaction, so the changes a
-- transaction made before its TRUNCATE carry the TRUNCATE's ts, and so may changes of
-- other transactions that started later but wrote first. Only the id says what came
-- before the TRUNCATE (undoing one: revert_transaction puts these rows back).
--
-- Only where the trail is complete (audit.trail_complete_since: from a finished snapshot,
-- or from when the table was tracked empty) at that point (as_of, or the ts of the audit
-- row before_id, at or after `since`, and before_id above `after_id`) and the table is
-- tracked now, every audit trigger in place and enabled (audit.records_every_change);
-- elsewhere an error (SQLSTATE HA001) instead of a partial table. Reads the audit rows of
-- the table after the mark (index on table_oid; ts bounds the partitions and chunks read
-- when as_of is given).
--
-- Runs as its caller (who needs SELECT on audit.record_version, audit.trail_complete_since
-- and audit.column_change, and USAGE on schema audit), with a pinned search_path.
create or replace function audit.rebuilt_table(
    target regclass, as_of timestamptz, before_id bigint
)
returns table (record_id uuid, version_id bigint, record jsonb, dropped jsonb)
language plpgsql
stable
set search_path = pg_catalog, pg_temp
set TimeZone = 'UTC'
set DateStyle = 'ISO, MDY'
as $$
#variable_conflict use_column
declare
    caller text := case when before_id is null then 'audit.table_as_of' else 'audit.table_before' end;
    mark audit.trail_complete_since;
    at timestamptz := as_of;
    upto timestamptz := coalesce(as_of, 'infinity');
    below bigint := coalesce(before_id, 9223372036854775807);
    truncated bigint;
    renamed boolean;
    fix text := 'Take a snapshot: call audit.snapshot(' || quote_literal(target::text)
        || ') (op.enable_tracking(..., snapshot=True) in a migration); the trail rebuilds '
        || target::text || ' from its end on.';
begin
    if as_of is not null and before_id is not null then
        raise exception using
            errcode = 'invalid_parameter_value',
            message = 'audit.rebuilt_table: give as_of or before_id, not both';
    end if;
    if target is null or (as_of is null and before_id is null) then
        raise exception using
            errcode = 'null_value_not_allowed',
            message = caller || ': the table and '
                || case when before_id is null then 'the time' else 'the audit row id' end
                || ' must not be null';
    end if;
    if not audit.records_every_change(target) then
        raise exception using
            errcode = 'HA001',
            message = caller || ': table ' || target::text || ' is not tracked now, so '
                || 'its audit trail may have a gap',
            hint = 'Track it (op.enable_tracking()) and take a snapshot: call audit.snapshot('
                || quote_literal(target::text) || ').';
    end if;
    if before_id is not null then
        select v.ts into at from audit.record_version v
        where v.id = before_id and v.table_oid = target::oid;
        if not found then
            raise exception using
                errcode = 'invalid_parameter_value',
                message = caller || ': audit row ' || before_id || ' is not one of table '
                    || target::text;
        end if;
    end if;
    select * into mark from audit.trail_complete_since m where m.table_oid = target;
    if not found then
        raise exception using
            errcode = 'HA001',
            message = caller || ': the audit trail of ' || target::text
                || ' is not complete: it does not record the rows the table held when '
                || 'tracking began',
            hint = fix;
    end if;
    if at < mark.since or below <= mark.after_id then
        raise exception using
            errcode = 'HA001',
            message = caller || ': the audit trail of ' || target::text
                || ' is complete from ' || mark.since || ' on, not '
                || case when before_id is null then 'at ' || at
                    else 'before audit row ' || before_id || ' (at ' || at || ')' end,
            hint = case mark.how
                when 'snapshot' then 'Its snapshot finished then: ask for a later time. '
                else 'It was tracked empty then: ask for a later time. '
            end || 'Rows from before were not recorded, so an earlier state cannot be rebuilt.';
    end if;

    select max(v.id) into truncated
    from audit.record_version v
    where v.table_oid = target::oid and v.id > mark.after_id and v.id < below
        and v.ts <= upto and v.op = 'TRUNCATE';
    renamed := exists (select from audit.column_change c where c.table_oid = target::oid);

    return query
    with versions as (
        select v.id, v.record_id as rid, v.old_record_id as old_rid, v.record as rec
        from audit.record_version v
        where v.table_oid = target::oid
            and v.id > greatest(mark.after_id, coalesce(truncated, 0))
            and v.id < below
            and v.ts <= upto
            -- A REDACT row (version 5) names a record but changes no row.
            and v.op::text <> 'REDACT'
    ),
    effects as (
        select x.rid, x.id, x.rec from versions x where x.rid is not null
        union all
        select x.old_rid, x.id, null from versions x
        where x.old_rid is not null and x.old_rid is distinct from x.rid
    ),
    latest as (
        select distinct on (e.rid) e.rid, e.id, e.rec
        from effects e
        order by e.rid, e.id desc
    )
    select l.rid, l.id, n.record, n.dropped
    from latest l
    cross join lateral (
        select c.record, c.dropped from audit.current_names(target::oid, l.rec, l.id) c
        where renamed
        union all
        select l.rec, null::jsonb where not renamed
    ) as n
    where l.rec is not null
    order by l.id;
end
$$;

revoke all on function audit.rebuilt_table(regclass, timestamptz, bigint) from public;

grant execute on function audit.rebuilt_table(regclass, timestamptz, bigint) to public;
