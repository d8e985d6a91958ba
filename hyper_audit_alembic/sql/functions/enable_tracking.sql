-- Per-table options (version 2): op.enable_tracking(..., exclude=[...], skip_unchanged=True),
-- and since version 3 on_replica=True.
-- They are stored as trigger arguments after the key columns and an empty separator
-- argument (no column name is empty): 'exclude=<column>' for each excluded column, in
-- name order, then 'skip_unchanged', then 'on_replica' (the table is tracked row by row
-- with ENABLE ALWAYS triggers, so that a logical replication subscriber records the
-- changes it applies: see enable_tracking_keys.sql). So they cost no lookup per statement or row, survive
-- pg_dump / restore with the triggers, and a table without options has exactly the
-- triggers (and the trigger path) of version 1. catalog.py parses them back.
--
-- Tracks a table with these options (replacing its current ones). Idempotent.
create or replace function audit.enable_tracking(
    target regclass, exclude text[], skip_unchanged boolean, on_replica boolean
)
returns void
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
    options text[] := '{}';
    wrong text;
begin
    if exclude is null or skip_unchanged is null or on_replica is null then
        raise exception using
            errcode = 'null_value_not_allowed',
            message = 'audit.enable_tracking: exclude, skip_unchanged and on_replica must not'
                || ' be null',
            hint = 'Pass ''{}'', false and false for the defaults.';
    end if;
    if array_position(exclude, null) is not null or '' = any (exclude) then
        raise exception using
            errcode = 'invalid_parameter_value',
            message = 'audit.enable_tracking: exclude holds a null or empty column name';
    end if;
    wrong := (
        select string_agg(quote_ident(c), ', ' order by c)
        from unnest(exclude) as c
        where c = any (audit.primary_key_columns(target))
    );
    if wrong is not null then
        raise exception using
            errcode = 'invalid_parameter_value',
            message = 'audit.enable_tracking: cannot exclude ' || wrong || ' of table '
                || target::text || ': primary-key columns identify each record',
            hint = 'Leave the primary-key columns out of exclude.';
    end if;
    wrong := (
        select string_agg(quote_ident(c), ', ' order by c)
        from unnest(exclude) as c
        where not exists (
            select from pg_attribute a
            where a.attrelid = target and a.attname = c and a.attnum > 0 and not a.attisdropped
        )
    );
    if wrong is not null then
        raise exception using
            errcode = 'undefined_column',
            message = 'audit.enable_tracking: cannot exclude ' || wrong || ': table '
                || target::text || ' has no such column';
    end if;
    options := array(
        select 'exclude=' || d.c from (select distinct c from unnest(exclude) as c) as d
        order by d.c
    );
    if skip_unchanged then
        options := options || 'skip_unchanged'::text;
    end if;
    if on_replica then
        options := options || 'on_replica'::text;
    end if;
    perform audit.enable_tracking_keys(target, options);
end
$$;

-- Version 2's form: tracks a table with these options and without on_replica.
create or replace function audit.enable_tracking(
    target regclass, exclude text[], skip_unchanged boolean
)
returns void
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
begin
    perform audit.enable_tracking(target, exclude, skip_unchanged, false);
end
$$;

-- Tracks a table, keeping the options it is tracked with (none for a new one). The event
-- trigger that follows ALTER TABLE of tracked tables calls this.
--
-- Since version 4, an excluded column stays excluded when it is renamed, and leaves the
-- options when it is dropped: the trigger arguments hold the names the columns had when
-- the triggers were made, which audit.tracked_column holds too (enable_tracking_keys notes
-- both together), so each excluded name is followed by its column number to today's name.
-- A name tracked_column does not know (an upgrade from version 3 after the rename) stays
-- as it is. Catalog facts only; the names are data.
create or replace function audit.enable_tracking(target regclass)
returns void
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
    options text[] := audit.tracking_options(target);
begin
    options := array(
        select 'exclude=' || d.c
        from (
            select distinct case
                when c.attnum is null then e.name
                when a.attnum is null or a.attisdropped then null
                else a.attname::text
            end as c
            from unnest(options) as o (opt)
            cross join lateral (select substr(o.opt, 9) as name) as e
            left join audit.tracked_column c on c.table_oid = target and c.name = e.name
            left join pg_attribute a on a.attrelid = target and a.attnum = c.attnum
            where left(o.opt, 8) = 'exclude='
        ) as d
        where d.c is not null
        order by d.c
    ) || array(
        select o.opt from unnest(options) with ordinality as o (opt, ord)
        where left(o.opt, 8) <> 'exclude='
        order by o.ord
    );
    perform audit.enable_tracking_keys(target, options);
end
$$;

revoke all on function audit.enable_tracking(regclass, text[], boolean, boolean) from public;

revoke all on function audit.enable_tracking(regclass, text[], boolean) from public;

revoke all on function audit.enable_tracking(regclass) from public;
