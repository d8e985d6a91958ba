"""An independent verifier of the seal chain, written from its documented definition only.

It recomputes, in Python, what ``audit.seal()`` hashed and ``audit.verify()`` checks:

* canon(row) = UTF-8 of ``json_build_array(id, record_id, old_record_id, op, ts,
  table_schema, table_name, record, old_record, actor, context, transaction_id)::text``
  under ``TimeZone = 'UTC'`` (``table_oid`` is left out: a dump and restore changes it);
  where ``audit.record_version`` has other columns (Supabase's ``auth_uid``,
  ``auth_role``), one more element: ``json_strip_nulls(json_build_object(name, value,
  ...))`` of those columns in name order, appended only when it is not ``{}``;
  leaf(row) = sha256(canon(row));
* a segment's hash = sha256(salt || sha256(leaf_1 || ... || leaf_n)), its rows (the ids of its
  ranges) in ascending id, then leaf bytes; the salt is the segment's current one
  (``audit.seal_salt``); a redaction link's body gives the segments it changed a new hash;
* chain_hash(k) = sha256(chain_hash(k - 1) || UTF-8 of ``audit.seal_link_text(k)``),
  chain_hash(0) = 32 zero bytes.

Nothing here calls the audit schema's hashing code (``audit.canonical_row_sql``,
``audit.segment_state``): the canonical text comes from a query written here, and only the
rows, the salts, the segments and the link text are read. A test asserts the hashes it finds
equal the stored and the returned ones, which proves the documented serialisation is what
the code hashes.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from audit_helpers import Db

ZERO = bytes(32)


@dataclass(frozen=True)
class Reference:
    """What the reference computed, and what the database holds, hex."""

    #: link id -> chain hash recomputed from the link texts / as stored in audit.seal_log.
    chain: dict[int, str]
    stored_chain: dict[int, str]
    #: segment id -> hash recomputed from its rows and current salt / the one the chain
    #: holds for it now (its seal's, or the last redaction link's that re-hashed it).
    segments: dict[int, str]
    expected_segments: dict[int, str]
    #: segment id -> how many rows it covers now.
    rows: dict[int, int]


#: The columns of the canonical array, in its order.
CANONICAL_COLUMNS = (
    "id", "record_id", "old_record_id", "op", "ts", "table_schema", "table_name",
    "record", "old_record", "actor", "context", "transaction_id",
)  # fmt: skip


def canonical_query(db: Db) -> str:
    """The documented canonical text as a query of ours: (id, text) of every audit row."""
    others = [
        name
        for (name,) in db.rows(
            "select attname::text from pg_attribute"
            " where attrelid = 'audit.record_version'::regclass and attnum > 0"
            " and not attisdropped order by attname"
        )
        if name not in CANONICAL_COLUMNS and name != "table_oid"
    ]
    fixed = "json_build_array(" + ", ".join(f"r.{quote(c)}" for c in CANONICAL_COLUMNS) + ")"
    text = fixed + "::text"
    if others:
        extra = (
            "json_strip_nulls(json_build_object("
            + ", ".join(f"{literal(c)}, r.{quote(c)}" for c in others)
            + "))"
        )
        with_extra = fixed[:-1] + ", " + extra + ")"
        text = f"case when {extra}::text = '{{}}' then {fixed}::text else {with_extra}::text end"
    return f"select r.id, {text} from audit.record_version r"


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def canonical_rows(db: Db) -> dict[int, list[bytes]]:
    """Every audit row's canonical bytes, by id (a forged duplicate id gives two)."""
    query = canonical_query(db)
    with db.conn.cursor() as cur:
        cur.execute("begin")
        try:
            cur.execute("set local timezone = 'UTC'")
            cur.execute(query)
            found = cur.fetchall()
        finally:
            cur.execute("commit")
    rows: dict[int, list[bytes]] = {}
    for row_id, text in found:
        rows.setdefault(int(row_id), []).append(text.encode("utf-8"))
    return rows


def canonical_texts(db: Db, ids: list[int]) -> list[str]:
    """The canonical text of the audit rows with these ids, in id order."""
    rows = canonical_rows(db)
    return [text.decode("utf-8") for row_id in sorted(ids) for text in rows.get(row_id, ())]


def segment_hash_of_texts(salt: bytes, texts: list[str]) -> str:
    """A segment's hash (hex) from its rows' canonical texts, in id order."""
    return segment_hash(salt, [leaf(text.encode("utf-8")) for text in texts]).hex()


def leaf(canon: bytes) -> bytes:
    return hashlib.sha256(canon).digest()


_RANGE = re.compile(r"([\[(])(\d+),(\d+)([\])])")


def multirange_ids(text: str) -> list[tuple[int, int]]:
    """``{"[1,101)","[205,210)"}`` (an ``int8range[]``; or an ``int8multirange``'s
    ``{[1,101),[205,210)}``) as inclusive (first, last) pairs."""
    ranges = []
    for opening, low, high, closing in _RANGE.findall(text):
        first = int(low) + (1 if opening == "(" else 0)
        last = int(high) - (1 if closing == ")" else 0)
        ranges.append((first, last))
    return ranges


def segment_hash(salt: bytes, leaves: list[bytes]) -> bytes:
    return hashlib.sha256(salt + hashlib.sha256(b"".join(leaves)).digest()).digest()


def link_text(db: Db, link_id: int) -> str:
    return str(db.one("select audit.seal_link_text(%s)", [link_id]))


def recompute(db: Db) -> Reference:
    """The chain and every segment's hash, recomputed from the documented definition."""
    canon = canonical_rows(db)
    chain: dict[int, str] = {}
    stored: dict[int, str] = {}
    expected_segments: dict[int, str] = {}
    previous = ZERO
    for link_id, chain_hash in db.rows(
        "select link_id, chain_hash from audit.seal_log order by link_id"
    ):
        text = link_text(db, link_id)
        previous = hashlib.sha256(previous + text.encode("utf-8")).digest()
        chain[int(link_id)] = previous.hex()
        stored[int(link_id)] = bytes(chain_hash).hex()
        body: dict[str, Any] = json.loads(text)
        for segment in body.get("segments") or ():  # a seal's segments, as sealed
            expected_segments[int(segment["segment"])] = str(segment["hash"])
    # A redaction re-hashes the segments it changed: the last one's new hash holds.
    for (body,) in db.rows(
        "select body from audit.seal_log where kind = 'redaction' order by link_id"
    ):
        for segment in body.get("segments") or ():
            expected_segments[int(segment["segment"])] = str(segment["new_hash"])
    salts = {int(i): bytes(s) for i, s in db.rows("select segment_id, salt from audit.seal_salt")}
    segments: dict[int, str] = {}
    counts: dict[int, int] = {}
    for segment_id, ids in db.rows(
        "select segment_id, ids::text from audit.seal_segment order by segment_id"
    ):
        if segment_id not in salts:
            continue  # expired: its rows and its salt are gone
        leaves = []
        for first, last in multirange_ids(ids):
            for row_id in range(first, last + 1):
                leaves.extend(sorted(leaf(c) for c in canon.get(row_id, ())))
        segments[int(segment_id)] = segment_hash(salts[segment_id], leaves).hex()
        counts[int(segment_id)] = len(leaves)
    return Reference(chain, stored, segments, expected_segments, counts)
