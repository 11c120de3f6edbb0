"""API keys at start: what a keys file may hold, the one clear line each mistake in it gets,
and where a server without keys may listen."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from jobwarden.server import ConfigError, ServeOptions, check_bind, load_keys
from jobwarden.transport.auth import ADMIN, READ, KeyRing
from tests.server_process import serve_until_exit

pytestmark = pytest.mark.anyio

ALICE = '[[keys]]\nkey = "alice-key-1"\nprincipal = "alice"\nscopes = ["jobs:read"]\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[keys]\n", "keys.toml: "),
        ('[[keys]]\nkey = "alice-key-1"\nscopes = []\n', "missing required field `principal`"),
        (ALICE + 'colour = "blue"\n', "unknown field `colour`"),
        (ALICE.replace('"jobs:read"', '"jobs:write"'), "unknown scopes ['jobs:write']"),
        (ALICE.replace('"alice"', '""'), "key #1 (''): principal must not be empty"),
        (ALICE.replace('"alice-key-1"', '"short"'), "key must be at least 8 characters"),
        (
            ALICE.replace('key = "alice-key-1"', f'key_sha256 = "{"ab" * 31}"'),
            "key_sha256 must be 64 hex digits",
        ),
        (
            ALICE.replace('key = "alice-key-1"', f'key_sha256 = "{"zz" * 32}"'),
            "key_sha256 must be 64 hex digits",
        ),
        (ALICE.replace("key = ", f'key_sha256 = "{"ab" * 32}"\nkey = '), "exactly one of key"),
        (ALICE.replace('key = "alice-key-1"\n', ""), "exactly one of key or key_sha256"),
        (
            ALICE.replace('"alice-key-1"', '"alice\\nkey-1"'),
            "key #1 ('alice'): key holds a control character (U+000A at character 6)",
        ),
        (ALICE.replace('"alice-key-1"', '"alice-key\\u007f"'), "(U+007F at character 10)"),
        (ALICE.replace('"alice-key-1"', '" alice-key-1"'), "key starts or ends with a space"),
        (ALICE.replace('"alice-key-1"', '"alice-key-1 "'), "key starts or ends with a space"),
    ],
    ids=[
        "bad toml",
        "no principal",
        "unknown field",
        "unknown scope",
        "empty principal",
        "short key",
        "short digest",
        "digest not hex",
        "key and digest",
        "neither",
        "newline in key",
        "delete in key",
        "leading space",
        "trailing space",
    ],
)
def test_a_mistake_in_the_keys_file_is_refused_with_its_place(text: str, message: str) -> None:
    """Bad TOML, a missing or unknown field, an unknown scope, an empty principal, a short key,
    a key no header can carry, a malformed digest, or both or neither of key and key_sha256 are
    refused with the source and the entry named (never the key)."""
    with pytest.raises(ValueError, match=r"^keys\.toml: ") as caught:
        KeyRing.from_toml(text, source="keys.toml")
    assert message in str(caught.value)
    assert "key-1" not in str(caught.value)


BOB_TABLE = '[[keys]]\n{given}\nprincipal = "bob"\nscopes = ["admin"]\n'
ALICE_DIGEST = hashlib.sha256(b"alice-key-1").hexdigest()


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (ALICE, BOB_TABLE.format(given='key = "alice-key-1"')),
        (
            ALICE.replace('key = "alice-key-1"', f'key_sha256 = "{ALICE_DIGEST}"'),
            BOB_TABLE.format(given=f'key_sha256 = "{ALICE_DIGEST.upper()}"'),
        ),
        (ALICE, BOB_TABLE.format(given=f'key_sha256 = "{ALICE_DIGEST}"')),
        (
            ALICE.replace('key = "alice-key-1"', f'key_sha256 = "{ALICE_DIGEST}"'),
            BOB_TABLE.format(given='key = "alice-key-1"'),
        ),
    ],
    ids=["key twice", "digest twice", "key then its digest", "digest then its key"],
)
def test_a_key_given_twice_is_refused_naming_both_entries_not_the_key(
    first: str, second: str
) -> None:
    """One key in two entries (as key or key_sha256, in any case or order) is refused naming
    both entries and principals, without the key or its digest; the last no longer wins."""
    with pytest.raises(ValueError, match=r"^keys\.toml: key #2 ") as caught:
        KeyRing.from_toml(first + second, source="keys.toml")
    message = str(caught.value)
    assert message == (
        "keys.toml: key #2 ('bob'): the same key as key #1 ('alice'); give each key once"
    )
    assert "alice-key-1" not in message
    assert ALICE_DIGEST not in message.lower()


def test_a_key_repeated_in_jobwarden_keys_is_refused_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """JOBWARDEN_KEYS holding one key twice stops the start naming itself and the entries."""
    monkeypatch.setenv("JOBWARDEN_KEYS", ALICE + BOB_TABLE.format(given='key = "alice-key-1"'))
    with pytest.raises(ConfigError, match=r"^JOBWARDEN_KEYS: key #2 \('bob'\): the same key as"):
        load_keys(ServeOptions())


def test_one_principal_may_hold_several_keys() -> None:
    """Two different keys for the same principal (a key being rotated) are both accepted."""
    ring = KeyRing.from_toml(ALICE + ALICE.replace('"alice-key-1"', '"alice-key-2"'))
    first, second = ring.authenticate("alice-key-1"), ring.authenticate("alice-key-2")
    assert first is not None
    assert first == second
    assert first.name == "alice"


def test_a_key_given_by_its_sha256_authenticates_that_key_only() -> None:
    """key_sha256 (its hex in upper case here) stands for the key whose digest it is, no other."""
    digest = hashlib.sha256(b"bob-secret-key").hexdigest().upper()
    ring = KeyRing.from_toml(
        ALICE + f'[[keys]]\nkey_sha256 = "{digest}"\nprincipal = "bob"\nscopes = ["admin"]\n'
    )
    bob = ring.authenticate("bob-secret-key")
    alice = ring.authenticate("alice-key-1")
    assert bob is not None
    assert (bob.name, bob.can(ADMIN)) == ("bob", True)
    assert alice is not None
    assert (alice.name, alice.can(READ), alice.can(ADMIN)) == ("alice", True, False)
    assert ring.authenticate(digest) is None
    assert len(ring) == 2


def test_a_keys_file_that_cannot_be_read_is_a_config_error(tmp_path: Path) -> None:
    """A keys file that is not there stops the start with the path and the reason."""
    missing = tmp_path / "nowhere.toml"
    expected = re.escape(f"cannot read keys file {missing}: No such file")
    with pytest.raises(ConfigError, match=expected):
        load_keys(ServeOptions(keys_file=str(missing)))


def test_keys_from_the_environment_are_checked_the_same_way(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """JOBWARDEN_KEYS (the file's text, inline) gets the same checks, naming itself as source."""
    monkeypatch.setenv("JOBWARDEN_KEYS", ALICE.replace('"alice-key-1"', '"short"'))
    with pytest.raises(ConfigError, match=r"^JOBWARDEN_KEYS: key #1 .*at least 8 characters"):
        load_keys(ServeOptions())
    monkeypatch.setenv("JOBWARDEN_KEYS", ALICE)
    assert not load_keys(ServeOptions()).open


def test_a_keys_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    """A keys file holding bytes that are not UTF-8 is refused as TOML, naming the file and the
    line, instead of a UnicodeDecodeError."""
    keys = tmp_path / "keys.toml"
    data = ALICE.encode() + b"# caf\xe9\n"
    keys.write_bytes(data)
    byte = data.index(b"\xe9")
    expected = f"keys file {keys} is not valid TOML: invalid UTF-8 at line 5 (byte {byte})"
    with pytest.raises(ConfigError, match=f"^{re.escape(expected)}$"):
        load_keys(ServeOptions(keys_file=str(keys)))


def test_jobwarden_keys_that_is_not_utf8_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """JOBWARDEN_KEYS holding bytes that are not UTF-8 (surrogate-escaped by os.environ) is
    refused as TOML, naming the variable and the line, without printing the key."""
    monkeypatch.setenv("JOBWARDEN_KEYS", ALICE.replace("alice-key-1", "alice-key-\udce9"))
    with pytest.raises(ConfigError) as caught:
        load_keys(ServeOptions())
    assert str(caught.value) == "JOBWARDEN_KEYS is not valid TOML: invalid UTF-8 at line 2"


async def test_serve_with_a_bad_keys_file_exits_2_with_one_line(tmp_path: Path) -> None:
    """`jobwarden serve --keys-file` naming a file with a mistake exits 2 before serving,
    saying what is wrong and where, without a traceback."""
    keys = tmp_path / "keys.toml"
    keys.write_text(ALICE.replace('"jobs:read"', '"jobs:reed"'))
    code, stderr = await serve_until_exit("--port", "0", "--keys-file", str(keys), cwd=tmp_path)
    assert code == 2, stderr
    assert f"jobwarden serve: {keys}: key #1 ('alice'): unknown scopes ['jobs:reed']" in stderr
    assert "Traceback" not in stderr
    assert not (tmp_path / "jobwarden.db").exists()


async def test_serve_with_a_keys_file_that_is_not_utf8_exits_2_with_one_line(
    tmp_path: Path,
) -> None:
    """`jobwarden serve --keys-file` naming a file that is not UTF-8 exits 2 with one line
    naming it, without a traceback."""
    keys = tmp_path / "keys.toml"
    keys.write_bytes(b"\xff\xfe" + ALICE.encode("utf-16-le"))
    code, stderr = await serve_until_exit("--port", "0", "--keys-file", str(keys), cwd=tmp_path)
    assert code == 2, stderr
    assert stderr == (
        f"jobwarden serve: keys file {keys} is not valid TOML: invalid UTF-8 at line 1 (byte 0)\n"
    )


@pytest.mark.parametrize(
    ("host", "refused"),
    [
        ("127.0.0.1", False),
        ("::1", False),
        ("localhost", False),
        ("0.0.0.0", True),
        ("192.168.1.20", True),
        ("jobs.example.com", True),
    ],
)
def test_without_keys_only_loopback_hosts_may_be_served(host: str, refused: bool) -> None:
    """Open mode binds a loopback address or ``localhost`` only; any other address or host name
    is refused, naming it; with keys, any host is allowed."""
    if refused:
        with pytest.raises(ConfigError, match=f"refusing to serve openly on {re.escape(host)}$"):
            check_bind(host, KeyRing())
    else:
        check_bind(host, KeyRing())
    check_bind(host, KeyRing.from_toml(ALICE))
