"""Compliance (audit schema version 5): seals over the trail, their verification, and
erasure that is itself audited.

- :mod:`.seal`: :func:`seal` (``audit.seal()``: chain a hash over the rows not sealed
  yet; with a key, an HMAC of the chain hash the database never sees the key of);
- :mod:`.verify`: :func:`verify` (``audit.verify()``: recompute the chain; with the key,
  check each keyed link's HMAC);
- :mod:`.redact`: :func:`redact` (``audit.redact()``: erase columns of one record from
  every version of it, recorded as a REDACT audit row and a link of the chain);
- :mod:`.keys`: the key and the HMAC; :mod:`.functions`: the version-5 functions, checked.

The SQL is the audit schema's (``audit.seal``, ``audit.verify``, ``audit.redact``,
``audit.set_seal_mac``); this package calls it through the caller's connection or
session and never commits: the caller does.
"""

from .redact import RedactResult, redact
from .seal import SealResult, seal
from .verify import LinkCheck, VerifyFailure, VerifyReport, verify

__all__ = [
    "LinkCheck",
    "RedactResult",
    "SealResult",
    "VerifyFailure",
    "VerifyReport",
    "redact",
    "seal",
    "verify",
]
