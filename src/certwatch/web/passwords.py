"""Password rules and argon2id hashes for the accounts of the web service.

The hashes use argon2-cffi's default parameters (the RFC 9106 low-memory
profile in argon2-cffi 23 and later). A stored hash names its parameters,
so after an upgrade changes the defaults, `needs_rehash` makes the login
store a new hash of the password it just verified.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_PASSWORD_LENGTH = 12
# The hash reads the whole password, so a limit keeps a request from making
# the server hash megabytes.
MAX_PASSWORD_LENGTH = 1024

DEFAULT_HASHER = PasswordHasher()

# Verified against unknown email addresses, so that a login for an account
# that does not exist takes as long as one for an account that does.
_UNUSED_HASH = DEFAULT_HASHER.hash("certwatch unused password")


def password_problem(password: str) -> str | None:
    """Return why a new password is not accepted, `None` when it is."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return (
            f"The password is too short: use at least {MIN_PASSWORD_LENGTH} "
            "characters; a few unrelated words are easy to remember."
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        return (
            f"The password is too long: use at most {MAX_PASSWORD_LENGTH} characters."
        )
    return None


def hash_password(password: str, hasher: PasswordHasher = DEFAULT_HASHER) -> str:
    """Return the encoded argon2id hash of a password, with salt and parameters."""
    return hasher.hash(password)


def verify_password(
    password_hash: str | None, password: str, hasher: PasswordHasher = DEFAULT_HASHER
) -> bool:
    """Tell whether the password matches the hash.

    With `password_hash` `None` (no such account), a stored dummy hash is
    verified instead and the result is `False`, so both cases take as long.
    A password over the maximum length never matches and is not hashed.
    """
    if len(password) > MAX_PASSWORD_LENGTH:
        return False
    try:
        matched = hasher.verify(password_hash or _UNUSED_HASH, password)
    except (VerificationError, InvalidHashError):
        return False
    return matched and password_hash is not None


def needs_rehash(password_hash: str, hasher: PasswordHasher = DEFAULT_HASHER) -> bool:
    """Tell whether a hash was made with other parameters than the hasher's."""
    return hasher.check_needs_rehash(password_hash)
