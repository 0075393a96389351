"""STS: which account the credentials act in (checked against the allow-list before any fault)."""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError

from drdrill.errors import DrillError
from drdrill.targets.aws.session import AwsClients


def account_id(aws: AwsClients, region: str = "us-east-1") -> str:
    """The 12-digit id of the account the clients act in (the assumed role's, if any)."""
    try:
        identity = aws.client("sts", region).get_caller_identity()
    except (ClientError, BotoCoreError) as exc:
        raise DrillError(
            f"sts: cannot tell which aws account these credentials use: {exc}"
        ) from exc
    account = str(identity.get("Account", ""))
    if not (len(account) == 12 and account.isdigit()):
        raise DrillError(f"sts: account id {account!r} is not 12 digits")
    return account
