"""The project's one family of domain errors.

Domain code raises these; each surface (FHIR API, JSON API, portal) has one
handler that turns them into its own response shape. Messages never carry PHI:
they name elements and codes, not values.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class OutcomeIssue:
    """One OperationOutcome issue: what went wrong (code) and where (expression)."""

    code: str  # FHIR issue-type: invalid, structure, required, value, too-long, not-found ...
    diagnostics: str
    expression: tuple[str, ...] = ()
    severity: str = "error"

    def as_fhir(self) -> dict[str, object]:
        issue: dict[str, object] = {"severity": self.severity, "code": self.code, "diagnostics": self.diagnostics}
        if self.expression:
            issue["expression"] = list(self.expression)
        return issue


@dataclass
class HealthLedgerError(Exception):
    """Base of every domain error. `status` is the HTTP status a surface should answer with."""

    message: str = "error"
    status: int = field(default=400, kw_only=True)
    issue_code: str = field(default="processing", kw_only=True)

    def __post_init__(self) -> None:
        Exception.__init__(self, self.message)

    def __str__(self) -> str:
        return self.message

    @property
    def issues(self) -> list[OutcomeIssue]:
        return [OutcomeIssue(code=self.issue_code, diagnostics=self.message)]


@dataclass
class InvalidFHIR(HealthLedgerError):
    """Input that is not acceptable FHIR; carries every problem found, with its location."""

    found: list[OutcomeIssue] = field(default_factory=list)
    status: int = field(default=400, kw_only=True)
    issue_code: str = field(default="invalid", kw_only=True)

    @property
    def issues(self) -> list[OutcomeIssue]:
        return self.found or super().issues


@dataclass
class DocumentTooLarge(InvalidFHIR):
    status: int = field(default=413, kw_only=True)
    issue_code: str = field(default="too-costly", kw_only=True)


@dataclass
class ResourceNotFound(HealthLedgerError):
    """Does not exist, or the caller may not know whether it exists: both look the same."""

    status: int = field(default=404, kw_only=True)
    issue_code: str = field(default="not-found", kw_only=True)


@dataclass
class KeyDestroyed(HealthLedgerError):
    """The patient's key was destroyed (erasure): their data can never be decrypted again."""

    status: int = field(default=410, kw_only=True)
    issue_code: str = field(default="deleted", kw_only=True)


@dataclass
class IntegrityFailure(HealthLedgerError):
    """Ciphertext, wrapped key or log entry failed authentication: tampered, moved, or the wrong key."""

    status: int = field(default=500, kw_only=True)
    issue_code: str = field(default="exception", kw_only=True)


@dataclass
class KeyUnavailable(HealthLedgerError):
    """A key the operation needs (master, index, audit) is missing or malformed."""

    status: int = field(default=503, kw_only=True)
    issue_code: str = field(default="transient", kw_only=True)


@dataclass
class ConsentDenied(HealthLedgerError):
    status: int = field(default=403, kw_only=True)
    issue_code: str = field(default="forbidden", kw_only=True)


@dataclass
class ServiceUnavailable(HealthLedgerError):
    """A service the request needs is down; the surface answers 503 with Retry-After."""

    retry_after: int = field(default=5, kw_only=True)
    status: int = field(default=503, kw_only=True)
    issue_code: str = field(default="transient", kw_only=True)


@dataclass
class ChainUnavailable(ServiceUnavailable):
    pass


@dataclass
class ChainError(HealthLedgerError):
    """The chain refused a transaction (revert) or answered something unusable."""

    permanent: bool = field(default=True, kw_only=True)
    status: int = field(default=502, kw_only=True)
    issue_code: str = field(default="exception", kw_only=True)


@dataclass
class AccessLogTampered(HealthLedgerError):
    status: int = field(default=500, kw_only=True)
    issue_code: str = field(default="exception", kw_only=True)
