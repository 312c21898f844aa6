"""Secrets never reach a log: a `logging.Filter` that redacts credentials from every record.

botocore's debug log prints the signed request: the session token (as the `X-Amz-Security-Token`
header and again in the canonical request), the `Authorization` header's signature, and for
presigned URLs the `X-Amz-Signature` / `X-Amz-Credential` query parameters. The filter formats
each record once, replaces those values (and any literal secret taken from the environment) by
`[redacted]`, and hands the handler the cleaned text. The access key id in `Credential=` of the
`Authorization` header is kept: it names the identity in use and is not a secret.
"""

from __future__ import annotations

import logging
import os
import re

REDACTED = "[redacted]"
SECRET_ENV = ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_SECRET_ACCESS_KEY")
_MIN_LITERAL = 8  # shorter "secrets" (test values like "testing") would redact ordinary words

_NAMED = re.compile(
    r"(?i)(x-amz-security-token|x-amz-signature|x-amz-credential|aws_session_token|aws_security_token"
    r"|aws_secret_access_key|secretaccesskey|sessiontoken|secret_key|session_token)"
    r"(['\"]?\s*[:=]\s*b?['\"]?)"
    r"([^'\"\s&,;}<>]+)"
)
_SIGNATURE = re.compile(r"(?i)\b(signature\s*[=:]\s*(?:\n\s*)?)([0-9a-f]{16,}|[A-Za-z0-9%+/=]{16,})")


def redact(text: str, literals: tuple[str, ...] = ()) -> str:
    """`text` with every credential value replaced by `[redacted]`."""
    for secret in literals:
        text = text.replace(secret, REDACTED)
    text = _NAMED.sub(lambda m: m.group(1) + m.group(2) + REDACTED, text)
    return _SIGNATURE.sub(lambda m: m.group(1) + REDACTED, text)


def secrets_from_environment() -> tuple[str, ...]:
    values = (os.environ.get(name, "") for name in SECRET_ENV)
    return tuple(value for value in values if len(value) >= _MIN_LITERAL)


class RedactSecrets(logging.Filter):
    """Install on a handler: every record it emits has its message (and arguments) redacted."""

    def __init__(self, literals: tuple[str, ...] | None = None) -> None:
        super().__init__()
        self._literals = secrets_from_environment() if literals is None else literals

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a bad format string: redact the parts as they are
            message = f"{record.msg} {record.args}"
        record.msg = redact(message, self._literals)
        record.args = None
        return True
