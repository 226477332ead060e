"""The project-wiring tests speak to the API and the portal: their fixtures, shared."""

from __future__ import annotations

from tests.api.conftest import token_for  # noqa: F401
from tests.consent.conftest import alice_record, an_observation, deployed, issue_grant  # noqa: F401
from tests.ledger.conftest import chain  # noqa: F401
