-- Audit schema version 4 -> 5: tamper evidence and lawful erasure (issue 15).
--
-- The seal log is a hash chain kept out of the write path: audit.seal() (scheduled, or the
-- CLI's seal command) hashes the audit rows not sealed yet into segments and appends a
-- link whose hash covers the previous link's, so an edit, deletion or insertion of a
-- sealed row, or an edit of the log, breaks the chain (audit.verify()). A redaction
-- (audit.redact()) and a retention drop (audit.note_expiry()) are links of the chain too,
-- so verify tells them from tampering. REDACT audit rows say who erased what and why.
-- The trigger functions (the write path) do not change.
--
-- Idempotent: every install runs it after steps/4.sql. The functions come from functions/.
-- The text holds no '%' and no ':name'.

-- (version_guard.sql runs before this step: the installed version must be 4.)

-- A new label at the end (see steps/4.sql on labels): a fresh install has it already.
do $$
begin
    if not exists (
        select from pg_catalog.pg_enum e
        where e.enumtypid = 'audit.operation'::pg_catalog.regtype and e.enumlabel = 'REDACT'
    ) then
        alter type audit.operation add value 'REDACT';
    end if;
end
$$;

-- A REDACT row names the record it erased (record_id) and has no row image. Compared as
-- text: the label may have been added by this transaction. Replaced once, like version 4's.
do $$
begin
    if not exists (
        select from pg_catalog.pg_constraint k
        where k.conrelid = 'audit.record_version'::pg_catalog.regclass
            and k.conname = 'record_version_record_id_when_new'
            and pg_catalog.strpos(pg_catalog.pg_get_constraintdef(k.oid), 'REDACT') > 0
    ) then
        alter table audit.record_version
            drop constraint if exists record_version_record_id_when_new,
            add constraint record_version_record_id_when_new
                check ((op in ('INSERT', 'UPDATE') or op::text in ('SNAPSHOT', 'REDACT'))
                    = (record_id is not null));
    end if;
end
$$;

-- The chain. link_id 1, 2, 3 ... without gaps; chain_hash = sha256(previous chain_hash ||
-- the link's text, audit.seal_link_text()); mac = HMAC-SHA256(key, chain_hash) for a seal
-- made with a key the database never sees (the client computes it).
create table if not exists audit.seal_log (
    link_id bigint primary key check (link_id > 0),
    kind text not null check (kind in ('seal', 'redaction', 'expiry')),
    made_at timestamptz not null,
    made_by text not null,
    body jsonb not null,
    chain_hash bytea not null,
    mac bytea
);

revoke all on audit.seal_log from public;

-- What each seal covers: the audit ids (disjoint ranges; every id is in at most one
-- segment), their count and time span, and their hash as sealed: sha256(salt || the
-- sha256 of each row's canonical text, in id order). A segment holds rows of one partition
-- or chunk and one block of 100,000 ids.
create table if not exists audit.seal_segment (
    segment_id bigint primary key,
    link_id bigint not null,
    ids int8range[] not null,
    row_count bigint not null,
    first_ts timestamptz not null,
    last_ts timestamptz not null,
    hash bytea not null
);

create index if not exists seal_segment_link_id on audit.seal_segment (link_id);

revoke all on audit.seal_segment from public;

-- The current salt of each segment (32 random bytes). A redaction rehashes the segment
-- under a new salt and deletes the old one, so that no digest kept for verification can
-- be recomputed from a guessed erased value.
create table if not exists audit.seal_salt (
    segment_id bigint primary key,
    salt bytea not null
);

revoke all on audit.seal_salt from public;

delete from audit.schema_version;

insert into audit.schema_version (version) values (5);
