BEGIN;

do $hyper_audit$
declare
    caller constant text := 'op.set_audit_partitioning';
    installing constant boolean := false;
    new_interval constant interval := null;
    set_interval constant boolean := false;
    new_premake constant integer := 5;
    set_premake constant boolean := true;
    new_retention constant interval := null;
    set_retention constant boolean := true;
    new_action constant text := null;
    set_action constant boolean := false;
    months integer;
begin
    if set_interval then
        months := extract(year from new_interval)::integer * 12 + extract(month from new_interval)::integer;
        if new_interval is null
            or extract(hour from new_interval) <> 0 or extract(minute from new_interval) <> 0
            or extract(second from new_interval) <> 0
            or months < 0 or extract(day from new_interval) < 0
            or (months > 0) = (extract(day from new_interval) > 0)
        then
            raise exception using
                errcode = 'invalid_parameter_value',
                message = caller || ': the partition interval must be a whole number of days '
                    || 'or of months, not ' || coalesce(new_interval::text, 'null'),
                hint = 'For example 1 day, 7 days, 1 month, 3 months or 1 year.';
        end if;
    end if;
    if set_premake and (new_premake is null or new_premake < 0) then
        raise exception using
            errcode = 'invalid_parameter_value',
            message = caller || ': premake (how many partitions to create ahead) must be 0 or more';
    end if;
    if set_retention and new_retention <= interval '0' then
        raise exception using
            errcode = 'invalid_parameter_value',
            message = caller || ': the retention must be positive, or None to keep every partition';
    end if;
    if set_action and new_action is distinct from 'detach' and new_action is distinct from 'drop' then
        raise exception using
            errcode = 'invalid_parameter_value',
            message = caller || ': retention_action must be detach or drop';
    end if;

    if installing then
        insert into audit.settings (layout, partition_interval, premake, retention, retention_action)
        values ('partitioned', new_interval, new_premake, new_retention, new_action)
        on conflict (id) do update set
            layout = excluded.layout,
            partition_interval = excluded.partition_interval,
            premake = excluded.premake,
            retention = excluded.retention,
            retention_action = excluded.retention_action;
        return;
    end if;

    -- (Two tests: a query of audit.settings cannot even be planned without it.)
    if to_regclass('audit.settings') is not null then
        if exists (select from audit.settings s where s.layout = 'partitioned') then
            update audit.settings s set
                partition_interval = case when set_interval then new_interval else s.partition_interval end,
                premake = case when set_premake then new_premake else s.premake end,
                retention = case when set_retention then new_retention else s.retention end,
                retention_action = case when set_action then new_action else s.retention_action end
            where s.layout = 'partitioned';
            return;
        end if;
    end if;
    raise exception using
        errcode = 'object_not_in_prerequisite_state',
        message = caller || ': audit.record_version is not partitioned',
        hint = 'op.install_audit(partitioned={...}) makes it a partitioned table; '
            || 'this operation changes the settings of one.';
end
$hyper_audit$;

COMMIT;

