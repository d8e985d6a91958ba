-- The partitioned layout: audit.record_version range-partitioned by ts, for servers
-- without TimescaleDB (op.install_audit(partitioned=...)). Runs after the install.
--
-- A default partition catches every row whose partition does not exist yet, so an
-- audited write never fails for lack of one; audit.maintain_partitions() (from cron or
-- pg_cron) moves such rows into proper partitions, creates partitions ahead of time and
-- detaches or drops those past the retention age, when one is configured.
--
-- Partition bounds are aligned in UTC: partitions of whole months start on the first of
-- a month (counted from January 2000), partitions of whole days start every n days from
-- Monday 2000-01-03 (so weekly partitions start on Mondays). A partition is named after
-- its lower bound: audit.record_version_p20250101.
--
-- Then partitioned_settings.sql records the settings (a template the operation fills in)
-- and partitioned_convert.sql makes the table partitioned.

-- The layout of audit.record_version and its settings, one row. Later releases read it
-- to know the layout; no row means the plain table (or TimescaleDB's hypertable, which
-- TimescaleDB's own catalog records).
create table if not exists audit.settings (
    id boolean primary key default true check (id),
    layout text not null check (layout in ('plain', 'partitioned', 'hypertable')),
    partition_interval interval,
    premake integer check (premake >= 0),
    retention interval check (retention > interval '0'),
    retention_action text check (retention_action in ('detach', 'drop')),
    check (
        layout <> 'partitioned'
        or (partition_interval is not null and premake is not null and retention_action is not null)
    )
);

revoke all on audit.settings from public;

-- The partitions of audit.record_version with their bounds, oldest first (the default
-- partition, which has none, is not listed; MINVALUE and MAXVALUE read as infinities).
create or replace function audit.partitions()
returns table (partition regclass, from_ts timestamptz, to_ts timestamptz)
language sql
stable
set search_path = pg_catalog, pg_temp
as $$
    select c.oid::regclass,
        coalesce((regexp_match(b.bound, 'FROM \(''([^'']*)''\)'))[1]::timestamptz, '-infinity'),
        coalesce((regexp_match(b.bound, 'TO \(''([^'']*)''\)'))[1]::timestamptz, 'infinity')
    from pg_inherits i
    join pg_class c on c.oid = i.inhrelid
    cross join lateral (select pg_get_expr(c.relpartbound, c.oid) as bound) b
    where i.inhparent = to_regclass('audit.record_version') and b.bound <> 'DEFAULT'
    order by 2, 3
$$;

-- The bounds of the aligned partition of length `step` (whole months or whole days) that
-- holds the instant `at`.
create or replace function audit.partition_bucket(
    at timestamptz, step interval, out from_ts timestamptz, out to_ts timestamptz
)
language plpgsql
immutable
set search_path = pg_catalog, pg_temp
set timezone = 'UTC'
as $$
declare
    months constant integer := extract(year from step)::integer * 12 + extract(month from step)::integer;
    days constant integer := extract(day from step)::integer;
    n bigint;
begin
    if months > 0 then
        n := floor(((extract(year from at) - 2000) * 12 + extract(month from at) - 1) / months);
        from_ts := timestamptz '2000-01-01 00:00:00+00' + make_interval(months => (n * months)::integer);
        to_ts := from_ts + make_interval(months => months);
    else
        n := floor(extract(epoch from at - timestamptz '2000-01-03 00:00:00+00') / (86400 * days));
        from_ts := timestamptz '2000-01-03 00:00:00+00' + make_interval(days => (n * days)::integer);
        to_ts := from_ts + make_interval(days => days);
    end if;
end
$$;

-- Creates the partition that holds the instant `at` (null when one exists): the aligned
-- range, narrowed so that it does not overlap a partition made with another interval.
-- Rows of that range waiting in the default partition move into it. The new table is
-- filled before it is attached, so that audited writes to other partitions go on.
create or replace function audit.create_partition(
    at timestamptz,
    out partition regclass, out from_ts timestamptz, out to_ts timestamptz, out moved_rows bigint
)
language plpgsql
set search_path = pg_catalog, pg_temp
set timezone = 'UTC'
set datestyle = 'ISO, YMD'
as $$
declare
    step constant interval := (
        select s.partition_interval from audit.settings s where s.layout = 'partitioned'
    );
    base_name text;
    table_name text;
    suffix integer := 1;
begin
    if step is null then
        raise exception using
            errcode = 'object_not_in_prerequisite_state',
            message = 'audit.create_partition: audit.record_version is not partitioned',
            hint = 'op.install_audit(partitioned={...}) makes it so.';
    end if;
    if exists (select from audit.partitions() p where at >= p.from_ts and at < p.to_ts) then
        return;
    end if;
    select b.from_ts, b.to_ts into from_ts, to_ts from audit.partition_bucket(at, step) b;
    from_ts := greatest(from_ts, (select max(p.to_ts) from audit.partitions() p where p.to_ts <= at));
    to_ts := least(to_ts, (select min(p.from_ts) from audit.partitions() p where p.from_ts > at));

    base_name := 'record_version_p' || to_char(from_ts, 'YYYYMMDD')
        || case when from_ts = date_trunc('day', from_ts) then '' else to_char(from_ts, '_HH24MISS') end;
    table_name := base_name;
    -- A detached partition keeps its name: do not collide with it.
    while to_regclass('audit.' || quote_ident(table_name)) is not null loop
        suffix := suffix + 1;
        table_name := base_name || '_' || suffix;
    end loop;

    -- Without the defaults: rows come through audit.record_version, which applies its own,
    -- and a detached partition must not depend on the table's id sequence.
    execute 'create table audit.' || quote_ident(table_name)
        || ' (like audit.record_version including constraints)';
    partition := ('audit.' || quote_ident(table_name))::regclass;
    moved_rows := 0;
    if to_regclass('audit.record_version_default') is not null then
        -- Attaching takes this lock anyway; taking it first keeps rows of the range from
        -- arriving in the default partition between the move and the attach.
        lock table audit.record_version_default in access exclusive mode;
        execute 'with moved as (delete from audit.record_version_default where ts >= $1 and ts < $2 '
            || 'returning *) insert into ' || partition::text || ' select * from moved'
            using from_ts, to_ts;
        get diagnostics moved_rows = row_count;
    end if;
    execute 'alter table audit.record_version attach partition ' || partition::text
        || ' for values from (' || quote_literal(from_ts) || ') to (' || quote_literal(to_ts) || ')';
end
$$;

-- Creates the partitions that hold every instant of [from_ts, until_ts), one aligned
-- range after the other; returns those it created.
create or replace function audit.ensure_partitions(from_ts timestamptz, until_ts timestamptz)
returns table (partition regclass, moved_rows bigint)
language plpgsql
set search_path = pg_catalog, pg_temp
set timezone = 'UTC'
as $$
declare
    at timestamptz := from_ts;
    covered_to timestamptz;
    made record;
begin
    while at < until_ts loop
        select p.to_ts into covered_to from audit.partitions() p where at >= p.from_ts and at < p.to_ts;
        if covered_to is null then
            select * into made from audit.create_partition(at);
            partition := made.partition;
            moved_rows := made.moved_rows;
            return next;
            covered_to := made.to_ts;
        end if;
        at := covered_to;
        covered_to := null;
    end loop;
end
$$;

-- The maintenance: safe to run at any time and as often as wanted (from cron or pg_cron:
-- select * from audit.maintain_partitions()). Returns one row per change: drained (rows
-- moved out of the default partition into a new partition), created (a partition ahead
-- of time), detached or dropped (past the retention age), postponed (a lock was not
-- granted within lock_timeout; the next run does it) or skipped (another run was busy).
-- Runs as its owner, so a role granted EXECUTE can run it without owning the table.
create or replace function audit.maintain_partitions()
returns table (action text, partition_name text, moved_rows bigint)
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
set timezone = 'UTC'
set datestyle = 'ISO, YMD'
set lock_timeout = '10s'
as $$
declare
    settings audit.settings;
    at timestamptz;
    horizon timestamptz;
    covered_to timestamptz;
    made record;
    expired regclass;
    expired_name text;
begin
    select * into settings from audit.settings s where s.layout = 'partitioned';
    if not found or (
        select c.relkind from pg_class c where c.oid = to_regclass('audit.record_version')
    ) is distinct from 'p' then
        raise exception using
            errcode = 'object_not_in_prerequisite_state',
            message = 'audit.maintain_partitions: audit.record_version is not partitioned',
            hint = 'Partition maintenance is for the layout that '
                || 'op.install_audit(partitioned={...}) makes.';
    end if;
    -- One run at a time; a second one returns at once.
    if not pg_try_advisory_xact_lock(hashtext('hyper_audit.maintain_partitions')) then
        raise notice using message = 'audit.maintain_partitions: another run is busy; nothing done';
        return query select 'skipped', null::text, null::bigint;
        return;
    end if;

    -- 1. Drain the default partition, oldest rows first. Each step is a subtransaction:
    -- a lock not granted in time postpones the rest to the next run.
    loop
        at := (select min(d.ts) from audit.record_version_default d);
        exit when at is null;
        begin
            select * into made from audit.create_partition(at);
        exception when lock_not_available then
            return query select 'postponed', 'audit.record_version_default', null::bigint;
            exit;
        end;
        if made.partition is null then
            raise exception using
                message = 'audit.maintain_partitions: a row of ' || at::text
                    || ' is in the default partition, but a partition holds that instant';
        end if;
        return query select 'drained', made.partition::text, made.moved_rows;
    end loop;

    -- 2. Partitions ahead: the current one and premake more.
    at := (audit.partition_bucket(now(), settings.partition_interval)).from_ts;
    horizon := at + settings.partition_interval * (settings.premake + 1);
    while at < horizon loop
        covered_to := (
            select p.to_ts from audit.partitions() p where at >= p.from_ts and at < p.to_ts
        );
        if covered_to is null then
            begin
                select * into made from audit.create_partition(at);
            exception when lock_not_available then
                return query select 'postponed', 'audit.record_version', null::bigint;
                exit;
            end;
            return query select 'created', made.partition::text, null::bigint;
            covered_to := made.to_ts;
        end if;
        at := covered_to;
    end loop;

    -- 3. Retention: only when one is configured.
    if settings.retention is not null then
        for expired in
            select p.partition from audit.partitions() p
            where p.to_ts <= now() - settings.retention
            order by p.from_ts
        loop
            expired_name := expired::text;
            begin
                if settings.retention_action = 'drop' then
                    execute 'drop table ' || expired_name;
                else
                    execute 'alter table audit.record_version detach partition ' || expired_name;
                end if;
            exception when lock_not_available then
                return query select 'postponed', expired_name, null::bigint;
                exit;
            end;
            return query select
                case settings.retention_action when 'drop' then 'dropped' else 'detached' end,
                expired_name, null::bigint;
        end loop;
    end if;
end
$$;

revoke all on function
    audit.partitions(),
    audit.partition_bucket(timestamptz, interval),
    audit.create_partition(timestamptz),
    audit.ensure_partitions(timestamptz, timestamptz),
    audit.maintain_partitions()
from public;
