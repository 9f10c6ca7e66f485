"""Passwords and usernames: the rules they follow, and Argon2id hashes of passwords.

Hashes are Argon2id (pwdlib's Argon2Hasher, argon2-cffi's defaults: 64 MiB, 3
passes, 4 lanes; about 0.18 s on the development machine). Each hash holds 64 MiB
while it runs, so at most MAX_CONCURRENT_HASHES run at once: forty sign-ins at the
same moment wait their turn rather than take 2.5 GB. A password is at most
MAX_PASSWORD_LENGTH characters, so nobody has a megabyte hashed.

A sign-in whose username is unknown is checked against DUMMY_HASH, a hash made
beforehand with the same parameters, so it costs what a wrong password costs and
the time taken does not tell which names exist.
"""

from __future__ import annotations

import re
import threading
from functools import cache

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from bankaccounts.exceptions import InvalidPasswordError, InvalidUsernameError

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024
MIN_USERNAME_LENGTH = 3
MAX_USERNAME_LENGTH = 32
#: What a username is, once lower-cased (the OpenAPI schema shows it too).
USERNAME_PATTERN = r"^[a-z0-9._-]{3,32}$"
_USERNAME = re.compile(USERNAME_PATTERN)
#: Hashes computed at the same time (each holds 64 MiB while it runs).
MAX_CONCURRENT_HASHES = 4

_hashing = threading.BoundedSemaphore(MAX_CONCURRENT_HASHES)
_hasher = Argon2Hasher()
_password_hash = PasswordHash((_hasher,))


def to_username(username: object) -> str:
    """The username, lower-cased, if it is 3-32 of a-z 0-9 . _ -; else raises.

    Usernames are unique ignoring case: "Alice" signs up (and in) as "alice".
    """
    if isinstance(username, str):
        lowered = username.lower()
        # Lower-casing may turn a non-ASCII letter into ASCII ("K", the Kelvin
        # sign, becomes "k"): the name as typed must be ASCII already.
        if username.isascii() and _USERNAME.fullmatch(lowered):
            return lowered
    msg = (
        f"Username must be {MIN_USERNAME_LENGTH} to {MAX_USERNAME_LENGTH} "
        "characters of letters a-z, digits 0-9, '.', '_' or '-'"
    )
    raise InvalidUsernameError(msg)


def check_password(password: object) -> str:
    """The password if it is 8 to 1024 characters long; else raises."""
    if (
        not isinstance(password, str)
        or not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH
    ):
        msg = (
            f"Password must be {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} "
            "characters long"
        )
        raise InvalidPasswordError(msg)
    return password


def is_acceptable_password(password: object) -> bool:
    """True if the password follows the rules (a sign-in with another fails)."""
    try:
        check_password(password)
    except InvalidPasswordError:
        return False
    return True


def hash_password(password: str) -> str:
    """The Argon2id hash of a password that follows the rules (else raises)."""
    check_password(password)
    with _hashing:
        return _password_hash.hash(password)


def verify_password(password: str, password_hash: str) -> tuple[bool, str | None]:
    """Whether the password matches the hash, and a new hash if it should be
    replaced (the hash's parameters are not today's); (False, None) if no match."""
    with _hashing:
        return _password_hash.verify_and_update(password, password_hash)


#: A hash of no one's password, made with argon2-cffi's parameters of today.
DUMMY_HASH = (
    "$argon2id$v=19$m=65536,t=3,p=4$g4fnvgRR6fLAjPMAbv7/iQ$"
    "vTKf7qPRitVPZSzJI+mQI5kWD6emfyRl3rTcaetBLRM"
)


@cache
def dummy_hash() -> str:
    """DUMMY_HASH, or, should the library's parameters have changed, one made with
    them (once): verifying it must cost what verifying a user's hash costs."""
    if not _hasher.check_needs_rehash(DUMMY_HASH):
        return DUMMY_HASH
    return hash_password("not a password of any user")


def verify_dummy(password: str) -> None:
    """Costs what verify_password costs, for a sign-in whose username is unknown."""
    verify_password(password, dummy_hash())
