"""The secret scan of the deployment tests: names of the secret-looking strings in a text
(tests/unit/test_deploy.py scans the deployment files, tests/store/test_deploy_tools.py bench/gpu_check.sh)."""
from __future__ import annotations

import re

# AWS access key ids, 40-character secret keys (mixed case and digits), private keys, and
# 64-hex Ray auth tokens (`ray get-auth-token --generate` makes those).
SECRET_PATTERNS = {
    "AWS access key id": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "40-character secret": re.compile(
        r"(?<![A-Za-z0-9/+=])(?=[A-Za-z0-9/+]*[a-z])(?=[A-Za-z0-9/+]*[A-Z])(?=[A-Za-z0-9/+]*[0-9])"
        r"[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])"),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "hex token": re.compile(r"(?<!sha256:)(?<![0-9a-fA-F])[0-9a-f]{64}(?![0-9a-fA-F])"),
}


def secret_findings(text: str) -> list[str]:
    """Names of the secret patterns found in `text`."""
    found = [name for name, rx in SECRET_PATTERNS.items() if rx.search(text)]
    if "aws_secret_access_key" in text.lower():
        found.append("aws_secret_access_key")
    return found
