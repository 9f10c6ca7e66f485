"""Identifiers: client-chosen keys and system-derived ids never share a namespace.

A client may name its request with an Idempotency-Key, so that a retry finds the
same transaction. If that key were used as an id directly, a client could choose an
id that the system derives for its own records (a transfer's refund, a rejection),
and so block them or take their place. Instead every key is mapped to an id with
uuid5 in a namespace of its own, and every derived id uses another namespace: to
choose a colliding id a client would have to invert SHA-1.
"""

from __future__ import annotations

import re
from uuid import UUID, uuid5

from bankaccounts.exceptions import InvalidIdempotencyKeyError

#: What an Idempotency-Key may be: 1 to 64 of these characters (a UUID fits).
IDEMPOTENCY_KEY_PATTERN = r"^[A-Za-z0-9._:-]{1,64}$"
_IDEMPOTENCY_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)

# One namespace per kind of id; the values are arbitrary but fixed for ever, since
# stored records refer to the ids derived with them.
IDEMPOTENCY_KEYS = UUID("6f0b4c1e-3f43-4c8e-9a55-0d6b7f1f0a01")
REFUNDS = UUID("6f0b4c1e-3f43-4c8e-9a55-0d6b7f1f0a02")
REJECTIONS = UUID("6f0b4c1e-3f43-4c8e-9a55-0d6b7f1f0a03")
ABORTED_TRANSACTIONS = UUID("6f0b4c1e-3f43-4c8e-9a55-0d6b7f1f0a04")
USERNAMES = UUID("6f0b4c1e-3f43-4c8e-9a55-0d6b7f1f0a05")  # a username's claim
ACCESS_TOKENS = UUID("6f0b4c1e-3f43-4c8e-9a55-0d6b7f1f0a06")  # a token's record
FOUNDERS = UUID("6f0b4c1e-3f43-4c8e-9a55-0d6b7f1f0a07")  # the first user's claim
USER_KEYS = UUID("6f0b4c1e-3f43-4c8e-9a55-0d6b7f1f0a08")  # a user's idempotency keys


def check_idempotency_key(key: object) -> str:
    """Returns the key if it is 1-64 characters of A-Z a-z 0-9 . _ : -, or raises."""
    if not isinstance(key, str) or not _IDEMPOTENCY_KEY.fullmatch(key):
        msg = (
            "Idempotency-Key must be 1 to 64 characters of letters, digits, "
            "'.', '_', ':' or '-' (a UUID will do)"
        )
        raise InvalidIdempotencyKeyError(msg)
    return key


def command_id_for_key(key: str, scope: str = "") -> UUID:
    """The id of the command a client named with this key (within its scope)."""
    return uuid5(IDEMPOTENCY_KEYS, f"{scope}/{check_idempotency_key(key)}")


def command_id_for_user_key(key: str, user_id: UUID) -> UUID:
    """The id of the command a user named with this key: each user's keys apart.

    Two users who happen to choose the same key make two requests, and neither can
    find, nor block, the other's.
    """
    if not isinstance(user_id, UUID):
        msg = f"a user's keys are scoped by the user's id (a UUID), not {user_id!r}"
        raise TypeError(msg)
    return uuid5(USER_KEYS, f"{user_id}/{check_idempotency_key(key)}")


def derived_id(namespace: UUID, *parts: UUID) -> UUID:
    """An id the system derives from others, in a namespace of its kind."""
    return uuid5(namespace, "/".join(str(part) for part in parts))
