"""Who a request is: an API key, or nobody (only while imagegen serves without keys)."""

from __future__ import annotations

from dataclasses import dataclass

from imagegen.auth.keys import ApiKey
from imagegen.errors import AdminRequired
from imagegen.models import Generation


@dataclass(frozen=True, slots=True)
class Principal:
    """``key`` is None for an anonymous request, which has an admin's view (it exists only on
    a server with no keys, bound to loopback or explicitly opened)."""

    key: ApiKey | None = None

    @property
    def admin(self) -> bool:
        return self.key is None or self.key.admin

    @property
    def owner(self) -> str | None:
        """The id recorded on the generations this principal creates."""
        return None if self.key is None else self.key.id

    @property
    def name(self) -> str | None:
        return None if self.key is None else self.key.name

    @property
    def sees(self) -> str | None:
        """Whose generations it may see: an owner id, or None for everyone's."""
        return None if self.admin else self.owner

    def may_see(self, generation: Generation) -> bool:
        return self.admin or generation.owner == self.owner

    def require_admin(self) -> None:
        if not self.admin:
            raise AdminRequired("this needs an admin key")

    def require_admin_key(self) -> None:
        """Managing keys over HTTP needs a real admin key, even while anonymous access is
        open: the first key comes from the command line, which reaches the database."""
        if self.key is None:
            raise AdminRequired(
                "managing keys over HTTP needs an admin key: create the first one with "
                "`imagegen keys create NAME --admin`"
            )
        self.require_admin()


ANONYMOUS = Principal()
