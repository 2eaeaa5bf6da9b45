"""Who the shell is: profiles kept in a per-user file, and which token a command uses.

A profile is a gateway URL, a user id and the token that resumes that user.
``market-client login`` writes one; every other command reads it. The file
lives where `platformdirs` puts per-user configuration (for example
``~/.config/market-client/profiles.json`` on Linux), or in the folder the
``MARKET_CLIENT_CONFIG_DIR`` environment variable names. It holds secrets, so
it is written with mode 0600 (owner only), atomically.

Which token a command uses, from weakest to strongest: the profile
(``--profile NAME``, default ``default``), then the ``MARKET_CLIENT_TOKEN``
environment variable, then ``--token``.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "CONFIG_DIR_ENV",
    "DEFAULT_PROFILE",
    "DEFAULT_URL",
    "TOKEN_ENV",
    "Identity",
    "Profile",
    "ProfileError",
    "ProfileStore",
    "config_path",
    "resolve_identity",
]

CONFIG_DIR_ENV = "MARKET_CLIENT_CONFIG_DIR"
TOKEN_ENV = "MARKET_CLIENT_TOKEN"
DEFAULT_PROFILE = "default"
DEFAULT_URL = "http://127.0.0.1:8000"
_MAX_FILE = 1 << 20  # a profile file is a few hundred bytes; refuse to read a huge one


class ProfileError(Exception):
    """The profile file cannot be used (unreadable, not JSON, too large)."""


@dataclass(frozen=True)
class Profile:
    """One saved identity.

    Attributes:
        name: The profile's name (``default`` unless ``--profile`` says otherwise).
        url: The gateway it belongs to.
        user_id: The user the token resumes.
        token: The secret that resumes the user.
    """

    name: str
    url: str
    user_id: str
    token: str


@dataclass(frozen=True)
class Identity:
    """What a command connects as.

    Attributes:
        url: The gateway's URL.
        token: The token to resume, or None for a new anonymous user.
        source: Where the token came from (``--token``, ``MARKET_CLIENT_TOKEN``,
            ``profile 'default'``), or None.
        profile: The profile's name (whether or not it exists).
        user_id: The user the profile names, when the token came from it.
    """

    url: str
    token: str | None
    source: str | None
    profile: str
    user_id: str | None = None


def config_path() -> Path:
    """The profile file: in ``$MARKET_CLIENT_CONFIG_DIR``, else the platform's config folder."""
    folder = os.environ.get(CONFIG_DIR_ENV)
    if not folder:
        import platformdirs

        folder = platformdirs.user_config_dir("market-client", appauthor=False)
    return Path(folder) / "profiles.json"


class ProfileStore:
    """The profile file: read, add or replace, and remove profiles.

    Args:
        path: The file (default: `config_path()`).
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path if path is not None else config_path()

    def _read(self) -> dict[str, Any]:
        try:
            if self.path.stat().st_size > _MAX_FILE:
                raise ProfileError(f"{self.path} is too large to be a profile file: delete it")
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"profiles": {}}
        except (OSError, ValueError) as exc:
            raise ProfileError(
                f"cannot read the profile file {self.path} ({exc}); delete it and "
                "run `market-client login` again"
            ) from exc
        if not isinstance(data, dict) or not isinstance(data.get("profiles"), dict):
            raise ProfileError(
                f"{self.path} is not a profile file; delete it and run `market-client login` again"
            )
        return data

    def get(self, name: str) -> Profile | None:
        """The profile called ``name``, or None."""
        entry = self._read()["profiles"].get(name)
        if not isinstance(entry, dict):
            return None
        try:
            return Profile(name, str(entry["url"]), str(entry["user_id"]), str(entry["token"]))
        except KeyError:
            return None

    def names(self) -> list[str]:
        """Names of the saved profiles."""
        return sorted(self._read()["profiles"])

    def save(self, profile: Profile) -> None:
        """Add or replace ``profile``; the file is written atomically with mode 0600."""
        data = self._read()
        data["profiles"][profile.name] = {
            "url": profile.url,
            "user_id": profile.user_id,
            "token": profile.token,
        }
        self._write(data)

    def remove(self, name: str) -> Profile | None:
        """Forget the profile called ``name``; returns it (None if there was none)."""
        profile = self.get(name)
        if profile is not None:
            data = self._read()
            del data["profiles"][name]
            self._write(data)
        return profile

    def _write(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # mkstemp creates the file with mode 0600: the token is never readable by others,
        # not even for a moment, and os.replace swaps the whole file in at once.
        fd, tmp = tempfile.mkstemp(prefix=".profiles-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh, indent=2, sort_keys=True)
                fh.write("\n")
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def resolve_identity(
    *,
    url: str | None,
    token: str | None,
    profile: str | None,
    store: ProfileStore | None = None,
) -> Identity:
    """Decide which gateway and token a command uses.

    The token: ``--token``, else ``MARKET_CLIENT_TOKEN``, else the profile's.
    The URL: ``--url``, else the profile's, else `DEFAULT_URL`.

    Args:
        url: ``--url``, if given.
        token: ``--token``, if given.
        profile: ``--profile``, if given.
        store: Where profiles are read (default: the per-user file).

    Returns:
        The identity to connect as.

    Raises:
        ProfileError: ``--profile`` names a profile that does not exist, or the
            file cannot be read.
    """
    name = profile or DEFAULT_PROFILE
    saved = (store or ProfileStore()).get(name)
    if profile is not None and saved is None:
        raise ProfileError(
            f"no profile {name!r}: run `market-client login --profile {name}` to create it"
        )
    base = url or (saved.url if saved else DEFAULT_URL)
    if token:
        return Identity(base, token, "--token", name)
    env = os.environ.get(TOKEN_ENV)
    if env:
        return Identity(base, env, TOKEN_ENV, name)
    if saved is not None:
        return Identity(base, saved.token, f"profile {name!r}", name, saved.user_id)
    return Identity(base, None, None, name)
