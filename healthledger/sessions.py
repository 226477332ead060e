"""Database sessions stored under a keyed hash of the session id (SESSION_ENGINE = "healthledger.sessions").

Django's database backend keeps the cookie's value as the row's primary key, so whoever
reads a copy of the database (a backup, a replica, a dump on a laptop) can set that value as
a cookie and ride any live session, staff ones included. Here the row's key is
HMAC(account key, session id) (healthledger.lib.account_secrets): the server finds the row
from the cookie, but nobody can go from the row back to a cookie without the account key,
which never sits in the database.
"""

from __future__ import annotations

from typing import Any

from django.contrib.sessions.backends import db
from django.contrib.sessions.base_session import AbstractBaseSession
from django.contrib.sessions.models import Session

from healthledger.lib.account_secrets import session_id_digest


class SessionStore(db.SessionStore):
    """django.contrib.sessions.backends.db with every stored key replaced by its keyed hash."""

    def _stored_key(self, session_key: str) -> str:
        return session_id_digest(session_key)

    def _get_session_from_db(self) -> Session | None:
        real_key = self.session_key
        if real_key is None:
            return None
        # The parent looks the row up by self.session_key: give it the stored form for the duration.
        self._session_key = self._stored_key(real_key)
        found: Session | None = super()._get_session_from_db()  # type: ignore[misc]
        # The parent clears the key when no row matches; keep the cookie's value otherwise.
        self._session_key = real_key if self._session_key is not None else None
        return found

    async def _aget_session_from_db(self) -> Session | None:
        real_key = self.session_key
        if real_key is None:
            return None
        self._session_key = self._stored_key(real_key)
        found: Session | None = await super()._aget_session_from_db()  # type: ignore[misc]
        self._session_key = real_key if self._session_key is not None else None
        return found

    def exists(self, session_key: str) -> bool:
        return bool(super().exists(self._stored_key(session_key)))

    async def aexists(self, session_key: str) -> bool:
        return bool(await super().aexists(self._stored_key(session_key)))

    def create_model_instance(self, data: dict[str, Any]) -> AbstractBaseSession:
        obj = super().create_model_instance(data)
        obj.session_key = self._stored_key(obj.session_key)
        return obj

    async def acreate_model_instance(self, data: dict[str, Any]) -> AbstractBaseSession:
        obj = await super().acreate_model_instance(data)
        obj.session_key = self._stored_key(obj.session_key)
        return obj

    def delete(self, session_key: str | None = None) -> None:
        if session_key is None:
            if self.session_key is None:
                return
            session_key = self.session_key
        super().delete(self._stored_key(session_key))

    async def adelete(self, session_key: str | None = None) -> None:
        if session_key is None:
            if self.session_key is None:
                return
            session_key = self.session_key
        await super().adelete(self._stored_key(session_key))
