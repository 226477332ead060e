"""Account services."""

from __future__ import annotations

from accounts.models import Role, User


def user_create(
    *, username: str, password: str | None, role: str = Role.PATIENT, email: str = "", **extra: object
) -> User:
    """Create a user with a role; a None password makes an account that cannot log in with one."""
    user = User(username=username, email=email, role=role, **extra)
    if password is None:
        user.set_unusable_password()
    else:
        user.set_password(password)
    user.full_clean(exclude=["password"])
    user.save()
    return user
