"""API keys, principals and scopes: who is calling, and what they may do."""

from __future__ import annotations

import hashlib
import hmac
import tomllib
from collections.abc import Iterable

import msgspec

from jobwarden.errors import control_character

SUBMIT = "jobs:submit"
READ = "jobs:read"
CANCEL = "jobs:cancel"
ADMIN = "admin"
SCOPES = frozenset({SUBMIT, READ, CANCEL, ADMIN})


class Principal(msgspec.Struct, frozen=True):
    """An authenticated caller and its scopes; ``admin`` may do everything and see every job."""

    name: str
    scopes: frozenset[str]

    def can(self, scope: str) -> bool:
        """True if the principal holds ``scope`` (or ``admin``)."""
        return ADMIN in self.scopes or scope in self.scopes

    @property
    def owner_filter(self) -> str | None:
        """The owner whose jobs this principal sees: itself, or everyone (None) for admins."""
        return None if ADMIN in self.scopes else self.name


OPEN_PRINCIPAL = Principal(name="anonymous", scopes=frozenset({ADMIN}))


class _KeyEntry(msgspec.Struct, forbid_unknown_fields=True):
    principal: str
    scopes: list[str]
    key: str | None = None
    key_sha256: str | None = None


class _KeysFile(msgspec.Struct, forbid_unknown_fields=True):
    keys: list[_KeyEntry] = []


class KeyRing:
    """The configured API keys, kept only as SHA-256 digests and compared in constant time."""

    def __init__(self, keys: Iterable[tuple[bytes, Principal]] = ()) -> None:
        self._keys = list(keys)

    @property
    def open(self) -> bool:
        """True when no key is configured: the server runs open (loopback only)."""
        return not self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def authenticate(self, presented: str | None) -> Principal | None:
        """The principal owning ``presented``, or None. Every key is compared, match or not."""
        if presented is None:
            return None
        try:
            # A header's bytes that are not UTF-8 arrive as lone surrogates: as those bytes
            # again, which no key given in the keys file (valid UTF-8) can match.
            raw = presented.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:  # a lone surrogate of another origin: no key either
            return None
        digest = hashlib.sha256(raw).digest()
        found = None
        for key_digest, principal in self._keys:
            if hmac.compare_digest(digest, key_digest):
                found = principal
        return found

    @classmethod
    def from_toml(cls, text: str, *, source: str = "keys") -> KeyRing:
        """Parse ``[[keys]]`` tables (key or key_sha256, principal, scopes); ValueError if wrong,
        a key given twice (as key or key_sha256, for one principal or two) included."""
        try:
            parsed = msgspec.convert(tomllib.loads(text), _KeysFile)
        except (tomllib.TOMLDecodeError, msgspec.ValidationError) as exc:
            raise ValueError(f"{source}: {exc}") from exc
        entries: list[tuple[bytes, Principal]] = []
        # Each key's digest -> where it was first given: one key for two entries would be
        # authenticated as whichever came last, so a repeat is refused, never resolved.
        seen: dict[bytes, str] = {}
        for n, entry in enumerate(parsed.keys, 1):
            where = f"{source}: key #{n} ({entry.principal!r})"
            unknown = set(entry.scopes) - SCOPES
            if unknown:
                raise ValueError(
                    f"{where}: unknown scopes {sorted(unknown)}; know {sorted(SCOPES)}"
                )
            if not entry.principal:
                raise ValueError(f"{where}: principal must not be empty")
            digest = _digest(entry, where)
            if digest in seen:
                raise ValueError(f"{where}: the same key as {seen[digest]}; give each key once")
            seen[digest] = f"key #{n} ({entry.principal!r})"
            entries.append((digest, Principal(entry.principal, frozenset(entry.scopes))))
        return cls(entries)


def _digest(entry: _KeyEntry, where: str) -> bytes:
    if (entry.key is None) == (entry.key_sha256 is None):
        raise ValueError(f"{where}: give exactly one of key or key_sha256")
    if entry.key is not None:
        if len(entry.key) < 8:
            raise ValueError(f"{where}: key must be at least 8 characters")
        _check_sendable(entry.key, where)
        return hashlib.sha256(entry.key.encode()).digest()
    try:
        digest = bytes.fromhex(entry.key_sha256 or "")
    except ValueError:
        digest = b""
    if len(digest) != 32:
        raise ValueError(f"{where}: key_sha256 must be 64 hex digits")
    return digest


def _check_sendable(key: str, where: str) -> None:
    """Refuse a key no client could present in a header (so only in a URL's ``?api_key=``): one
    holding a control character, or starting or ending with a space, which HTTP strips from a
    header's value. The message places the problem without showing the key."""
    at = control_character(key)
    if at is not None:
        raise ValueError(
            f"{where}: key holds a control character ({at}); an HTTP header cannot carry it"
        )
    if key != key.strip(" "):
        raise ValueError(
            f"{where}: key starts or ends with a space, which HTTP strips from a header"
        )
